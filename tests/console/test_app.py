"""The console in headless Chromium against the real services: sign-in, the customer 360 view,
the complaint queue, the dashboard, the policy, languages, scopes, sessions, CSRF, escaping, a
service that is down, and the sign-in rate limit. Screenshots go to .run/test-artifacts/console/."""

from __future__ import annotations

import asyncio
import re
import time
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from console.session import SESSION_COOKIE, Codec, Session
from tests.helpers import eventually
from tests.processes import ServiceProcess

from .conftest import HOSTILE, Stack, Tab, new_tab
from .stack import console_process

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]


def clean(tab: Tab) -> None:
    assert not tab.errors, f"browser errors: {tab.errors[:5]}"
    assert not tab.dialogs, f"a dialog opened: {tab.dialogs}"


async def http_session(base: str, key: str) -> httpx.AsyncClient:
    """An HTTP client signed in to the console as a browser would be (form, CSRF token, cookie)."""
    client = httpx.AsyncClient(base_url=base, timeout=30.0)
    page = await client.get("/login")
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)
    signed = await client.post("/login", data={"api_key": key, "csrf_token": token})
    assert signed.status_code == 303, signed.text
    return client


async def test_sign_in_with_the_key_and_open_a_customer_registered_through_the_contract(stack: Stack,
                                                                                          tab: Tab) -> None:
    person = stack.plain
    await tab.open(f"/customers/{person.customer_id}", until="load")
    assert "/login" in tab.page.url  # nothing without signing in
    await tab.shot("login")
    await tab.sign_in(stack.key, here=True)
    assert urlsplit(tab.page.url).path == f"/customers/{person.customer_id}"  # where the user wanted to go

    async def listed() -> bool:  # the customer service learns the tier from tiering's snapshot topic
        await tab.open("/customers")
        await tab.page.select_option("#customer-filter select[name=tier]", "low")
        await tab.submit("#customer-filter button")
        return person.customer_id in await tab.page.inner_text("main")
    await eventually(listed, timeout=60, interval=1.0)
    await tab.page.fill("input[name=q]", person.email)
    async with tab.page.expect_navigation(wait_until="networkidle"):
        await tab.page.keyboard.press("Enter")
    await tab.shot("customers")
    await tab.submit(f"#customer-list a:text('{person.customer_id}')")
    assert urlsplit(tab.page.url).path == f"/customers/{person.customer_id}"
    page = tab.page
    assert await page.inner_text("#customer-title .name") == person.name
    assert person.email in await page.inner_text("#profile")  # the full key reads personal data
    classification = await page.inner_text("#classification")
    assert "Value tier" in classification and "Low value" in classification
    timeline = await page.inner_text("#timeline")
    assert "120.00 CNY" in timeline
    assert stack.complaints["ack"] in await page.inner_text("#customer-complaints")
    assert await page.locator("form[data-action=record-interaction]").count() == 1
    assert await page.locator("form[data-action=set-override]").count() == 1
    await tab.shot("customer")
    clean(tab)


async def test_actions_on_the_customer_record_an_interaction_and_set_and_lift_an_override(stack: Stack,
                                                                                          tab: Tab) -> None:
    person = stack.plain
    await tab.sign_in(stack.key)
    await tab.open(f"/customers/{person.customer_id}")
    page = tab.page
    await page.click("#timeline details.action summary")
    await page.fill("#interaction-form textarea[name=summary]", "Called about the parcel")
    await tab.submit("#interaction-form button")
    assert "Interaction recorded" in await page.inner_text(".flash")

    await page.click("#classification details.action summary")
    await page.select_option("#override-form select[name=dimension]", "value_tier")
    await page.select_option("#override-form select[name=value]", "high")
    await page.fill("#override-form input[name=reason]", "Key account")
    await tab.submit("#override-form button")
    assert "Override set" in await page.inner_text(".flash")
    row = page.locator("tr[data-dimension=value_tier]")
    assert "High value" in await row.inner_text()
    await row.locator("input[name=reason]").fill("No longer a key account")
    await tab.submit(row.locator("form[data-action=lift-override] button"))
    assert "Override lifted" in await page.inner_text(".flash")

    async def recorded() -> bool:
        await tab.open(f"/customers/{person.customer_id}")
        return "Called about the parcel" in await page.inner_text("#timeline")
    await eventually(recorded, timeout=60, interval=1.0)
    history = await page.inner_text("#tier-history")
    assert "Key account" in history and "No longer a key account" in history
    clean(tab)


