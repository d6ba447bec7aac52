"""Carries requests through the policy pipeline, the dedupe record and the channels; publishes outcomes.

Handlers, the daily scheduler and the deferred-message loop all hand their requests to
``Workflow.submit``. The record under the dedupe key is written before any provider is called, and
the key goes to the provider as its idempotency key, so a redelivered trigger never sends twice.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import uuid
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlencode

import structlog

from shared.clock import Clock
from shared.contract import CloudEvent, NotificationFailed, NotificationSent, NotificationSuppressed
from shared.kafka import Publisher

from . import alerts, domain, surveys
from .channels import Channel, DeliveryError, Recipient, with_retries
from .domain import Defer, Policy, Profile, Request, Suppress
from .repository import Repository, due_slot, request_doc, request_from_doc
from .settings import NotificationsSettings
from .templates import Templates, TemplateError

log = structlog.get_logger(__name__)
SOURCE = "carecrm/notifications"
#: The channel that calls a member of staff's own webhook (the ``webhook`` one is the customers').
STAFF_WEBHOOK = "staff_webhook"
_EVENTS: dict[str, type[CloudEvent]] = {
    "sent": NotificationSent, "failed": NotificationFailed, "suppressed": NotificationSuppressed,
    "deferred": NotificationSuppressed,
}


def policy_from(settings: NotificationsSettings) -> Policy:
    return Policy(quiet_start=settings.quiet_start, quiet_end=settings.quiet_end,
                  frequency_cap=settings.frequency_cap, window=timedelta(days=settings.frequency_window_days),
                  fallback=settings.channel_fallback, default_timezone=settings.default_timezone,
                  default_locale=settings.default_locale, default_country=settings.default_country,
                  webhook_enabled=bool(settings.webhook_url),
                  profile_wait=timedelta(minutes=settings.profile_wait_minutes),
                  repeat_after={k: timedelta(days=v) for k, v in settings.repeat_after_days.items()})


def unsubscribe_token(secret: bytes, customer_id: str) -> str:
    return hmac.new(secret, f"unsubscribe:{customer_id}".encode(), hashlib.sha256).hexdigest()[:32]


class Workflow:
    def __init__(self, settings: NotificationsSettings, repo: Repository, templates: Templates,
                 channels: Mapping[str, Channel], clock: Clock, publisher: Publisher) -> None:
        self.settings = settings
        self.policy = policy_from(settings)
        self.repo = repo
        self.templates = templates
        self.channels = channels
        self.clock = clock
        self.publisher = publisher
        self._slots = asyncio.Semaphore(settings.send_concurrency)
        #: A message no provider could be reached for waits as a deferred record (the outbox the
        #: scheduler resumes) and is tried again, until it is this old; then it is reported failed.
        self.retry_interval = timedelta(seconds=settings.channel_retry_interval_s)
        self.retry_for = timedelta(hours=settings.channel_retry_for_hours)
        self._secret = settings.webhook_secret.get_secret_value().encode()
        #: Marks the records this process claims for sending: one found still sending under another
        #: mark was being sent by a process that died (see ``_interrupted``).
        self._attempt = uuid.uuid4().hex

    def verify_unsubscribe(self, customer_id: str, token: str) -> bool:
        return hmac.compare_digest(token, unsubscribe_token(self._secret, customer_id))

    def unsubscribe_url(self, customer_id: str) -> str:
        query = urlencode({"customer_id": customer_id, "token": unsubscribe_token(self._secret, customer_id)})
        return f"{self.settings.unsubscribe_base_url}?{query}"

    def survey_url(self, customer_id: str, complaint_id: str, sent_at: datetime) -> str:
        return surveys.link(self.settings.survey_base_url, self._secret, customer_id, complaint_id, sent_at,
                            timedelta(days=self.settings.survey_link_days))

    def survey_refusal(self, customer_id: str, complaint_id: str, expires: int, token: str) -> str | None:
        return surveys.refusal(self._secret, customer_id, complaint_id, expires, token, self.clock.now())

    def general_survey_url(self, customer_id: str, survey: str, sent_at: datetime) -> str:
        return surveys.general_link(self.settings.survey_base_url, self._secret, customer_id, survey, sent_at,
                                    timedelta(days=self.settings.survey_link_days))

    def general_survey_refusal(self, customer_id: str, survey: str, expires: int, token: str) -> str | None:
        return surveys.general_refusal(self._secret, customer_id, survey, expires, token, self.clock.now())

    def _context(self, request: Request, profile: Profile, now: datetime) -> dict[str, Any]:
        locale = profile.locale or self.policy.default_locale
        context = domain.template_context(request, profile, locale, self.policy)
        if request.template == "complaint_survey" and request.params.get("complaint_id"):
            context["survey_url"] = self.survey_url(profile.customer_id, request.params["complaint_id"], now)
        elif request.family == "survey":
            context["survey_url"] = self.general_survey_url(profile.customer_id, request.params["survey"], now)
        return context

    async def withdraw(self, key: str, reason: str, cause: CloudEvent) -> None:
        """Suppress a message still waiting for its time (a purchase survey after a refund), and say so."""
        now = self.clock.now()
        doc = await self.repo.withdraw_deferred(key, {"status": "suppressed", "reason": reason, "event_time": now})
        if doc is not None:
            await self._publish([self._event("suppressed", request_from_doc(doc), now, reason=reason)], cause)

    async def submit(self, requests: Sequence[Request], *, cause: CloudEvent | None = None,
                     causes: Mapping[str, CloudEvent] | None = None, resumed: bool = False,
                     known: Mapping[str, Profile] | None = None) -> None:
        """Decide, record, deliver and publish the outcome of each request (idempotently).

        ``causes`` names the event behind each request (by dedupe key) when a batch of events is
        submitted at once, so that each outcome carries its own cause's trace; ``cause`` is the one
        event behind them all. Requests of one batch are decided together: the frequency cap counts
        the batch's own messages too.
        ``resumed`` is set by the deferred-message loop: a deferred record is then due, not a repeat.
        The daily fan-out passes the profiles it read (``known``); its requests are new by
        construction, so their records are not looked up: should a run be repeated, the insert under
        the dedupe key still refuses a second record, so nothing is sent or reported twice.
        Independent reads go to the store together: per event, two round trips of reads.
        """
        if not requests:
            return
        now = self.clock.now()
        if known is None:
            existing, profiles = await asyncio.gather(self.repo.by_keys([r.dedupe_key for r in requests]),
                                                      self.repo.profiles({r.customer_id for r in requests}))
        else:
            existing, profiles = {}, dict(known)
        todo: list[Request] = []
        repeats: list[CloudEvent] = []
        interrupted: list[Request] = []
        for request in requests:
            doc = existing.get(request.dedupe_key)
            sending = doc is not None and doc["status"] == "sending" and doc["source_id"] == request.source_id
            if doc is None or (resumed and doc["status"] == "deferred") or (
                    sending and doc.get("attempt") == self._attempt):
                todo.append(request)  # new, due, or claimed by this process and never handed over
            elif sending:
                interrupted.append(request)
            elif doc["source_id"] != request.source_id:
                repeats.append(self._event("suppressed", request, now, reason="duplicate",
                                           event_key=request.source_id))
            elif doc["status"] in ("sent", "failed", "suppressed"):
                repeats.append(event_from_doc(doc))  # a redelivery: the same event again, nothing sent
        await self._publish(repeats, cause, causes)
        await self._interrupted(interrupted, now, cause, causes)
        if not todo:
            return
        customers = {r.customer_id for r in todo}
        care = {r.customer_id for r in todo if not r.transactional}
        suppressions, (counts, last_sent) = await asyncio.gather(
            self.repo.suppression_list.entries_for(p for c, p in profiles.items() if c in customers),
            self.repo.care_history(care, now - self.policy.window, now - self.policy.longest_repeat,
                                   [r.dedupe_key for r in todo])
            if care else _nothing())
        decided = domain.decide_many(todo, profiles, now=now, policy=self.policy, suppressions=suppressions,
                                     recent_care=counts, last_sent=last_sent)
        events: list[CloudEvent] = []
        sends: list[tuple[Request, Profile, tuple[str, ...]]] = []
        new_docs: list[dict[str, Any]] = []
        moved: dict[str, dict[str, Any]] = {}
        for request, decision in decided:
            doc = existing.get(request.dedupe_key)
            fields = {**request_doc(request), "created_at": doc["created_at"] if doc else now}
            if isinstance(decision, Suppress):
                fields.update(status="suppressed", reason=decision.reason, event_time=now)
                events.append(self._event("suppressed", request, now, reason=decision.reason))
            elif isinstance(decision, Defer):
                fields.update(status="deferred", reason=decision.reason, due_at=decision.until,
                              due_slot=due_slot(decision.until))
                if decision.reason == "quiet_hours_deferred":
                    events.append(self._event("deferred", request, now, reason=decision.reason,
                                              scheduled_for=decision.until))
            else:
                fields.update(status="sending", reason=None, attempt=self._attempt)
                sends.append((request, profiles[request.customer_id], decision.channels))
            if doc is None:
                new_docs.append({"_id": request.dedupe_key, **fields})
            elif doc["status"] == "deferred":
                moved[request.dedupe_key] = fields
        claimed, moves = await asyncio.gather(
            self.repo.claim(new_docs), asyncio.gather(*(self.repo.claim_deferred(k, f) for k, f in moved.items())))
        # A deferred record another worker moved on first is its own: that worker owns the outcome.
        lost = ({d["_id"] for d in new_docs} - claimed) | {k for k, won in zip(moved, moves, strict=True) if not won}
        if lost:  # a concurrent delivery of the same trigger won the record: it sends and reports
            sends = [s for s in sends if s[0].dedupe_key not in lost]
            events = [e for e in events if e.data.dedupe_key not in lost]  # type: ignore[attr-defined]
        await self._publish(events, cause, causes)
        if sends:
            first_tried = {key: doc["created_at"] for key, doc in existing.items()}

            def retried(key: str, unreachable: bool) -> bool:
                return unreachable and now - first_tried.get(key, now) < self.retry_for

            async def deliver(r: Request, p: Profile, c: tuple[str, ...]
                              ) -> tuple[str, dict[str, Any], CloudEvent, bool]:
                key, fields, event, unreachable = await self._deliver(r, p, c, now)
                if not retried(key, unreachable):
                    # Written the moment the provider answered, not with the batch: a crash after a
                    # send must find its outcome, or the restart reports it interrupted.
                    await self.repo.record_outcomes([outcome_doc(r, now, fields)])
                return key, fields, event, unreachable

            results = await asyncio.gather(*(deliver(r, p, c) for r, p, c in sends))
            later = {key for key, _, _, unreachable in results if retried(key, unreachable)}
            if later:
                await self.repo.retry_later(sorted(later), now + self.retry_interval)
                log.warning("delivery_deferred_provider_unreachable", messages=len(later),
                            retry_in_s=self.retry_interval.total_seconds())
            await self._publish([event for key, _, event, _ in results if key not in later], cause, causes)

    async def _interrupted(self, requests: Sequence[Request], now: datetime, cause: CloudEvent | None,
                           causes: Mapping[str, CloudEvent] | None) -> None:
        """Messages a process that is gone was sending: whether the provider took them is unknown,
        and a customer must never get a message twice, so they are not sent again but reported
        failed as ``interrupted`` (at most once, visible on the timeline and in the reports)."""
        if not requests:
            return
        fields = {"status": "failed", "reason": "interrupted", "locale": None, "attempts": 0, "event_time": now,
                  "channel": None}
        await self.repo.record_outcomes([outcome_doc(r, now, fields) for r in requests])
        log.warning("sending_interrupted_not_sent_again", messages=len(requests))
        await self._publish([self._event("failed", r, now, reason="interrupted") for r in requests], cause, causes)

    async def _deliver(self, request: Request, profile: Profile, channels: tuple[str, ...],
                       now: datetime) -> tuple[str, dict[str, Any], CloudEvent, bool]:
        """The outcome of sending on the first channel that takes it and, when none did, whether one
        may take it later (its provider could not be reached, or answered "try again")."""
        recipient = Recipient(profile.customer_id, profile.email, profile.phone)
        attempts, reason, locale = 0, "no_channel", None
        unreachable = False
        for name in channels:
            channel = self.channels.get(name)
            if channel is None:
                continue
            try:
                rendered = self.templates.render(
                    request.template, profile.locale or self.policy.default_locale, name,
                    self._context(request, profile, now),
                    care=not request.transactional, unsubscribe_url=self.unsubscribe_url(profile.customer_id))
            except TemplateError as exc:
                log.error("template_failed", template=request.template, error=str(exc)[:300])
                reason = "template_error"
                continue
            locale = rendered.locale
            try:
                async with self._slots:
                    used = await with_retries(lambda: channel.send(rendered, recipient, request.dedupe_key),
                                              max_attempts=self.settings.channel_max_attempts,
                                              backoff=self.settings.channel_backoff_s)
            except DeliveryError as exc:
                attempts += getattr(exc, "attempts", 1)
                reason = exc.reason
                unreachable = unreachable or exc.retryable
                log.warning("delivery_failed", channel=name, reason=exc.reason, trigger=request.trigger)
                continue
            attempts += used
            fields = {"status": "sent", "channel": name, "locale": locale, "attempts": attempts,
                      "sent_at": self.clock.now(), "event_time": now, "reason": None}
            return request.dedupe_key, fields, self._event("sent", request, now, channel=name, locale=locale,
                                                           attempts=attempts), False
        fields = {"status": "failed", "reason": reason, "locale": locale, "attempts": attempts, "event_time": now,
                  "channel": channels[-1] if channels else None}
        return request.dedupe_key, fields, self._event("failed", request, now, reason=reason, locale=locale,
                                                       attempts=attempts, channel=fields["channel"]), unreachable

    def _event(self, outcome: str, request: Request, now: datetime, *, reason: str | None = None,
               channel: str | None = None, locale: str | None = None, attempts: int = 0,
               scheduled_for: datetime | None = None, event_key: str = "") -> CloudEvent:
        return build_event(outcome, customer_id=request.customer_id, key=request.dedupe_key, trigger=request.trigger,
                           template=request.template, time=now, reason=reason, channel=channel, locale=locale,
                           attempts=attempts, scheduled_for=scheduled_for, event_key=event_key)

    async def _publish(self, events: Sequence[CloudEvent], cause: CloudEvent | None,
                       causes: Mapping[str, CloudEvent] | None = None) -> None:
        if events:
            await self.publisher.publish(events, causes=lambda e: (causes or {}).get(
                e.data.dedupe_key, cause))  # type: ignore[attr-defined]

    async def resume(self, docs: Sequence[Mapping[str, Any]]) -> None:
        """Send deferred messages whose time has come (their stored records)."""
        await self.submit([request_from_doc(dict(d)) for d in docs], resumed=True)

    # --- staff alerts ------------------------------------------------------------------------------

    async def alert_staff(self, message: alerts.StaffMessage, *, resumed: bool = False) -> str | None:
        """Send one staff alert once; its outcome (sent, failed, deferred), or None when another
        delivery of the same alert has it. The record is written before any provider is called."""
        key = message.dedupe_key
        doc = await self.repo.staff_alert(key)
        now = self.clock.now()
        if doc is None:
            if not await self.repo.claim_staff_alert(message, now):
                return None
            first_tried = now
        elif doc["status"] == "sending" and doc["source_id"] == message.source_id and not resumed:
            first_tried = doc["created_at"]  # left half done by a crash: the provider knows the key
        elif resumed and doc["status"] == "deferred" and await self.repo.claim_deferred_staff_alert(key):
            first_tried = doc["created_at"]
        else:
            return None  # sent, failed, or waiting for its retry: nothing to send now
        fields = await self._deliver_alert(message)
        if fields["status"] == "failed" and fields.pop("unreachable") and now - first_tried < self.retry_for:
            fields = {"status": "deferred", "reason": "provider_unreachable", "due_at": now + self.retry_interval,
                      "attempts": fields["attempts"]}
        fields.pop("unreachable", None)
        await self.repo.finish_staff_alert(key, {**fields, "event_time": now})
        # The staff id names the person; their address is never logged.
        (log.info if fields["status"] == "sent" else log.warning)(
            "staff_alert_" + fields["status"], staff_id=message.staff_id, complaint_id=message.complaint_id,
            kind=message.kind, channel=fields.get("channel"), reason=fields.get("reason"))
        return fields["status"]

    async def _deliver_alert(self, message: alerts.StaffMessage) -> dict[str, Any]:
        """Try e-mail, then the webhook; the outcome's fields, and whether a provider was unreachable."""
        routes, reason = alerts.channels(message, self.settings.staff_webhook_prefixes)
        attempts, unreachable = 0, False
        locale = message.locale or self.policy.default_locale
        for name, address in routes:
            channel = self.channels.get(STAFF_WEBHOOK if name == "webhook" else name)
            if channel is None:
                continue
            recipient = Recipient(message.customer_id, address if name == "email" else None, None,
                                  staff_id=message.staff_id, webhook_url=address if name == "webhook" else None)
            try:
                rendered = self.templates.render(
                    message.template, locale, name, alerts.context(message, locale, self.policy.default_timezone),
                    care=False)
                async with self._slots:
                    used = await with_retries(lambda: channel.send(rendered, recipient, message.dedupe_key),
                                              max_attempts=self.settings.channel_max_attempts,
                                              backoff=self.settings.channel_backoff_s)
            except TemplateError as exc:
                log.error("template_failed", template=message.template, error=str(exc)[:300])
                reason = "template_error"
                continue
            except DeliveryError as exc:
                attempts += getattr(exc, "attempts", 1)
                reason, unreachable = exc.reason, unreachable or exc.retryable
                continue
            return {"status": "sent", "channel": name, "locale": rendered.locale, "attempts": attempts + used,
                    "sent_at": self.clock.now(), "reason": None, "unreachable": False}
        return {"status": "failed", "reason": reason or "no_channel", "attempts": attempts,
                "channel": routes[-1][0] if routes else None, "unreachable": unreachable}

    async def resume_staff_alerts(self, docs: Sequence[Mapping[str, Any]]) -> None:
        """Send deferred staff alerts whose time has come (their stored records)."""
        for doc in docs:
            await self.alert_staff(alerts.message_from_doc(doc), resumed=True)


