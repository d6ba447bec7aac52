"""Customer journeys across the four services running as separate processes.

The journeys run at the same time (see ``system.journey``); the last two tests look at what the
whole run left behind: the compacted classification topic, and the services' logs.
"""

from __future__ import annotations

import asyncio
import csv
import json
import sys
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from shared.contract.topics import CRM_CUSTOMER_INTAKE, CRM_CUSTOMER_TIERS, CRM_CUSTOMERS
from tests.helpers import envelope, eventually, produce
from tests.processes import ROOT

from .system import WAIT, Person, System, journey

pytestmark = pytest.mark.e2e
DIMENSIONS = ("value_tier", "abc_class", "vip", "loyalty", "lifecycle", "rfm_segment", "potential")


def _key(message: Any) -> str:
    # A long header arrives folded; unfolding leaves the fold's leading space.
    return str(message["X-Idempotency-Key"] or "").strip()


async def _mail(system: System, person: Person, dedupe_prefix: str, timeout: float = WAIT) -> Any:
    """The e-mail to ``person`` whose dedupe key starts with ``dedupe_prefix``, once it arrived."""
    async def arrived() -> Any:
        found = [m for m in system.emails_to(person) if _key(m).startswith(dedupe_prefix)]
        return found[0] if found else None
    try:
        return await eventually(arrived, timeout=timeout)
    except AssertionError:
        records = [{k: n.get(k) for k in ("trigger", "status", "reason", "dedupe_key")}
                   for n in await system.notifications(person)]
        raise AssertionError(f"no {dedupe_prefix} e-mail to {person.label} within {timeout}s; "
                             f"its notification records: {records}") from None


@journey
async def test_a_customer_who_buys_into_a_higher_tier_is_congratulated_by_email_in_their_own_language(
    system: System,
) -> None:
    ada = system.person("upgrade", locale="en-US", country="US")
    await system.register_upstream(ada)
    # Purchases come after the registration has reached the notifications service, as in life:
    # a tier change that overtook it would find no contact to write to.
    welcome = await _mail(system, ada, "welcome:")
    assert (str(welcome["Subject"]), welcome["Content-Language"]) == ("Welcome aboard", "en-US")
    await system.buy(ada, "1000.00")
    await system.classified(ada, value_tier="low")
    await system.buy(ada, "24000.00")
    await system.classified(ada, value_tier="high")

    mail = await _mail(system, ada, "tier_upgrade:value_tier:high:")
    assert mail["To"] == ada.email.lower()
    assert mail["Content-Language"] == "en-US"
    assert str(mail["Subject"]) == "Congratulations on reaching Gold"
    body = mail.get_content()
    assert f"Dear {ada.name}, congratulations: your membership is now Gold." in body
    assert "恭喜" not in body  # not the default locale's template
    history = {n["trigger"]: n for n in await system.notifications(ada)}
    assert history["tier_upgrade"]["status"] == "sent"
    assert (history["tier_upgrade"]["channel"], history["tier_upgrade"]["locale"]) == ("email", "en-US")


@journey
async def test_a_vip_complaint_comes_first_with_a_shorter_sla_and_when_breached_escalates_with_an_apology(
    system: System,
) -> None:
    vip, regular = system.person("vip"), system.person("regular")
    await asyncio.gather(system.register(vip), system.register(regular))
    await asyncio.gather(_mail(system, vip, "welcome:"), _mail(system, regular, "welcome:"))
    await asyncio.gather(system.buy(vip, "100000.00"), system.buy(regular, "300.00"))
    # Both purchases counted before the refresh: the registration alone classifies a prospect, and a
    # refresh without the VIP's spend would draw the VIP line at another journey's customer.
    await asyncio.gather(system.classified(vip, lifecycle="new"), system.classified(regular, lifecycle="new"))
    async with system.population:
        # VIP is the top 1 % of the population by spend: the cut-off comes from a refresh.
        refreshed = await system.http["tiering"].post("/population/refresh")
        assert refreshed.status_code == 200, refreshed.text
    await asyncio.gather(system.classified(vip, vip="vip"), system.classified(regular, vip="regular"))

    # The complaints service knows each customer's tier from crm.customer-tiers.v1 before intake.
    assert system.mongo is not None
    tiers = system.mongo[system.database("complaints")]["tiers"]

    async def tiers_known() -> bool:
        found = {d["_id"]: d.get("tier") async for d in tiers.find({"_id": {"$in": [vip.customer_id,
                                                                                      regular.customer_id]}})}
        return found == {vip.customer_id: "vip", regular.customer_id: "low"}
    await eventually(tiers_known, timeout=WAIT)

    vip_id, regular_id = f"CMP-{vip.customer_id}", f"CMP-{regular.customer_id}"
    await asyncio.gather(system.complain(vip, vip_id), system.complain(regular, regular_id))
    opened = await eventually(lambda: system.complaint(vip_id), timeout=WAIT)
    other = await eventually(lambda: system.complaint(regular_id), timeout=WAIT)

    assert (opened["customer_tier"], other["customer_tier"]) == ("vip", "low")
    assert (opened["priority"], other["priority"]) == ("p2", "p3")
    assert (opened["sla_policy"], other["sla_policy"]) == ("preferred@e2e", "standard@e2e")

    def first_response_allowed(complaint: dict[str, Any]) -> timedelta:
        return (datetime.fromisoformat(complaint["first_response_due_at"])
                - datetime.fromisoformat(complaint["opened_at"]))
    assert first_response_allowed(opened) < first_response_allowed(other)

    async def escalated() -> dict[str, Any] | None:
        found = await system.complaint(vip_id)
        return found if found and found["breached"] and found["escalation_level"] == 1 else None
    breached = await eventually(escalated, timeout=WAIT)
    assert breached["sla"]["first_response"]["breached"] is True
    assert (breached["priority"], breached["escalated_to"]) == ("p1", "supervisor")

    apology = await _mail(system, vip, f"complaint_breached:{vip_id}:first_response:")
    assert vip_id in str(apology["Subject"])
    assert "致歉" in str(apology["Subject"])  # the customer's (default) locale

    still = await system.complaint(regular_id)
    assert still is not None and not still["breached"] and still["escalation_level"] == 0
    assert not [m for m in system.emails_to(regular) if _key(m).startswith("complaint_breached:")]
    assert [m for m in system.emails_to(regular) if _key(m).startswith(f"complaint_acknowledged:{regular_id}:")]


