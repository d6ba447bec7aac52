"""The console's web application: pages, security headers, error pages, and its own health route."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from urllib.parse import quote

import httpx
import structlog
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException

from . import auth, complaints, customers, dashboard, policy, queue
from .cache import TtlCache
from .core import CsrfRefused, NotFoundPage, SignInRequired, State, context, templates
from .ratelimit import LoginLimiter
from .session import SESSION_COOKIE, Codec
from .settings import ConsoleSettings
from .upstream import Upstream

log = structlog.get_logger("console.http")
STATIC = Path(__file__).with_name("static")

#: Scripts and styles from this site only; inline styles for the SVG charts; no inline script, so
#: markup that slipped through escaping still could not run.
CSP = ("default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
       "connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'")


def create_app(settings: ConsoleSettings, *, transport: httpx.AsyncBaseTransport | None = None) -> FastAPI:
    """The app; ``transport`` replaces the network to the services (tests give stand-ins)."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        await app.state.console.cache.close()
        await app.state.console.upstream.close()

    app = FastAPI(title="carecrm console", docs_url=None, redoc_url=None, openapi_url=None, lifespan=lifespan)
    app.state.console = State(
        settings=settings,
        upstream=Upstream(settings.service_urls(), settings.upstream_timeout_s, transport=transport),
        codec=Codec(settings.secret()),
        env=templates(),
        limiter=LoginLimiter(settings.login_failures, settings.login_window_s),
        cache=TtlCache(settings.report_cache_s),
    )
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    for module in (auth, customers, complaints, queue, dashboard, policy):
        app.include_router(module.router)
    _add_headers_and_logging(app)
    _add_error_pages(app)
    return app


def _add_headers_and_logging(app: FastAPI) -> None:
    @app.middleware("http")
    async def guard(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        started = time.perf_counter()
        response = await call_next(request)
        headers = response.headers
        headers.setdefault("Content-Security-Policy", CSP)
        headers.setdefault("X-Content-Type-Options", "nosniff")
        headers.setdefault("Referrer-Policy", "no-referrer")
        headers.setdefault("X-Frame-Options", "DENY")
        if not request.url.path.startswith("/static/"):
            headers.setdefault("Cache-Control", "no-store")
        route = request.scope.get("route")
        # The route's template, never the URL: paths and queries hold ids, phones and e-mails.
        log.info("request", method=request.method, route=getattr(route, "path", "unmatched"),
                 status=response.status_code, ms=round((time.perf_counter() - started) * 1000, 1))
        return response


def _add_error_pages(app: FastAPI) -> None:
    @app.exception_handler(SignInRequired)
    async def sign_in(request: Request, _: SignInRequired) -> Response:
        if request.headers.get("x-requested-with") == "fetch":
            response: Response = PlainTextResponse("sign in again", status_code=401)
        else:
            target = request.url.path if request.method == "GET" else ""
            url = "/login" + (f"?next={quote(target, safe='/')}" if target and target != "/" else "")
            response = RedirectResponse(url, status_code=303)
        response.delete_cookie(SESSION_COOKIE, path="/")
        return response

    @app.exception_handler(CsrfRefused)
    async def csrf(request: Request, _: CsrfRefused) -> Response:
        ctx = await context(request, signed_in=False)
        return ctx.render("error.html", status=403, message=ctx.t("csrf"))

    @app.exception_handler(NotFoundPage)
    async def missing(request: Request, _: NotFoundPage) -> Response:
        ctx = await context(request, signed_in=False)
        return ctx.render("error.html", status=404, message="404")

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        if request.url.path.startswith("/static/") or request.headers.get("x-requested-with") == "fetch":
            return PlainTextResponse(str(exc.detail), status_code=exc.status_code)
        ctx = await context(request, signed_in=False)
        return ctx.render("error.html", status=exc.status_code, message=f"{exc.status_code}")

    @app.exception_handler(Exception)
    async def failure(request: Request, exc: Exception) -> Response:
        log.error("page_failed", error=type(exc).__name__, route=getattr(request.scope.get("route"), "path", None))
        return JSONResponse({"detail": "the console failed on this page; see its log"}, status_code=500) \
            if request.headers.get("x-requested-with") == "fetch" else \
            PlainTextResponse("The console failed on this page; its log says why.", status_code=500)
