"""The console's pages and actions.

    GET  /login, POST /login, POST /logout      sign in (rate limited), sign out
    GET  /                                      dashboard
    GET  /incidents?severity=&state=&insurer=&source=&from=&to=&members=&page=   (members: * or a watchlist)
    GET  /incidents/{id}                        one incident: timeline, evidence, triage forms
    POST /incidents/{id}/triage                 ack, close, false-positive, reopen, suppress (+ note)
    GET  /incidents/{id}/export/{misp|stix}     the MISP event or STIX bundle, as a download
    GET  /sources                               every source's health
    GET  /alerts?status=failed|pending|sent|logged
    POST /alerts/{id}/retry, POST /alerts/retry  re-queue one failed alert, or all of them

Pages read through `watcher.web.views` (the read model) on the console's read-only connection;
actions call the library functions the CLI calls (`watcher.alerts.records.triage_incident`,
`suppress`, `requeue_failed`: `watcher incidents ack|close|...`, `watcher suppress incident`,
`watcher alerts retry`) on the writer, with the signed-in user as who did it. Every action is
a POST checked for its CSRF token by `app.session_middleware`, answered by a redirect (a
reload never sends it twice).

Templates get texts, never markup: autoescaping makes a title such as `<script>` show as
text, and no attacker-chosen text is ever put in an attribute that a browser follows (no
link is made of a stored URL: it is shown as text, to be copied deliberately).
"""

from __future__ import annotations

import asyncio
import secrets
import time
from typing import Any

import jinja2
from aiohttp import web

from ..alerts import records
from ..store import StateDB
from . import auth, charts, views
from .app import COOKIE, LOGIN_COOKIE, SESSION, client_address, console_of, forbidden, render

PER_PAGE = 50
TRIAGE_FORMS = (("ack", "Acknowledge"), ("close", "Close"), ("false-positive", "False positive"),
                ("suppress", "Suppress"), ("reopen", "Reopen"))
DONE = {"ack": "Acknowledged.", "close": "Closed.", "false-positive": "Marked as a false positive.",
        "suppress": "Suppressed: it never alerts again.", "reopen": "Reopened.",
        "retried": "Re-queued: the daemon sends it within seconds.", "none": "No failed alert to retry."}
EXPORT_FORMATS = ("misp", "stix")


def add_routes(app: web.Application) -> None:
    app.router.add_get("/login", login_page)
    app.router.add_post("/login", login)
    app.router.add_post("/logout", logout)
    app.router.add_get("/", dashboard)
    app.router.add_get("/incidents", incidents)
    app.router.add_get(r"/incidents/{id:\d{1,12}}", incident)
    app.router.add_post(r"/incidents/{id:\d{1,12}}/triage", triage)
    app.router.add_get(r"/incidents/{id:\d{1,12}}/export/{fmt:misp|stix}", export)
    app.router.add_get("/sources", sources)
    app.router.add_get("/alerts", alerts)
    app.router.add_post(r"/alerts/{id:\d{1,12}}/retry", retry)
    app.router.add_post("/alerts/retry", retry)


def setup_templates(environment: jinja2.Environment) -> None:
    """Helpers the templates share."""
    environment.globals.update(severities=views.SEVERITY_ORDER, incident_states=views.INCIDENT_STATES,
                               triage_forms=TRIAGE_FORMS, alert_statuses=views.ALERT_STATUSES, active=views.ACTIVE,
                               any_list=views.ANY_LIST)


async def page(request: web.Request, template: str, context: dict[str, Any], started: float) -> web.Response:
    """Render `template` with the session's user and CSRF token; `Server-Timing` says how long
    the queries (from `started`) and the rendering took."""
    queried = time.perf_counter()
    response = render(request, template, {**context, "done": DONE.get(request.query.get("done", ""), "")})
    rendered = time.perf_counter()
    response.headers["Server-Timing"] = (f"db;dur={(queried - started) * 1000:.1f}, "
                                         f"render;dur={(rendered - queried) * 1000:.1f}")
    return response


