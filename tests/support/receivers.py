"""Real notification receivers on 127.0.0.1 for the alert tests.

- `JsonReceiver`: an aiohttp server taking apprise's `json://127.0.0.1:PORT/PATH` posts
  (`{"version", "title", "message", "type", ...}`), recording them per path. It can answer
  503 (`failing = True`) or stop listening and come back on the same port (`stop()` /
  `start()`), to test retries.
- `SmtpReceiver`: an aiosmtpd server in the test's event loop (plain SMTP, no TLS, no auth),
  taking apprise's `mailto://127.0.0.1:PORT?from=...&to=...`. No `mode=` is needed: the
  `mailto://` scheme (unlike `mailtos://`) defaults to mode "insecure" (no STARTTLS), and
  without `user:pass@` apprise does not log in. apprise sends mail with smtplib in a worker
  thread, so a server in the loop does not deadlock. (aiosmtpd's `Controller(port=0)` does
  not work: it probes the port it was given.)

- `WebhookReceiver` and `MispReceiver`: HTTPS servers (a CA made for the run, `test_ca`) for
  the webhook target (checks the HMAC signature as the README says) and the MISP push (loads
  each event with pymisp).

The fixtures `json_receiver`, `smtp_receiver`, `test_ca`, `webhook_receiver` and
`misp_receiver` reach every test: tests/conftest.py registers this module as a plugin.
The end of the file holds the synthetic leaks the alert tests record (`nir`, `leak`, `Clock`)
and the alert settings they send with (`settings`).
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import hashlib
import hmac
import ipaddress
import json
import re
import secrets
import ssl
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiosmtpd.smtp import SMTP, Envelope, Session

from watcher.alerts import AlertSettings
from watcher.alerts.settings import TargetURL
from watcher.privacy import Fingerprinter, mask_nir
from watcher.report import Report
from watcher.store import StateDB, Store

HOST = "127.0.0.1"


@dataclass(frozen=True)
class Post:
    """One notification the JSON receiver accepted."""

    path: str
    title: str
    message: str
    type: str


class _Server:
    """An aiohttp app on 127.0.0.1 (the subclasses add the routes, and TLS if they want it)."""

    def __init__(self) -> None:
        self.port = 0
        self._runner: web.AppRunner | None = None

    def routes(self, app: web.Application) -> None:
        raise NotImplementedError

    def ssl_context(self) -> ssl.SSLContext | None:
        return None

    async def start(self) -> None:
        """Listen (again) on 127.0.0.1, on the same port as before if there was one."""
        app = web.Application()
        self.routes(app)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, HOST, self.port, reuse_address=True, ssl_context=self.ssl_context())
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    async def stop(self) -> None:
        """Stop listening: connections are refused until `start()`."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None


class JsonReceiver(_Server):
    """Records apprise json:// notifications by path; can fail or go away on demand."""

    def __init__(self) -> None:
        super().__init__()
        self.posts: list[Post] = []
        self.attempts = 0
        self.failing = False

    def routes(self, app: web.Application) -> None:
        app.router.add_post("/{path:.*}", self._handle)

    def url(self, path: str, **params: str) -> str:
        query = "&".join(f"{key}={value}" for key, value in params.items())
        return f"json://{HOST}:{self.port}/{path}" + (f"?{query}" if query else "")

    def at(self, path: str) -> list[Post]:
        return [post for post in self.posts if post.path == path]

    async def _handle(self, request: web.Request) -> web.Response:
        self.attempts += 1
        if self.failing:
            return web.Response(status=503, text="down for maintenance")
        data = await request.json()
        self.posts.append(Post(request.match_info["path"], data.get("title", ""), data.get("message", ""),
                               data.get("type", "")))
        return web.Response(text="ok")


@dataclass(frozen=True)
class Mail:
    """One message the SMTP receiver accepted."""

    mail_from: str
    rcpt_tos: tuple[str, ...]
    subject: str
    text: str


