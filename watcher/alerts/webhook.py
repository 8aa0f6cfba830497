"""JSON webhooks: the alert's JSONL record POSTed to a SIEM or SOAR, signed, through the outbox.

One POST per alert (a digest is for people: a machine gets every record as it is), body the
alert's `jsonl_record` (`"schema": "leak-watcher/alert/1"`, README "Webhook and MISP") as
UTF-8 JSON, with these headers:

    Content-Type: application/json
    Idempotency-Key, X-Leak-Watcher-Delivery   the alert's id: the same on every retry, so a
                                 receiver drops the copy a retry after a lost answer sends
    X-Leak-Watcher-Timestamp     unix seconds when this attempt was signed
    X-Leak-Watcher-Signature     sha256=<hex HMAC-SHA256 of "<timestamp>.<body>">, with the
                                 `secret` when one is configured

The timestamp is inside the signed string, so a receiver that refuses a timestamp more than a
few minutes old refuses a replayed request, and a body cannot be moved to another timestamp.

Decisions:

- TLS verification is always on (hostname and chain); `ca_file` adds an internal CA, never
  turns checking off. Plain http is accepted only to a loopback address (a log shipper on the
  same host), by the settings.
- The sources' address policy (no private addresses) does not apply: a webhook URL is chosen
  by the operator, not by a page leak-watcher read, and SIEMs usually live on private networks.
- No redirect is followed (a 3xx is a failed attempt): a redirect would carry the record to a
  URL nobody configured.
- Any answer but 2xx is a failed attempt, retried with the outbox's backoff up to max_tries,
  including 4xx: a 401 or 404 is most often a receiver being reconfigured or a secret being
  rotated, and retrying for the outbox's hours lets it get the alert once fixed. The error
  recorded for a 4xx (408 and 429 apart) says to check the URL and secret.
- The record holds no cleartext identifier: it is built from the stored payload (counts,
  masked samples) and redacted again (`jsonl_record`).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import ssl
import time
import uuid
from collections.abc import Awaitable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import aiohttp

from .. import __version__
from ..timestamps import format_time
from .message import ALERT_SCHEMA, Message, jsonl_record
from .records import Alert
from .settings import WebhookSettings
from .targets import SendResult, accepts_tags, one_line_error

if TYPE_CHECKING:
    from ..store import Store

__all__ = ["SIGNATURE_HEADER", "TIMESTAMP_HEADER", "WebhookTarget", "body_of", "post_json", "sign",
           "ssl_context", "target_name"]

SIGNATURE_HEADER = "X-Leak-Watcher-Signature"
TIMESTAMP_HEADER = "X-Leak-Watcher-Timestamp"
DELIVERY_HEADER = "X-Leak-Watcher-Delivery"
USER_AGENT = f"leak-watcher/{__version__}"
ANSWER_CHARS = 200          # of a refusal's body, quoted in the error
RETRIED_4XX = (408, 429)    # client errors that are about timing, not about the request


def ssl_context(ca_file: Path | None) -> ssl.SSLContext:
    """The system's trust store (plus `ca_file`), hostname and chain checked."""
    context = ssl.create_default_context()
    if ca_file is not None:
        context.load_verify_locations(cafile=str(ca_file))
    return context


def target_name(kind: str, url: str) -> str:
    """`webhook https://siem.example:8443/...`: scheme, host and port only (a path may hold a token)."""
    parts = urlsplit(url)
    host = parts.hostname or "?"
    host = f"[{host}]" if ":" in host else host
    port = f":{parts.port}" if parts.port else ""
    rest = "/..." if parts.path not in ("", "/") or parts.query else ""
    return f"{kind} {parts.scheme}://{host}{port}{rest}"


def body_of(record: Mapping[str, Any]) -> bytes:
    """The exact bytes posted (and signed)."""
    return json.dumps(record, ensure_ascii=False, separators=(",", ":"), default=str).encode("utf-8")


def sign(secret: bytes, timestamp: str, body: bytes) -> str:
    """`sha256=<hex>`: HMAC-SHA256 of `<timestamp>.<body>` (what a receiver recomputes)."""
    return "sha256=" + hmac.new(secret, timestamp.encode("ascii") + b"." + body, hashlib.sha256).hexdigest()