async def test_the_account_manager_the_complaints_service_assigns_shows_on_the_360_view(stack: Stack,
                                                                                          tab: Tab) -> None:
    person = stack.plain
    moved = await stack.system.http["complaints"].put(f"/accounts/{person.customer_id}/manager",
                                                      json={"manager_id": "am-xu", "reason": "key account"})
    assert moved.status_code == 200, moved.text
    await tab.sign_in(stack.key)

    async def shown() -> str | None:  # published on crm.account-managers.v1, kept by the customer service
        await tab.open(f"/customers/{person.customer_id}")
        row = await tab.page.inner_text("#account-manager")
        return row if "Xu Bo" in row else None
    row = await eventually(shown, timeout=60, interval=1.0)
    assert "am-xu" in row
    await tab.shot("customer-account-manager")
    clean(tab)


async def test_hostile_names_and_complaint_texts_show_as_text(stack: Stack, tab: Tab) -> None:
    await tab.sign_in(stack.key)
    page = tab.page
    response = await tab.open(f"/customers/{stack.hostile.customer_id}")
    assert response.status == 200
    assert await page.inner_text("#customer-title .name") == stack.hostile.name
    assert await page.locator("img[src=x]").count() == 0
    await tab.shot("customer-hostile")
    await tab.open(f"/complaints/{stack.complaints['hostile']}")
    assert HOSTILE in await page.inner_text("#complaint-description")
    assert "<script>window.__pwned=1</script>" in await page.inner_text("#complaint-subject")
    await tab.shot("complaint-hostile")
    await tab.open("/complaints")
    assert "<script>" in await page.inner_text(f"tr[data-complaint='{stack.complaints['hostile']}']")
    assert await page.locator("img[src=x]").count() == 0
    assert not await tab.pwned()
    clean(tab)


async def test_acknowledging_a_complaint_changes_the_queue(stack: Stack, tab: Tab) -> None:
    complaint = stack.complaints["ack"]
    await tab.sign_in(stack.key)
    page = tab.page
    await tab.open("/complaints")
    row = page.locator(f"tr[data-complaint='{complaint}']")
    assert "received" in await row.locator("td.status").inner_text()
    assert "first response" in await row.inner_text()
    assert re.search(r"due in \d", await row.locator(".countdown").inner_text())  # the live countdown runs
    await tab.shot("complaints")
    # The queue is ordered by the nearest due time.
    dues = await page.eval_on_selector_all("#queue-rows .countdown", "els => els.map(e => e.dataset.due)")
    assert dues == sorted(dues, key=lambda d: d)

    await tab.submit(row.locator("a").first)
    await tab.submit("form[data-action=transition-acknowledged] button")
    assert "acknowledged" in await page.inner_text("#complaint-status")
    await page.fill("form[data-action=assign] input[name=assignee]", "agent-7")
    await tab.submit("form[data-action=assign] button")
    await page.fill("form[data-action=comment] textarea", "We are on it")
    await tab.submit("form[data-action=comment] button")
    assert "We are on it" in await page.inner_text("#comments")

    async def history() -> bool:  # the lifecycle events reach the customer's timeline over Kafka
        await tab.open(f"/complaints/{complaint}")
        text = await page.inner_text("#complaint-history")
        return "opened" in text and "acknowledged" in text and "assigned" in text
    await eventually(history, timeout=60, interval=1.0)
    await tab.shot("complaint")

    await tab.open("/complaints")
    row = page.locator(f"tr[data-complaint='{complaint}']")
    text = await row.inner_text()
    assert "acknowledged" in text and "agent-7" in text and "resolution" in text
    team = (await row.locator("td").nth(6).inner_text()).strip()
    await tab.open("/complaints?assignee=agent-7")
    assert await page.locator("#queue-rows tr[data-complaint]").count() == 1
    await tab.open("/complaints?level=supervisor")
    assert await page.locator(f"tr[data-complaint='{complaint}']").count() == 0  # nothing escalated here
    if team not in ("", "—"):  # where the complaints service routes complaints to teams
        await tab.open(f"/complaints?team={team}")
        assert await page.locator(f"tr[data-complaint='{complaint}']").count() == 1

    # The queue refreshes itself: a change made elsewhere shows without reloading the page.
    await tab.open("/complaints")
    await stack.system.http["complaints"].post(f"/complaints/{complaint}/transitions", json={"to": "investigating"})

    async def refreshed() -> bool:
        return "investigating" in await page.locator(f"tr[data-complaint='{complaint}'] td.status").inner_text()
    await eventually(refreshed, timeout=30, interval=0.5)
    clean(tab)


