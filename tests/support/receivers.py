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

The fixtures `json_receiver` and `smtp_receiver` reach every test: tests/conftest.py registers
this module as a plugin.
The end of the file holds the synthetic leaks the alert tests record (`nir`, `leak`, `Clock`)
and the alert settings they send with (`settings`).
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import hashlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from aiohttp import web
from aiosmtpd.smtp import SMTP, Envelope, Session

from watcher.alerts import AlertSettings
from watcher.alerts.settings import TargetURL
from watcher.privacy import Fingerprinter, mask_nir
from watcher.report import Report

HOST = "127.0.0.1"


@dataclass(frozen=True)
class Post:
    """One notification the JSON receiver accepted."""

    path: str
    title: str
    message: str
    type: str


class JsonReceiver:
    """Records apprise json:// notifications by path; can fail or go away on demand."""

    def __init__(self) -> None:
        self.posts: list[Post] = []
        self.attempts = 0
        self.failing = False
        self.port = 0
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        """Listen (again) on 127.0.0.1, on the same port as before if there was one."""
        app = web.Application()
        app.router.add_post("/{path:.*}", self._handle)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, HOST, self.port, reuse_address=True)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    async def stop(self) -> None:
        """Stop listening: connections are refused until `start()`."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

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


def settings(tmp_path: Path, *urls: str, config: Path | None = None, **values: object) -> AlertSettings:
    """Settings with `tags=url` entries parsed as in sources.toml."""
    entries = []
    for entry in urls:
        tags, _, url = entry.partition("=") if "=" in entry.split("://")[0] else ("", "", entry)
        entries.append(TargetURL(url, tuple(t for t in tags.split(",") if t)))
    base = AlertSettings(urls=tuple(entries), config=config, jsonl=tmp_path / "state" / "alerts.jsonl",
                         retry_after=30.0, timeout=5.0)
    return replace(base, **values)  # type: ignore[arg-type]
