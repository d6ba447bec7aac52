"""The topic catalogue: names, partitions and configuration, as the contract lists them."""

from __future__ import annotations

from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Mapping

DAY_MS = 24 * 60 * 60 * 1000

ORDERS_PURCHASES = "orders.purchases.v1"
CRM_INTERACTIONS = "crm.interactions.v1"
CRM_CUSTOMER_INTAKE = "crm.customer-intake.v1"
CRM_COMPLAINT_INTAKE = "crm.complaint-intake.v1"
CRM_CUSTOMERS = "crm.customers.v1"
CRM_TIER_CHANGES = "crm.tier-changes.v1"
CRM_CUSTOMER_TIERS = "crm.customer-tiers.v1"
CRM_COMPLAINTS = "crm.complaints.v1"
CRM_NOTIFICATIONS = "crm.notifications.v1"
CRM_ACCOUNT_MANAGERS = "crm.account-managers.v1"
CRM_CARE_TASKS = "crm.care-tasks.v1"

DLQ_SUFFIX = ".dlq"


def dlq(topic: str) -> str:
    """The dead-letter topic of ``topic``."""
    return topic + DLQ_SUFFIX


def _delete(days: int) -> Mapping[str, str]:
    return MappingProxyType({"cleanup.policy": "delete", "retention.ms": str(days * DAY_MS)})


_COMPACT = MappingProxyType({
    "cleanup.policy": "compact",
    # Tombstones stay a day so that a consumer catching up still sees an erasure.
    "delete.retention.ms": str(DAY_MS),
    "min.cleanable.dirty.ratio": "0.1",
    "segment.ms": str(DAY_MS),
})


@dataclass(frozen=True)
class TopicSpec:
    name: str
    config: Mapping[str, str]
    description: str
    events: tuple[str, ...] = field(default_factory=tuple)

    @property
    def compacted(self) -> bool:
        return self.config.get("cleanup.policy") == "compact"


CATALOGUE: tuple[TopicSpec, ...] = (
    TopicSpec(ORDERS_PURCHASES, _delete(30), "Purchases and refunds from upstream order systems.",
              events=("order.purchase.completed", "order.purchase.refunded")),
    TopicSpec(CRM_INTERACTIONS, _delete(30), "Interactions recorded by upstream systems and CRM services.",
              events=("customer.interaction.recorded",)),
    TopicSpec(CRM_CUSTOMER_INTAKE, _delete(30), "Registrations and profile updates from upstream.",
              events=("customer.registered", "customer.updated")),
    TopicSpec(CRM_COMPLAINT_INTAKE, _delete(30), "Complaints from every intake channel.",
              events=("complaint.submitted",)),
    TopicSpec(CRM_CUSTOMERS, _COMPACT, "Current customer profiles (compacted); erasures end in a tombstone.",
              events=("customer.profile.changed", "customer.erased")),
    TopicSpec(CRM_TIER_CHANGES, _delete(90), "One event per changed classification dimension.",
              events=("customer.tier.changed",)),
    TopicSpec(CRM_CUSTOMER_TIERS, _COMPACT, "Current classification snapshot per customer (compacted).",
              events=("customer.classification",)),
    TopicSpec(CRM_COMPLAINTS, _delete(90), "Complaint lifecycle events and the staff alerts they cause.",
              events=tuple(f"complaint.{n}" for n in (
                  "opened", "acknowledged", "assigned", "escalated", "sla_warning", "sla_breached",
                  "resolved", "closed", "reopened", "feedback_received", "staff_alert"))),
    TopicSpec(CRM_NOTIFICATIONS, _delete(30), "Outcome of every care message.",
              events=("notification.sent", "notification.failed", "notification.suppressed")),
    TopicSpec(CRM_ACCOUNT_MANAGERS, _COMPACT, "Each customer's account manager (compacted): the latest change.",
              events=("customer.account_manager.changed",)),
    TopicSpec(CRM_CARE_TASKS, _delete(30), "Care work due for staff: return visits of managed customers.",
              events=("care.return_visit.due",)),
)

DLQ_CATALOGUE: tuple[TopicSpec, ...] = tuple(
    TopicSpec(dlq(spec.name), _delete(30), f"Dead letters of {spec.name}: the original bytes, reason in headers.")
    for spec in CATALOGUE
)

TOPICS: dict[str, TopicSpec] = {spec.name: spec for spec in (*CATALOGUE, *DLQ_CATALOGUE)}