async def test_a_refused_transition_shows_the_services_reason(stack: Stack, tab: Tab) -> None:
    complaint = stack.complaints["refuse"]
    await tab.sign_in(stack.key)
    page = tab.page
    await tab.open(f"/complaints/{complaint}")
    # Someone else acknowledges it meanwhile; this page still offers what was allowed before.
    moved = await stack.system.http["complaints"].post(f"/complaints/{complaint}/transitions",
                                                       json={"to": "acknowledged"})
    assert moved.status_code == 200, moved.text
    await tab.submit("form[data-action=transition-acknowledged] button")
    flash = await page.inner_text(".flash.error")
    assert "cannot go from acknowledged to acknowledged" in flash and "investigating" in flash
    clean(tab)


async def test_the_dashboard_draws_its_charts_without_browser_errors(stack: Stack, tab: Tab) -> None:
    await tab.sign_in(stack.key)
    response = await tab.open("/dashboard")
    assert response.status == 200
    page = tab.page
    for chart in ("distribution-value_tier", "distribution-lifecycle", "pareto"):
        assert await page.locator(f"figure[data-chart='{chart}'] svg").count() == 1, chart
    for panel in ("#sla", "#csat", "#messages", "#churn"):  # a chart, or a sentence saying why there is none
        drawn = await page.locator(f"{panel} svg").count()
        assert drawn or "Not available" in await page.inner_text(panel), panel
    # The complaints of the last 90 days per team and per person holding them, as the report gives them.
    report = (await stack.system.http["complaints"].get("/reports/complaints", params={
        "from": (datetime.now(UTC) - timedelta(days=90)).isoformat(),
        "to": (datetime.now(UTC) + timedelta(seconds=1)).isoformat()})).json()
    for table, groups in (("by_team", report["by_team"]), ("by_assignee", report["by_assignee"])):
        rows = page.locator(f"#holders table[data-table='{table}'] tr[data-holder]")
        assert await rows.count() == min(len(groups), 15) >= 1, table
        first = sorted(groups.items(), key=lambda g: (-g[1]["total"], g[0]))[0]  # the most complaints first
        assert await rows.first.get_attribute("data-holder") == first[0], table
        assert (await rows.first.locator("td").nth(1).inner_text()).strip() == str(first[1]["total"]), table
    assert await page.locator("script:not([src])").count() == 0  # the charts carry no script of their own
    await tab.shot("dashboard")
    clean(tab)


async def test_the_policy_dry_run_then_walk_away_or_apply(stack: Stack, tab: Tab) -> None:
    await tab.sign_in(stack.key)
    page = tab.page
    await tab.open("/policy")
    active = await page.inner_text("#policy-current h2")
    await tab.submit("form[data-action=dry-run] button")
    result = await page.inner_text("#dry-run")
    assert "Dry run of version" in result and "customers would move" in result
    await tab.shot("policy")
    await tab.submit("#walk-away")
    assert await page.inner_text("#policy-current h2") == active
    await tab.submit("form[data-action=dry-run] button")
    version = await page.locator("form[data-action=apply-policy] input[name=version]").get_attribute("value")
    await tab.submit("form[data-action=apply-policy] button")
    assert f"Policy {version} is active" in await page.inner_text(".flash")
    assert version in await page.inner_text("#policy-current h2")
    clean(tab)


