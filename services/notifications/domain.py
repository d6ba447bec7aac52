"""Pure rules of the notifications service: no I/O, time comes from the caller.

A *request* is one message a trigger asks for; the policy pipeline turns it into a *decision*:
send (on these channels, in this order), defer (quiet hours), or suppress (with a reason).
Deduplication, the last step, needs the store and happens in the workflow.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, Literal
from zoneinfo import ZoneInfo

from shared.contract import (
    CustomerProfileChanged,
    CustomerTierChanged,
    ReturnVisitDue,
    ReturnVisitDueData,
)

Channel = Literal["email", "sms", "webhook"]
Family = Literal["complaint", "tier", "welcome", "referral", "birthday", "holiday", "follow_up", "survey"]
#: When the frequency cap forces a choice, lower ranks go first.
PRIORITY: dict[str, int] = {"complaint": 0, "tier": 1, "welcome": 1, "referral": 1, "birthday": 2, "holiday": 3,
                             "follow_up": 4, "survey": 5}
#: Channels that reach a customer's phone at once: nothing goes on them in the quiet hours.
WAKING = frozenset({"sms"})
NAMESPACE = uuid.UUID("6b3a2f0e-3c7d-5e8a-9b1c-2d4e6f8a0b1c")


def stable_id(*parts: object) -> str:
    """A deterministic id, so a retry or replay publishes the same event id."""
    return str(uuid.uuid5(NAMESPACE, "|".join(str(p) for p in parts)))


@dataclass(frozen=True)
class Policy:
    quiet_start: time = time(21, 0)
    quiet_end: time = time(9, 0)
    frequency_cap: int = 2
    window: timedelta = timedelta(days=7)
    fallback: tuple[str, ...] = ("sms", "email", "webhook")
    default_timezone: str = "Asia/Shanghai"
    default_locale: str = "zh-CN"
    default_country: str = "CN"
    webhook_enabled: bool = True
    #: How long a message for a customer whose profile has not arrived yet waits for it: the
    #: profile and the trigger come on different topics, and either may be read first.
    profile_wait: timedelta = timedelta(hours=1)
    #: Per trigger: how long before the same message (``repeat_key``) may reach a customer again.
    repeat_after: Mapping[str, timedelta] = field(default_factory=dict)

    @property
    def longest_repeat(self) -> timedelta:
        return max(self.repeat_after.values(), default=timedelta(0))


@dataclass(frozen=True)
class Profile:
    """The notifications service's own copy of what it needs of a customer."""

    customer_id: str
    name: str | None = None
    email: str | None = None
    phone: str | None = None
    locale: str | None = None
    timezone: str | None = None
    country: str | None = None
    preferred_channel: str | None = None
    consents: Mapping[str, bool | None] = field(default_factory=dict)
    birthday: date | None = None
    value_tier: str | None = None
    vip: str | None = None
    since: date | None = None
    #: The customer's account manager (the complaints service's): their follow-up is a return visit.
    account_manager: str | None = None
    #: False while only a tier change has told of the customer: the profile has not arrived yet.
    known: bool = True
    #: Made by a purchase before the registration: its contacts usually follow with the registration.
    prospect: bool = False


@dataclass(frozen=True)
class Request:
    """One message a trigger asks for, identified by its deterministic dedupe key."""

    customer_id: str
    family: Family
    trigger: str
    template: str
    dedupe_key: str
    source_id: str
    params: Mapping[str, Any] = field(default_factory=dict)
    #: Not to be sent before this time (a survey a set time after resolution).
    not_before: datetime | None = None
    #: When the request was first decided; None for a new one.
    asked_at: datetime | None = None

    @property
    def transactional(self) -> bool:
        return self.family == "complaint"

    @property
    def priority(self) -> int:
        return PRIORITY[self.family]

    @property
    def repeat_key(self) -> str:
        """What makes two messages the same to the customer, whatever asked for them: the trigger
        and the tier it names."""
        return repeat_key(self.trigger, self.params)


def repeat_key(trigger: str, params: Mapping[str, Any]) -> str:
    return f"{trigger}:{params.get('tier') or ''}"