def _db(function: Any) -> Any:
    """A read-model function of a `sqlite3.Connection`, as a function of the `StateDB`."""
    return lambda state, *args: function(state.db, *args)


# --------------------------------------------------------------------------- sign in, sign out


async def login_page(request: web.Request, message: str = "", status: int = 200) -> web.Response:
    """The sign-in form, with a fresh token in its form and in a cookie (double submit: there
    is no session yet to keep it)."""
    console = console_of(request)
    token = secrets.token_urlsafe(auth.SESSION_BYTES)
    response = render(request, "login.html", {"csrf": token, "message": message}, status=status)
    console.cookie(response, LOGIN_COOKIE, token, max_age=3600)
    return response


async def login(request: web.Request) -> web.StreamResponse:
    console = console_of(request)
    form = await request.post()
    if not auth.same_token(_field(form, "csrf"), request.cookies.get(LOGIN_COOKIE, "")):
        return forbidden(request, "The form's security token is missing or wrong: reload the sign-in page.")
    name, password = _field(form, "user")[:64], _field(form, "password")[:auth.MAX_PASSWORD + 1]
    address = client_address(request)
    wait = console.limiter.blocked(name, address)
    if wait > 0:
        return await login_page(request, f"Too many failed sign-ins: try again in {int(wait // 60) + 1} min.", 429)
    stored = await console.read(auth.password_hash, name) if name else None
    if not await _run_blocking(auth.verify_password, password, stored):
        console.limiter.failed(name, address)
        return await login_page(request, "Wrong user name or password.", 401)
    console.limiter.succeeded(name)
    session = await console.write(auth.open_session, name, address, console.settings.session_lifetime)
    response = web.HTTPSeeOther("/")
    console.cookie(response, COOKIE, session.token, max_age=console.settings.session_lifetime)
    response.del_cookie(LOGIN_COOKIE, path="/")
    raise response


async def _run_blocking(function: Any, *args: Any) -> Any:
    """scrypt takes ~60 ms of CPU: off the event loop (the daemon's, when it serves)."""
    return await asyncio.get_running_loop().run_in_executor(None, function, *args)


async def logout(request: web.Request) -> web.StreamResponse:
    console = console_of(request)
    session = request[SESSION]
    await console.write(auth.close_session, session.id_hash)
    response = web.HTTPSeeOther("/login")
    response.del_cookie(COOKIE, path="/")
    raise response


def _field(form: Any, name: str) -> str:
    value = form.get(name)
    return value if isinstance(value, str) else ""


# --------------------------------------------------------------------------- pages


async def dashboard(request: web.Request) -> web.Response:
    started = time.perf_counter()
    console = console_of(request)
    board = await console.read(_db(views.dashboard), console.clock())
    counts = await console.read(_db(views.alert_counts))
    return await page(request, "dashboard.html", {"board": board, "alert_counts": counts,
                                                  "charts": _charts(board)}, started)


def _charts(board: views.Dashboard) -> dict[str, Any]:
    """The dashboard's SVG charts (`watcher.web.charts`: escaped, no script, no style attribute)."""
    return {
        "per_day": charts.bar_chart(board.findings_per_day, title="Findings per day (30 days)"),
        "per_source": charts.bar_chart(board.findings_per_source, title="Findings per source (30 days)",
                                       horizontal=True, height=max(60, 22 * len(board.findings_per_source) + 20)),
        "by_severity": charts.bar_chart(board.open_by_severity, title="Open incidents by severity", height=160),
    }


async def incidents(request: web.Request) -> web.Response:
    started = time.perf_counter()
    console = console_of(request)
    filters = views.IncidentFilter.from_query(request.query)
    number = _number(request.query.get("page"), 1)
    found = await console.read(_db(views.incident_page), filters, number, PER_PAGE)
    choices = await console.read(_db(views.filter_choices))
    query = filters.to_query()
    return await page(request, "incidents.html", {
        "found": found, "filters": filters, "choices": choices, "query": query,
        "previous": {**query, "page": str(found.page - 1)}, "next": {**query, "page": str(found.page + 1)},
        }, started)


