"""The console's aiohttp application: security headers, sessions, CSRF, and serving it.

`make_app(console)` builds the application; `serve(config, store)` runs it inside the daemon
(on the daemon's own `Store` for writes) until cancelled; `run_standalone(config)` is
`watcher web`: the same console on its own writer, until SIGINT or SIGTERM.

Reads (every page) go to a read-only connection on a thread of their own (`StateReader`), so a
page never waits behind the daemon's writes nor holds up its event loop; writes (sign-in,
triage, retry) go through the writer's `Store.call`, serialized with the daemon's own.

Every answer, static files and errors included, carries `SECURITY_HEADERS`: a policy that
allows no script at all (the pages need none), no frame, no form to another origin, no
referrer, no caching. A POST is refused (403) without a live session and its CSRF token, or
when it comes from another origin.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import signal
import ssl
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Concatenate, ParamSpec, TypeVar
from urllib.parse import urlsplit

import aiohttp_jinja2
import jinja2
from aiohttp import web

from ..logs import log_event
from ..store import StateDB, Store
from ..store.connection import utc_now
from ..timestamps import format_time, parse_time
from . import auth

if TYPE_CHECKING:
    from ..config import Config
    from .settings import WebSettings

__all__ = ["CONSOLE", "SESSION", "Console", "SECURITY_HEADERS", "StateReader", "make_app", "render", "run_standalone",
           "serve"]

log = logging.getLogger("watcher.web")

P = ParamSpec("P")
R = TypeVar("R")

STATIC_DIR = Path(__file__).parent / "static"
COOKIE = "watcher_session"
LOGIN_COOKIE = "watcher_login"        # the sign-in form's CSRF token, before there is a session
MAX_BODY = 64 * 1024                  # a form is a note and a few fields
SECURITY_HEADERS = {
    "Content-Security-Policy": ("default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self'; "
                                "frame-ancestors 'none'; base-uri 'none'"),
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-store",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
}
OPEN_PATHS = ("/login", "/static/")   # reachable without a session


class StateReader:
    """A read-only `StateDB` used from one thread of its own: `await reader(fn, *args)` runs
    `fn(state, *args)` there. Opened after the writer, so the database is in WAL mode and the
    reader sees each write as soon as it is committed."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="watcher-web")
        self._state: StateDB | None = None

    async def open(self) -> StateReader:
        self._state = await self._run(StateDB.read_only, self.path)
        return self

    async def _run(self, function: Callable[..., R], *args: Any) -> R:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, functools.partial(function, *args))

    async def __call__(self, function: Callable[Concatenate[StateDB, P], R], *args: P.args, **kwargs: P.kwargs) -> R:
        assert self._state is not None, "StateReader.open() first"
        return await self._run(functools.partial(function, self._state, *args, **kwargs))

    async def close(self) -> None:
        if self._state is not None:
            await self._run(self._state.close)
            self._state = None
        self._executor.shutdown(wait=True)


@dataclass
class Console:
    """What the handlers share: the configuration, the two doors to the database, the limiter."""

    config: Config
    settings: WebSettings
    read: StateReader
    store: Store
    limiter: auth.LoginLimiter
    clock: Callable[[], datetime] = utc_now

    def now(self) -> str:
        return format_time(self.clock())

    async def write(self, function: Callable[Concatenate[StateDB, P], R], *args: P.args, **kwargs: P.kwargs) -> R:
        """`function(state, *args)` on the writer's thread (the daemon's store thread)."""
        return await self.store.call(function, *args, **kwargs)

    def cookie(self, response: web.StreamResponse, name: str, value: str, max_age: float) -> None:
        """Set a cookie the console's way: HttpOnly, SameSite=Strict, path /, Secure under TLS."""
        response.set_cookie(name, value, max_age=int(max_age), path="/",
                            httponly=True, samesite="Strict",
                            secure=self.settings.tls or self.settings.secure_cookie)


CONSOLE = web.AppKey("console", Console)
SESSION = web.RequestKey("session", auth.Session)     # the signed-in session of a request


def console_of(request: web.Request) -> Console:
    return request.app[CONSOLE]


def client_address(request: web.Request) -> str:
    """The peer's address (behind a reverse proxy: the proxy's; see the README)."""
    return request.remote or "?"


def render(request: web.Request, template: str, context: dict[str, Any], status: int = 200) -> web.Response:
    """`template` with what every page shows: the signed-in user, the CSRF token of the forms
    (the session's: `csrf` in `context` for the sign-in form), the path, a confirmation."""
    session = request.get(SESSION)
    base = {"user": session.user if session else None, "csrf": session.csrf if session else "",
            "path": request.path, "done": ""}
    return aiohttp_jinja2.render_template(template, request, {**base, **context}, status=status)


def forbidden(request: web.Request, reason: str) -> web.Response:
    return render(request, "error.html", {"status": 403, "reason": reason}, status=403)