@dataclass(frozen=True)
class Send:
    channels: tuple[str, ...]


@dataclass(frozen=True)
class Defer:
    until: datetime
    reason: str = "quiet_hours_deferred"


@dataclass(frozen=True)
class Suppress:
    reason: str


Decision = Send | Defer | Suppress


@dataclass(frozen=True)
class SuppressionEntry:
    """An entry of the suppression list: a customer, an e-mail address or a phone number."""

    kind: Literal["customer", "email", "phone"]
    value: str
    channel: str | None = None
    #: Also stops transactional (complaint) messages, e.g. after a hard bounce.
    all_messages: bool = False


# --- Policy pipeline ----------------------------------------------------------------------------

def timezone_of(profile: Profile, policy: Policy) -> ZoneInfo:
    return ZoneInfo(profile.timezone or policy.default_timezone)


def available_channels(profile: Profile, policy: Policy) -> list[str]:
    channels = []
    if profile.email:
        channels.append("email")
    if profile.phone:
        channels.append("sms")
    if profile.preferred_channel == "webhook" and policy.webhook_enabled:
        channels.append("webhook")
    return channels


def consented_channels(request: Request, profile: Profile, policy: Policy) -> tuple[list[str], str | None]:
    """Step 1: channels this customer can be reached on for this purpose, or why none."""
    available = available_channels(profile, policy)
    if not available:
        return [], "no_contact"
    if request.transactional:
        return available, None
    if profile.consents.get("care_messages") is not True:
        return [], "no_consent"
    # Webhooks reach the customer's own integration; care consent covers them.
    allowed = [c for c in available if c == "webhook" or profile.consents.get(c) is True]
    return allowed, None if allowed else "no_consent"


def unsuppressed_channels(request: Request, profile: Profile, channels: Sequence[str],
                          entries: Iterable[SuppressionEntry]) -> list[str]:
    """Step 2: drop the channels the suppression list stops."""
    blocked: set[str] = set()
    for entry in entries:
        if request.transactional and not entry.all_messages:
            continue
        if entry.kind == "customer" and entry.value == profile.customer_id:
            blocked.update([entry.channel] if entry.channel else channels)
        elif entry.kind == "email" and entry.value == (profile.email or "").lower():
            blocked.add("email")
        elif entry.kind == "phone" and entry.value == profile.phone:
            blocked.add("sms")
    return [c for c in channels if c not in blocked]


def channel_order(profile: Profile, channels: Sequence[str], policy: Policy) -> tuple[str, ...]:
    """Step 3: the preferred channel first, then the fallback order."""
    ranked = sorted(channels, key=lambda c: (c != profile.preferred_channel,
                                             policy.fallback.index(c) if c in policy.fallback else 99))
    return tuple(ranked)


def quiet_until(now: datetime, tz: ZoneInfo, start: time, end: time) -> datetime | None:
    """Step 4: when ``now`` is inside the quiet hours in ``tz``, the next allowed time (UTC)."""
    local = now.astimezone(tz)
    t = local.time()
    if start == end:
        return None
    if start > end:  # the window crosses midnight, e.g. 21:00-09:00
        if t >= start:
            day = local.date() + timedelta(days=1)
        elif t < end:
            day = local.date()
        else:
            return None
    elif start <= t < end:
        day = local.date()
    else:
        return None
    return datetime.combine(day, end, tzinfo=tz).astimezone(UTC)


