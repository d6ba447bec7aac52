"""Console pages with 100,000 customers stored: how long each page takes to answer, as a signed-in
agent's browser would ask for it (the page's HTML; the services it calls are asked in the request).

The data: the first invoices of the UCI history with the demo's complaints and interactions,
published through the contract to the four services on a Kafka and a FerretDB of the benchmark's
own, until every group has caught up; then the customer service's and tiering's customers copied
under other ids up to 100,000 (the customer service's documents rebuilt by its own repository, so
that each copy has its own e-mail, blind index and list bucket; tiering's as ``_per_service`` copies
them), the services restarted on that store and left to come to rest (every group caught up, up to
``SETTLE_S``), and the console started beside them. The services' routes behind the pages are timed
directly first; then each page is asked for in turn, round after round, one request at a time.

    python -m bench.console            # 100,000 customers stored
    python -m bench.console --quick    # 10,000, fewer rounds
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import secrets
import statistics
import sys
import time
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from pymongo import AsyncMongoClient

from bench._infra import private_servers
from console.dashboard import SLA_DAYS
from bench._per_service import COPY_MARK, copies, insert_chunked
from bench._report import Section, arguments, emit, verdict
from bench._stack import SERVICES, Lag, Stack, drained, fresh_logs, groups
from bench.system import SEED, run_through
from deploy.demo import DATA, synthetic_events
from deploy.local.infra import RUN_DIR
from deploy.replay import load
from services.customer.repository import CUSTOMERS, Repository
from services.customer.settings import CustomerSettings
from shared.contract import CloudEvent
from shared.pii import PiiCipher
from tests.processes import ServiceProcess

INVOICES = 3_000
QUICK_INVOICES = 600
CUSTOMERS_STORED = 100_000
QUICK_CUSTOMERS = 10_000
ROUNDS = 40
QUICK_ROUNDS = 12
UNCACHED_ROUNDS = 3
#: How long the restart may take to settle before the pages are asked for anyway; tiering's load first.
#: The pages are to be measured at rest: at 100,000 copies the restart's own work takes many minutes.
SETTLE_S = 2_700.0
QUICK_SETTLE_S = 600.0
ROUTE_ROUNDS = 20
LOAD_S = 900.0
UNCACHED = "dashboard, every figure asked for again (report cache off)"
LIMIT_MS = 300.0
LOGS = RUN_DIR / "bench-console"
CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


def events_of(invoices: int) -> tuple[list[CloudEvent], Counter[str]]:
    """The demo's events for the first invoices: registrations, purchases, cancellations, complaints
    and interactions, in time order."""
    rejected: Counter[str] = Counter()
    return synthetic_events(load(DATA, "online-retail", invoices), SEED, rejected), rejected


async def replay(stack: Stack, events: list[CloudEvent], timeout: float = 900.0) -> float:
    """The events through the four services until every group has caught up; then the services stop."""
    _, drain, _ = await run_through(stack, events, timeout)
    for name in SERVICES:
        stack.stop(name)
    if drain.seconds is None:
        raise RuntimeError(f"the services did not catch up with the replay in {timeout:.0f} s: {drain.left}")
    return drain.seconds


@dataclass(frozen=True)
class Settled:
    seconds: float  # from the restart until the pages were asked for
    loaded: float  # from the restart until tiering answered (its population loaded)
    left: int  # records the groups still had to read then (0: at rest)
    series: list[tuple[float, int]]  # (s after the restart, records unread), a sample a minute
    last: str  # the last group to catch up


async def settled(stack: Stack, timeout: float) -> Settled:
    """After the restart: tiering loads its population and refreshes the cut-offs over the copies,
    which moves some of them and publishes their snapshots and changes; the other services read
    those. Waits until tiering answers and every group has caught up, or ``timeout`` seconds."""
    watched = {g: t for name in SERVICES for g, t in groups(name).items()}
    started = time.monotonic()
    async with httpx.AsyncClient(base_url=stack.processes["tiering"].url, headers={"X-API-Key": stack.key},
                                 timeout=LOAD_S) as tiering:
        await tiering.get("/policy")  # answers once the population is loaded
    loaded = time.monotonic() - started
    print(f"tiering loaded its population {loaded:.0f} s after the restart", flush=True)
    async with Lag(stack.bootstrap, watched) as lag:
        drain = await drained(lag, started, timeout=timeout, settle=10.0, every=2.0)
        left = 0 if drain.seconds is not None else sum((await lag.sample()).values())
    series, mark = [], -60.0
    for at, unread in drain.series:
        if at - mark >= 60.0:
            series.append((at, unread))
            mark = at
    last = max(drain.finished.items(), key=lambda item: item[1])[0] if drain.finished else "-"
    return Settled(time.monotonic() - started, loaded, left, series, last)


def routes(found: Samples) -> dict[str, tuple[str, str, dict[str, Any]]]:
    """The services' routes behind the 360-degree view and the dashboard: name -> (service, path, params)."""
    customer, complaint = found.customers[0], found.complaints[0]
    now = datetime.now(UTC)
    return {
        "customer: profile": ("customer", f"/customers/{customer}", {}),
        "customer: timeline": ("customer", f"/customers/{customer}/timeline", {"limit": 50}),
        "customer: consents": ("customer", f"/customers/{customer}/consents", {}),
        "customer: list by tier": ("customer", "/customers", {"tier": found.tier, "limit": 50}),
        "customer: list, first page": ("customer", "/customers", {"limit": 50}),
        "tiering: classification": ("tiering", f"/customers/{customer}/classification", {}),
        "tiering: tier history": ("tiering", f"/customers/{customer}/tier-history", {}),
        "tiering: policy": ("tiering", "/policy", {}),
        "tiering: segments report": ("tiering", "/reports/segments", {}),
        "notifications: a customer's messages": ("notifications", f"/customers/{customer}/notifications",
                                                 {"limit": 50}),
        "notifications: report": ("notifications", "/reports/notifications", {}),
        "complaints: a customer's complaints": ("complaints", "/complaints", {"customer": customer, "limit": 50}),
        "complaints: account manager": ("complaints", f"/accounts/{customer}", {}),
        "complaints: staff directory": ("complaints", "/staff", {}),
        "complaints: a complaint": ("complaints", f"/complaints/{complaint}", {}),
        "complaints: queue": ("complaints", "/complaints", {"limit": 200}),
        # As the dashboard asks: its SLA window, ending now.
        "complaints: report": ("complaints", "/reports/complaints",
                               {"from": (now - timedelta(days=SLA_DAYS)).isoformat(), "to": now.isoformat()}),
        "complaints: breached": ("complaints", "/complaints", {"breached": "true", "limit": 500}),
    }


