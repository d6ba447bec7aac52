"""Templates: the sandbox, strict variables, locale fallback, unsubscribe lines and SMS codes."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import pytest

from services.notifications.domain import Policy, Profile, Request, template_context
from services.notifications.templates import SMS_UNSUBSCRIBE, TemplateError, Templates

TEMPLATES = Templates("zh-CN")
INJECTION = "{{ ''.__class__ }}"


def test_a_name_that_looks_like_a_template_is_rendered_as_plain_text() -> None:
    for channel in ("email", "sms"):
        rendered = TEMPLATES.render("birthday", "en-US", channel, {"name": INJECTION}, care=True, unsubscribe_url="u")
        assert INJECTION in rendered.body
        assert "<class" not in rendered.body


@pytest.mark.parametrize("name", ["{{ 7*7 }}", "{% for i in range(3) %}x{% endfor %}", "{# hidden #}Ann"])
def test_template_syntax_in_a_name_or_a_parameter_appears_literally_in_the_message_on_every_channel(name: str) -> None:
    request = Request("C-1", "tier", "tier_upgrade", "tier_upgrade", "k", "s", {"tier": "{{ 6*7 }}"})
    context = template_context(request, Profile("C-1", name=name), "en-US", Policy())
    for channel in ("email", "sms", "webhook"):
        rendered = TEMPLATES.render("tier_upgrade", "en-US", channel, context, care=True, unsubscribe_url="u")
        assert name in rendered.body and "{{ 6*7 }}" in rendered.body, rendered.body
        assert "{{ 6*7 }}" in rendered.subject
        assert "49" not in rendered.body and "42" not in rendered.body + rendered.subject
        assert "xxx" not in rendered.body
        if channel == "sms":
            assert rendered.sms_params["name"] == name


def test_a_template_cannot_reach_python_internals() -> None:
    template = TEMPLATES.env.from_string("{{ ''.__class__.__mro__[1].__subclasses__() }}")
    with pytest.raises(Exception, match="unsafe|access"):
        template.render()


def test_a_missing_variable_is_an_error_naming_it_not_an_empty_string() -> None:
    with pytest.raises(TemplateError, match="complaint_id"):
        TEMPLATES.render("complaint_resolved", "en-US", "email", {"name": "Ann"}, care=False)


def test_locales_fall_back_from_region_to_language_to_the_default() -> None:
    assert TEMPLATES.resolve("zh-CN", "birthday") == "zh-CN"
    assert TEMPLATES.resolve("zh-TW", "birthday") == "zh-CN"
    assert TEMPLATES.resolve("en-GB", "birthday") == "en-US"
    assert TEMPLATES.resolve("fr-FR", "birthday") == "zh-CN"
    with pytest.raises(TemplateError):
        TEMPLATES.resolve("en-US", "no_such_message")


def test_care_emails_carry_the_unsubscribe_link_and_complaint_emails_do_not() -> None:
    care = TEMPLATES.render("holiday", "en-US", "email", {"name": "Ann", "holiday": "christmas"}, care=True,
                            unsubscribe_url="https://x/unsubscribe?c=1")
    assert care.subject == "Happy Christmas" and "https://x/unsubscribe?c=1" in care.body
    notice = TEMPLATES.render("complaint_resolved", "en-US", "email", {"name": "Ann", "complaint_id": "CP-1"},
                              care=False, unsubscribe_url="https://x/unsubscribe?c=1")
    assert "unsubscribe" not in notice.body


def test_care_sms_ends_with_the_unsubscribe_suffix_and_carries_the_provider_code_and_parameters() -> None:
    rendered = TEMPLATES.render("holiday", "zh-CN", "sms", {"name": "李雷", "holiday": "mid_autumn"}, care=True)
    assert rendered.body == "李雷，祝您中秋节快乐！" + SMS_UNSUBSCRIBE
    assert rendered.sms_code == "SMS_HOLIDAY_01"
    assert rendered.sms_params == {"name": "李雷", "holiday_name": "中秋节"}
    ack = TEMPLATES.render("complaint_resolved", "zh-CN", "sms", {"name": "李雷", "complaint_id": "CP-1"}, care=False)
    assert not ack.body.endswith(SMS_UNSUBSCRIBE)


def test_the_expected_response_time_is_written_in_the_customers_own_calendar() -> None:
    request = Request("C-1", "complaint", "complaint_acknowledged", "complaint_acknowledged", "k", "s",
                      {"complaint_id": "CP-1", "due_at": datetime(2027, 2, 5, 17, 0, tzinfo=UTC).isoformat()})
    shanghai = template_context(request, Profile("C-1", name="李雷", timezone="Asia/Shanghai"), "zh-CN", Policy())
    assert shanghai["due_local"] == "2027年2月6日（周六）01:00"
    new_york = template_context(request, Profile("C-1", name="Ann", timezone="America/New_York"), "en-US", Policy())
    assert new_york["due_local"] == "Fri 5 Feb 2027, 12:00 (America/New_York)"
    rendered = TEMPLATES.render("complaint_acknowledged", "zh-CN", "email", shanghai, care=False)
    assert "2027年2月6日（周六）01:00" in rendered.body


def test_every_message_type_renders_in_every_shipped_locale_on_every_channel() -> None:
    values = {"name": "N", "tier": "high", "previous": "medium", "needed": "x", "complaint_id": "CP-1",
              "due_local": "soon", "holiday": "spring_festival", "cadence_days": 30, "sla_target": "resolution",
              "amount": "800.00", "currency": "CNY", "keep_by_local": "soon", "priority": "p2", "rung": "supervisor",
              "reason": "first_response_breached", "previous_assignee": "agent-1", "on_duty": False,
              "order_id": "O-1", "survey_url": "https://x/surveys?t=1"}
    for locale in ("zh-CN", "en-US"):
        for template in TEMPLATES.types:
            for channel in ("email", "sms", "webhook"):
                rendered = TEMPLATES.render(template, locale, channel, values, care=True, unsubscribe_url="u")
                assert rendered.locale == locale and rendered.body


@pytest.mark.parametrize(("locale", "expected"), [
    ("zh-CN", "再消费800.00 GBP即可恢复金卡会员"),
    ("en-US", "Spending 800.00 GBP more brings Gold back"),
])
def test_a_downgrade_notice_says_in_the_customers_language_what_brings_the_tier_back(locale: str,
                                                                                      expected: str) -> None:
    request = Request("C-1", "tier", "tier_downgrade", "tier_downgrade", "k", "s",
                      {"tier": "medium", "previous": "high", "amount": "800.00", "currency": "GBP"})
    context = template_context(request, Profile("C-1", name="Ann"), locale, Policy())
    assert expected in TEMPLATES.render("tier_downgrade", locale, "email", context, care=True,
                                        unsubscribe_url="u").body


@pytest.mark.parametrize(("locale", "upgrade", "downgrade"), [
    ("zh-CN", "恭喜您升级为金卡会员", "由金卡会员调整为银卡会员"),
    ("en-US", "your membership is now Gold", "changed from Gold to Silver"),
])
def test_tiers_reach_the_customer_by_their_names_in_the_customers_language(locale: str, upgrade: str,
                                                                             downgrade: str) -> None:
    reason = "net spend 3000.00 CNY in the trailing 365 days is below 5000.00; past the 30-day grace"
    for template, previous, tier, expected in (("tier_upgrade", "medium", "high", upgrade),
                                                ("tier_downgrade", "high", "medium", downgrade)):
        request = Request("C-1", "tier", template, template, "k", "s",
                          {"tier": tier, "previous": previous, "needed": reason})
        context = template_context(request, Profile("C-1", name="Ann"), locale, Policy())
        for channel in ("email", "sms"):
            rendered = TEMPLATES.render(template, locale, channel, context, care=True, unsubscribe_url="u")
            text = rendered.subject + rendered.body
            assert not re.search(r"(?<![A-Za-z])(high|medium|low)(?![A-Za-z])", text), text
            assert "net spend" not in text  # the rule's reason is for staff, not the customer
        assert expected in TEMPLATES.render(template, locale, "email", context, care=True, unsubscribe_url="u").body
