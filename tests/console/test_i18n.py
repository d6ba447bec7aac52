"""Words, tier names and dates in both languages."""

from __future__ import annotations

from console.i18n import TIERS, WORDS, Translator


def test_dates_in_each_language_and_the_console_time_zone() -> None:
    en, zh = Translator("en-US", "Asia/Shanghai"), Translator("zh-CN", "Asia/Shanghai")
    assert en.when("2026-01-05T06:03:00+00:00") == "Jan 5, 2026, 2:03 PM"
    assert zh.when("2026-01-05T06:03:00Z") == "2026年1月5日 14:03"
    assert zh.when("1990-07-01", with_time=False) == "1990年7月1日"
    assert en.when(None) == "—" and en.when("not a date") == "not a date"


def test_tier_names_and_words() -> None:
    en, zh = Translator("en-US", "UTC"), Translator("zh-CN", "UTC")
    assert en.tier("value_tier", "high") == "High value" and zh.tier("value_tier", "high") == "高价值"
    assert zh.tier("rfm_segment", "Can't Lose Them") == "不能失去"
    assert zh.tier("lifecycle", "something_new") == "something_new"  # unknown codes show as they are
    assert zh("nav.customers") == "客户" and en("nav.customers") == "Customers"
    assert zh.word("status", "waiting_on_customer") == "等待客户"


def test_every_entry_has_both_languages_and_the_same_placeholders() -> None:
    import string

    for key, (en, zh) in WORDS.items():
        fields = lambda text: {f for _, f, _, _ in string.Formatter().parse(text) if f}  # noqa: E731
        assert en and zh and fields(en) == fields(zh), key
    for dim, values in TIERS.items():
        assert all(en and zh for en, zh in values.values()), dim