class _Handler:
    def __init__(self, mails: list[Mail]) -> None:
        self.mails = mails

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        message = email.message_from_bytes(envelope.original_content or b"", policy=email.policy.default)
        part = message.get_body(preferencelist=("plain",))
        text = part.get_content() if part is not None else ""
        self.mails.append(Mail(envelope.mail_from or "", tuple(envelope.rcpt_tos), str(message["subject"]), text))
        return "250 Message accepted for delivery"


class SmtpReceiver:
    """A plain SMTP server in the running loop; `mails` holds what it accepted."""

    def __init__(self) -> None:
        self.mails: list[Mail] = []
        self.port = 0
        self._server: asyncio.base_events.Server | None = None

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        handler = _Handler(self.mails)
        self._server = await loop.create_server(lambda: SMTP(handler, hostname="receiver.test"), HOST, 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    def url(self, to: str = "soc@example.org", **params: str) -> str:
        query = "&".join([f"from=watcher@example.org&to={to}", *(f"{k}={v}" for k, v in params.items())])
        return f"mailto://{HOST}:{self.port}?{query}"


@pytest.fixture
async def json_receiver() -> AsyncIterator[JsonReceiver]:
    receiver = JsonReceiver()
    await receiver.start()
    yield receiver
    await receiver.stop()


@pytest.fixture
async def smtp_receiver() -> AsyncIterator[SmtpReceiver]:
    receiver = SmtpReceiver()
    await receiver.start()
    yield receiver
    await receiver.stop()


# --------------------------------------------------------------------------- synthetic leaks
# Shared by the alert tests: valid NIRs, reports as the scanner makes them (fingerprints and
# masked samples only), and a settable clock.

FINGERPRINTER = Fingerprinter(b"k" * 32)
T0 = datetime(2026, 11, 28, 16, 40, tzinfo=UTC)


def nir(serial: int) -> str:
    """A valid 15-digit NIR, distinct per serial (< 1,000,000)."""
    body = f"1841275{serial % 1_000_000:06d}"
    return body + f"{97 - int(body) % 97:02d}"


def leak(
    serials: range | list[int],
    *,
    tag: str = "",
    severity: str | None = None,
    insurers: tuple[str, ...] = ("Viamedis",),
    records: int | None = None,
) -> Report:
    """The report of a document holding the NIRs `serials` (its sha256 depends on them and `tag`)."""
    nirs = [nir(s) for s in serials]
    digest = hashlib.sha256(f"{tag}:{list(serials)}".encode()).hexdigest()
    if severity is None:
        severity = "critical" if len(nirs) >= 10 else "high" if nirs else "low"
    return Report(
        path="https://paste.example/x",
        sha256=digest,
        size=100 + len(nirs) * 16,
        severity=severity,
        reasons=[f"{len(nirs)} valid NIRs in a CSV extract"] if nirs else ["insurer Viamedis named"],
        counts={"nir": len(nirs)},
        insurers=list(insurers),
        records=records if records is not None else (len(nirs) or None),
        samples=[f"nir {mask_nir(value)}" for value in nirs[:3]],
        fingerprints={"nir": sorted(FINGERPRINTER("nir", value) for value in nirs)} if nirs else {},
    )


class Clock:
    """A settable clock for the store and the sender."""

    def __init__(self, now: datetime = T0) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


# 13 digits in a row, not inside the random hex of an Alert ID (which starts with 13 digits
# about 1 time in 450: the lookarounds look at the whole hex token)
NIR_RUN = re.compile(r"(?<![0-9a-f])\d{13}(?![0-9a-f]*[a-f])")


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
async def store(tmp_path: Path, clock: Clock) -> AsyncIterator[Store]:
    """The alert tests' store, on `clock`, with the sources "paste" and "forum" declared."""
    opened = await Store.open(tmp_path / "state" / "watcher.db", clock=clock)
    for name in ("paste", "forum"):
        await opened.call(StateDB.upsert_source, name, "listing")
    yield opened
    await opened.close()


def settings(tmp_path: Path, *urls: str, config: Path | None = None, **values: object) -> AlertSettings:
    """Settings with `tags=url` entries parsed as in sources.toml."""
    entries = []
    for entry in urls:
        tags, _, url = entry.partition("=") if "=" in entry.split("://")[0] else ("", "", entry)
        entries.append(TargetURL(url, tuple(t for t in tags.split(",") if t)))
    base = AlertSettings(urls=tuple(entries), config=config, jsonl=tmp_path / "state" / "alerts.jsonl",
                         retry_after=30.0, timeout=5.0)
    return replace(base, **values)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- HTTPS receivers
# A certificate authority made for the test run (cryptography, EC P-256), a server certificate
# for 127.0.0.1 it signs, and two receivers serving TLS with it: the webhook receiver and a
# MISP stand-in. The daemon trusts the CA through the target's `ca_file` only, so TLS
# verification stays on for real.


@dataclass(frozen=True)
class LoopbackCA:
    """A CA certificate file (`ca_file`) and the server context of a 127.0.0.1 certificate."""

    ca_file: Path
    cert_file: Path
    key_file: Path

    def server_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self.cert_file, self.key_file)
        return context


