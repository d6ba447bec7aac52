"""What every page handler shares: the signed-in session, calls to the services with its key, the
user's language, CSRF checks on forms, flash messages and rendering with autoescaped templates."""

from __future__ import annotations

import re
import secrets
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, quote

from fastapi import Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

from . import scopes as scope_probe
from .i18n import Translator, pick
from .session import (
    CSRF_FIELD,
    FLASH_COOKIE,
    FLASH_TTL_S,
    LANG_COOKIE,
    PRE_COOKIE,
    SESSION_COOKIE,
    Codec,
    Session,
    csrf_ok,
)
from .settings import ConsoleSettings
from .upstream import Reply, Upstream

TEMPLATES = Path(__file__).with_name("templates")
STATIC_DIR = Path(__file__).with_name("static")
MAX_FORM_BYTES = 256 * 1024
#: Ids the console puts into a service's path: what the services accept, and never "." or "..".
_CUSTOMER_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:\-]{0,63}$")
_COMPLAINT_ID = re.compile(r"^[\w.:\-#]{1,128}$")
#: Seconds before a session whose probe missed a service asks that service again.
REPROBE_UNKNOWN_S = 20


class SignInRequired(Exception):
    """No valid session (none, forged, expired, or the services no longer know its key)."""


class CsrfRefused(Exception):
    pass


class NotFoundPage(Exception):
    pass


