"""Settings of the notifications service: the shared ones plus its own, prefixed ``NOTIFICATIONS_``."""

from __future__ import annotations

from datetime import time
from typing import Annotated, Literal

from pydantic import BaseModel, Field, SecretStr
from pydantic_settings import SettingsConfigDict

from shared.pii import PiiSettings

Channel = Literal["email", "sms", "webhook"]

DEV_SMTP_PASSWORD = "dev-smtp-password"
DEV_SMS_API_KEY = "dev-sms-key"
DEV_WEBHOOK_SECRET = "dev-webhook-secret"


class ExtraHoliday(BaseModel):
    """A greeting day the ``holidays`` package does not give, e.g. Christmas in China."""

    slug: Annotated[str, Field(pattern=r"^[a-z0-9_]+$")]
    month: Annotated[int, Field(ge=1, le=12)]
    day: Annotated[int, Field(ge=1, le=31)]
    #: ISO countries it applies to; empty means every country.
    countries: tuple[str, ...] = ()


class NotificationsSettings(PiiSettings):
    model_config = SettingsConfigDict(env_prefix="NOTIFICATIONS_")

    service_name: str = "notifications"
    http_port: int = 8004

    # Channels
    smtp_host: str = "127.0.0.1"
    smtp_port: Annotated[int, Field(ge=1, le=65535)] = 1025
    smtp_username: str | None = None
    smtp_password: SecretStr = SecretStr(DEV_SMTP_PASSWORD)
    smtp_start_tls: bool = False
    smtp_from: str = "care@carecrm.example"
    smtp_pool_size: Annotated[int, Field(ge=1, le=64)] = 8
    sms_url: str = "http://127.0.0.1:8090/sms"
    sms_api_key: SecretStr = SecretStr(DEV_SMS_API_KEY)
    webhook_url: str = "http://127.0.0.1:8091/notifications"
    webhook_secret: SecretStr = SecretStr(DEV_WEBHOOK_SECRET)
    unsubscribe_base_url: str = "https://care.carecrm.example/unsubscribe"
    #: Where the survey links in survey messages point (this service's ``/surveys``, as published).
    survey_base_url: str = "https://care.carecrm.example/surveys"
    #: How long a survey link answers after its message was sent.
    survey_link_days: Annotated[int, Field(ge=1, le=365)] = 14
    channel_timeout_s: Annotated[float, Field(gt=0)] = 10.0
    channel_max_attempts: Annotated[int, Field(ge=1, le=10)] = 3
    channel_backoff_s: Annotated[float, Field(ge=0)] = 0.5
    #: When no channel's provider could be reached (after the quick retries above), the message is
    #: deferred and tried again this much later, for up to ``channel_retry_for_hours``.
    channel_retry_interval_s: Annotated[float, Field(gt=0)] = 60.0
    channel_retry_for_hours: Annotated[float, Field(ge=0)] = 24.0
    #: Order in which channels are tried after the customer's preferred one.
    channel_fallback: tuple[Channel, ...] = ("sms", "email", "webhook")
    #: URL prefixes a member of staff's own webhook must start with to be called (staff alerts);
    #: an alert naming any other webhook goes by e-mail only. Each ends in ``/`` or ``:``, so that
    #: ``https://chat.example.com/`` does not also allow ``https://chat.example.com.elsewhere.net``.
    staff_webhook_prefixes: tuple[Annotated[str, Field(pattern=r"^https?://[^\s@]+[/:]$")], ...] = (
        "http://127.0.0.1:", "http://localhost:")

    # Policy
    default_locale: str = "zh-CN"
    default_timezone: str = "Asia/Shanghai"
    default_country: str = "CN"
    quiet_start: time = time(21, 0)
    quiet_end: time = time(9, 0)
    frequency_cap: Annotated[int, Field(ge=0)] = 2
    frequency_window_days: Annotated[int, Field(ge=1)] = 7
    #: Days before the same message (trigger and tier) may reach a customer again, whatever asked
    #: for it: a customer whose purchases arrive out of order, or whose tier swings back and forth,
    #: is asked to come back or congratulated on a tier once in that time (``duplicate``).
    repeat_after_days: dict[str, Annotated[int, Field(ge=1)]] = Field(default_factory=lambda: {
        "win_back": 90, "welcome_back": 90, "vip_welcome": 90, "tier_upgrade": 30, "tier_downgrade": 30})
    #: A welcome is sent only to customers registered this recently (a new consumer reading the
    #: compacted topic from the start must not welcome everyone again).
    welcome_max_age_days: Annotated[int, Field(ge=0)] = 7
    #: A message for a customer whose profile has not arrived (a tier change read before the
    #: registration) waits this long for it, looked at again after 1, 2, 4 ... 15 minutes; then it is
    #: suppressed as ``no_contact``.
    profile_wait_minutes: Annotated[int, Field(ge=0)] = 60
    survey_delay_hours: Annotated[float, Field(ge=0)] = 24.0
    #: Follow-up cadence in days by tier (``vip`` is the VIP dimension, the others ``value_tier``);
    #: ``managed``: customers with an account manager, whose follow-up is the manager's return visit.
    follow_up_days: dict[str, int] = Field(default_factory=lambda: {"vip": 30, "high": 90, "managed": 30})
    #: Satisfaction survey cadence in days by tier (as ``follow_up_days``): one survey per period,
    #: on a day of the period the customer's id chooses; an empty map sends none.
    survey_every_days: dict[str, Annotated[int, Field(ge=7)]] = Field(
        default_factory=lambda: {"vip": 90, "high": 180})
    #: Share of purchases followed by a survey, chosen by the order id (a replay chooses the same).
    purchase_survey_share: Annotated[float, Field(ge=0, le=1)] = 0.1
    purchase_survey_delay_hours: Annotated[float, Field(ge=0)] = 72.0
    #: A purchase read this long after it was made asks no survey (a new consumer reading the
    #: topic from the start must not survey old purchases).
    purchase_survey_max_age_days: Annotated[int, Field(ge=0)] = 7

    # Time-driven messages
    daily_send_hour: Annotated[int, Field(ge=0, le=23)] = 10
    #: For a country listed here only these holidays of the ``holidays`` package are greeted
    #: (slug -> part of the package's English name); other countries get all of their own.
    holiday_selection: dict[str, dict[str, str]] = Field(default_factory=lambda: {
        "CN": {"spring_festival": "Spring Festival", "mid_autumn": "Mid-Autumn", "national_day": "National Day"},
    })
    extra_holidays: tuple[ExtraHoliday, ...] = (ExtraHoliday(slug="christmas", month=12, day=25),)
    scheduler_interval_s: Annotated[float, Field(gt=0)] = 60.0
    fan_out_batch: Annotated[int, Field(ge=1, le=5000)] = 500
    fan_out_parallel_batches: Annotated[int, Field(ge=1, le=16)] = 3
    send_concurrency: Annotated[int, Field(ge=1, le=512)] = 64

    def _development_secrets(self) -> list[str]:
        defaults = {"smtp_password": DEV_SMTP_PASSWORD, "sms_api_key": DEV_SMS_API_KEY,
                    "webhook_secret": DEV_WEBHOOK_SECRET}
        return [name for name, value in defaults.items() if getattr(self, name).get_secret_value() == value]
