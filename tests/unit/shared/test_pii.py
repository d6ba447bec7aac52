from __future__ import annotations

import base64
import json
import os

import pytest

from shared.pii import PiiCipher, PiiSettings, UnknownKey

OLD, NEW, BLIND = os.urandom(32), os.urandom(32), os.urandom(32)


def test_a_sealed_value_names_its_key_hides_the_plaintext_and_opens_again() -> None:
    cipher = PiiCipher({"k1": OLD}, "k1", BLIND)
    sealed = cipher.seal("+8613800138000", context="customers:C-1:phone")
    assert sealed["k"] == "k1"
    assert "13800138000" not in str(sealed) and b"13800138000" not in base64.b64decode(sealed["c"])
    assert cipher.open(sealed, context="customers:C-1:phone") == "+8613800138000"


def test_the_same_value_seals_differently_each_time() -> None:
    cipher = PiiCipher({"k1": OLD}, "k1", BLIND)
    assert cipher.seal("x", context="c")["c"] != cipher.seal("x", context="c")["c"]


def test_a_value_copied_into_another_document_does_not_open() -> None:
    cipher = PiiCipher({"k1": OLD}, "k1", BLIND)
    sealed = cipher.seal("han@example.com", context="customers:C-1:email")
    with pytest.raises(ValueError, match="authentication"):
        cipher.open(sealed, context="customers:C-2:email")


def test_after_rotation_values_under_the_old_key_still_open_and_new_ones_use_the_new_key() -> None:
    before = PiiCipher({"k1": OLD}, "k1", BLIND).seal("Han Mei", context="c")
    after = PiiCipher({"k1": OLD, "k2": NEW}, "k2", BLIND)
    assert after.open(before, context="c") == "Han Mei"
    assert after.seal("Han Mei", context="c")["k"] == "k2"


def test_a_value_under_a_key_no_longer_held_says_which_key_is_missing() -> None:
    sealed = PiiCipher({"k1": OLD}, "k1", BLIND).seal("x", context="c")
    with pytest.raises(UnknownKey, match="k1"):
        PiiCipher({"k2": NEW}, "k2", BLIND).open(sealed, context="c")


def test_the_blind_index_matches_equal_values_only_and_depends_on_its_key() -> None:
    cipher = PiiCipher({"k1": OLD}, "k1", BLIND)
    assert cipher.blind_index("phone", "+8613800138000") == cipher.blind_index("phone", "+8613800138000")
    assert cipher.blind_index("phone", "+8613800138000") != cipher.blind_index("phone", "+8613800138001")
    assert cipher.blind_index("phone", "a") != cipher.blind_index("email", "a")
    assert cipher.blind_index("phone", "a") != PiiCipher({"k1": OLD}, "k1", NEW).blind_index("phone", "a")
    assert "8613800138000" not in cipher.blind_index("phone", "+8613800138000")


def test_a_lookup_during_a_blind_index_rotation_tries_the_new_key_first_then_the_old_ones() -> None:
    rotating = PiiCipher({"k1": OLD}, "k1", NEW, (BLIND,))
    before, after = PiiCipher({"k1": OLD}, "k1", BLIND), PiiCipher({"k1": OLD}, "k1", NEW)
    assert rotating.blind_index("phone", "a") == after.blind_index("phone", "a")
    assert rotating.blind_indexes("phone", "a") == [after.blind_index("phone", "a"), before.blind_index("phone", "a")]
    assert rotating.blind_key_id == after.blind_key_id != before.blind_key_id
    assert PiiCipher({"k1": OLD}, "k1", NEW, (NEW,)).blind_indexes("phone", "a") == [after.blind_index("phone", "a")]


def test_previous_blind_index_keys_come_as_a_json_list_of_keys_and_a_bad_one_is_refused() -> None:
    old = base64.b64encode(BLIND).decode()
    settings = PiiSettings(blind_index_previous_keys=json.dumps([old]))
    assert [k.get_secret_value() for k in settings.blind_index_previous_keys] == [old]
    assert PiiSettings(blind_index_previous_keys="").blind_index_previous_keys == []
    for bad in ("not json", json.dumps(["c2hvcnQ="])):
        with pytest.raises(ValueError, match="BLIND_INDEX_PREVIOUS_KEYS"):
            PiiSettings(blind_index_previous_keys=bad)