def make_test_ca(folder: Path) -> LoopbackCA:
    """A fresh CA and a server certificate for 127.0.0.1 and localhost, as PEM files."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.now(UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "leak-watcher test CA")])
    ca_cert = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
               .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now - timedelta(hours=1)).not_valid_after(now + timedelta(days=1))
               .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
               .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                                            data_encipherment=False, key_agreement=False, key_cert_sign=True,
                                            crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
               .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
               .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
            .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(hours=1)).not_valid_after(now + timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(HOST)),
                                                        x509.DNSName("localhost")]), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
            .sign(ca_key, hashes.SHA256()))
    folder.mkdir(parents=True, exist_ok=True)
    ca = LoopbackCA(folder / "ca.pem", folder / "server.pem", folder / "server.key")
    ca.ca_file.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    ca.cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    ca.key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                              serialization.NoEncryption()))
    return ca


@dataclass(frozen=True)
class Hook:
    """One request the webhook receiver got, whatever it answered."""

    path: str
    headers: dict[str, str]
    body: bytes
    status: int
    signed: bool | None             # the signature checked out (None: no secret to check with)

    @property
    def record(self) -> dict[str, object]:
        return json.loads(self.body)

    @property
    def key(self) -> str:
        return self.headers.get("Idempotency-Key", "")


class _TlsServer(_Server):
    """An aiohttp app on 127.0.0.1 over TLS, with a certificate of the test CA."""

    def __init__(self, ca: LoopbackCA) -> None:
        super().__init__()
        self.ca = ca

    def ssl_context(self) -> ssl.SSLContext | None:
        return self.ca.server_context()

    def url(self, path: str = "") -> str:
        return f"https://{HOST}:{self.port}/{path}"


class WebhookReceiver(_TlsServer):
    """Records every POST; checks the HMAC signature with `secret`; fails the next `failures`
    requests with `fail_status`; `delivered` counts each Idempotency-Key once (what a receiver
    deduplicating on it keeps)."""

    def __init__(self, ca: LoopbackCA, secret: bytes | None = None) -> None:
        super().__init__(ca)
        self.secret = secret
        self.hooks: list[Hook] = []
        self.failures = 0
        self.fail_status = 503

    def routes(self, app: web.Application) -> None:
        app.router.add_post("/{path:.*}", self._handle)

    def at(self, path: str) -> list[Hook]:
        return [hook for hook in self.hooks if hook.path == path and hook.status == 200]

    @property
    def delivered(self) -> dict[str, Hook]:
        kept: dict[str, Hook] = {}
        for hook in self.hooks:
            if hook.status == 200:
                kept.setdefault(hook.key, hook)
        return kept

    def verify(self, headers: dict[str, str], body: bytes) -> bool | None:
        """The check the README tells a receiver to make."""
        if self.secret is None:
            return None
        stamp = headers.get("X-Leak-Watcher-Timestamp", "")
        expected = "sha256=" + hmac.new(self.secret, stamp.encode() + b"." + body, hashlib.sha256).hexdigest()
        fresh = stamp.isdigit() and abs(time.time() - int(stamp)) < 300
        return fresh and hmac.compare_digest(expected, headers.get("X-Leak-Watcher-Signature", ""))

    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        headers = dict(request.headers)
        signed = self.verify(headers, body)
        status = 200
        if self.failures > 0:
            self.failures -= 1
            status = self.fail_status
        elif signed is False:
            status = 401
        self.hooks.append(Hook(request.match_info["path"], headers, body, status, signed))
        return web.Response(status=status, text="ok" if status == 200 else "refused")


class MispReceiver(_TlsServer):
    """A MISP stand-in: /events/add, /events/edit/<uuid>, /servers/getVersion, keyed by `key`.

    Every event received is loaded with pymisp (`MISPEvent().load`) and kept by uuid; an add of
    an event it has answers 403 "already exists", an edit of one it has not 404, as MISP does.
    `lose_answers` makes the next requests store the event but answer 500 (a lost answer)."""

    def __init__(self, ca: LoopbackCA, key: str) -> None:
        super().__init__(ca)
        self.key = key
        self.events: dict[str, Any] = {}
        self.requests: list[tuple[str, str, bytes]] = []    # (method, path, body)
        self.failures = 0
        self.lose_answers = 0

    def routes(self, app: web.Application) -> None:
        app.router.add_post("/events/add", self._add)
        app.router.add_post("/events/edit/{uuid}", self._edit)
        app.router.add_get("/servers/getVersion", self._version)

    def _refused(self, request: web.Request) -> web.Response | None:
        if request.headers.get("Authorization") != self.key:
            return web.json_response({"message": "Authentication failed."}, status=403)
        if request.headers.get("Accept") != "application/json":
            return web.json_response({"message": "JSON expected"}, status=406)
        if self.failures > 0:
            self.failures -= 1
            return web.Response(status=503, text="maintenance")
        return None

    async def _load(self, request: web.Request) -> Any:
        from pymisp import MISPEvent

        body = await request.read()
        self.requests.append((request.method, request.path, body))
        event = MISPEvent()
        event.load(body.decode("utf-8"))
        return event

    def _answer(self, event: Any) -> web.Response:
        self.events[event.uuid] = event
        if self.lose_answers > 0:
            self.lose_answers -= 1
            return web.Response(status=500, text="gateway lost the answer")
        return web.json_response({"Event": {"uuid": event.uuid, "id": str(len(self.events))}})

    async def _add(self, request: web.Request) -> web.Response:
        refused = self._refused(request)
        if refused is not None:
            return refused
        event = await self._load(request)
        if event.uuid in self.events:
            return web.json_response({"name": "Event already exists, if you would like to edit it, use the url "
                                      "in the location field.", "url": f"/events/view/{event.uuid}"}, status=403)
        return self._answer(event)

    async def _edit(self, request: web.Request) -> web.Response:
        refused = self._refused(request)
        if refused is not None:
            return refused
        event = await self._load(request)
        if request.match_info["uuid"] not in self.events or event.uuid != request.match_info["uuid"]:
            return web.json_response({"name": "Invalid event", "message": "Invalid event"}, status=404)
        return self._answer(event)

    async def _version(self, request: web.Request) -> web.Response:
        self.requests.append((request.method, request.path, b""))
        refused = self._refused(request)
        return refused or web.json_response({"version": "2.5.0"})


@pytest.fixture(scope="session")
def test_ca(tmp_path_factory: pytest.TempPathFactory) -> LoopbackCA:
    return make_test_ca(tmp_path_factory.mktemp("ca"))


@pytest.fixture
async def webhook_receiver(test_ca: LoopbackCA) -> AsyncIterator[WebhookReceiver]:
    receiver = WebhookReceiver(test_ca, secret=WEBHOOK_SECRET)
    await receiver.start()
    yield receiver
    await receiver.stop()


@pytest.fixture
async def misp_receiver(test_ca: LoopbackCA) -> AsyncIterator[MispReceiver]:
    receiver = MispReceiver(test_ca, MISP_KEY)
    await receiver.start()
    yield receiver
    await receiver.stop()


WEBHOOK_SECRET = secrets.token_hex(32).encode()
MISP_KEY = secrets.token_urlsafe(30)
