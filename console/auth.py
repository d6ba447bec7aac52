"""Signing in and out, the language choice, and the console's own health and icon."""

from __future__ import annotations

import asyncio
import time

import structlog
from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, JSONResponse, Response

from . import scopes as scope_probe
from .core import STATIC_DIR, client_address, context, local_path
from .i18n import LANGUAGES
from .session import LANG_COOKIE, SESSION_COOKIE, Session
from .settings import SERVICES

router = APIRouter()
log = structlog.get_logger("console.auth")
MAX_KEY_LENGTH = 256
STATUS_EVERY_S = 2
STATUS_WAIT_S = 25


@router.get("/", include_in_schema=False)
async def home(request: Request) -> Response:
    ctx = await context(request)
    return ctx.redirect("/customers")


@router.get("/health")
async def health(request: Request) -> Response:
    """200 while the console runs; the services' state is given, not required (pages say it)."""
    services = await request.app.state.console.upstream.health()
    return JSONResponse({"status": "ok", "services": services})


@router.get("/status", include_in_schema=False)
async def status(request: Request, seen: str = "") -> Response:
    """The services' health for the sign-in page's live status line, as a long poll: the answer
    comes at once when it differs from what the page has ``seen``, else after ``STATUS_WAIT_S``.

    Public like ``/health``. The health itself is asked at most once per interval for all pages."""
    state = request.app.state.console
    deadline = time.monotonic() + STATUS_WAIT_S
    while True:
        health = await state.cache.get(("health",), state.upstream.health, ttl_s=STATUS_EVERY_S)
        digest = ",".join(f"{name}={int(up)}" for name, up in sorted(health.items()))
        if digest != seen[:200] or time.monotonic() >= deadline or await request.is_disconnected():
            return JSONResponse({"services": health, "seen": digest})
        await asyncio.sleep(STATUS_EVERY_S)


@router.get("/favicon.ico", include_in_schema=False)
async def favicon() -> Response:
    return FileResponse(STATIC_DIR / "favicon.svg", media_type="image/svg+xml")


@router.get("/login")
async def login_page(request: Request, next: str | None = None) -> Response:
    ctx = await context(request, signed_in=False)
    if ctx.session is not None:
        return ctx.redirect(local_path(next))
    return ctx.render("login.html", next=local_path(next, ""), error=None)


@router.post("/login")
async def login(request: Request) -> Response:
    ctx = await context(request, signed_in=False)
    state = ctx.state
    address = client_address(request)
    wait = state.limiter.retry_after(address)
    if wait:
        response = ctx.render("login.html", status=429, next="", error=ctx.t("login.limited", seconds=wait))
        response.headers["Retry-After"] = str(wait)
        return response
    ctx.session = None  # a new sign-in starts a new session, with a new CSRF token
    form = await ctx.form()
    target = local_path(form.get("next"))
    key = form.get("api_key", "").strip()
    found = None
    if key and len(key) <= MAX_KEY_LENGTH and key.isprintable():
        found = await scope_probe.probe(state.upstream, key)
        if found.valid and set(found.unknown) == set(SERVICES):
            log.warning("sign_in_services_down", client=address)
            return ctx.render("login.html", status=503, next=target, error=ctx.t("login.down"))
    if found is None or not found.valid:
        state.limiter.failed(address)
        log.info("sign_in_refused", client=address)
        return ctx.render("login.html", status=401, next=target, error=ctx.t("login.bad"))
    session = Session.new(key, found.scopes, found.unknown, state.settings.session_ttl_s)
    ctx.session = session
    ctx.cookies.append((SESSION_COOKIE, state.codec.seal_session(session), state.settings.session_ttl_s))
    log.info("signed_in", client=address, scopes=sorted(found.scopes), unknown=list(found.unknown))
    return ctx.redirect(target)


@router.post("/logout")
async def logout(request: Request) -> Response:
    ctx = await context(request)
    await ctx.form()
    ctx.drop.append(SESSION_COOKIE)
    return ctx.redirect("/login")


@router.post("/language")
async def language(request: Request) -> Response:
    ctx = await context(request, signed_in=False)
    form = await ctx.form()
    chosen = form.get("language")
    response = ctx.redirect(local_path(form.get("next"), "/login"))
    if chosen in LANGUAGES:
        response.set_cookie(LANG_COOKIE, chosen, max_age=365 * 24 * 3600, path="/", httponly=True, samesite="lax",
                            secure=ctx.state.settings.secure_cookies)
    return response

