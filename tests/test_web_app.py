"""The web console over HTTP (aiohttp's client against the console served on 127.0.0.1):
configuration, headers, sign-in, sessions, CSRF, the login rate limit, triage and retry
recorded with the user, hostile texts escaped, and no NIR in clear in any page or export."""

from __future__ import annotations

import io
import json
import random
import re
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from yarl import URL
from tests.support.commands import refused
from tests.support.nirs import nir_forms
from tests.support.receivers import LoopbackCA
from tests.support.web import (
    HOSTILE_AUTHOR,
    HOSTILE_TITLE,
    PASSWORD,
    USER,
    RunningConsole,
    csrf_of,
    running_console,
    sign_in,
    write_config,
)

from watcher.alerts.records import alert_by_ref, triage_log
from watcher.analyze import Analyzer
from watcher.cli import main
from watcher.config import DB_NAME, ConfigError, load_config
from watcher.store import StateDB
from watcher.web import auth
from watcher.web.app import COOKIE, SECURITY_HEADERS

PAGES = ("/", "/incidents", "/sources", "/alerts?status=all", "/alerts?status=failed", "/alerts?status=pending")


@pytest.fixture
async def console(tmp_path: Path, analyzer: Analyzer, rng: random.Random) -> AsyncIterator[RunningConsole]:
    async with running_console(tmp_path, analyzer, rng, web="login_attempts = 3") as running:
        yield running


@pytest.fixture
async def client() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as session:
        yield session


async def signed_in(client: aiohttp.ClientSession, console: RunningConsole) -> str:
    """Sign in; the CSRF token of the session's forms."""
    answer = await sign_in(client, console.url)
    assert answer.status == 303 and answer.headers["Location"] == "/"
    async with client.get(f"{console.url}/incidents/{console.filled.incidents[0]}") as page:
        return csrf_of(await page.text())


# --------------------------------------------------------------------------- configuration


def test_a_non_loopback_listen_without_tls_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "sources.toml"
    path.write_text('[watcher]\nstate_dir = "./state"\n\n[web]\nlisten = "0.0.0.0:8443"\n', encoding="utf-8")
    with pytest.raises(ConfigError, match=r'sources\.toml:5: \[web\]: key "listen" is \'0\.0\.0\.0:8443\', not a '
                                          r"loopback address: set tls_cert and tls_key"):
        load_config(path)
    path.write_text('[web]\nlisten = "192.0.2.7:8443"\ntls_cert = "c.pem"\n', encoding="utf-8")
    with pytest.raises(ConfigError, match=r'\[web\]: key "tls_key" is missing: tls_cert and tls_key go together'):
        load_config(path)
    path.write_text('[web]\nlisten = "192.0.2.7:8443"\ntls_cert = "c.pem"\ntls_key = "k.pem"\n', encoding="utf-8")
    assert load_config(path).web.tls            # type: ignore[union-attr]
    path.write_text('[web]\nlisten = "[::1]:8080"\nsession_lifetime = "1h"\n', encoding="utf-8")
    web = load_config(path).web
    assert web is not None and (web.host, web.port, web.session_lifetime, web.tls) == ("::1", 8080, 3600.0, False)