def _same_origin(request: web.Request) -> bool:
    """False when the browser says the form came from another site: `Sec-Fetch-Site` (sent by
    current browsers whatever the referrer policy), else an `Origin` naming another host
    (under `Referrer-Policy: no-referrer` a browser sends `Origin: null` for its own forms)."""
    fetch_site = request.headers.get("Sec-Fetch-Site")
    if fetch_site is not None:
        return fetch_site in ("same-origin", "none")
    origin = request.headers.get("Origin")
    return origin is None or origin == "null" or urlsplit(origin).netloc == request.host


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def session_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every page but the sign-in page and the CSS needs a live session; every POST its CSRF
    token (the form field `csrf`) and the console's own origin."""
    console = console_of(request)
    if request.method == "POST" and not _same_origin(request):
        return forbidden(request, "This form was sent from another site.")
    if request.path.startswith(OPEN_PATHS):
        return await handler(request)
    session = await console.read(auth.find_session, request.cookies.get(COOKIE, ""), console.now())
    if session is None:
        if request.method == "POST":
            return forbidden(request, "Your session has ended: sign in again.")
        raise web.HTTPSeeOther("/login")
    if request.method == "POST":
        form = await request.post()
        if not auth.same_token(_text(form.get("csrf")), session.csrf):
            return forbidden(request, "The form's security token is missing or wrong: reload the page and try again.")
    if (parse_time(console.now()) - parse_time(session.seen_at)).total_seconds() > auth.SEEN_EVERY:
        await console.write(auth.touch_session, session.id_hash)
    request[SESSION] = session
    return await handler(request)


def _text(value: object) -> str | None:
    return value if isinstance(value, str) else None


async def _security_headers(request: web.Request, response: web.StreamResponse) -> None:
    response.headers.update(SECURITY_HEADERS)
    response.headers["Server"] = "leak-watcher"         # not aiohttp's and Python's versions
    if console_of(request).settings.tls:
        response.headers["Strict-Transport-Security"] = "max-age=31536000"


@web.middleware
async def error_pages(request: web.Request, handler: Handler) -> web.StreamResponse:
    """404 and 405 as the console's own page (the redirects pass through)."""
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status in (404, 405):
            return render(request, "error.html", {"status": exc.status, "reason": exc.reason}, status=exc.status)
        raise


def make_app(console: Console) -> web.Application:
    """The console's application (pages from `watcher.web.routes`)."""
    from .routes import add_routes, setup_templates

    app = web.Application(middlewares=[error_pages, session_middleware], client_max_size=MAX_BODY)
    app[CONSOLE] = console
    environment = aiohttp_jinja2.setup(
        app, loader=jinja2.PackageLoader("watcher.web", "templates"),
        autoescape=True, undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    setup_templates(environment)
    app.on_response_prepare.append(_security_headers)
    add_routes(app)
    app.router.add_static("/static", STATIC_DIR, show_index=False, follow_symlinks=False)
    return app


def tls_context(settings: WebSettings) -> ssl.SSLContext | None:
    """The server's TLS context (TLS 1.2 at least), or None without tls_cert; a certificate or
    key that cannot be read is a ValueError naming the file."""
    if settings.tls_cert is None or settings.tls_key is None:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(settings.tls_cert, settings.tls_key)
    except (OSError, ssl.SSLError) as exc:
        raise ValueError(f"[web] tls_cert {settings.tls_cert} / tls_key {settings.tls_key}: cannot load them "
                         f"({getattr(exc, 'strerror', None) or exc})") from None
    return context


async def start(config: Config, store: Store) -> tuple[web.AppRunner, Console]:
    """Open the reader, build the application, listen; the runner to clean up and the console.
    OSError when the address is taken, ValueError for unreadable TLS files."""
    from ..config import DB_NAME

    settings = config.web
    assert settings is not None, "no [web] table"
    context = tls_context(settings)
    reader = await StateReader(config.watcher.state_dir / DB_NAME).open()
    console = Console(config, settings, reader, store, auth.LoginLimiter(settings.login_attempts,
                                                                         settings.login_window))
    runner = web.AppRunner(make_app(console), access_log=None, handle_signals=False)
    try:
        await runner.setup()
        await web.TCPSite(runner, settings.host, settings.port, ssl_context=context).start()
    except BaseException:
        await runner.cleanup()
        await reader.close()
        raise
    return runner, console


async def stop(runner: web.AppRunner, console: Console) -> None:
    await runner.cleanup()
    await console.read.close()


async def serve(config: Config, store: Store) -> None:
    """The daemon's console, until cancelled. A taken address or unreadable TLS files are
    logged, not fatal (the daemon watches on, like the metrics endpoint)."""
    assert config.web is not None
    try:
        runner, console = await start(config, store)
    except (OSError, ValueError) as exc:
        log_event(log, "error", "web console not started", listen=str(config.web.listen), error=str(exc))
        return
    log_event(log, "info", "web console listening", url=config.web.url)
    try:
        await asyncio.Event().wait()
    finally:
        await stop(runner, console)


async def run_standalone(config: Config, ready: Callable[[str], None] | None = None) -> None:
    """`watcher web`: the console on its own writer (the database created or migrated if
    needed) until SIGINT or SIGTERM. `ready(url)` is called once it listens."""
    from ..config import DB_NAME

    assert config.web is not None
    state_dir = config.watcher.state_dir
    state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for number in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(number, stopping.set)
    try:
        async with await Store.open(state_dir / DB_NAME) as store:
            runner, console = await start(config, store)
            try:
                if ready is not None:
                    ready(config.web.url)
                await stopping.wait()
            finally:
                await stop(runner, console)
    finally:
        for number in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(number)
