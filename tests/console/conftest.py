"""One system per module for the console's browser tests: the four services and the console as
separate processes on free ports, customers and complaints published through the contract, and
headless Chromium. The services reuse the end-to-end tests' ``System`` (its own consumer groups and
databases per run, so runs never see each other's data)."""

from __future__ import annotations

import asyncio
import json
import secrets
import uuid
import warnings
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from tests.doubles import smtp_server
from tests.e2e.system import SCOPES, Person, System, valid_mobile
from tests.helpers import api_key, eventually
from tests.processes import ServiceProcess

from .stack import ARTIFACTS, CHROMIUM, CHROMIUM_ARGS, PlaywrightTimeout, console_process, need_browser

READ_ONLY = ("customers:read", "tiers:read", "complaints:read", "notifications:read")
#: Clock hours, so that the business calendar plays no part; long enough that nothing breaches here.
SLA_POLICIES: list[dict[str, Any]] = [{"name": "standard", "targets": {"first_response": "1h", "resolution": "8h"}}]
HOSTILE = "<img src=x onerror=window.__pwned=1>"
START_TIMEOUT = 180.0
WAIT = 90.0


@dataclass
class Stack:
    system: System
    console: ServiceProcess
    key: str
    read_only_key: str
    secret: str
    plain: Person
    hostile: Person
    complaints: dict[str, str] = field(default_factory=dict)
    extra: list[ServiceProcess] = field(default_factory=list)

    def console_env(self, **urls: str) -> dict[str, str]:
        env = {f"CONSOLE_{name.upper()}_URL": process.url for name, process in self.system.processes.items()}
        env.update({f"CONSOLE_{name.upper()}_URL": url for name, url in urls.items()})
        env.update({"CONSOLE_SESSION_SECRET": self.secret, "CONSOLE_QUEUE_REFRESH_S": "5",
                    "CONSOLE_REPORT_CACHE_S": "0"})
        return env


async def _publish(system: System, token: str) -> tuple[Person, Person, dict[str, str]]:
    plain = system.person("console")
    hostile = Person(label="hostile", customer_id=f"C-UI-{token}", name=f"{HOSTILE}Ui {token}",
                     phone=valid_mobile(), email=f"ui-{token}@example.org", address=f"1 Hostile Road {token}",
                     locale="en-GB", country="GB")
    system.people.append(hostile)
    await asyncio.gather(system.register_upstream(plain), system.register_upstream(hostile))
    await asyncio.gather(system.buy(plain, "120.00"), system.buy(hostile, "80.00"))
    complaints = {"ack": f"K-{token}-ack", "hostile": f"K-{token}-xss", "refuse": f"K-{token}-refuse"}
    await system.complain(plain, complaints["ack"], subject=f"Parcel late {token}", description="Where is it?")
    await system.complain(hostile, complaints["hostile"], subject=f"<script>window.__pwned=1</script>Broken {token}",
                          description=f"{HOSTILE} it broke, <b>twice</b>")
    await system.complain(plain, complaints["refuse"], subject=f"Wrong size {token}", description="Too small")
    return plain, hostile, complaints


async def _visible(system: System, plain: Person, hostile: Person, complaints: dict[str, str]) -> None:
    customer, tiering, complaint = system.http["customer"], system.http["tiering"], system.http["complaints"]

    async def ready() -> bool:
        checks = [await customer.get(f"/customers/{p.customer_id}") for p in (plain, hostile)]
        checks += [await tiering.get(f"/customers/{p.customer_id}/classification") for p in (plain, hostile)]
        checks += [await complaint.get(f"/complaints/{c}") for c in complaints.values()]
        timeline = await customer.get(f"/customers/{plain.customer_id}/timeline", params={"kind": "purchase"})
        return all(r.status_code == 200 for r in checks) and bool(timeline.json().get("items"))
    await eventually(ready, timeout=WAIT, interval=0.5)


