"""Customer events: the intake and interactions upstream publishes, the profiles and erasures the
customer service publishes."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import EmailStr, Field, model_validator
from typing_extensions import Annotated

from ..types import AwareTime, CustomerId, Identifier, LongText, ShortText
from .base import CloudEvent, Model
from .values import (
    Birthday,
    ContactChannel,
    Country,
    Industry,
    InteractionKind,
    Locale,
    Needs,
    Phone,
    Region,
    RelationshipSince,
    Tag,
    Timezone,
)


class Consents(Model):
    email: bool | None = None
    sms: bool | None = None
    care_messages: bool | None = None
    marketing: bool | None = None


# --- Inbound: crm.customer-intake.v1 ------------------------------------------------------------

class CustomerProfileData(Model):
    """Profile fields as upstream sends them; on update every field is optional."""

    name: Annotated[str, Field(min_length=1, max_length=200)] | None = None
    phone: Phone | None = None
    email: Annotated[EmailStr, Field(max_length=254)] | None = None
    birthday: Birthday | None = None
    locale: Locale | None = None
    timezone: Timezone | None = None
    country: Country | None = None
    address: Annotated[str, Field(max_length=500)] | None = None
    preferred_channel: ContactChannel | None = None
    consents: Consents | None = None
    referred_by: CustomerId | None = None
    needs: Needs | None = None
    tags: Annotated[list[Tag], Field(max_length=50)] | None = None
    industry: Industry | None = None
    region: Region | None = None
    #: When the business relationship began (B2B customers); not in the future.
    relationship_since: RelationshipSince | None = None


class CustomerRegistered(CloudEvent):
    topic: ClassVar[str] = "crm.customer-intake.v1"
    type: Literal["customer.registered"] = "customer.registered"
    data: CustomerProfileData


class CustomerUpdated(CloudEvent):
    topic: ClassVar[str] = "crm.customer-intake.v1"
    type: Literal["customer.updated"] = "customer.updated"
    data: CustomerProfileData


# --- Inbound: crm.interactions.v1 ---------------------------------------------------------------

class InteractionData(Model):
    interaction_id: Identifier
    kind: InteractionKind
    channel: Annotated[str, Field(min_length=1, max_length=32)]
    direction: Literal["inbound", "outbound"]
    summary: LongText | None = None
    satisfaction: Annotated[int, Field(ge=1, le=5, strict=True)] | None = None
    referred_customer_id: CustomerId | None = None
    complaint_id: Identifier | None = None

    @model_validator(mode="after")
    def _referral_names_customer(self) -> InteractionData:
        if self.kind == "referral" and not self.referred_customer_id:
            raise ValueError("referred_customer_id is required for a referral")
        return self


class InteractionRecorded(CloudEvent):
    topic: ClassVar[str] = "crm.interactions.v1"
    type: Literal["customer.interaction.recorded"] = "customer.interaction.recorded"
    data: InteractionData


# --- Outbound: crm.customers.v1 -----------------------------------------------------------------

class CustomerProfile(CustomerProfileData):
    """The current profile as the customer service publishes it (compacted topic)."""

    status: Literal["prospect", "active", "erased"] = "active"
    source: Annotated[str, Field(max_length=128)] | None = None
    version: Annotated[int, Field(ge=1)] = 1
    created_at: AwareTime | None = None
    updated_at: AwareTime | None = None


class CustomerProfileChanged(CloudEvent):
    topic: ClassVar[str] = "crm.customers.v1"
    type: Literal["customer.profile.changed"] = "customer.profile.changed"
    data: CustomerProfile


class CustomerErasedData(Model):
    erased_at: AwareTime
    reason: ShortText | None = None


class CustomerErased(CloudEvent):
    topic: ClassVar[str] = "crm.customers.v1"
    type: Literal["customer.erased"] = "customer.erased"
    data: CustomerErasedData