def _number(text: str | None, default: int) -> int:
    return int(text) if text and text.isdigit() and len(text) < 10 else default


async def incident(request: web.Request) -> web.Response:
    started = time.perf_counter()
    console = console_of(request)
    detail = await console.read(_db(views.incident_detail), int(request.match_info["id"]))
    if detail is None:
        raise web.HTTPNotFound(reason="No such incident")
    return await page(request, "incident.html", {"incident": detail, "formats": EXPORT_FORMATS}, started)


async def triage(request: web.Request) -> web.StreamResponse:
    """One analyst action on an incident, logged with the signed-in user and the note."""
    console = console_of(request)
    session = request[SESSION]
    incident_id = int(request.match_info["id"])
    form = await request.post()
    action, note = _field(form, "action"), _field(form, "note").strip() or None
    try:
        if action == "suppress":
            await console.write(records.suppress, "incident", str(incident_id), session.user, note)
        elif action in records.TRIAGE_ACTIONS:
            await console.write(records.triage_incident, incident_id, action, session.user, note)
        else:
            return forbidden(request, "Unknown action.")
    except records.TriageError:
        raise web.HTTPNotFound(reason="No such incident") from None
    raise web.HTTPSeeOther(f"/incidents/{incident_id}?done={action}#timeline")


async def export(request: web.Request) -> web.Response:
    """The incident as a MISP event or a STIX 2.1 bundle (what `watcher incidents export`
    writes), downloaded as a file."""
    from ..config import SECRET_NAME
    from ..exports import export_incident
    from ..privacy import SecretKeyError, read_secret

    console = console_of(request)
    incident_id, fmt = int(request.match_info["id"]), request.match_info["fmt"]
    try:
        secret = read_secret(console.config.watcher.state_dir / SECRET_NAME)
    except SecretKeyError:
        secret = None
    if secret is None:
        raise web.HTTPNotFound(reason="No installation key yet: the daemon has not run")
    tor_sources = [source.name for source in console.config.sources if source.tor]
    text = await console.read(export_incident, incident_id, secret, fmt, tor_sources=tor_sources)
    if text is None:
        raise web.HTTPNotFound(reason="No such incident")
    return web.Response(text=text, content_type="application/json", headers={
        "Content-Disposition": f'attachment; filename="incident-{incident_id}.{fmt}.json"'})


async def sources(request: web.Request) -> web.Response:
    started = time.perf_counter()
    console = console_of(request)
    rows = await console.read(_db(views.sources), console.clock())
    return await page(request, "sources.html", {"sources": rows}, started)


async def alerts(request: web.Request) -> web.Response:
    started = time.perf_counter()
    console = console_of(request)
    status = request.query.get("status") or "failed"
    status = status if status in (*views.ALERT_STATUSES, "all") else "failed"
    rows = await console.read(_db(views.alerts), None if status == "all" else status)
    counts = await console.read(_db(views.alert_counts))
    return await page(request, "alerts.html", {"alerts": rows, "status": status, "counts": counts}, started)


def retry_failed(state: StateDB, alert_id: int | None) -> list[int]:
    """`watcher alerts retry ID|--failed`: the failed alert `alert_id` (every failed one when
    None) back in the outbox; the row ids re-queued (none when it is not failed)."""
    return records.requeue_failed(state, state.now(), alert_id)


async def retry(request: web.Request) -> web.StreamResponse:
    console = console_of(request)
    alert_id = int(request.match_info["id"]) if "id" in request.match_info else None
    requeued = await console.write(retry_failed, alert_id)
    raise web.HTTPSeeOther(f"/alerts?status=pending&done={'retried' if requeued else 'none'}")
