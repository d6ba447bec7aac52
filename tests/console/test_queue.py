"""The work-queue page and the account manager on the 360 view, in headless Chromium against the
real services: a manager chosen on the customer's page (with its audit record), return visits
published on crm.care-tasks.v1 in the manager's queue (the overdue one marked), an outcome recorded
from the queue and published as the customer's interaction, a refused second outcome with the
service's reason, and no form for a read-only key. Screenshots go to .run/test-artifacts/console/."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from shared.contract.topics import CRM_CARE_TASKS
from tests.helpers import envelope, eventually, produce

from .conftest import Stack, Tab, new_tab

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]
MANAGER = "am-lin"  # an account manager of the development staff directory (test_app gives this customer am-xu)


def clean(tab: Tab) -> None:
    assert not tab.errors, f"browser errors: {tab.errors[:5]}"
    assert not tab.dialogs, f"a dialog opened: {tab.dialogs}"


async def publish_visit(stack: Stack, customer: str, fell_due: datetime) -> str:
    """A follow-up of ``customer`` that fell due at ``fell_due``, as the notifications service sends it."""
    visit_id = f"return_visit:{fell_due.date().isoformat()}:{customer}"
    await produce(stack.system.bootstrap, CRM_CARE_TASKS, [(customer.encode(), envelope(
        "care.return_visit.due", customer, {"visit_id": visit_id, "due_on": fell_due.date().isoformat(),
                                            "cadence_days": 30, "manager_id": MANAGER}, time_=fell_due))])
    return visit_id


async def test_a_managed_customers_return_visit_is_done_from_the_managers_queue(stack: Stack, tab: Tab,
                                                                                browser: Any) -> None:
    customer = stack.plain.customer_id
    complaints = stack.system.http["complaints"]
    await tab.sign_in(stack.key)
    page = tab.page

    # The manager is chosen on the 360 view; the complaints service's audit record shows at once.
    await tab.open(f"/customers/{customer}")
    await page.click("#profile details.action summary")
    await page.select_option("#manager-form select[name=manager_id]", MANAGER)
    await page.fill("#manager-form input[name=reason]", "Key account <b>renewal</b>")
    await tab.submit("#manager-form button")
    assert "Account manager changed" in await page.inner_text(".flash")
    await page.click("#manager-audit summary")
    audit = await page.inner_text("#manager-audit")
    assert MANAGER in audit and "Key account <b>renewal</b>" in audit  # shown as text
    await tab.shot("customer-manager-changed")

    now = datetime.now(UTC)
    overdue = await publish_visit(stack, customer, now - timedelta(days=30))
    upcoming = await publish_visit(stack, customer, now)

    async def queued() -> bool:
        return [(await complaints.get(f"/tasks/{task}")).status_code for task in (overdue, upcoming)] == [200, 200]
    await eventually(queued, timeout=60, interval=0.5)

    # The person is chosen from the directory; the overdue visit comes first and is marked.
    await tab.open("/queue")
    await page.select_option("#queue-person select[name=staff]", MANAGER)
    await tab.submit("#queue-person button")
    assert page.url.endswith(f"/queue?staff={MANAGER}")
    items = await page.eval_on_selector_all("#work-queue tr[data-item]", "rows => rows.map(r => r.dataset.item)")
    assert items == [overdue, upcoming]
    first, second = (page.locator(f"#work-queue tr[data-item='{task}']") for task in (overdue, upcoming))
    assert "overdue" in await first.inner_text() and "overdue" not in await second.locator("td").nth(5).inner_text()
    assert await first.locator(f"a[href='/customers/{customer}']").count() == 1
    await tab.shot("queue")

    await first.locator("details.action summary").click()
    await first.locator("select[name=outcome]").select_option("completed")
    await first.locator("select[name=channel]").select_option("call")
    await first.locator("textarea[name=summary]").fill("Renewal agreed")
    await first.locator("input[name=satisfaction]").fill("5")
    await tab.submit(first.locator("button"))
    assert "Outcome recorded" in await page.inner_text(".flash")
    items = await page.eval_on_selector_all("#work-queue tr[data-item]", "rows => rows.map(r => r.dataset.item)")
    assert items == [upcoming]

    # Recorded elsewhere meanwhile: the form on this page is out of date, and the service says why.
    elsewhere = await complaints.post(f"/tasks/{upcoming}/outcome",
                                      json={"outcome": "unreachable", "channel": "call", "summary": "No answer"})
    assert elsewhere.status_code == 200, elsewhere.text
    second = page.locator(f"#work-queue tr[data-item='{upcoming}']")
    await second.locator("details.action summary").click()
    await second.locator("textarea[name=summary]").fill("Met at their office")
    await tab.submit(second.locator("button"))
    flash = await page.inner_text(".flash.error")
    assert "Refused: the outcome was recorded at" in flash
    assert await page.locator("#work-queue tr[data-item]").count() == 0
    await tab.shot("queue-refused")

    async def in_timeline() -> bool:  # published as a return_visit interaction, kept by the customer service
        await tab.open(f"/customers/{customer}")
        return "Renewal agreed" in await page.inner_text("#timeline")
    await eventually(in_timeline, timeout=60, interval=1.0)
    assert "return_visit" in await page.inner_text("#timeline")
    assert not await tab.pwned()
    clean(tab)

    # A read-only key sees the queue and the audit record, and no form.
    reader = await new_tab(browser, stack.console.url)
    try:
        await publish_visit(stack, customer, now - timedelta(days=1))
        await reader.sign_in(stack.read_only_key)

        async def listed() -> bool:
            await reader.open(f"/queue?staff={MANAGER}")
            return await reader.page.locator("#work-queue tr[data-item]").count() == 1
        await eventually(listed, timeout=60, interval=1.0)
        assert await reader.page.locator("form[data-action]").count() == 0
        await reader.open(f"/customers/{customer}")
        assert await reader.page.locator("#manager-audit").count() == 1
        assert await reader.page.locator("form[data-action=change-manager]").count() == 0
        clean(reader)
    finally:
        await reader.page.context.close()