def decide(request: Request, profile: Profile | None, *, now: datetime, policy: Policy,
           suppressions: Iterable[SuppressionEntry] = (), recent_care: int = 0,
           last_same: datetime | None = None) -> Decision:
    """The policy pipeline for one request: consent, suppression list, repeat window, channel,
    quiet hours, cap.

    ``recent_care`` is how many care messages this customer was sent (or has pending) in the
    frequency window, not counting this request; ``last_same`` when the same message (its
    ``repeat_key``) was last sent or planned for them.
    """
    if profile is None or not profile.known or (profile.prospect and not available_channels(profile, policy)):
        # A prospect without contacts is a purchase read before its registration: wait for it.
        return _await_profile(request, now, policy)
    channels, reason = consented_channels(request, profile, policy)
    if reason:
        return Suppress(reason)
    window = policy.repeat_after.get(request.trigger)
    if window is not None and last_same is not None and now - last_same < window:
        return Suppress("duplicate")
    channels = unsuppressed_channels(request, profile, channels, suppressions)
    if not channels:
        return Suppress("suppression_list")
    ordered = channel_order(profile, channels, policy)
    due = max(now, request.not_before) if request.not_before else now
    deferred = quiet_until(due, timezone_of(profile, policy), policy.quiet_start, policy.quiet_end)
    if deferred is not None:
        # A complaint message goes at night on the channels that wake nobody (e-mail, webhook): the
        # customer is waiting for it. On SMS it waits for the morning, as every care message does.
        silent = tuple(c for c in ordered if c not in WAKING) if request.transactional and due <= now else ()
        return Send(silent) if silent else Defer(deferred)
    if due > now:
        return Defer(due, reason="scheduled")
    if not request.transactional and recent_care >= policy.frequency_cap:
        return Suppress("frequency_cap")
    return Send(ordered)


#: The first and the longest wait between two looks for a profile that has not arrived.
PROFILE_RETRY_FIRST = timedelta(minutes=1)
PROFILE_RETRY_MAX = timedelta(minutes=15)


def _await_profile(request: Request, now: datetime, policy: Policy) -> Decision:
    """Look again later, each wait twice the last, until ``policy.profile_wait`` has passed since the
    request; then there is nobody to reach."""
    asked = request.asked_at or now
    deadline = asked + policy.profile_wait
    if now >= deadline:
        return Suppress("no_contact")
    step = min(max(now - asked, PROFILE_RETRY_FIRST), PROFILE_RETRY_MAX)
    return Defer(min(now + step, deadline), reason="awaiting_profile")


def decide_many(requests: Sequence[Request], profiles: Mapping[str, Profile], *, now: datetime, policy: Policy,
                suppressions: Mapping[str, Sequence[SuppressionEntry]],
                recent_care: Mapping[str, int],
                last_sent: Mapping[tuple[str, str], datetime] | None = None) -> list[tuple[Request, Decision]]:
    """Decide a batch; per customer the higher-priority messages take the capped slots first, and
    of two same messages (``last_sent``: (customer, repeat key) -> when) the first goes."""
    counts = dict(recent_care)
    last = dict(last_sent or {})
    decided = []
    for request in sorted(requests, key=lambda r: (r.customer_id, r.priority)):
        same = (request.customer_id, request.repeat_key)
        decision = decide(request, profiles.get(request.customer_id), now=now, policy=policy,
                          suppressions=suppressions.get(request.customer_id, ()),
                          recent_care=counts.get(request.customer_id, 0), last_same=last.get(same))
        if not request.transactional and isinstance(decision, Send | Defer):
            counts[request.customer_id] = counts.get(request.customer_id, 0) + 1
            last[same] = now
        decided.append((request, decision))
    return decided


# --- The service's copy of a profile ------------------------------------------------------------

def profile_from_event(event: CustomerProfileChanged, previous: Profile | None) -> Profile:
    p = event.data
    consents = p.consents.model_dump(exclude_none=True) if p.consents else {}
    created = (p.created_at or event.time).date()
    return Profile(
        customer_id=event.subject, name=p.name, email=str(p.email).lower() if p.email else None, phone=p.phone,
        locale=p.locale, timezone=p.timezone, country=p.country, preferred_channel=p.preferred_channel,
        consents=consents, birthday=p.birthday,
        value_tier=previous.value_tier if previous else None, vip=previous.vip if previous else None,
        since=previous.since if previous and previous.since else created,
        account_manager=previous.account_manager if previous else None, prospect=p.status == "prospect",
    )


def with_tier(profile: Profile, event: CustomerTierChanged) -> Profile:
    if event.data.dimension == "value_tier":
        return replace(profile, value_tier=event.data.current)
    if event.data.dimension == "vip":
        return replace(profile, vip=event.data.current)
    return profile


# --- Time-driven triggers -----------------------------------------------------------------------