async def measure_routes(stack: Stack, found: Samples, rounds: int) -> dict[str, list[float]]:
    """Each route asked directly of its service, one request at a time: route -> milliseconds."""
    chosen = routes(found)
    timings: dict[str, list[float]] = {name: [] for name in chosen}
    async with httpx.AsyncClient(headers={"X-API-Key": stack.key}, timeout=300.0) as client:
        for n in range(rounds + 1):  # the first round unmeasured
            for name, (service, path, params) in chosen.items():
                started = time.perf_counter()
                response = await client.get(stack.processes[service].url + path, params=params)
                if n:
                    timings[name].append((time.perf_counter() - started) * 1000)
                if response.status_code not in (200, 404):
                    raise RuntimeError(f"{name}: {path} answered {response.status_code}")
    return timings


def _rebuilt(repo: Repository, original: dict[str, Any], clone: dict[str, Any]) -> dict[str, Any]:
    """``clone`` (a copy of ``original`` under another id) as the customer service would store it:
    sealed values are bound to their document, so they are sealed anew, with an e-mail of its own."""
    profile = repo.from_document(original).profile
    if profile is None:
        return clone
    email = f"copy-{clone['_id'].replace(COPY_MARK, '-')}@example.com" if profile.email else None
    fields = repo.profile_document(clone["_id"], profile.model_copy(update={"email": email}), clone.get("last_cause", ""))
    return {**clone, **fields}


async def seed(mongodb_url: str, customers: int) -> dict[str, tuple[int, float]]:
    """Copies in the customer service's and tiering's customer collections until each holds
    ``customers`` customers: service -> (customers stored, seconds spent)."""
    os.environ.setdefault("ENVIRONMENT", "development")  # the keys the services run with
    repo = Repository(None, PiiCipher.from_settings(CustomerSettings()))  # type: ignore[arg-type]  # no store: it only builds
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(mongodb_url, tz_aware=True)
    found: dict[str, tuple[int, float]] = {}
    try:
        for service in ("customer", "tiering"):
            started = time.monotonic()
            target = client[f"carecrm_{service}"][CUSTOMERS]
            source = await target.find({}).to_list(None)
            originals = {d["_id"]: d for d in source}
            owners = {str(d.get("customer_id") or str(d["_id"]).split("#")[0]) for d in source}
            made = copies(source, max(customers - len(owners), 0))
            if service == "customer":
                made = (_rebuilt(repo, originals[c["_id"].split(COPY_MARK)[0]], c) for c in made)
            await insert_chunked(target, made)
            found[service] = (max(customers, len(owners)), time.monotonic() - started)
            print(f"{service}: {found[service][0]:,} customers stored ({found[service][1]:.0f} s)", flush=True)
    finally:
        await client.close()
    return found


