"""Account managers: who qualifies, whom the rule picks (least loaded among those serving the
customer's region and industry, ties by id), the audit entry of every change, and the setting."""

from __future__ import annotations

import copy
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from pydantic import ValidationError

from services.complaints import accounts
from services.complaints.accounts import Account, AccountRule
from services.complaints.settings import ComplaintsSettings

from .test_staff import DIRECTORY, directory, person

NOW = datetime(2026, 3, 2, 10, 0, tzinfo=ZoneInfo("Asia/Shanghai"))
RULE = AccountRule()


def with_managers() -> Any:
    """The test directory with three account managers: one for East China, one for finance, one for all."""
    doc = copy.deepcopy(DIRECTORY)
    doc["teams"].append({"name": "accounts", "manager": "mgr", "assign": "team"})
    doc["staff"] += [
        person("am-east", "agent", team="accounts", account_manager=True, regions=["East China"]),
        person("am-fin", "agent", team="accounts", account_manager=True, industries=["finance"]),
        person("am-all", "agent", team="accounts", account_manager=True),
    ]
    return directory(doc)


D = with_managers()


def test_vips_and_custom_needs_qualify_by_default_and_nobody_else() -> None:
    assert accounts.qualifies(RULE, "vip", Account(customer_id="C1")) == "vip"
    assert accounts.qualifies(RULE, "high", Account(customer_id="C1", needs="custom")) == "custom_needs"
    assert accounts.qualifies(RULE, "high", Account(customer_id="C1", needs="standard")) is None
    assert accounts.qualifies(RULE, None, Account(customer_id="C1")) is None
    wider = AccountRule(tiers=("vip", "high"), needs=())
    assert accounts.qualifies(wider, "high", Account(customer_id="C1")) == "tier_high"
    assert accounts.qualifies(wider, "low", Account(customer_id="C1", needs="custom")) is None


def test_the_least_loaded_manager_serving_the_region_and_industry_is_picked_ties_by_id() -> None:
    east = Account(customer_id="C1", region="East China", industry="retail")
    assert accounts.pick(D, east, {}).id == "am-all"  # am-all < am-east; am-fin serves finance only
    assert accounts.pick(D, east, {"am-all": 3, "am-east": 1}).id == "am-east"
    finance = Account(customer_id="C2", region="West China", industry="finance")
    assert accounts.pick(D, finance, {"am-all": 1}).id == "am-fin"
    elsewhere = Account(customer_id="C3", region="West China", industry="retail")
    assert accounts.pick(D, elsewhere, {"am-all": 99}).id == "am-all"  # the only one who serves it
    assert accounts.pick(directory(), east, {}) is None  # a directory without account managers


def test_the_rule_gives_a_qualifying_customer_a_manager_with_an_audit_entry() -> None:
    changed = accounts.by_rule(Account(customer_id="C1", needs="custom"), None, RULE, D, {}, NOW)
    assert changed is not None
    assert (changed.manager, changed.manager_name, changed.revision) == ("am-all", "Am-All", 1)
    assert [c.model_dump() for c in changed.history] == [
        {"revision": 1, "at": NOW, "actor": "rule", "reason": "custom_needs", "previous": None, "manager": "am-all"}]


def test_the_rule_never_replaces_or_removes_a_manager_nor_assigns_one_who_does_not_qualify() -> None:
    managed = accounts.assign(Account(customer_id="C1"), D.member("am-east"), actor="ann", reason="asked", now=NOW)
    assert managed is not None
    assert accounts.by_rule(managed, "vip", RULE, D, {"am-east": 50}, NOW) is None
    assert accounts.by_rule(Account(customer_id="C1", needs="standard"), "high", RULE, D, {}, NOW) is None
    assert accounts.by_rule(Account(customer_id="C1"), "vip", RULE, directory(), {}, NOW) is None  # nobody to pick


def test_a_manager_who_left_the_directory_is_replaced_by_the_rule_saying_so() -> None:
    account = Account(customer_id="C1", manager="am-gone", manager_name="Gone", revision=3)
    changed = accounts.by_rule(account, "vip", RULE, D, {}, NOW)
    assert changed is not None and changed.manager == "am-all" and changed.revision == 4
    assert changed.history[-1].reason == "vip_manager_left" and changed.history[-1].previous == "am-gone"


def test_a_person_changes_or_removes_the_manager_and_the_same_manager_again_changes_nothing() -> None:
    first = accounts.assign(Account(customer_id="C1"), D.member("am-east"), actor="ann", reason="asked", now=NOW)
    assert first is not None
    assert accounts.assign(first, D.member("am-east"), actor="bob", reason="again", now=NOW) is None
    moved = accounts.assign(first, D.member("am-fin"), actor="bob", reason="moved to finance", now=NOW)
    assert moved is not None
    removed = accounts.assign(moved, None, actor="carol", reason="left us", now=NOW)
    assert removed is not None and (removed.manager, removed.manager_name, removed.revision) == (None, None, 3)
    assert [(c.previous, c.manager, c.actor, c.reason) for c in removed.history] == [
        (None, "am-east", "ann", "asked"), ("am-east", "am-fin", "bob", "moved to finance"),
        ("am-fin", None, "carol", "left us")]


def test_the_account_rule_setting_is_json_and_refuses_unknown_needs_and_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COMPLAINTS_ACCOUNT_RULE", '{"tiers": ["vip", "high"], "needs": []}')
    assert ComplaintsSettings().account_rule == AccountRule(tiers=("vip", "high"), needs=())
    for value, field in (('{"needs": ["bespoke"]}', "account_rule.needs"), ('{"pick": "random"}', "account_rule.pick"),
                         ('{"tiers": [""]}', "account_rule.tiers")):
        monkeypatch.setenv("COMPLAINTS_ACCOUNT_RULE", value)
        with pytest.raises(ValidationError, match=field):
            ComplaintsSettings()
    monkeypatch.delenv("COMPLAINTS_ACCOUNT_RULE")
    with pytest.raises(ValidationError, match="return_visit_days"):
        ComplaintsSettings(return_visit_days=0)
