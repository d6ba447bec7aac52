"""Outbound events of the tiering service: tier changes and the current classification."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field, SerializerFunctionWrapHandler, model_serializer
from typing_extensions import Annotated

from ..types import Amount, AwareTime, Currency
from .base import CloudEvent, Model
from .values import Dimension, Direction

# --- Outbound: crm.tier-changes.v1 and crm.customer-tiers.v1 ------------------------------------

class RfmScores(Model):
    r: Annotated[int, Field(ge=1, le=5)]
    f: Annotated[int, Field(ge=1, le=5)]
    m: Annotated[int, Field(ge=1, le=5)]


class BaseSpend(Model):
    currency: Currency
    spend_12m: Amount


class TierMetrics(Model):
    """The figures a classification used. Amounts are in ``currency``: the one the customer paid
    in, converted from the policy's base currency at its fixed rates, or the base currency when they
    paid in several; ``base`` then holds the spend the policy compared, in its base currency."""

    currency: Currency
    spend_12m: Amount
    orders_12m: Annotated[int, Field(ge=0)]
    first_purchase_at: AwareTime | None = None
    last_purchase_at: AwareTime | None = None
    recency_days: Annotated[int, Field(ge=0)] | None = None
    rfm: RfmScores | None = None
    spend_90d: Amount | None = None
    spend_prev_90d: Amount | None = None
    orders_prev_12m: Annotated[int, Field(ge=0)] | None = None
    typical_gap_days: float | None = None
    lifetime_spend: Amount | None = None
    lifetime_orders: Annotated[int, Field(ge=0)] | None = None
    referrals: Annotated[int, Field(ge=0)] | None = None
    open_complaints: Annotated[int, Field(ge=0)] | None = None
    latest_satisfaction: Annotated[int, Field(ge=1, le=5)] | None = None
    base: BaseSpend | None = None


class TierChangedData(Model):
    dimension: Dimension
    previous: str | None
    current: str
    direction: Direction
    reason: Annotated[str, Field(max_length=1000)]
    policy_version: Annotated[str, Field(min_length=1, max_length=64)]
    effective_at: AwareTime
    metrics: TierMetrics
    override: bool = False
    #: True for a reclassification under a new policy or a population refresh run in bulk:
    #: downstream systems record it but send the customer nothing.
    bulk: bool = False
    #: After a downgrade where a spend line decides (value tier, VIP): the net spend within the
    #: window that brings ``previous`` back, in ``metrics.currency``.
    spend_needed: Amount | None = None

    @model_serializer(mode="wrap")
    def _previous_always_present(self, handler: SerializerFunctionWrapHandler):  # noqa: ANN202 - keeps the schema
        # Events are serialized without their null fields, but the contract has ``previous`` as a
        # required key that is null on the first classification.
        data = handler(self)
        if isinstance(data, dict):
            data.setdefault("previous", None)
        return data


class CustomerTierChanged(CloudEvent):
    topic: ClassVar[str] = "crm.tier-changes.v1"
    type: Literal["customer.tier.changed"] = "customer.tier.changed"
    data: TierChangedData


class PendingDowngrade(Model):
    current: str
    pending: str
    below_since: AwareTime
    effective_at: AwareTime
    needed: Annotated[str, Field(max_length=500)]
    #: Net spend still missing to keep ``current`` by ``effective_at``, where a spend line decides it.
    spend_needed: Amount | None = None
    currency: Currency | None = None


class ClassificationData(Model):
    value_tier: str | None = None
    abc_class: str | None = None
    vip: str | None = None
    loyalty: str | None = None
    lifecycle: str | None = None
    rfm_segment: str | None = None
    potential: str | None = None
    metrics: TierMetrics
    policy_version: Annotated[str, Field(min_length=1, max_length=64)]
    updated_at: AwareTime
    downgrade_pending: dict[Dimension, PendingDowngrade] = Field(default_factory=dict)
    overrides: dict[Dimension, str] = Field(default_factory=dict)


class CustomerClassification(CloudEvent):
    topic: ClassVar[str] = "crm.customer-tiers.v1"
    type: Literal["customer.classification"] = "customer.classification"
    data: ClassificationData
