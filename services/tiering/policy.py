"""The classification policy: a versioned, validated document. The shipped default lives next to this file."""

from __future__ import annotations

import json
from decimal import ROUND_HALF_UP, Decimal
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal

from pydantic import ConfigDict, Field, field_validator, model_validator

from shared.contract.currencies import ISO_4217
from shared.contract.events import DIMENSIONS
from shared.contract.types import TextModel

DEFAULT_POLICY_FILE = Path(__file__).with_name("policy.default.json")
RFM_SEGMENTS = (
    "Champions", "Loyal", "Potential Loyalist", "New", "Promising", "Need Attention", "About to Sleep",
    "At Risk", "Can't Lose Them", "Hibernating", "Lost",
)
Money = Annotated[Decimal, Field(ge=0, max_digits=18, decimal_places=4)]
Share = Annotated[Decimal, Field(gt=0, lt=1)]
Days = Annotated[int, Field(ge=1, le=3650)]
Score = Annotated[int, Field(ge=1, le=5)]
CENT = Decimal("0.01")


class _Part(TextModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class ValueTierRule(_Part):
    high: Money
    medium: Money

    @model_validator(mode="after")
    def _ordered(self) -> ValueTierRule:
        if self.high <= self.medium:
            raise ValueError("value_tier.high must be above value_tier.medium")
        return self


class AbcRule(_Part):
    mode: Literal["pareto", "absolute"] = "pareto"
    a_share: Share = Decimal("0.70")
    b_share: Share = Decimal("0.20")
    a_min_spend: Money = Decimal("50000")
    b_min_spend: Money = Decimal("10000")

    @model_validator(mode="after")
    def _consistent(self) -> AbcRule:
        if self.a_share + self.b_share >= 1:
            raise ValueError("abc.a_share + abc.b_share must stay below 1 so that C is not empty")
        if self.a_min_spend <= self.b_min_spend:
            raise ValueError("abc.a_min_spend must be above abc.b_min_spend")
        return self


class VipRule(_Part):
    top_share: Share = Decimal("0.01")
    min_spend: Money = Decimal("0")


class PotentialRule(_Part):
    high_growth: Decimal = Decimal("0.50")
    medium_growth: Decimal = Decimal("0")
    min_recent_spend: Money = Decimal("0")
    #: Level for spend with nothing in the 90 days before: a first or returning purchase is no trend.
    new_spend: Literal["low", "medium", "high"] = "medium"
    lift_abc: bool = True

    @model_validator(mode="after")
    def _ordered(self) -> PotentialRule:
        if self.high_growth <= self.medium_growth:
            raise ValueError("potential.high_growth must be above potential.medium_growth")
        return self


class LoyaltyRule(_Part):
    gap_multiple: Annotated[Decimal, Field(gt=0, le=100)] = Decimal("2.5")
    min_gap_days: Days = 60
    frequency_drop_share: Share = Decimal("0.5")
    max_open_complaints: Annotated[int, Field(ge=1)] = 2
    low_satisfaction: Annotated[int, Field(ge=0, le=4)] = 2
    loyal_min_orders: Annotated[int, Field(ge=1)] = 4
    loyal_min_spend: Money = Decimal("0")
    #: Orders a referral within the window counts as towards ``loyal_min_orders``. 0 when a stored
    #: policy does not say, so that a policy's meaning never changes under its version.
    referral_orders: Annotated[int, Field(ge=0, le=10)] = 0


class LifecycleRule(_Part):
    new_days: Days = 90
    at_risk_days: Days = 180
    churned_days: Days = 365
    reactivated_days: Days = 90

    @model_validator(mode="after")
    def _ordered(self) -> LifecycleRule:
        if not self.at_risk_days < self.churned_days:
            raise ValueError("lifecycle.at_risk_days must be below lifecycle.churned_days")
        return self


class PopulationRule(_Part):
    #: The cut-offs are recomputed as soon as this share of customers joined the active population,
    #: or this share of its spend moved, since the last refresh (besides the periodic refresh).
    refresh_share: Share = Decimal("0.10")


class HysteresisRule(_Part):
    grace_days: Annotated[int, Field(ge=0, le=365)] = 30
    dimensions: tuple[str, ...] = ("value_tier", "abc_class", "vip", "potential")

    @field_validator("dimensions")
    @classmethod
    def _known(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        unknown = set(value) - set(DIMENSIONS)
        if unknown:
            raise ValueError(f"unknown dimensions {sorted(unknown)}")
        return value


class RfmSegmentRule(_Part):
    name: str
    r: tuple[Score, Score]
    f: tuple[Score, Score]

    @field_validator("name")
    @classmethod
    def _named(cls, value: str) -> str:
        if value not in RFM_SEGMENTS:
            raise ValueError(f"unknown RFM segment {value!r}; use one of {', '.join(RFM_SEGMENTS)}")
        return value

    def matches(self, r: int, f: int) -> bool:
        return self.r[0] <= r <= self.r[1] and self.f[0] <= f <= self.f[1]


class Policy(_Part):
    version: Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[\w.:\-]+$")]
    description: Annotated[str, Field(max_length=500)] = ""
    base_currency: str
    #: Units of the base currency per unit of each currency; fixed so that a replay converts alike.
    rates: dict[str, Annotated[Decimal, Field(gt=0)]]
    window_days: Days = 365
    value_tier: ValueTierRule
    abc: AbcRule = AbcRule()
    vip: VipRule = VipRule()
    potential: PotentialRule = PotentialRule()
    loyalty: LoyaltyRule = LoyaltyRule()
    lifecycle: LifecycleRule = LifecycleRule()
    hysteresis: HysteresisRule = HysteresisRule()
    population: PopulationRule = PopulationRule()
    #: First matching row wins; together the rows must cover every (R, F) pair.
    rfm_segments: tuple[RfmSegmentRule, ...]

    @model_validator(mode="after")
    def _consistent(self) -> Policy:
        unknown = [code for code in self.rates if code not in ISO_4217]
        if unknown:
            raise ValueError(f"rates: unknown ISO 4217 currencies {unknown}")
        if self.rates.get(self.base_currency) != Decimal(1):
            raise ValueError("rates: the base currency must be in the table with rate 1")
        uncovered = [(r, f) for r in range(1, 6) for f in range(1, 6)
                     if not any(row.matches(r, f) for row in self.rfm_segments)]
        if uncovered:
            raise ValueError(f"rfm_segments leave these (R, F) scores without a segment: {uncovered}")
        return self

    def to_minor(self, amount: Decimal, currency: str) -> int | None:
        """``amount`` in base-currency cents, or None when the currency is not in the table."""
        rate = self.rates.get(currency)
        if rate is None:
            return None
        return int((amount * rate).quantize(CENT, rounding=ROUND_HALF_UP) * 100)

    @staticmethod
    def minor(amount: Decimal) -> int:
        return int(amount.quantize(CENT, rounding=ROUND_HALF_UP) * 100)

    def segment(self, r: int, f: int) -> str:
        for row in self.rfm_segments:
            if row.matches(r, f):
                return row.name
        raise AssertionError("validated policies cover every score pair")


@lru_cache(maxsize=1)
def default_policy() -> Policy:
    return Policy.model_validate(json.loads(DEFAULT_POLICY_FILE.read_text()))
