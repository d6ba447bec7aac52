"""The complaints store keeps what the services rely on, on the real store."""

from __future__ import annotations

from datetime import timedelta

import pytest

from services.complaints import domain
from services.complaints.accounts_repository import INDEXES as ACCOUNT_INDEXES
from services.complaints.accounts_repository import AccountsRepository
from services.complaints.repository import INDEXES, Repository
from shared.clock import FixedClock
from shared.mongo import Store
from shared.pii import PiiCipher
from tests.integration.complaints.test_service import MONDAY, settings

pytestmark = pytest.mark.integration


async def test_a_batch_of_tiers_keeps_each_customers_newest_and_an_older_one_read_late_changes_nothing(
        infra: dict[str, str], unique: str) -> None:
    store = Store.connect(settings(unique), INDEXES)
    await store.ensure_indexes()
    repo = Repository(store, PiiCipher.from_settings(settings(unique)))
    later = MONDAY + timedelta(days=1)
    customers = [f"T-{unique}-{i}" for i in range(300)]
    try:
        assert await repo.put_tiers((c, "high", later) for c in customers) == set(customers)
        changed = await repo.put_tiers([(customers[0], "low", MONDAY), (customers[1], "vip", later + timedelta(days=1)),
                                        (customers[2], "high", later + timedelta(days=2))])
        assert changed == {customers[1]}  # an older snapshot and the same tier again change nothing
        assert await repo.tier(customers[0]) == "high"
        assert await repo.tier(customers[1]) == "vip"
        assert [await repo.tier(c) for c in customers[2:]] == ["high"] * 298
        # The same tier again was not written: the stored snapshot is still the one that set it.
        stored = await store["tiers"].find_one({"_id": customers[2]})
        assert stored is not None and stored["updated_at"] == later
        # A process that remembers nothing (a restart) still keeps the newest: the store decides.
        fresh = Repository(store, PiiCipher.from_settings(settings(unique)))
        assert await fresh.put_tiers([(customers[1], "low", later)]) == set()
        assert await repo.tier(customers[1]) == "vip"
    finally:
        await store.client.drop_database(store.db.name)
        await store.close()


async def test_what_customers_and_staff_wrote_is_sealed_at_rest_and_reads_back_whole(
        infra: dict[str, str], unique: str) -> None:
    config = settings(unique)
    store = Store.connect(config, INDEXES)
    repo = Repository(store, PiiCipher.from_settings(config))
    rules = config.rules()
    secret = f"secret-{unique}"
    fields = {"channel": "phone", "category": "delivery", "severity": "normal", "complexity": "standard",
              "subject": f"Late parcel {secret}", "description": f"Details {secret}", "order_id": None}
    complaint, _ = domain.open_complaint(complaint_id=f"K-{unique}", customer_id=f"C-{unique}", fields=fields,
                                         tier=None, opened_at=MONDAY, rules=rules)
    complaint, _ = domain.add_comment(complaint, "agent-1", f"Called back {secret}", now=MONDAY, rules=rules)
    for to in ("acknowledged", "investigating", "resolved"):
        complaint, _ = domain.transition(complaint, to, now=MONDAY, rules=rules, actor="agent-1",
                                         resolution_summary=f"Refunded {secret}", root_cause="carrier")
    complaint, _ = domain.record_feedback(complaint, 4, f"Thanks {secret}", now=MONDAY, rules=rules,
                                          source=f"survey-{unique}")
    try:
        assert await repo.insert(complaint, [])
        raw = await store["complaints"].find_one({"_id": complaint.complaint_id})
        assert secret not in str(raw) and raw is not None and raw["pii_kid"] == config.pii_active_key_id
        back = await repo.get(complaint.complaint_id)
        assert back == complaint
        found = await repo.search(customer=complaint.customer_id)
        assert [c.subject for c in found] == [fields["subject"]]
        # A value moved to another complaint's document does not open there.
        other = dict(raw, _id=f"K-{unique}-copy")
        await store["complaints"].insert_one(other)
        with pytest.raises(ValueError, match="authentication"):
            await repo.get(f"K-{unique}-copy")
    finally:
        await store.client.drop_database(store.db.name)
        await store.close()