def templates() -> Environment:
    # Autoescape everything: names, complaint texts and comments come from upstream systems.
    env = Environment(loader=FileSystemLoader(TEMPLATES), autoescape=select_autoescape(default=True,
                      default_for_string=True), undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    env.filters["pct"] = lambda v: "—" if v is None else f"{float(v) * 100:.1f}%"
    return env


@dataclass
class State:
    """Process-wide things, built once at start (see app.py)."""

    settings: ConsoleSettings
    upstream: Upstream
    codec: Codec
    env: Environment
    limiter: Any
    cache: Any


def customer_path(customer_id: str) -> str:
    if not _CUSTOMER_ID.match(customer_id) or customer_id in (".", ".."):
        raise NotFoundPage(customer_id)
    return quote(customer_id, safe="")


def complaint_path(complaint_id: str) -> str:
    if not _COMPLAINT_ID.match(complaint_id) or complaint_id in (".", ".."):
        raise NotFoundPage(complaint_id)
    return quote(complaint_id, safe="")


def local_path(target: str | None, default: str = "/customers") -> str:
    """A redirect target of our own: a path on this site, never another host."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return default
    return target


def client_address(request: Request) -> str:
    return request.client.host if request.client else "unknown"


@dataclass
class Ctx:
    """One request: who is signed in, in which language, and what the response must carry."""

    request: Request
    state: State
    session: Session | None
    t: Translator
    pre: str | None = None  # the pre-session cookie value, for the sign-in form
    cookies: list[tuple[str, str, int]] = field(default_factory=list)
    drop: list[str] = field(default_factory=list)
    flash: dict[str, str] | None = None

    @property
    def csrf(self) -> str:
        if self.session is not None:
            return self.session.csrf
        assert self.pre is not None
        return self.state.codec.pre_token(self.pre)

    def can(self, *scopes: str) -> bool:
        """Whether the key holds ``scopes``: what decides which actions a page offers."""
        return self.session is not None and self.session.can(*scopes)

    def may(self, *scopes: str) -> bool:
        """Whether reading is worth a call: the key holds ``scopes``, or their service did not answer
        the last probe (the call then tells whether it is down or refuses)."""
        session = self.session
        return session is not None and all(s in session.scopes or _service_of(s) in session.unknown for s in scopes)

    async def call(self, service: str, method: str, path: str, *, params: Any = None, json: Any = None,
                   timeout: float | None = None) -> Reply:
        assert self.session is not None
        reply = await self.state.upstream.call(self.session.key, service, method, path, params=params, json=json,
                                               timeout=timeout)
        if reply.status == 401:  # the key was withdrawn while the session lasted
            raise SignInRequired()
        return reply

    async def get(self, service: str, path: str, **params: Any) -> Reply:
        clean = {k: v for k, v in params.items() if v not in (None, "")}
        return await self.call(service, "GET", path, params=clean or None)

    # --- forms ---------------------------------------------------------------------------------

    async def form(self) -> dict[str, str]:
        """The posted form (URL-encoded), after its CSRF token was checked."""
        body = await self.request.body()
        if len(body) > MAX_FORM_BYTES:
            raise CsrfRefused()
        data: dict[str, str] = {}
        for name, value in parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True):
            data.setdefault(name, value)
        token = data.pop(CSRF_FIELD, None)
        if self.session is not None:
            ok = csrf_ok(self.session, token)
        else:
            ok = self.state.codec.pre_token_ok(self.pre, token)
        if not ok:
            raise CsrfRefused()
        return data

    # --- responses -----------------------------------------------------------------------------

    def say(self, text: str, kind: str = "ok") -> None:
        """A message for the next page (after a redirect)."""
        value = self.state.codec.seal({"kind": kind, "text": text[:2000]})
        self.cookies.append((FLASH_COOKIE, value, FLASH_TTL_S))

    def redirect(self, url: str) -> Response:
        return self._finish(RedirectResponse(url, status_code=303))

    def render(self, name: str, status: int = 200, **values: Any) -> Response:
        template = self.state.env.get_template(name)
        html = template.render(ctx=self, t=self.t, flash=self.flash, **values)
        return self._finish(HTMLResponse(html, status_code=status))

    def _finish(self, response: Response) -> Response:
        secure = self.state.settings.secure_cookies
        for name in self.drop:
            response.delete_cookie(name, path="/", secure=secure, httponly=True, samesite="lax")
        for name, value, max_age in self.cookies:
            response.set_cookie(name, value, max_age=max_age, path="/", secure=secure, httponly=True,
                                samesite="strict" if name == PRE_COOKIE else "lax")
        return response


def _language(request: Request, default: str) -> str:
    chosen = request.cookies.get(LANG_COOKIE)
    if chosen:
        return pick(chosen, default)
    accept = request.headers.get("accept-language", "").lower()
    first = accept.split(",")[0].strip()
    if first.startswith("zh"):
        return "zh-CN"
    if first.startswith("en"):
        return "en-US"
    return default


def state_of(request: Request) -> State:
    return request.app.state.console


async def context(request: Request, *, signed_in: bool = True) -> Ctx:
    """The request's context; with ``signed_in``, SignInRequired unless a valid session is there."""
    state = state_of(request)
    settings = state.settings
    t = Translator(_language(request, settings.default_language), settings.timezone)
    session = state.codec.session(request.cookies.get(SESSION_COOKIE), settings.session_ttl_s)
    ctx = Ctx(request, state, session, t)
    flash = request.cookies.get(FLASH_COOKIE)
    if flash:
        ctx.flash = state.codec.open(flash, FLASH_TTL_S)
        ctx.drop.append(FLASH_COOKIE)
    if session is None:
        if signed_in:
            raise SignInRequired()
        ctx.pre = request.cookies.get(PRE_COOKIE) or ""
        if not ctx.pre or len(ctx.pre) > 128:
            ctx.pre = secrets.token_urlsafe(24)
            ctx.cookies.append((PRE_COOKIE, ctx.pre, 3600))
        return ctx
    if signed_in:
        await _refresh_scopes(ctx)
    return ctx


async def _refresh_scopes(ctx: Ctx) -> None:
    """Ask again what the key may do when the answer is old, or when a service missed the last probe."""
    session = ctx.session
    assert session is not None
    now = int(time.time())
    age = now - session.probed
    if age < ctx.state.settings.scopes_ttl_s and not (session.unknown and age >= REPROBE_UNKNOWN_S):
        return
    found = await scope_probe.probe(ctx.state.upstream, session.key)
    if not found.valid:
        raise SignInRequired()
    # What a service that did not answer granted before stays until it answers again.
    keep = {s for s in session.scopes if _service_of(s) in found.unknown}
    refreshed = Session(key=session.key, scopes=frozenset(found.scopes | keep), csrf=session.csrf,
                        expires=session.expires, probed=now, unknown=found.unknown)
    ctx.session = refreshed
    ctx.cookies.append((SESSION_COOKIE, ctx.state.codec.seal_session(refreshed),
                        max(1, refreshed.expires - now)))


def _service_of(scope: str) -> str:
    for probe in scope_probe.PROBES:
        if scope in probe.scopes:
            return probe.service
    return ""


def down_notice(t: Translator, reply: Reply) -> str | None:
    """A sentence for a reply that brought nothing usable; None when it did."""
    if reply.down:
        return t("service_down", service=t(f"svc.{reply.service}"), why=t(f"why.{reply.down}"))
    if reply.status >= 500:
        return t("service_down", service=t(f"svc.{reply.service}"), why=f"HTTP {reply.status}")
    if reply.status == 403:
        return t("not_allowed") + f" ({reply.detail()})"
    if not reply.ok:
        return t("service_error", service=t(f"svc.{reply.service}"), detail=reply.detail())
    return None
