"""What every service is made of: settings, clock, metrics, store, broker, and one HTTP app.

Each service's ``app.py`` builds a ``Runtime``, adds its repository, handlers, API and scheduled
tasks, and returns ``runtime.http_app(...)``. The HTTP app's lifespan owns the resources: indexes
and topics are created, the broker starts, scheduled tasks run, and all stop in reverse order.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import structlog
import uvicorn
from fastapi import APIRouter, Depends, FastAPI, Request, Response
from fastapi.exception_handlers import http_exception_handler, request_validation_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from faststream.kafka import KafkaBroker, KafkaRouter
from faststream.specification import AsyncAPI
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Histogram, generate_latest
from pydantic_core import from_json
from starlette.exceptions import HTTPException as StarletteHTTPException

from .auth import refusal
from . import watermark
from .clock import Clock, EventTimeClock, clock_for
from .heap import Heap
from .kafka import DeadLetterMiddleware, Publisher, build_broker, ensure_topics
from .logging import configure_logging
from .mongo import Index, Store
from .settings import ServiceSettings

log = structlog.get_logger("shared.service")
VERSION = "0.1.0"

Task = Callable[[], Awaitable[None]]


@dataclass
class Runtime:
    settings: ServiceSettings
    clock: Clock
    registry: CollectorRegistry
    store: Store
    broker: KafkaBroker
    dead_letters: DeadLetterMiddleware
    #: The one way the service publishes; passed in to whatever publishes.
    publisher: Publisher
    tasks: list[Task] = field(default_factory=list)
    stop_hooks: list[Task] = field(default_factory=list)

    @classmethod
    def create(cls, settings: ServiceSettings, *, clock: Clock | None = None, indexes: Iterable[Index] = (),
               description: str | None = None) -> Runtime:
        clock = clock or clock_for(settings.clock)
        registry = CollectorRegistry()
        publisher = Publisher(settings, registry)
        broker, dead_letters = build_broker(settings, clock=clock, registry=registry, publisher=publisher,
                                            description=description)
        runtime = cls(settings=settings, clock=clock, registry=registry, store=Store.connect(settings, indexes),
                      broker=broker, dead_letters=dead_letters, publisher=publisher)
        if isinstance(clock, EventTimeClock):
            event_clock = clock

            async def keep_watermark() -> None:
                await watermark.keep(runtime.store, event_clock)

            async def save_watermark() -> None:
                await watermark.save(runtime.store, event_clock)

            runtime.add_task(keep_watermark)
            runtime.on_stop(save_watermark)
        return runtime

    def include(self, router: KafkaRouter) -> None:
        self.broker.include_router(router)

    def add_task(self, task: Task) -> None:
        """A coroutine that runs for the life of the service (schedulers); restarted if it fails."""
        self.tasks.append(task)

    def on_stop(self, hook: Task) -> None:
        """A coroutine run at shutdown after the tasks stop and while the broker still runs (a last
        write of what is held in memory, and the commit of its offsets)."""
        self.stop_hooks.append(hook)

    def asyncapi(self, title: str, description: str) -> AsyncAPI:
        return AsyncAPI(self.broker, title=title, version=VERSION, description=description, schema_version="3.0.0")

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        """Start store, topics, broker and tasks; stop them in reverse."""
        await self.store.ensure_indexes()
        if isinstance(self.clock, EventTimeClock):
            resumed = await watermark.restore(self.store, self.clock)
            log.info("event_clock_resumed", at=resumed.isoformat() if resumed else None)
        if self.settings.kafka_create_topics:
            await ensure_topics(self.settings)
        await self.publisher.start()
        try:
            await self.broker.start()
        except BaseException:
            await self.publisher.stop()
            raise
        runners = [asyncio.create_task(_supervise(task), name=getattr(task, "__name__", "task")) for task in self.tasks]
        log.info("service_started", service=self.settings.service_name)
        try:
            yield
        finally:
            for runner in runners:
                runner.cancel()
            await asyncio.gather(*runners, return_exceptions=True)
            for hook in self.stop_hooks:
                try:
                    await hook()
                except Exception:
                    log.exception("stop_hook_failed", hook=getattr(hook, "__name__", "hook"))
            await self.broker.stop()
            await self.publisher.stop()
            await self.store.close()
            log.info("service_stopped", service=self.settings.service_name)

    async def health(self) -> dict[str, bool]:
        broker_ok, store_ok = await asyncio.gather(self.broker.ping(timeout=2.0), self.store.ping())
        return {"broker": bool(broker_ok), "store": store_ok}

    def assigned_partitions(self) -> dict[str, int]:
        """How many partitions of each consumed topic this instance holds now: 0 while its group is
        (re)joining, or when other instances hold them all."""
        counts: dict[str, int] = {}
        for subscriber in self.broker.subscribers:
            consumer = getattr(subscriber, "consumer", None)
            held = consumer.assignment() if consumer is not None else set()
            for topic in getattr(subscriber, "topic_names", ()):
                counts[topic] = counts.get(topic, 0) + sum(1 for tp in held if tp.topic == topic)
        return counts

    def http_app(self, *, title: str, description: str, routers: Sequence[APIRouter] = (),
                 state: dict[str, Any] | None = None) -> FastAPI:
        runtime = self

        @contextlib.asynccontextmanager
        async def lifespan(_: FastAPI) -> AsyncIterator[None]:
            async with runtime.running():
                yield

        app = FastAPI(title=title, description=description, version=VERSION, lifespan=lifespan,
                      dependencies=[Depends(_standard_json)])
        app.state.settings = self.settings
        app.state.runtime = self
        for key, value in (state or {}).items():
            setattr(app.state, key, value)
        app.include_router(_ops_router(self, title, description))
        for router in routers:
            app.include_router(router)
        _add_request_logging(app, self.registry)
        _check_key_before_body_errors(app)
        return app


async def _supervise(task: Task) -> None:
    delay = 1.0
    while True:
        try:
            await task()
            return
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("task_failed_restarting", task=getattr(task, "__name__", "task"), retry_in_s=delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 30.0)


def _ops_router(runtime: Runtime, title: str, description: str) -> APIRouter:
    router = APIRouter(tags=["operations"])

    @router.get("/health", summary="200 when the broker and the store answer, 503 otherwise; "
                                   "also the partitions of each consumed topic this instance holds")
    async def health() -> JSONResponse:
        checks = await runtime.health()
        ok = all(checks.values())
        return JSONResponse({"status": "ok" if ok else "unavailable", **checks,
                             "partitions": runtime.assigned_partitions()}, status_code=200 if ok else 503)

    @router.get("/metrics", summary="Prometheus metrics", response_class=Response)
    async def metrics() -> Response:
        return Response(generate_latest(runtime.registry), media_type=CONTENT_TYPE_LATEST)

    @router.get("/asyncapi.json", summary="AsyncAPI 3 document of this service's topics")
    async def asyncapi() -> JSONResponse:
        return JSONResponse(runtime.asyncapi(title, description).to_specification().to_jsonable())

    return router


async def _standard_json(request: Request) -> None:
    """Refuse a JSON body with NaN, Infinity (1e400 included) or a lone surrogate, which FastAPI's
    parser takes: the store, the event serialiser and the JSON of a validation error fail on them
    later, with a 500. Runs before the route's key check, so answers the caller's 401 or 403 first."""
    content_type = request.headers.get("content-type", "")
    if content_type and "json" not in content_type:
        return
    body = await request.body()
    if not body:
        return
    try:
        problem = None if _finite(from_json(body, allow_inf_nan=False)) else "a number is out of range"
    except ValueError as exc:
        problem = str(exc)
    if problem:
        raise refusal(request) or RequestValidationError(
            [{"type": "json_invalid", "loc": ("body",), "msg": f"JSON decode error: {problem}", "input": {}}])


def _finite(value: Any) -> bool:
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, dict):
        return all(_finite(v) for v in value.values())
    if isinstance(value, list):
        return all(_finite(v) for v in value)
    return True


def _check_key_before_body_errors(app: FastAPI) -> None:
    """A malformed or oversized body is refused before the key is checked (FastAPI reads the body
    first): answer such a request without a valid key 401 or 403, as the route would, not 4xx about
    a body its caller has no right to send."""

    async def key_first(request: Request, exc: Exception) -> Response:
        refused = refusal(request)
        if refused is not None and not (isinstance(exc, StarletteHTTPException) and exc.status_code in (401, 403)):
            return await http_exception_handler(request, refused)
        if isinstance(exc, RequestValidationError):
            return await request_validation_exception_handler(request, exc)
        return await http_exception_handler(request, exc)  # type: ignore[arg-type]

    app.add_exception_handler(RequestValidationError, key_first)
    app.add_exception_handler(StarletteHTTPException, key_first)


def _add_request_logging(app: FastAPI, registry: CollectorRegistry) -> None:
    latency = Histogram("carecrm_http_request_seconds", "HTTP request latency", ["method", "route", "status"],
                        registry=registry)

    @app.middleware("http")
    async def bind_request(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        traceparent = request.headers.get("traceparent", "")
        parts = traceparent.split("-")
        trace_id = parts[1] if len(parts) == 4 else uuid.uuid4().hex
        bound = structlog.contextvars.bind_contextvars(trace_id=trace_id)
        started = time.perf_counter()
        try:
            response = await call_next(request)
        finally:
            structlog.contextvars.reset_contextvars(**bound)
        route = request.scope.get("route")
        latency.labels(request.method, getattr(route, "path", "unmatched"), str(response.status_code)).observe(
            time.perf_counter() - started)
        return response


def with_heap_settled(app: FastAPI) -> FastAPI:
    """For a service that has its process to itself: the collector keeps off its working set
    (``shared.heap``)."""
    runtime: Runtime = app.state.runtime
    runtime.add_task(Heap(runtime.registry).run)
    return app


def serve(factory: Callable[[Any], FastAPI], settings: ServiceSettings) -> None:
    """Entry point of ``python -m services.<name>``."""
    configure_logging(settings.log_level, settings.log_format)
    app = with_heap_settled(factory(settings))
    uvicorn.run(app, host=settings.http_host, port=settings.http_port, log_config=None, access_log=False,
                lifespan="on")


def command_line(prog: str, factory: Callable[[Any], FastAPI], settings: ServiceSettings,
                 run: Callable[[Any], Awaitable[dict[str, int]]], argv: list[str] | None = None) -> int:
    """``python -m services.<name> [serve | rotate-keys]`` of a service that seals personal data:
    ``run`` is its key rotation (``shared.rotation``)."""
    prefix = str(settings.model_config.get("env_prefix") or "")
    parser = argparse.ArgumentParser(prog=prog)
    sub = parser.add_subparsers(dest="command")
    sub.add_parser("serve", help="run the service (the default)")
    sub.add_parser("rotate-keys", help=f"re-encrypt every stored value under {prefix}PII_ACTIVE_KEY_ID and file "
                                       f"every blind index under {prefix}BLIND_INDEX_KEY")
    args = parser.parse_args(argv)
    if args.command == "rotate-keys":
        configure_logging(settings.log_level, settings.log_format)
        print(json.dumps({"rewritten": asyncio.run(run(settings))}))
        return 0
    serve(factory, settings)
    return 0
