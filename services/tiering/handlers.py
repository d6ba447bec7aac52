"""Kafka subscribers of the tiering service: validate, call the domain, persist, publish.

Every input is read in batches: the workflow applies a batch with one read of the customers it does
not hold yet and the outbound events sent together; the new state is written in the background,
and a batch's offsets are committed by the workflow once what it led to is written
(``AckPolicy.MANUAL``). That is what keeps up with the order stream on a store that does a few
thousand writes per second.
"""

from __future__ import annotations

from typing import Union

from aiokafka import TopicPartition
from faststream import AckPolicy
from faststream.kafka import KafkaRouter
from faststream.kafka.annotations import KafkaMessage

from shared.batch import PartitionsGained
from shared.contract import CloudEvent
from shared.contract.events import (
    COMPLAINT_EVENTS,
    CustomerClassification,
    CustomerErased,
    CustomerProfileChanged,
    CustomerTierChanged,
    InteractionRecorded,
    PurchaseCompleted,
    PurchaseRefunded,
)
from shared.contract.topics import (
    CRM_COMPLAINTS,
    CRM_CUSTOMER_TIERS,
    CRM_CUSTOMERS,
    CRM_INTERACTIONS,
    CRM_TIER_CHANGES,
    ORDERS_PURCHASES,
)
from shared.kafka import DeadLetterMiddleware, Rejected, batch_options, dead_letter_event

from .metrics import RuleViolation
from .workflow import Workflow, Position
from .settings import TieringSettings

ComplaintEvent = Union[tuple(COMPLAINT_EVENTS)]  # type: ignore[valid-type]
SUBSCRIBED = (ORDERS_PURCHASES, CRM_INTERACTIONS, CRM_COMPLAINTS, CRM_CUSTOMERS)


class Ownership(PartitionsGained):
    """Keeps memory right when instances share the store and a consumer group: giving partitions up
    writes what is evaluated and commits its offsets, before the group hands them to another instance;
    being given partitions that this consumer did not hold has what another may have moved on re-read
    before the next batch is applied (not within the callback: see ``Workflow.partitions_gained``)."""

    def __init__(self, workflow: Workflow) -> None:
        super().__init__()
        self.workflow = workflow

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        # Also called, with nothing, before the first join: waiting then for the batch in hand (the
        # directory read at start, a minute at 100,000 customers) held the consumer out of its group.
        if revoked:
            await self.workflow.flush()  # waits for the batch in hand, then writes and commits

    async def gained(self) -> None:
        self.workflow.partitions_gained()


def position(msg: KafkaMessage) -> Position:
    """The consumer that read ``msg`` and, per partition, the offset after its last record."""
    raw = msg.raw_message
    ends: dict[TopicPartition, int] = {}
    for record in raw if isinstance(raw, tuple | list) else (raw,):
        tp = TopicPartition(record.topic, record.partition)
        ends[tp] = max(ends.get(tp, 0), record.offset + 1)
    return msg.consumer, ends


def build_router(settings: TieringSettings, workflow: Workflow, dead_letters: DeadLetterMiddleware) -> KafkaRouter:
    router = KafkaRouter()

    def batch(topic: str) -> dict[str, object]:
        # Committed by the workflow once what a batch led to is written (``Workflow.flush``).
        return batch_options(settings, topic, ack_policy=AckPolicy.MANUAL, listener=Ownership(workflow))

    # Records that never reach a handler (dead-lettered, tombstones) are committed with the rest.
    dead_letters.skipped = lambda msg: workflow.handled(position(msg))

    async def reject(event: CloudEvent, exc: RuleViolation) -> None:
        await dead_letter_event(dead_letters, event, Rejected(exc.code, exc.detail))

    # What the workflow publishes (through the runtime's publisher, in bulk), declared for the AsyncAPI document.
    router.publisher(
        CRM_TIER_CHANGES, title="customer.tier.changed", schema=CustomerTierChanged,
        description="One event per changed dimension, with a deterministic id; `bulk` marks reclassifications "
                    "and population refreshes that should not reach the customer.")
    router.publisher(
        CRM_CUSTOMER_TIERS, title="customer.classification", schema=CustomerClassification,
        description="The customer's full current classification after every change (compacted; a tombstone "
                    "follows an erasure).")

    @router.subscriber(ORDERS_PURCHASES, **batch(ORDERS_PURCHASES), title="orders.purchases.v1 (tiering)",
                       description="Purchases and refunds enter the ledger under their order and refund ids. An "
                                   "unknown currency goes to the DLQ as `unknown_currency`, a refund above what is "
                                   "left of its order as `refund_exceeds_order`.")
    async def on_purchases(events: list[Union[PurchaseCompleted, PurchaseRefunded]], msg: KafkaMessage) -> None:
        await workflow.ingest(events, reject, position(msg))

    @router.subscriber(CRM_INTERACTIONS, **batch(CRM_INTERACTIONS), title="crm.interactions.v1 (tiering)",
                       description="Referrals made and satisfaction scores from survey responses.")
    async def on_interactions(events: list[InteractionRecorded], msg: KafkaMessage) -> None:
        await workflow.ingest(events, reject, position(msg))

    @router.subscriber(CRM_COMPLAINTS, **batch(CRM_COMPLAINTS), title="crm.complaints.v1 (tiering)",
                       description="Complaint lifecycle: open complaints and feedback scores feed churn risk.")
    async def on_complaints(events: list[ComplaintEvent], msg: KafkaMessage) -> None:
        await workflow.ingest(events, reject, position(msg))

    @router.subscriber(CRM_CUSTOMERS, **batch(CRM_CUSTOMERS), title="crm.customers.v1 (tiering)",
                       description="A profile makes the customer a prospect until the first purchase; "
                                   "`customer.erased` removes everything tiering holds about the customer.")
    async def on_customers(events: list[Union[CustomerProfileChanged, CustomerErased]], msg: KafkaMessage) -> None:
        profiles: list[CloudEvent] = []
        for event in events:  # in order: an erasure comes after the profiles before it, before those after
            if isinstance(event, CustomerErased):
                await workflow.ingest(profiles, reject)
                profiles = []
                await workflow.erase(event.subject)
            else:
                profiles.append(event)
        await workflow.ingest(profiles, reject, position(msg))

    return router
