"""Settings of the tiering service: the shared ones plus its own, prefixed ``TIERING_``."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from shared.settings import ServiceSettings


class TieringSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="TIERING_")

    service_name: str = "tiering"
    http_port: int = 8002
    #: Customers kept in memory between events (least recently used leave first).
    cache_customers: Annotated[int, Field(ge=100)] = 50_000
    #: Larger batches than the other services: a batch is evaluated in memory and written later.
    batch_max_records: Annotated[int, Field(ge=1, le=20_000)] = 2_000
    #: How long evaluated state may wait in memory before it is written (and the offsets of the
    #: records behind it committed): longer writes a customer seen often fewer times, and leaves
    #: more to read again after a crash.
    flush_interval_s: Annotated[float, Field(gt=0, le=60)] = 1.0
    #: Customers waiting to be written at which the write starts before its time; at twice as many,
    #: reading pauses until the store catches up.
    flush_customers: Annotated[int, Field(ge=100)] = 10_000
    #: How often the scheduler looks for customers whose next evaluation time has come.
    scheduler_interval_s: Annotated[float, Field(gt=0)] = 30.0
    scheduler_batch: Annotated[int, Field(ge=1)] = 500
    #: How often the population cut-offs are recomputed; 0 turns automatic refreshes off (the one at
    #: start and those after the population moved included).
    refresh_interval_s: Annotated[float, Field(ge=0)] = 3600.0
    #: The least time between two refreshes when the population moves (the policy says how much).
    refresh_min_interval_s: Annotated[float, Field(ge=0)] = 30.0