async def test_switching_to_chinese_localises_words_tiers_and_dates(stack: Stack, tab: Tab) -> None:
    await tab.sign_in(stack.key)
    page = tab.page
    await tab.open(f"/customers/{stack.plain.customer_id}")
    await tab.submit("#language button[value=zh-CN]")
    assert urlsplit(page.url).path == f"/customers/{stack.plain.customer_id}"
    assert await page.get_attribute("html", "lang") == "zh-CN"
    assert "客户" in await page.inner_text("header nav")
    assert "低价值" in await page.inner_text("#classification")
    assert re.search(r"\d{4}年\d{1,2}月\d{1,2}日", await page.inner_text("#timeline"))
    await tab.shot("customer-zh")
    await tab.open("/dashboard")
    assert "仪表盘" in await page.inner_text("h1")
    assert "按团队" in await page.inner_text("#holders")
    await tab.shot("dashboard-zh")
    await tab.submit("#language button[value=en-US]")
    assert "Dashboard" in await page.inner_text("h1")
    clean(tab)


async def test_a_read_only_key_sees_masked_contacts_and_no_actions(stack: Stack, tab: Tab) -> None:
    await tab.sign_in(stack.read_only_key)
    page = tab.page
    await tab.open(f"/customers/{stack.plain.customer_id}")
    profile = await page.inner_text("#profile")
    assert stack.plain.email not in profile and stack.plain.phone not in profile
    assert await page.locator("[data-action]").count() == 0
    await tab.shot("customer-read-only")
    await tab.open(f"/complaints/{stack.complaints['refuse']}")
    assert await page.locator("[data-action]").count() == 0
    await tab.open("/policy")
    assert await page.locator("[data-action]").count() == 0
    assert "policy:write" in await page.inner_text("main")
    await tab.open(f"/customers?q={stack.plain.email}")
    assert "pii:read" in await page.inner_text("main")
    clean(tab)
    # The services check every call all the same: a write with this key's session is refused by them.
    client = await http_session(stack.console.url, stack.read_only_key)
    try:
        page_html = (await client.get(f"/customers/{stack.plain.customer_id}")).text
        token = re.search(r'name="csrf_token" value="([^"]+)"', page_html).group(1)
        sent = await client.post(f"/customers/{stack.plain.customer_id}/interactions",
                                 data={"csrf_token": token, "kind": "call", "channel": "phone"})
        assert sent.status_code == 303
        after = await client.get(f"/customers/{stack.plain.customer_id}")
        assert "customers:write" in after.text  # the service's 403, shown as the outcome
    finally:
        await client.aclose()


async def test_forged_altered_and_expired_sessions_are_refused(stack: Stack, browser: Any) -> None:
    codec = Codec(stack.secret)
    now = int(time.time())
    good = Session(key=stack.key, scopes=frozenset({"customers:read"}), csrf="x", expires=now + 3600, probed=now)
    expired_payload = Session(key=stack.key, scopes=frozenset({"customers:read"}), csrf="x", expires=now - 60,
                              probed=now - 9 * 3600)
    valid = codec.seal_session(good)
    cookies = {
        "forged": "gAAAAAB" + "A" * 120,
        "altered": valid[:-6] + ("AAAAAA" if not valid.endswith("AAAAAA") else "BBBBBB"),
        "foreign": Codec("another-secret-" * 4).seal_session(good),
        "expired": codec.seal(expired_payload.payload(), at=now - 9 * 3600),
    }
    for label, value in cookies.items():
        tab = await new_tab(browser, stack.console.url)
        try:
            await tab.page.context.add_cookies([{"name": SESSION_COOKIE, "value": value, "url": stack.console.url}])
            await tab.open(f"/customers/{stack.plain.customer_id}", until="load")
            assert "/login" in tab.page.url, label
        finally:
            await tab.page.context.close()
    async with httpx.AsyncClient(base_url=stack.console.url) as client:
        client.cookies.set(SESSION_COOKIE, valid)
        assert (await client.get("/customers")).status_code == 200  # the control: a sound cookie works
        for label, value in cookies.items():
            client.cookies.set(SESSION_COOKIE, value)
            response = await client.get("/complaints/rows", headers={"X-Requested-With": "fetch"})
            assert response.status_code == 401, label