def outcome_doc(request: Request, now: datetime, fields: Mapping[str, Any]) -> dict[str, Any]:
    """The outcome record of a request: sent or failed, with what the attempt found."""
    return {"_id": request.dedupe_key, "customer_id": request.customer_id, "created_at": now,
            "transactional": request.transactional, **fields}


async def _nothing() -> tuple[dict[str, int], dict[tuple[str, str], datetime]]:
    return {}, {}


def build_event(outcome: str, *, customer_id: str, key: str, trigger: str, template: str, time: datetime,
                reason: str | None, channel: str | None, locale: str | None, attempts: int,
                scheduled_for: datetime | None, event_key: str = "") -> CloudEvent:
    cls = _EVENTS[outcome]
    payload = {
        "id": domain.stable_id(key, outcome, reason, scheduled_for, event_key),
        "source": SOURCE, "subject": customer_id, "time": time,
        "data": {"notification_id": domain.stable_id(key), "trigger": trigger, "channel": channel,
                 "template": template, "locale": locale, "reason": reason, "dedupe_key": key,
                 "attempts": attempts, "scheduled_for": scheduled_for},
    }
    # Judged against the service's clock, so replays and tests on another date build valid events.
    return cls.model_validate(payload, context={"now": time})


def event_from_doc(doc: Mapping[str, Any]) -> CloudEvent:
    return build_event(doc["status"], customer_id=doc["customer_id"], key=doc["_id"], trigger=doc["trigger"],
                       template=doc["template"], time=doc["event_time"], reason=doc.get("reason"),
                       channel=doc.get("channel") if doc["status"] != "suppressed" else None,
                       locale=doc.get("locale"), attempts=doc.get("attempts", 0), scheduled_for=None)