@dataclass(frozen=True)
class Samples:
    """What the pages are asked about: customers and complaints the replay produced."""

    customers: list[str]
    emails: list[str]
    complaints: list[str]
    tier: str


async def samples(mongodb_url: str, events: list[CloudEvent]) -> Samples:
    customers = [e.subject for e in events if e.type == "customer.registered"]
    emails = [str(e.data.email) for e in events if e.type == "customer.registered" and e.data.email]
    complaints = [e.data.complaint_id for e in events if e.type == "complaint.submitted"]
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(mongodb_url)
    try:
        tiers = await client["carecrm_customer"][CUSTOMERS].distinct("tier")
    finally:
        await client.close()
    return Samples(customers, emails, complaints, next((t for t in ("high", "medium", "low") if t in tiers), "low"))


async def sign_in(client: httpx.AsyncClient, key: str) -> None:
    page = await client.get("/login")
    token = CSRF.search(page.text)
    form = {"api_key": key, **({"csrf_token": token.group(1)} if token else {})}
    response = await client.post("/login", data=form, follow_redirects=False)
    if response.status_code != 303:
        raise RuntimeError(f"sign-in answered {response.status_code}: {response.text[:300]}")


def pages(found: Samples) -> dict[str, Any]:
    """Page name -> a function of the round giving the path asked for."""
    def pick(items: list[str], n: int) -> str:
        return items[(n * 7919) % len(items)]
    return {
        "sign-in page": lambda n: "/login",
        "customer search by id": lambda n: f"/customers?q={pick(found.customers, n)}",
        "customer search by e-mail": lambda n: f"/customers?q={pick(found.emails, n)}",
        f"customers listed by tier ({found.tier})": lambda n: f"/customers?tier={found.tier}",
        "customers browsed, first page": lambda n: "/customers?browse=1",
        "360-degree view": lambda n: f"/customers/{pick(found.customers, n)}",
        "360-degree view of a copy": lambda n: f"/customers/{pick(found.customers, n)}{COPY_MARK}{1 + n % 20}",
        "complaint queue": lambda n: "/complaints",
        "complaint queue rows (its refresh)": lambda n: "/complaints/rows",
        "complaint": lambda n: f"/complaints/{pick(found.complaints, n)}",
        "dashboard (default report cache)": lambda n: "/dashboard",
        "policy": lambda n: "/policy",
    }


async def measure(url: str, key: str, found: Samples, rounds: int, only: str | None = None) -> dict[str, list[float]]:
    """Each page (or ``only`` that one) asked for once per round, in turn; page -> milliseconds of
    each answer."""
    timings: dict[str, list[float]] = {name: [] for name in pages(found) if only in (None, name)}
    # Redirects followed: a search by id answers with the customer's page, as the browser shows it.
    async with httpx.AsyncClient(base_url=url, timeout=300.0, follow_redirects=True) as client:
        await sign_in(client, key)
        chosen = {name: path for name, path in pages(found).items() if name in timings}
        for path in chosen.values():  # a first round unmeasured: imports, connections, caches
            await client.get(path(0))
        for n in range(1, rounds + 1):
            for name, path in chosen.items():
                started = time.perf_counter()
                response = await client.get(path(n))
                timings[name].append((time.perf_counter() - started) * 1000)
                if response.status_code != 200:
                    raise RuntimeError(f"{name}: {path(n)} answered {response.status_code}")
    return timings


def p95(values: list[float]) -> float:
    return statistics.quantiles(values, n=20, method="inclusive")[-1] if len(values) > 1 else values[0]


