"""The policy document: the shipped default is valid, broken ones are refused with the field named."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest
from pydantic import ValidationError

from services.tiering.policy import DEFAULT_POLICY_FILE, Policy, default_policy


def document(**changes: object) -> dict:
    doc = json.loads(DEFAULT_POLICY_FILE.read_text())
    doc.update(changes)
    return doc


def test_the_shipped_default_policy_is_valid_and_converts_with_its_fixed_table() -> None:
    policy = default_policy()
    assert policy.base_currency == "CNY"
    assert policy.to_minor(Decimal("10.00"), "GBP") == 9000
    assert policy.to_minor(Decimal("10.00"), "ZAR") is None
    assert policy.segment(5, 5) == "Champions" and policy.segment(1, 1) == "Lost"


@pytest.mark.parametrize(("changes", "field"), [
    ({"value_tier": {"high": "100", "medium": "200"}}, "value_tier"),
    ({"abc": {"a_share": "0.8", "b_share": "0.3"}}, "abc"),
    ({"rates": {"CNY": "2"}}, "base currency"),
    ({"rates": {"CNY": "1", "XXX": "1"}}, "ISO 4217"),
    ({"rfm_segments": [{"name": "Champions", "r": [1, 5], "f": [2, 5]}]}, "rfm_segments"),
    ({"rfm_segments": [{"name": "Whales", "r": [1, 5], "f": [1, 5]}]}, "Whales"),
    ({"hysteresis": {"dimensions": ["colour"]}}, "colour"),
])
def test_an_inconsistent_policy_is_refused_naming_what_is_wrong(changes: dict, field: str) -> None:
    with pytest.raises(ValidationError) as exc:
        Policy.model_validate(document(**changes))
    assert field in str(exc.value)