@journey
async def test_an_erased_customer_is_in_no_service_database_and_tombstoned_on_the_compacted_topics(
    system: System,
) -> None:
    eve = system.person("erased")
    await system.register(eve)
    await _mail(system, eve, "welcome:")
    await system.buy(eve, "800.00")
    complaint_id = f"CMP-{eve.customer_id}"
    await system.complain(eve, complaint_id, subject=f"{eve.name} was left waiting",
                          description=f"Call {eve.phone} or write to {eve.email}; I live at {eve.address}.")
    response = await system.http["customer"].post(f"/customers/{eve.customer_id}/interactions", json={
        "kind": "call", "channel": "phone", "summary": f"{eve.name} called from {eve.phone}"})
    assert response.status_code == 202, response.text

    # Every service holds something of her before she asks to be forgotten.
    await system.classified(eve)
    await eventually(lambda: system.complaint(complaint_id), timeout=WAIT)

    async def acknowledged() -> bool:
        return any(n["trigger"] == "complaint_acknowledged" and n["status"] == "sent"
                   for n in await system.notifications(eve))
    await eventually(acknowledged, timeout=WAIT)

    async def leftovers() -> list[str]:
        return sorted({f"{where}: {label}" for where, text in await system.raw_documents()
                       for label, value in eve.personal_data.items() if value in text})
    async def sealed() -> set[str]:
        return {where for where, text in await system.raw_documents() if eve.customer_id in text and "'pii'" in text}
    # Every service seals what it keeps of her: nothing of it readable, even before she asks to be
    # forgotten, though her profile and her complaint's text are stored.
    assert not await leftovers(), await leftovers()
    assert {"customer.customers", "notifications.customers", "complaints.complaints"} <= await sealed()

    erased = await system.http["customer"].delete(f"/customers/{eve.customer_id}")
    assert erased.status_code == 204, erased.text

    left: list[str] = []

    async def forgotten() -> bool:
        left[:] = await leftovers()
        return not left
    try:
        await eventually(forgotten, timeout=WAIT, interval=1.0)
    except AssertionError:
        raise AssertionError(f"personal data of the erased customer is still stored: {left}") from None
    assert (await system.http["customer"].get(f"/customers/{eve.customer_id}")).status_code == 410

    async def profile_gone() -> bool:
        return "notifications.customers" not in await sealed()
    await eventually(profile_gone, timeout=WAIT)
    kept = await system.complaint(complaint_id)
    assert kept is not None and (kept["subject"], kept["description"]) == ("", "")

    for topic in (CRM_CUSTOMERS, CRM_CUSTOMER_TIERS):
        async def tombstoned(topic: str = topic) -> list[Any] | None:
            mine = [r for r in await system.read_topic(topic) if r.key == eve.customer_id.encode()]
            return mine if mine and mine[-1].value is None else None
        try:
            records = await eventually(tombstoned, timeout=WAIT, interval=1.0)
        except AssertionError:
            raise AssertionError(f"no tombstone for the erased customer on {topic}") from None
        if topic == CRM_CUSTOMERS:
            assert json.loads(records[-2].value)["type"] == "customer.erased"


