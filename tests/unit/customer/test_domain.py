from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from services.customer import domain
from shared.contract.events import Consents

AT = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)
LATER = AT + timedelta(hours=1)


def registered(**fields):
    return domain.apply_changes(None, {"name": "Han Mei", "phone": "+8613800138000", **fields}, at=AT,
                                source="shop/web", activate=True)


def test_a_registration_creates_an_active_profile_at_version_one_marked_by_its_source() -> None:
    profile = registered()
    assert (profile.status, profile.version, profile.source) == ("active", 1, "shop/web")
    assert profile.created_at == profile.updated_at == AT


def test_an_update_repeating_the_current_values_changes_nothing() -> None:
    profile = registered()
    assert domain.apply_changes(profile, {"name": "Han Mei"}, at=LATER, source="x", activate=False) is None


def test_an_update_bumps_the_version_and_keeps_the_creation_time() -> None:
    updated = domain.apply_changes(registered(), {"locale": "zh-CN"}, at=LATER, source="x", activate=False)
    assert (updated.version, updated.locale, updated.created_at, updated.updated_at) == (2, "zh-CN", AT, LATER)


def test_null_clears_a_field() -> None:
    updated = domain.apply_changes(registered(), {"phone": None}, at=LATER, source="x", activate=False)
    assert updated.phone is None and updated.name == "Han Mei"


def test_a_prospect_becomes_active_when_it_registers_and_keeps_its_source() -> None:
    stub = domain.new_prospect(source="pos/shanghai-01", at=AT)
    active = domain.apply_changes(stub, {"email": "han@example.com"}, at=LATER, source="crm", activate=True)
    assert (stub.status, active.status, active.source, active.version) == ("prospect", "active", "pos/shanghai-01", 2)


def test_consents_merge_key_by_key_and_only_stated_keys_count_as_changes() -> None:
    profile = registered(consents=Consents(email=True, sms=True))
    updated = domain.apply_changes(profile, {"consents": Consents(sms=False, marketing=True)}, at=LATER,
                                   source="x", activate=False)
    assert updated.consents == Consents(email=True, sms=False, marketing=True)
    changes = domain.consent_changes(profile.consents, updated.consents)
    assert changes == [domain.ConsentChange("sms", False), domain.ConsentChange("marketing", True)]


def test_unknown_fields_are_refused() -> None:
    with pytest.raises(ValueError, match="not profile fields"):
        domain.apply_changes(None, {"status": "erased"}, at=AT, source="x", activate=True)


def test_a_refund_lowers_net_spend_but_never_below_zero() -> None:
    entries = [
        {"kind": "purchase", "at": AT, "amount": "100.00", "currency": "CNY"},
        {"kind": "refund", "at": AT + timedelta(days=1), "amount": "150.00", "currency": "CNY"},
        {"kind": "purchase", "at": AT + timedelta(days=2), "amount": "30.50", "currency": "CNY"},
        {"kind": "purchase", "at": AT, "amount": "9.99", "currency": "USD"},
    ]
    assert domain.net_spend(entries) == {"CNY": "30.50", "USD": "9.99"}


def test_phone_email_and_address_are_masked_but_the_rest_is_not() -> None:
    view = domain.masked({"phone": "+8613800138000", "email": "han@example.com", "address": "1 Nanjing Rd",
                          "name": "Han Mei", "locale": "zh-CN"})
    assert view["phone"] == "+86" + "*" * 9 + "00"
    assert view["email"] == "h***@example.com"
    assert view["address"] == "***"
    assert (view["name"], view["locale"]) == ("Han Mei", "zh-CN")


def test_phone_and_email_normalise_to_one_form_for_the_blind_index() -> None:
    assert domain.normalise_phone("+86 138-0013 8000") == "+8613800138000"
    assert domain.normalise_email("  Han@Example.COM ") == "han@example.com"


def test_event_ids_are_deterministic_per_customer_and_version() -> None:
    assert domain.profile_event_id("C-1", 3) == domain.profile_event_id("C-1", 3)
    assert domain.profile_event_id("C-1", 3) != domain.profile_event_id("C-1", 4)
    assert domain.profile_event_id("C-1", 3) != domain.profile_event_id("C-2", 3)


def test_store_precision_drops_what_bson_cannot_keep() -> None:
    assert domain.store_precision(AT.replace(microsecond=123456)).microsecond == 123000


def test_a_late_update_changes_the_profile_without_moving_its_change_time_backwards() -> None:
    current = domain.apply_changes(registered(), {"locale": "zh-CN"}, at=LATER, source="x", activate=False)
    late = domain.apply_changes(current, {"country": "CN"}, at=AT + timedelta(minutes=5), source="x",
                                activate=False)
    assert (late.country, late.version, late.updated_at) == ("CN", 3, LATER)


def test_an_intake_event_applied_is_known_by_its_id_and_once_forgotten_by_its_time() -> None:
    applied = domain.Applied()
    for n in range(domain.APPLIED_KEPT + 2):
        applied = applied.plus(f"e{n}", AT + timedelta(minutes=n))
    assert len(applied.recent) == domain.APPLIED_KEPT
    assert ("e0", AT) in applied and ("e1", AT + timedelta(minutes=1)) in applied  # forgotten ids, by time
    assert ("e2", AT + timedelta(minutes=2)) in applied  # the oldest id still kept
    assert ("new", AT + timedelta(minutes=2)) not in applied  # a new event after the floor is not
    assert ("new", AT + timedelta(minutes=1)) in applied
