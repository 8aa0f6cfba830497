"""Push incidents to a MISP instance, as a target of the alert outbox (`[alerts.misp]`).

When an incident alerts (`new` or `update`, at or above the table's `min_severity`, carrying
one of its `tags` if any), the outbox delivers the alert to this target like to any other: one
attempt per round, retried with backoff up to max_tries, recorded in the alert's
`delivered_to` once MISP accepted it. Delivering means:

1. the incident's whole payload is read from the state database now (`incident_payload`: every
   document so far, the current triage state), and rendered as the MISP event of
   `watcher.exports.misp` (deterministic uuids from the installation's key: the same incident
   is always the same event), with the table's `tlp` and `distribution`, not published;
2. it is POSTed (`Authorization: <key>`, `Accept: application/json`) to `/events/add` for a
   `new` alert, `/events/edit/<event uuid>` for an `update`; an add MISP refuses because the
   event exists (a retry after a lost answer, an incident pushed before) becomes an edit, and
   an edit of an event MISP does not have (deleted there, or never added) becomes an add. So
   pushing twice never makes two events.

Plain aiohttp, not PyMISP: PyMISP calls MISP synchronously through requests, which would need
a thread per push; two requests are all this needs, with the TLS rules of the webhooks (chain
and hostname checked, `ca_file` for an internal CA). pymisp is still used to build the event
(in a thread: its import costs ~0.25 s). A MISP answer other than 2xx is a failed attempt.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any


from ..privacy import read_secret
from ..score import severity_rank
from .message import Message
from .records import Alert
from .settings import MispSettings
from .targets import SendResult
from .webhook import USER_AGENT, OnePerAlert, answer, post_json, refusal, target_name

if TYPE_CHECKING:
    from ..store import Store

__all__ = ["MispTarget", "misp_body"]

INCIDENT_KINDS = ("new", "update")


def misp_body(payload: dict[str, Any], secret: bytes, *, tlp: str, distribution: int) -> tuple[str, bytes]:
    """(event uuid, JSON body `{"Event": {...}}`) of an incident payload (blocking: pymisp)."""
    from ..exports import export_from_payload, installation_namespace
    from ..exports.misp import misp_json

    export = export_from_payload(payload, installation=installation_namespace(secret))
    text = misp_json(export, tlp=tlp, distribution=distribution)
    return export.uuid("misp", "event"), text.encode("utf-8")


@dataclass(frozen=True)
class MispTarget(OnePerAlert):
    """The MISP instance of `[alerts.misp]` (an `AlertTarget`)."""

    id: str
    name: str
    tags: frozenset[str]
    settings: MispSettings = field(repr=False)

    @classmethod
    def from_settings(cls, settings: MispSettings) -> MispTarget:
        return cls(id=hashlib.sha256(f"misp:{settings.url}".encode()).hexdigest()[:16],
                   name=target_name("misp", settings.url), tags=frozenset(settings.tags), settings=settings)

    def wants(self, alert: Alert) -> bool:
        """Incident alerts from `min_severity` up, with one of the tags if any are set."""
        return (alert.kind in INCIDENT_KINDS and alert.incident_id is not None
                and alert.severity in ("low", "medium", "high", "critical")
                and severity_rank(alert.severity) >= severity_rank(self.settings.min_severity)
                and (not self.tags or not self.tags.isdisjoint(alert.tags)))

    async def deliver(self, alerts: Sequence[Alert], digest: bool, store: Store, timeout: float) -> SendResult:
        """Push the incident of the alert (`alerts` holds one) as its MISP event."""
        from ..exports import incident_payload

        (alert,) = alerts
        assert alert.incident_id is not None      # see `wants`
        payload = await store.call(incident_payload, alert.incident_id, self.settings.tor_sources)
        if payload is None:
            return SendResult(self, False, f"incident #{alert.incident_id} is not in the database")
        secret = await asyncio.to_thread(read_secret, self.settings.secret_file)
        if secret is None:
            return SendResult(self, False, f"no installation key at {self.settings.secret_file}")
        event_uuid, body = await asyncio.to_thread(misp_body, payload, secret, tlp=self.settings.tlp,
                                                   distribution=self.settings.distribution)
        answered = await answer(self, self.settings.timeout, self._push(event_uuid, body, alert.kind == "update"))
        if isinstance(answered, SendResult):
            return answered
        status, text = answered
        return SendResult(self, True) if _ok(status) else SendResult(self, False, refusal(status, text))

    async def _push(self, event_uuid: str, body: bytes, update: bool) -> tuple[int, str]:
        """Add the event, or edit it on an update; the other way when MISP says the event
        exists (add) or is not there (edit), so a retry never makes a second event."""
        add, edit = "/events/add", f"/events/edit/{event_uuid}"
        first, then = (edit, add) if update else (add, edit)
        status, text = await self._request(first, body)
        if not _ok(status) and _other_way(first == add, status, text):
            status, text = await self._request(then, body)
        return status, text

    async def probe(self, message: Message, timeout: float) -> SendResult:
        """`watcher test-alert`: the key is asked for MISP's version; no event is made."""
        answered = await answer(self, self.settings.timeout, self._request("/servers/getVersion", None))
        if isinstance(answered, SendResult):
            return answered
        status, text = answered
        if not _ok(status):
            return SendResult(self, False, refusal(status, text))
        try:
            json.loads(text)["version"]
        except (ValueError, KeyError, TypeError):
            return SendResult(self, False, "answered, but not with MISP's version: is the URL MISP's?")
        return SendResult(self, True)

    async def _request(self, path: str, body: bytes | None) -> tuple[int, str]:
        headers = {"Authorization": self.settings.key, "Accept": "application/json",
                   "Content-Type": "application/json", "User-Agent": USER_AGENT}
        url = self.settings.url.rstrip("/") + path
        return await post_json(url, body or b"", headers, timeout=self.settings.timeout,
                               ca_file=self.settings.ca_file, method="POST" if body is not None else "GET")


def _ok(status: int) -> bool:
    return 200 <= status < 300


def _other_way(was_add: bool, status: int, text: str) -> bool:
    """An add refused because the event exists, or an edit of an event MISP does not have."""
    if was_add:
        return status in (403, 409) and "already exists" in text.lower()
    return status == 404
