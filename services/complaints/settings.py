"""Settings of the complaints service: the shared ones plus its own, prefixed ``COMPLAINTS_``."""

from __future__ import annotations

from datetime import date
from typing import Annotated, Literal

from pydantic import AfterValidator, Field, field_validator
from pydantic_settings import SettingsConfigDict

from shared.pii import PiiSettings

from .accounts import AccountRule
from .calendar import BusinessCalendar, parse_periods
from .domain import Rules
from .policy import DEFAULT_POLICIES, SlaPolicy
from .staff import Directory, load


def _periods(value: str) -> str:
    parse_periods(value)
    return value


class ComplaintsSettings(PiiSettings):
    model_config = SettingsConfigDict(env_prefix="COMPLAINTS_")

    service_name: str = "complaints"
    http_port: int = 8003

    # Business calendar
    calendar_timezone: str = "Asia/Shanghai"
    #: ISO 3166-1 alpha-2 country whose public holidays and make-up working days apply; empty: weekends only.
    calendar_country: str | None = "CN"
    working_periods: Annotated[str, AfterValidator(_periods)] = "09:00-12:00,13:30-18:00"
    #: Company overrides (JSON lists of dates): extra days off, and extra working days.
    closed_days: tuple[date, ...] = ()
    extra_working_days: tuple[date, ...] = ()

    # SLA policies, first match wins; the version is copied onto every complaint.
    sla_policies: tuple[SlaPolicy, ...] = DEFAULT_POLICIES
    sla_policy_version: Annotated[str, Field(min_length=1, max_length=32, pattern=r"^[\w.\-]+$")] = "2026.1"

    # Lifecycle
    #: When on, a resolved complaint is verified by someone other than its resolver before it closes.
    verification: bool = False
    reopen_days: Annotated[int, Field(ge=0, le=365)] = 30
    auto_close_days: Annotated[int, Field(ge=1, le=365)] = 7
    low_score_action: Literal["reopen", "escalate"] = "reopen"
    #: A survey answer naming no complaint scores the customer's latest complaint only if it was
    #: resolved within this many days of the answer; otherwise it is general satisfaction.
    survey_window_days: Annotated[int, Field(ge=0, le=365)] = 14

    # Staff
    #: The staff directory (YAML, or JSON by its ``.json`` name); unset: the development one shipped
    #: with the service (``staff.default.yaml``).
    staff_file: Annotated[str, Field(min_length=1, max_length=1024)] | None = None
    #: An SLA warning already moves a complaint one rung up the ladder (and reassigns it), as a breach does.
    escalate_on_warning: bool = False

    # Account managers
    #: Which customers get an account manager from the directory's (JSON, e.g.
    #: ``{"tiers": ["vip"], "needs": ["custom"]}``): the least loaded one serving their region and
    #: industry, ties by id.
    account_rule: AccountRule = AccountRule()
    #: Working days an account manager has for a return visit after the follow-up fell due.
    return_visit_days: Annotated[float, Field(gt=0, le=60)] = 2.0

    #: Seconds between scheduler passes (warnings, breaches, auto-close, unsent events).
    scheduler_interval_s: Annotated[float, Field(gt=0, le=300)] = 5.0
    #: Chunks of complaints the scheduler writes at once within a pass (each chunk's bulk write
    #: holds up to two of FerretDB v1's PostgreSQL connections until it ends: keep well below its pool).
    scheduler_concurrency: Annotated[int, Field(ge=1, le=64)] = 16

    # Intake: records of crm.complaint-intake.v1 handled together (one insert for all of them).
    #: Intake waits longer to fill a batch: one insert opens all of a batch's complaints.
    batch_timeout_ms: Annotated[int, Field(ge=1, le=10_000)] = 100

    @field_validator("sla_policies")
    @classmethod
    def _catch_all_last(cls, value: tuple[SlaPolicy, ...]) -> tuple[SlaPolicy, ...]:
        if not value:
            raise ValueError("at least one SLA policy is needed")
        last = value[-1]
        if last.priorities or last.categories or last.complexities or last.tiers:
            raise ValueError("the last SLA policy must match every complaint")
        return value

    def calendar(self) -> BusinessCalendar:
        return BusinessCalendar(self.calendar_timezone, parse_periods(self.working_periods),
                                country=self.calendar_country or None, closed_days=self.closed_days,
                                working_days=self.extra_working_days)

    def rules(self) -> Rules:
        return Rules(calendar=self.calendar(), policies=self.sla_policies, policy_version=self.sla_policy_version,
                     verification=self.verification, reopen_days=self.reopen_days,
                     auto_close_days=self.auto_close_days, low_score_action=self.low_score_action,
                     survey_window_days=self.survey_window_days, escalate_on_warning=self.escalate_on_warning)

    def staff(self) -> Directory:
        """The staff directory; ``StaffFileError`` when its file cannot be used."""
        return load(self.staff_file)