async def test_a_post_without_the_csrf_token_is_refused(stack: Stack) -> None:
    client = await http_session(stack.console.url, stack.key)
    try:
        path = f"/customers/{stack.plain.customer_id}/interactions"
        for data in ({"kind": "call", "channel": "phone"},
                     {"kind": "call", "channel": "phone", "csrf_token": "not-the-token"}):
            refused = await client.post(path, data=data)
            assert refused.status_code == 403
        assert (await client.post("/logout", data={})).status_code == 403
        assert (await client.get("/customers")).status_code == 200  # still signed in
        anonymous = httpx.AsyncClient(base_url=stack.console.url)
        try:
            assert (await anonymous.post("/login", data={"api_key": stack.key})).status_code == 403
        finally:
            await anonymous.aclose()
    finally:
        await client.aclose()


@pytest.fixture(scope="module")
async def degraded(stack: Stack) -> ServiceProcess:
    """A second console whose complaints and notifications services do not answer."""
    from tests.processes import free_port

    closed = f"http://127.0.0.1:{free_port()}"
    process = console_process(stack.console_env(complaints=closed, notifications=closed), stack.system.log_dir,
                              name="console-degraded")
    stack.extra.append(process)
    await asyncio.to_thread(process.start)
    return process


async def test_a_service_that_is_down_shows_a_clear_message(stack: Stack, browser: Any,
                                                            degraded: ServiceProcess) -> None:
    tab = await new_tab(browser, degraded.url)
    try:
        await tab.sign_in(stack.key)
        page = tab.page
        response = await tab.open(f"/customers/{stack.plain.customer_id}")
        assert response.status == 200
        main = await page.inner_text("main")
        assert "notifications service is not answering" in main and "complaints service is not answering" in main
        assert stack.plain.name in main  # what the customer service holds is still shown
        await tab.shot("customer-service-down")
        response = await tab.open("/complaints")
        assert response.status == 503
        assert "complaints service is not answering" in await page.inner_text("main")
        assert "Traceback" not in await page.content()
        response = await tab.open("/dashboard")
        assert response.status == 200
        assert "Not available" in await page.inner_text("#sla")
        await tab.shot("dashboard-service-down")
    finally:
        await tab.page.context.close()


async def test_sign_in_failures_are_rate_limited(stack: Stack, degraded: ServiceProcess) -> None:
    async with httpx.AsyncClient(base_url=degraded.url, timeout=30.0) as client:
        statuses = []
        for attempt in range(7):
            page = await client.get("/login")
            token = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)
            response = await client.post("/login", data={"api_key": f"ck_wrong{attempt}", "csrf_token": token})
            statuses.append(response.status_code)
        assert statuses[:5] == [401] * 5 and statuses[5:] == [429, 429], statuses
        assert int(response.headers["Retry-After"]) > 0
        # Blocked means blocked: the right key waits too.
        response = await client.post("/login", data={"api_key": stack.key, "csrf_token": token})
        assert response.status_code == 429


async def test_the_console_logs_no_key_and_no_personal_data(stack: Stack) -> None:
    logs = stack.console.log_text() + "".join(p.log_text() for p in stack.extra)
    assert '"request"' in logs
    for secret in (stack.key, stack.read_only_key, stack.plain.email, stack.plain.phone, stack.plain.name,
                   stack.hostile.email):
        assert secret not in logs
