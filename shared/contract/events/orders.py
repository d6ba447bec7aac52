"""Inbound events of orders.purchases.v1: purchases and refunds."""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import Field, field_validator
from typing_extensions import Annotated

from ..types import Amount, Currency, Identifier, PositiveAmount, ShortText
from .base import CloudEvent, Model
from .values import SalesChannel

# --- Inbound: orders.purchases.v1 ---------------------------------------------------------------

class LineItem(Model):
    sku: Annotated[str, Field(min_length=1, max_length=64)]
    name: ShortText | None = None
    category: Annotated[str, Field(max_length=64)] | None = None
    quantity: Annotated[int, Field(gt=0, le=1_000_000, strict=True)]
    unit_price: Amount

    @field_validator("unit_price")
    @classmethod
    def _not_negative(cls, value: Any) -> Any:
        if value < 0:
            raise ValueError("unit_price must not be negative")
        return value


class PurchaseCompletedData(Model):
    order_id: Identifier
    total_amount: PositiveAmount
    currency: Currency
    channel: SalesChannel = "other"
    store_id: Annotated[str, Field(max_length=64)] | None = None
    items: Annotated[list[LineItem], Field(max_length=500)] | None = None


class PurchaseRefundedData(Model):
    refund_id: Identifier
    order_id: Identifier | None = None
    amount: PositiveAmount
    currency: Currency
    reason: ShortText | None = None


class PurchaseCompleted(CloudEvent):
    topic: ClassVar[str] = "orders.purchases.v1"
    type: Literal["order.purchase.completed"] = "order.purchase.completed"
    data: PurchaseCompletedData


class PurchaseRefunded(CloudEvent):
    topic: ClassVar[str] = "orders.purchases.v1"
    type: Literal["order.purchase.refunded"] = "order.purchase.refunded"
    data: PurchaseRefundedData