async def post_json(url: str, body: bytes, headers: Mapping[str, str], *, timeout: float,
                    ca_file: Path | None, method: str = "POST") -> tuple[int, str]:
    """(status, start of the answer's text) of one request; aiohttp and OS errors propagate."""
    connector = aiohttp.TCPConnector(ssl=ssl_context(ca_file))
    async with (aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=timeout)) as session,
                session.request(method, url, data=body if method == "POST" else None, headers=dict(headers),
                                allow_redirects=False) as response):
        return response.status, await response.text(errors="replace")


async def answer(target: Any, timeout: float, request: Awaitable[tuple[int, str]]) -> tuple[int, str] | SendResult:
    """The (status, text) `request` gives, or `target`'s failed SendResult when no answer
    came (a timeout, a refused connection, a TLS failure)."""
    try:
        return await request
    except TimeoutError:
        return SendResult(target, False, f"no answer within {timeout:g} s")
    except (aiohttp.ClientError, OSError, ssl.SSLError) as exc:
        return SendResult(target, False, one_line_error(f"{type(exc).__name__}: {exc}"))


class OnePerAlert:
    """What the HTTP targets (webhooks, MISP) share: routing by tags, one request per alert
    (a digest is for people)."""

    tags: frozenset[str]

    def accepts(self, tags: Iterable[str]) -> bool:
        return accepts_tags(self.tags, tags)

    def batches(self, alerts: Sequence[Alert], digest: bool) -> list[list[Alert]]:
        return [[alert] for alert in alerts]


def refusal(status: int, text: str) -> str:
    """The error recorded for a non-2xx answer."""
    hint = (" (the receiver refused the request itself: check its URL, secret and schema)"
            if 400 <= status < 500 and status not in RETRIED_4XX else "")
    if 300 <= status < 400:
        hint = " (redirects are not followed: configure the final URL)"
    return one_line_error(f"HTTP {status}{hint}: {text[:ANSWER_CHARS]}")


@dataclass(frozen=True)
class WebhookTarget(OnePerAlert):
    """One configured webhook (an `AlertTarget`)."""

    id: str
    name: str
    tags: frozenset[str]
    url: str = field(repr=False)
    secret: bytes | None = field(repr=False)
    timeout: float = 10.0
    ca_file: Path | None = None

    @classmethod
    def from_settings(cls, hook: WebhookSettings) -> WebhookTarget:
        return cls(id=hashlib.sha256(f"webhook:{hook.url}".encode()).hexdigest()[:16],
                   name=target_name("webhook", hook.url), tags=frozenset(hook.tags), url=hook.url,
                   secret=hook.secret, timeout=hook.timeout, ca_file=hook.ca_file)

    def wants(self, alert: Alert) -> bool:
        return self.accepts(alert.tags)

    async def deliver(self, alerts: Sequence[Alert], digest: bool, store: Store, timeout: float) -> SendResult:
        """POST the alert's record (`alerts` holds one, see `batches`)."""
        (alert,) = alerts
        return await self.post(jsonl_record(alert), alert.alert_id)

    async def probe(self, message: Message, timeout: float) -> SendResult:
        """A `kind: "test"` record (`watcher test-alert`): no finding, no data."""
        delivery = uuid.uuid4().hex
        record = {"schema": ALERT_SCHEMA, "alert_id": delivery, "kind": "test", "severity": "info",
                  "title": message.title, "body": message.body, "created_at": format_time(datetime.now(UTC)),
                  "tags": []}
        return await self.post(record, delivery)

    async def post(self, record: Mapping[str, Any], delivery: str) -> SendResult:
        """One signed POST of `record`; never raises."""
        body = body_of(record)
        stamp = str(int(time.time()))
        headers = {"Content-Type": "application/json", "User-Agent": USER_AGENT, "Idempotency-Key": delivery,
                   DELIVERY_HEADER: delivery, TIMESTAMP_HEADER: stamp}
        if self.secret is not None:
            headers[SIGNATURE_HEADER] = sign(self.secret, stamp, body)
        answered = await answer(self, self.timeout, post_json(self.url, body, headers, timeout=self.timeout,
                                                              ca_file=self.ca_file))
        if isinstance(answered, SendResult):
            return answered
        status, text = answered
        if 200 <= status < 300:
            return SendResult(self, True)
        return SendResult(self, False, refusal(status, text))