def birthday_on(birthday: date, day: date) -> bool:
    """Whether ``day`` is the birthday; 29 February is kept on 28 February in common years."""
    if (birthday.month, birthday.day) == (day.month, day.day):
        return True
    leap = day.year % 4 == 0 and (day.year % 100 != 0 or day.year % 400 == 0)
    return (birthday.month, birthday.day) == (2, 29) and not leap and (day.month, day.day) == (2, 28)


def follow_up_due(profile: Profile, day: date, cadence: Mapping[str, int]) -> int | None:
    """The cadence in days when a follow-up is due on ``day``, counted from the customer's start:
    ``managed`` for a customer with an account manager (else their tier's), ``vip`` for a VIP, else
    their value tier's."""
    days = cadence.get("managed") if profile.account_manager else None
    days = days or (cadence.get("vip") if profile.vip == "vip" else None)
    days = days or (cadence.get(profile.value_tier) if profile.value_tier else None)
    if not days or profile.since is None:
        return None
    elapsed = (day - profile.since).days
    return days if elapsed > 0 and elapsed % days == 0 else None


def daily_requests(profile: Profile, day: date, holidays_today: Sequence[str], *,
                   cadence: Mapping[str, int], country: str, run_id: str) -> list[Request]:
    """Birthday, holiday and follow-up messages due for one customer on their local ``day``; a
    customer with an account manager gets a return visit instead of the follow-up message
    (``return_visit``)."""
    cid = profile.customer_id
    out = []
    if profile.birthday and birthday_on(profile.birthday, day):
        out.append(Request(cid, "birthday", "birthday", "birthday", f"birthday:{day.year}:{cid}", run_id))
    for slug in holidays_today:
        trigger = f"holiday:{country}:{slug}:{day.year}"
        out.append(Request(cid, "holiday", trigger, "holiday", f"{trigger}:{cid}", run_id,
                           {"holiday": slug}))
    cadence_days = follow_up_due(profile, day, cadence)
    if cadence_days and not profile.account_manager:
        out.append(Request(cid, "follow_up", "follow_up", "follow_up", f"follow_up:{day.isoformat()}:{cid}", run_id,
                           {"cadence_days": cadence_days}))
    return out


def return_visit(profile: Profile, day: date, *, cadence: Mapping[str, int], now: datetime) -> ReturnVisitDue | None:
    """A managed customer's follow-up due on their local ``day``, for their account manager to make
    in person; the visit's id (and the event's) is the same however often the day is run."""
    cadence_days = follow_up_due(profile, day, cadence) if profile.account_manager else None
    if not cadence_days:
        return None
    visit_id = f"return_visit:{day.isoformat()}:{profile.customer_id}"
    return ReturnVisitDue(id=stable_id(visit_id), source="carecrm/notifications", subject=profile.customer_id,
                          time=now, data=ReturnVisitDueData(visit_id=visit_id, due_on=day, cadence_days=cadence_days,
                                                            manager_id=profile.account_manager))


# --- What templates see -------------------------------------------------------------------------

_WEEKDAYS = {"zh": "一二三四五六日", "en": ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")}


def local_time_text(moment: datetime, tz: ZoneInfo, locale: str) -> str:
    """``moment`` on the customer's own calendar and clock, written the way their locale reads it."""
    local = moment.astimezone(tz)
    if locale.startswith("zh"):
        return f"{local.year}年{local.month}月{local.day}日（周{_WEEKDAYS['zh'][local.weekday()]}）{local:%H:%M}"
    return f"{_WEEKDAYS['en'][local.weekday()]} {local.day} {local:%b %Y, %H:%M} ({tz.key})"


def template_context(request: Request, profile: Profile, locale: str, policy: Policy) -> dict[str, Any]:
    tz = timezone_of(profile, policy)
    context: dict[str, Any] = {k: v for k, v in request.params.items() if not k.endswith("_at")}
    for key, value in request.params.items():
        if key.endswith("_at"):
            context[key.removesuffix("_at") + "_local"] = (
                local_time_text(datetime.fromisoformat(value), tz, locale) if value else "")
    context["name"] = profile.name or ""
    context["customer_id"] = profile.customer_id
    return context