def test_watcher_web_refuses_a_non_loopback_listen_without_tls(tmp_path: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "sources.toml"
    path.write_text('[watcher]\nstate_dir = "./state"\n\n[web]\nlisten = "0.0.0.0:8080"\n', encoding="utf-8")
    assert main(["web", "--config", str(path)]) == 2
    assert 'sources.toml:5: [web]: key "listen" is \'0.0.0.0:8080\', not a loopback address' in capsys.readouterr().err
    assert not (tmp_path / "state").exists()


def test_check_config_refuses_a_certificate_it_cannot_load(tmp_path: Path) -> None:
    (tmp_path / "key.pem").write_text("not a key\n", encoding="utf-8")
    config = write_config(tmp_path, 'tls_cert = "missing.pem"\ntls_key = "key.pem"')
    refused(config, 'sources.toml:6: [web]: key "tls_cert": ', "missing.pem / tls_key ", "cannot load them",
            commands=(("check-config",), ("run",)))


def test_adduser_stores_a_salted_scrypt_hash(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    config = write_config(tmp_path)
    for name in ("alice", "bob"):
        monkeypatch.setattr(sys, "stdin", io.StringIO(f"{PASSWORD}\n"))
        assert main(["web", "adduser", name, "--config", str(config)]) == 0
    monkeypatch.setattr(sys, "stdin", io.StringIO(f"{PASSWORD}\n"))
    assert main(["web", "adduser", "alice", "--config", str(config)]) == 2
    monkeypatch.setattr(sys, "stdin", io.StringIO("short\n"))
    assert main(["web", "adduser", "carol", "--config", str(config)]) == 2
    err = capsys.readouterr().err
    assert "alice exists (give --reset" in err and "at least 10 characters" in err
    with StateDB(tmp_path / "state" / DB_NAME) as state:
        stored = {name: auth.password_hash(state, name) for name in ("alice", "bob")}
        assert auth.user_names(state)[0][0] == "alice" and len(auth.user_names(state)) == 2
    assert all(value and value.startswith("scrypt$32768$8$1$") and PASSWORD not in value for value in stored.values())
    assert stored["alice"] != stored["bob"]                     # a salt of its own
    assert auth.verify_password(PASSWORD, stored["alice"]) and not auth.verify_password(PASSWORD + "x",
                                                                                        stored["alice"])
    assert main(["web", "deluser", "bob", "--config", str(config)]) == 0
    assert main(["web", "deluser", "bob", "--config", str(config)]) == 2


# --------------------------------------------------------------------------- headers, sign-in


async def test_every_answer_carries_the_security_headers(console: RunningConsole,
                                                         client: aiohttp.ClientSession) -> None:
    await signed_in(client, console)
    for path in ("/login", "/", "/incidents", "/static/style.css", "/nope", f"/incidents/{console.filled.incidents[0]}"):
        async with client.get(f"{console.url}{path}", allow_redirects=False) as answer:
            for name, value in SECURITY_HEADERS.items():
                assert answer.headers.get(name) == value, (path, name)
            assert answer.headers["Server"] == "leak-watcher"
    policy = SECURITY_HEADERS["Content-Security-Policy"]
    for directive in ("default-src 'none'", "style-src 'self'", "img-src 'self' data:", "form-action 'self'",
                      "frame-ancestors 'none'", "base-uri 'none'"):
        assert directive in policy
    assert "script-src" not in policy and "unsafe-inline" not in policy


async def test_pages_need_a_session(console: RunningConsole, client: aiohttp.ClientSession) -> None:
    for path in PAGES + (f"/incidents/{console.filled.incidents[0]}", "/incidents/1/export/misp"):
        async with client.get(f"{console.url}{path}", allow_redirects=False) as answer:
            assert answer.status == 303 and answer.headers["Location"] == "/login", path
    async with client.post(f"{console.url}/alerts/retry", data={"csrf": "x"}, allow_redirects=False) as answer:
        assert answer.status == 403


async def test_sign_in_sets_a_strict_http_only_cookie_whose_id_is_stored_hashed(
        console: RunningConsole, client: aiohttp.ClientSession) -> None:
    answer = await sign_in(client, console.url, password="wrong password!")
    assert answer.status == 401
    answer = await sign_in(client, console.url)
    assert answer.status == 303
    cookie = answer.cookies[COOKIE]
    assert cookie["httponly"] and cookie["samesite"] == "Strict" and not cookie["secure"] and cookie["path"] == "/"
    token = cookie.value
    with console.state() as state:
        rows = state.db.execute("SELECT id_hash, user FROM web_sessions").fetchall()
        dump = "\n".join(state.db.iterdump())
    assert rows == [(auth.token_hash(token), USER)] and token not in dump
    async with client.get(f"{console.url}/") as page:
        assert page.status == 200 and f'<span class="who">{USER}</span>' in await page.text()


async def test_sign_out_ends_the_session(console: RunningConsole, client: aiohttp.ClientSession) -> None:
    csrf = await signed_in(client, console)
    token = client.cookie_jar.filter_cookies(URL(console.url))[COOKIE].value
    async with client.post(f"{console.url}/logout", data={"csrf": csrf}, allow_redirects=False) as answer:
        assert answer.status == 303 and answer.headers["Location"] == "/login"
    async with aiohttp.ClientSession(cookies={COOKIE: token}) as replay, \
            replay.get(f"{console.url}/", allow_redirects=False) as page:
        assert page.status == 303                           # the old cookie opens nothing
    with console.state() as state:
        assert state.db.execute("SELECT count(*) FROM web_sessions").fetchone()[0] == 0


async def test_deleting_a_user_ends_their_sessions(console: RunningConsole, client: aiohttp.ClientSession) -> None:
    await signed_in(client, console)
    await console.store.call(auth.delete_user, USER)
    async with client.get(f"{console.url}/", allow_redirects=False) as page:
        assert page.status == 303


async def test_sign_in_is_rate_limited_per_user_and_per_address(console: RunningConsole,
                                                                client: aiohttp.ClientSession) -> None:
    """login_attempts = 3: the fourth try of a user is refused, right password or not; an
    address may fail 12 times (4 x 3) under any names, then it is refused for every name."""
    for _ in range(3):
        assert (await sign_in(client, console.url, password="not the password")).status == 401
    answer = await sign_in(client, console.url)
    assert answer.status == 429 and COOKIE not in answer.cookies
    await console.store.call(auth.add_user, "other", auth.hash_password(PASSWORD))
    assert (await sign_in(client, console.url, user="other")).status == 303        # the user, not the address
    for number in range(9):
        assert (await sign_in(client, console.url, user=f"x{number}", password="nope nope nope")).status == 401
    assert (await sign_in(client, console.url, user="other")).status == 429        # 12 failures from here


def test_the_login_limiter_forgets_failures_after_its_window() -> None:
    now = [1000.0]
    limiter = auth.LoginLimiter(attempts=2, window=60.0, clock=lambda: now[0])
    limiter.failed("Alice", "192.0.2.1")
    assert limiter.blocked("alice", "192.0.2.9") == 0
    now[0] += 30
    limiter.failed("alice", "192.0.2.2")
    assert limiter.blocked("ALICE", "192.0.2.9") == 30.0            # names are case-blind
    now[0] += 30.5
    assert limiter.blocked("alice", "192.0.2.9") == 0                 # the first failure is out of the window
    limiter.failed("alice", "192.0.2.2")
    limiter.succeeded("alice")
    assert limiter.blocked("alice", "192.0.2.9") == 0
    for number in range(8):                                           # 4 x 2 failures from one address
        limiter.failed(f"user{number}", "192.0.2.3")
    assert limiter.blocked("bob", "192.0.2.3") > 0 and limiter.blocked("bob", "192.0.2.4") == 0


async def test_the_sign_in_form_needs_its_token(console: RunningConsole, client: aiohttp.ClientSession) -> None:
    async with client.post(f"{console.url}/login", data={"user": USER, "password": PASSWORD},
                           allow_redirects=False) as answer:
        assert answer.status == 403 and COOKIE not in answer.cookies


# --------------------------------------------------------------------------- CSRF and actions


async def test_a_post_without_its_csrf_token_is_refused(console: RunningConsole,
                                                        client: aiohttp.ClientSession) -> None:
    csrf = await signed_in(client, console)
    incident = console.filled.incidents[0]
    url = f"{console.url}/incidents/{incident}/triage"
    wrong = csrf[:-1] + ("B" if csrf.endswith("A") else "A")           # one character off
    for data, headers in (({"action": "ack"}, {}), ({"action": "ack", "csrf": wrong}, {}),
                          ({"action": "ack", "csrf": csrf}, {"Sec-Fetch-Site": "cross-site"}),
                          ({"action": "ack", "csrf": csrf}, {"Origin": "http://evil.example"})):
        async with client.post(url, data=data, headers=headers, allow_redirects=False) as answer:
            assert answer.status == 403, (data, headers)
    async with client.post(f"{console.url}/alerts/{console.filled.failed_alert}/retry",
                           allow_redirects=False) as answer:
        assert answer.status == 403
    with console.state() as state:
        assert triage_log(state, incident) == []
        assert alert_by_ref(state, str(console.filled.failed_alert)).state == "failed"  # type: ignore[union-attr]


async def test_triage_is_recorded_with_the_signed_in_user(console: RunningConsole,
                                                          client: aiohttp.ClientSession) -> None:
    csrf = await signed_in(client, console)
    incident = console.filled.incidents[1]
    nir = console.filled.nirs[0]
    for action, note in (("ack", f"called the insurer about {nir}"), ("close", ""), ("suppress", "noise")):
        async with client.post(f"{console.url}/incidents/{incident}/triage", allow_redirects=False,
                               data={"csrf": csrf, "action": action, "note": note}) as answer:
            assert answer.status == 303 and answer.headers["Location"].startswith(f"/incidents/{incident}?done=")
    with console.state() as state:
        log = triage_log(state, incident)
        status = state.db.execute("SELECT state FROM incidents WHERE id = ?", (incident,)).fetchone()[0]
    assert [(e["action"], e["who"]) for e in log] == [("ack", USER), ("close", USER), ("suppress", USER)]
    assert nir not in log[0]["note"] and log[0]["note"].startswith("called the insurer about ")   # masked
    assert status == "closed"
    async with client.get(f"{console.url}/incidents/{incident}") as page:
        html = await page.text()
    assert "called the insurer about" in html and "suppressed" in html and nir not in html
    async with client.post(f"{console.url}/incidents/{incident}/triage", allow_redirects=False,
                           data={"csrf": csrf, "action": "delete"}) as answer:
        assert answer.status == 403


async def test_retry_requeues_a_failed_alert(console: RunningConsole, client: aiohttp.ClientSession) -> None:
    csrf = await signed_in(client, console)
    alert = console.filled.failed_alert
    async with client.get(f"{console.url}/alerts?status=failed") as page:
        html = await page.text()
    assert f'action="/alerts/{alert}/retry"' in html and "soc: connection refused" in html
    async with client.post(f"{console.url}/alerts/{alert}/retry", data={"csrf": csrf},
                           allow_redirects=False) as answer:
        assert answer.status == 303 and answer.headers["Location"] == "/alerts?status=pending&done=retried"
    with console.state() as state:
        requeued = alert_by_ref(state, str(alert))
    assert requeued is not None and (requeued.state, requeued.tries) == ("pending", 0)
    async with client.post(f"{console.url}/alerts/retry", data={"csrf": csrf}, allow_redirects=False) as answer:
        assert answer.headers["Location"].endswith("done=none")          # nothing failed any more


# --------------------------------------------------------------------------- what pages show


async def test_filters_and_paging(console: RunningConsole, client: aiohttp.ClientSession) -> None:
    await signed_in(client, console)
    by_severity = console.filled.severities
    severity = by_severity[console.filled.incidents[0]]
    async with client.get(f"{console.url}/incidents", params={"severity": severity}) as page:
        html = await page.text()
    shown = {int(n) for n in re.findall(r'<td><a href="/incidents/(\d+)">', html)}
    assert shown == {i for i, s in by_severity.items() if s == severity}
    async with client.get(f"{console.url}/incidents", params={"source": "feed", "state": "active"}) as page:
        shown = {int(n) for n in re.findall(r'<td><a href="/incidents/(\d+)">', await page.text())}
    assert console.filled.hostile_incident in shown and len(shown) < len(by_severity)
    async with client.get(f"{console.url}/incidents", params={"from": "2999-01-01"}) as page:
        assert "No incident matches these filters." in await page.text()


async def test_the_incident_page_gives_the_evidence_export_command_and_downloads(
        console: RunningConsole, client: aiohttp.ClientSession) -> None:
    (console.config.watcher.state_dir / "secret.key").write_bytes(b"k" * 32)
    (console.config.watcher.state_dir / "secret.key").chmod(0o600)
    await signed_in(client, console)
    incident = console.filled.incidents[0]
    async with client.get(f"{console.url}/incidents/{incident}") as page:
        html = await page.text()
    with console.state() as state:
        [record] = state.db.execute("SELECT id FROM evidence WHERE incident_id = ?", (incident,)).fetchall()
    assert f"<code>watcher evidence export {record[0]} --identity KEYFILE --out evidence-{record[0]}.bin</code>" in html
    assert f'href="/incidents/{incident}/export/misp" download' in html
    for fmt, key in (("misp", "Event"), ("stix", "objects")):
        async with client.get(f"{console.url}/incidents/{incident}/export/{fmt}") as answer:
            assert answer.headers["Content-Disposition"] == f'attachment; filename="incident-{incident}.{fmt}.json"'
            assert key in json.loads(await answer.text())


async def test_hostile_texts_are_shown_as_text_and_urls_are_never_links(console: RunningConsole,
                                                                        client: aiohttp.ClientSession) -> None:
    await signed_in(client, console)
    pages = [f"/incidents/{console.filled.hostile_incident}", "/incidents", "/alerts?status=all"]
    for path in pages:
        async with client.get(f"{console.url}{path}") as page:
            html = await page.text()
        assert "<script" not in html.lower() and "<img" not in html.lower(), path
        assert "javascript:" not in re.sub(r">[^<]*<", "><", html), path          # never in a tag or attribute
        assert 'href="javascript' not in html and "onerror=" not in re.sub(r">[^<]*<", "><", html)
    async with client.get(f"{console.url}/incidents/{console.filled.hostile_incident}") as page:
        html = await page.text()
    assert "&lt;script&gt;alert(&#34;title&#34;)&lt;/script&gt; leak" in html
    assert "&lt;img src=x onerror=alert(&#34;author&#34;)&gt;" in html
    assert "javascript:alert(&#34;url&#34;)//" in html and HOSTILE_TITLE not in html and HOSTILE_AUTHOR not in html
    hrefs = set(re.findall(r'href="([^"]*)"', html))
    assert all(h.startswith("/") or h == "data:," for h in hrefs), hrefs


async def test_no_nir_in_clear_in_any_page_or_export(console: RunningConsole, client: aiohttp.ClientSession) -> None:
    (console.config.watcher.state_dir / "secret.key").write_bytes(b"k" * 32)
    (console.config.watcher.state_dir / "secret.key").chmod(0o600)
    await signed_in(client, console)
    texts = []
    paths = list(PAGES) + [f"/incidents/{i}" for i in console.filled.incidents]
    paths += [f"/incidents/{i}/export/{fmt}" for i in console.filled.incidents[:2] for fmt in ("misp", "stix")]
    paths += [f"/incidents?{'&'.join(f'{k}={v}' for k, v in q.items())}" for q in
              ({"severity": "critical"}, {"source": "feed"}, {"page": "2"})]
    for path in paths:
        async with client.get(f"{console.url}{path}") as answer:
            assert answer.status == 200, path
            texts.append(await answer.text())
    export = json.loads(texts[len(PAGES) + len(console.filled.incidents)])
    assert export["Event"]["info"]
    everything = "\n".join(texts)
    assert "•" in everything                                        # the masked forms are there
    for nir in console.filled.nirs:
        for form in nir_forms(nir).values():
            assert form not in everything, "a NIR in clear reached a page"
        assert nir[:13] not in everything


async def test_the_console_under_tls_marks_its_cookie_secure(tmp_path: Path, analyzer: Analyzer,
                                                             rng: random.Random, test_ca: LoopbackCA) -> None:
    import ssl

    web = f'tls_cert = "{test_ca.cert_file}"\ntls_key = "{test_ca.key_file}"\n'
    async with running_console(tmp_path, analyzer, rng, web=web) as console:
        assert console.url.startswith("https://127.0.0.1:")
        context = ssl.create_default_context(cafile=test_ca.ca_file)
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=context),
                                         cookie_jar=aiohttp.CookieJar(unsafe=True)) as client:
            answer = await sign_in(client, console.url)
            assert answer.status == 303 and answer.cookies[COOKIE]["secure"]
            async with client.get(f"{console.url}/") as page:
                assert page.headers["Strict-Transport-Security"].startswith("max-age=")