def main(argv: list[str] | None = None) -> None:
    parser = arguments(argparse.ArgumentParser(prog="python -m bench.console", description=__doc__,
                                               formatter_class=argparse.RawDescriptionHelpFormatter))
    args = parser.parse_args(argv)
    invoices = QUICK_INVOICES if args.quick else INVOICES
    customers = QUICK_CUSTOMERS if args.quick else CUSTOMERS_STORED
    rounds = QUICK_ROUNDS if args.quick else ROUNDS
    events, _ = events_of(invoices)
    section = Section("console", "Console pages", (
        f"The console and the four services on a Kafka and a FerretDB of the benchmark's own, after the "
        f"first {invoices:,} UCI invoices with the demo's complaints and interactions ({len(events):,} events) "
        f"and with {customers:,} customers stored; each page asked for {rounds} times, one request at a time, "
        "by a signed-in client with every scope; the time until the whole page has arrived."))
    with private_servers("bench-console-") as (bootstrap, mongodb_url, home):
        stack = Stack(bootstrap, mongodb_url, home, fresh_logs(LOGS))
        console: ServiceProcess | None = None
        try:
            caught_up = asyncio.run(replay(stack, events))
            print(f"replayed {len(events):,} events; caught up {caught_up:.0f} s after the last publish", flush=True)
            stored = asyncio.run(seed(mongodb_url, customers))
            found = asyncio.run(samples(mongodb_url, events))
            for name in SERVICES:
                stack.start(name)
            rest = asyncio.run(settled(stack, QUICK_SETTLE_S if args.quick else SETTLE_S))
            print(f"services restarted on the copies; {rest.seconds:.0f} s later {rest.left:,} records left to read",
                  flush=True)
            by_route = asyncio.run(measure_routes(stack, found, ROUTE_ROUNDS))
            urls = {f"CONSOLE_{name.upper()}_URL": stack.processes[name].url for name in SERVICES}
            console = ServiceProcess("console", {**urls, "CONSOLE_SESSION_SECRET": secrets.token_urlsafe(48)},
                                     LOGS, module="console", prefix="CONSOLE_")
            console.start(timeout=60.0)
            timings = asyncio.run(measure(console.url, stack.key, found, rounds))
            console.stop()
            # The same dashboard with nothing cached: what the services' report routes cost each time.
            console = ServiceProcess("console-uncached", {**urls, "CONSOLE_SESSION_SECRET": secrets.token_urlsafe(48),
                                                          "CONSOLE_REPORT_CACHE_S": "0"},
                                     LOGS, module="console", prefix="CONSOLE_")
            console.start(timeout=60.0)
            uncached = asyncio.run(measure(console.url, stack.key, found, UNCACHED_ROUNDS,
                                           only="dashboard (default report cache)"))
            timings[UNCACHED] = uncached.popitem()[1]
        finally:
            if console is not None:
                console.stop()
            stack.close()
    for name, values in timings.items():
        worst = p95(values)
        section.add(name, f"p95 {worst:,.0f} ms", f"median {statistics.median(values):,.0f} ms, max {max(values):,.0f} ms",
                    target="not a page's default (the report routes' cost)" if name == UNCACHED
                    else verdict(worst <= LIMIT_MS, f"p95 ≤ {LIMIT_MS:.0f} ms"))
    for name, values in by_route.items():
        section.add(f"route {name}", f"p95 {p95(values):,.0f} ms",
                    f"median {statistics.median(values):,.0f} ms, max {max(values):,.0f} ms", target="—")
    section.notes.append(
        f"After the services restarted on the copies, tiering loaded them ({rest.loaded:.0f} s) and refreshed its "
        f"cut-offs, which moved some copies and published their snapshots and changes for the others to read; the "
        f"pages were asked for {rest.seconds:.0f} s after the restart, "
        + ("with every group caught up (a system at rest); the last group to catch up: "
           f"`{rest.last}`." if not rest.left else
           f"with {rest.left:,} of those records still unread by the services: the pages were measured while they "
           "worked through that backlog.")
        + " Records unread, all groups (s after the restart: records): "
        + ", ".join(f"{at:.0f}: {unread:,}" for at, unread in rest.series) + ".")
    section.notes.append(f"The rows named route: each service route behind the 360-degree view, the customer list and "
                         f"the dashboard, asked directly of its service with the same key, {ROUTE_ROUNDS} times each, "
                         "right before the pages.")
    section.notes.append("Stored: " + ", ".join(f"{s} {n:,} customers (copies written in {t:.0f} s)"
                                                for s, (n, t) in stored.items()) + ".")
    section.notes.append("The dashboard with the console's defaults: figures kept 30 s per key, and an older value "
                         "shown at once (with its time) while the next is computed in the background; only a key's "
                         "first request waits for the report routes. Then with the cache off "
                         "(`CONSOLE_REPORT_CACHE_S=0`, a console of its own, "
                         f"{UNCACHED_ROUNDS} requests): what the services' report routes cost every time.")
    section.notes.append(f"Service and console logs of the run: `{Path(LOGS).relative_to(RUN_DIR.parent)}/`.")
    emit(section, args.json)


if __name__ == "__main__":
    sys.exit(main())