@journey
async def test_a_replay_of_the_same_purchases_twice_changes_nothing_and_sends_no_message_twice(
    system: System,
) -> None:
    rex = system.person("replay")
    await system.register(rex)
    await _mail(system, rex, "welcome:")
    await system.buy(rex, "500.00")
    await system.classified(rex, value_tier="low")
    orders = system.work_dir / f"{rex.customer_id}.csv"
    now = datetime.now(UTC).replace(microsecond=0)
    with orders.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["customer_id", "order_id", "time", "amount", "currency"])
        writer.writerow([rex.customer_id, f"R-{rex.customer_id}-1", (now - timedelta(hours=2)).isoformat(),
                         "12000.00", "CNY"])
        writer.writerow([rex.customer_id, f"R-{rex.customer_id}-2", (now - timedelta(hours=1)).isoformat(),
                         "13000.00", "CNY"])

    async def replay() -> None:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "deploy.replay", str(orders), "--format", "plain", "--no-progress", cwd=ROOT,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
        output = (await process.communicate())[0].decode()
        assert process.returncode == 0, output
        assert "2 events published" in output, output

    async def look() -> dict[str, Any]:
        customer = await system.http["customer"].get(f"/customers/{rex.customer_id}")
        timeline = await system.http["customer"].get(f"/customers/{rex.customer_id}/timeline",
                                                     params={"limit": 1000})
        history = await system.http["tiering"].get(f"/customers/{rex.customer_id}/tier-history")
        return {
            "classification": await system.classification(rex),
            "tier changes": history.json()["changes"],
            "summary": customer.json()["summary"],
            "timeline": [entry["id"] for entry in timeline.json()["items"]],
            "notifications": await system.notifications(rex),
            "e-mails": sorted(_key(m) for m in system.emails_to(rex)),
        }

    await replay()
    await system.classified(rex, value_tier="high")
    await _mail(system, rex, "tier_upgrade:value_tier:")
    async with system.population:  # the population cut-offs must not move between the two looks
        await system.settle()
        first = await look()
        await replay()
        await system.settle()
        second = await look()

    assert first["summary"]["orders"] == 3
    assert first["summary"]["net_spend"] == {"CNY": "25500.00"}
    assert len(first["e-mails"]) == len(set(first["e-mails"]))
    for part in first:
        assert second[part] == first[part], f"the second replay changed the {part}"


async def test_a_new_consumer_of_the_classification_topic_knows_every_customers_tiers_as_the_tiering_api_does(
    system: System, journeys: dict[str, asyncio.Task[None]],
) -> None:
    await asyncio.gather(*journeys.values(), return_exceptions=True)
    compared: list[str] = []
    differences: list[str] = []

    async def agree() -> bool:
        # Plain aiokafka, no group, from the start of the compacted topic: the newest value per key.
        latest: dict[str, dict[str, Any] | None] = {}
        for record in await system.read_topic(CRM_CUSTOMER_TIERS):
            latest[record.key.decode()] = json.loads(record.value) if record.value is not None else None
        differences.clear()
        compared.clear()
        for person in system.people:
            api = await system.classification(person)
            snapshot = latest.get(person.customer_id)
            if api is None:
                if snapshot is not None:
                    differences.append(f"{person.label}: on the topic but unknown to the API")
                continue
            compared.append(person.label)
            if snapshot is None:
                differences.append(f"{person.label}: classified but not on the topic")
                continue
            data = snapshot["data"]
            for field in (*DIMENSIONS, "policy_version"):
                if data.get(field) != api.get(field):
                    differences.append(f"{person.label}.{field}: topic {data.get(field)!r}, API {api.get(field)!r}")
        return not differences

    try:
        await eventually(agree, timeout=WAIT, interval=1.0)
    except AssertionError:
        raise AssertionError(f"the topic and the API disagree: {differences}") from None
    assert {"upgrade", "vip", "regular", "replay"} <= set(compared), compared
    assert "erased" in {p.label for p in system.people} and "erased" not in compared


async def test_no_service_logged_a_customers_phone_email_or_name(
    system: System, journeys: dict[str, asyncio.Task[None]],
) -> None:
    await asyncio.gather(*journeys.values(), return_exceptions=True)
    # A registration that breaks the contract is dead-lettered and logged, without what it carried.
    mallory = system.person("rejected")
    await produce(system.bootstrap, CRM_CUSTOMER_INTAKE, [(mallory.customer_id.encode(), envelope(
        "customer.registered", mallory.customer_id, mallory.profile(phone="+8612345")))])

    async def dead_lettered() -> bool:
        return any('"message_dead_lettered"' in line and "data.phone" in line
                   for line in system.processes["customer"].log_text().splitlines())
    await eventually(dead_lettered, timeout=WAIT)

    logs = system.logs()
    for name, text in logs.items():
        assert '"service_started"' in text, f"{name} logged nothing of this run"
    registered = [p for p in system.people if p.label != "rejected"]
    assert registered and all(p.customer_id in logs["customer"] for p in registered)
    leaks = [f"{name}: {person.label}'s {label}" for name, text in logs.items() for person in system.people
             for label, value in person.personal_data.items() if value in text]
    assert not leaks, leaks