async def test_complaints_stored_before_the_work_queues_get_their_queue_keys_once(
        infra: dict[str, str], unique: str) -> None:
    config = settings(unique)
    store = Store.connect(config, INDEXES)
    await store.ensure_indexes()
    repo = Repository(store, PiiCipher.from_settings(config))
    rules = config.rules()
    fields = {"channel": "phone", "category": "billing", "severity": "normal", "complexity": "standard",
              "subject": "Charged twice"}
    old = []
    for n, status in enumerate(("investigating", "resolved")):
        complaint, _ = domain.open_complaint(complaint_id=f"K-{unique}-{n}", customer_id=f"C-{unique}",
                                             fields=fields, tier=None, opened_at=MONDAY, rules=rules)
        old.append(complaint.model_copy(update={"status": status, "assignee": "ann"}))
    try:
        await repo.insert_new([(c, []) for c in old])
        # As a version before the queues wrote them: no open flag, no team.
        await store["complaints"].update_many({"customer_id": f"C-{unique}"}, {"$unset": {"open": "", "team": ""}})
        assert await repo.queue(assignee="ann") == []
        assert await repo.backfill_queue_keys(lambda category: "money" if category == "billing" else "care") == 4
        assert [c.complaint_id for c in await repo.queue(assignee="ann")] == [f"K-{unique}-0"]
        assert [c.complaint_id for c in await repo.queue(team="money")] == [f"K-{unique}-0"]
        assert await repo.backfill_queue_keys(lambda category: "other") == 0  # done once per store
    finally:
        await store.client.drop_database(store.db.name)
        await store.close()


async def test_the_account_rule_fields_are_written_when_they_change_and_an_older_profile_read_late_loses(
        infra: dict[str, str], unique: str) -> None:
    store = Store.connect(settings(unique), ACCOUNT_INDEXES)
    await store.ensure_indexes()
    cipher = PiiCipher.from_settings(settings(unique))
    repo, customer = AccountsRepository(store, cipher), f"A-{unique}"
    east = {"needs": "standard", "region": "East China", "industry": None}
    try:
        await repo.put_profile(customer, east, 1)
        await repo.put_profile(customer, dict(east), 2)  # a profile change of other fields: nothing to write
        stored = await store["accounts"].find_one({"_id": customer})
        assert stored is not None and stored["profile_version"] == 1
        await repo.put_profile(customer, {**east, "needs": "custom"}, 3)
        await AccountsRepository(store, cipher).put_profile(customer, east, 2)  # a restart, then version 2 again
        stored = await store["accounts"].find_one({"_id": customer})
        assert stored is not None and (stored["needs"], stored["profile_version"]) == ("custom", 3)
    finally:
        await store.client.drop_database(store.db.name)
        await store.close()


async def test_a_bulk_write_stores_what_a_whole_write_would_at_the_revision_read_and_keeps_text_sealed(
        infra: dict[str, str], unique: str) -> None:
    config = settings(unique)
    store = Store.connect(config, INDEXES)
    await store.ensure_indexes()
    clock = FixedClock(MONDAY)
    repo = Repository(store, PiiCipher.from_settings(config), clock)
    rules = config.rules()
    secret = f"secret-{unique}"
    fields = {"channel": "phone", "category": "delivery", "severity": "normal", "complexity": "standard",
              "subject": f"Late parcel {secret}"}
    opened = [domain.open_complaint(complaint_id=f"K-{unique}-{n}", customer_id=f"C-{unique}", fields=fields,
                                    tier=None, opened_at=MONDAY, rules=rules)[0] for n in range(3)]
    try:
        await repo.insert_new([(c, []) for c in opened])
        ticked, commented, raced = [await repo.get(c.complaint_id) for c in opened]
        assert ticked and commented and raced
        clock.set(MONDAY + timedelta(hours=19))  # past the first-response warning
        warned, _ = domain.tick(ticked, now=clock.now(), rules=rules)
        noted, _ = domain.add_comment(commented, "ann", f"Called back {secret}", now=clock.now(), rules=rules)
        moved, _ = domain.assign(raced, "bob", now=clock.now(), rules=rules)
        for after in (warned, noted, moved):
            after.revision += 1
        # Another writer changes the third one first: the bulk write leaves it as that writer left it.
        assert await repo.replace(raced.model_copy(update={"revision": 1, "assignee": "eve"}), [],
                                  expected_revision=0)
        assert await repo.write_many([(ticked, warned), (commented, noted), (raced, moved)], "w1") == 2
        for after in (warned, noted):
            raw = await store["complaints"].find_one({"_id": after.complaint_id})
            assert raw is not None and secret not in str(raw)
            whole = {**repo._document(after, []), "write": "w1"}
            assert raw.keys() == whole.keys()
            sealed = {"pii", "comments"}  # sealed afresh by a whole write: another nonce
            assert {k: v for k, v in raw.items() if k not in sealed} == {k: v for k, v in whole.items()
                                                                          if k not in sealed}
            assert await repo.get(after.complaint_id) == after
        stored = await repo.get(raced.complaint_id)
        assert stored is not None and (stored.assignee, stored.revision) == ("eve", 1)
        assert await repo.written_with([c.complaint_id for c in opened], "w1") == {warned.complaint_id,
                                                                                   noted.complaint_id}
    finally:
        await store.client.drop_database(store.db.name)
        await store.close()