# One stack and one browser for every module of the console's tests: each start costs a minute.
@pytest.fixture(scope="package")
async def stack(infra: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Stack]:
    need_browser()
    key, entry = api_key("console-tests", *SCOPES)
    read_only_key, read_only = api_key("console-read-only", *READ_ONLY)
    setting = json.dumps([entry.model_dump(mode="json"), read_only.model_dump(mode="json")])
    token = uuid.uuid4().hex[:8]
    with smtp_server() as (sink, smtp_port):
        system = System(
            token=token, bootstrap=infra["KAFKA_BOOTSTRAP_SERVERS"], mongodb_url=infra["MONGODB_URL"],
            log_dir=tmp_path_factory.mktemp("console-logs"), work_dir=tmp_path_factory.mktemp("console-work"),
            smtp=sink, smtp_port=smtp_port, api_key=key, api_keys_setting=setting, sla_policies=SLA_POLICIES)
        console = console_process({}, system.log_dir)
        stack = Stack(system, console, key, read_only_key, secrets.token_urlsafe(48), None, None)  # type: ignore[arg-type]
        try:
            await system.start(START_TIMEOUT)
            console.env = stack.console_env()
            await asyncio.to_thread(console.start)
            await system.consumers_joined()
            stack.plain, stack.hostile, stack.complaints = await _publish(system, token)
            await _visible(system, stack.plain, stack.hostile, stack.complaints)
            yield stack
        finally:
            for extra in [*stack.extra, console]:
                await asyncio.to_thread(extra.stop)
            await system.stop()


@pytest.fixture(scope="package")
async def browser(stack: Stack) -> AsyncIterator[Any]:
    from playwright.async_api import async_playwright

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    async with async_playwright() as playwright:
        chromium = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            await chromium.close()


@dataclass
class Tab:
    """One browser tab with a fresh cookie jar, and what went wrong in it."""

    page: Any
    base: str
    errors: list[str] = field(default_factory=list)
    dialogs: list[str] = field(default_factory=list)

    async def open(self, path: str, *, until: str = "networkidle") -> Any:
        """Go to ``path``; the sign-in page keeps its status stream open, so wait for "load" there."""
        response = await self.page.goto(self.base + path)
        await self.page.wait_for_load_state(until)  # type: ignore[arg-type]
        return response

    async def sign_in(self, key: str, *, here: bool = False) -> None:
        """Sign in as a user does: the key in its field, then Enter (``here``: on the page open now)."""
        if not here:
            await self.open("/login", until="load")
        await self.page.fill("input[name=api_key]", key)
        await self.page.keyboard.press("Enter")
        await self.page.wait_for_load_state("networkidle")

    async def submit(self, target: Any) -> None:
        """Click what sends a form or follows a link, and wait for the page it leads to."""
        locator = self.page.locator(target) if isinstance(target, str) else target
        async with self.page.expect_navigation(wait_until="networkidle"):
            await locator.click()

    async def shot(self, name: str) -> None:
        """A screenshot as a test artefact. It proves nothing, so a busy machine's slow capture
        does not fail the test: it is tried twice, then given up with a note."""
        for attempt in (1, 2):
            try:
                await self.page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True, timeout=20_000)
                return
            except PlaywrightTimeout:
                if attempt == 2:
                    warnings.warn(f"no screenshot {name}: the capture timed out", stacklevel=2)

    async def pwned(self) -> bool:
        return bool(await self.page.evaluate("window.__pwned === 1"))


async def new_tab(browser: Any, base: str) -> Tab:
    context = await browser.new_context(locale="en-US", viewport={"width": 1366, "height": 900})
    page = await context.new_page()
    tab = Tab(page, base)
    page.on("pageerror", lambda e: tab.errors.append(str(e)))
    page.on("console", lambda m: tab.errors.append(m.text) if m.type == "error" else None)

    async def dismiss(dialog: Any) -> None:
        tab.dialogs.append(dialog.message)
        await dialog.dismiss()
    page.on("dialog", dismiss)
    return tab


@pytest.fixture
async def tab(browser: Any, stack: Stack) -> AsyncIterator[Tab]:
    opened = await new_tab(browser, stack.console.url)
    try:
        yield opened
    finally:
        await opened.page.context.close()
