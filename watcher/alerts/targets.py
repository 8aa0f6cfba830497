"""Apprise targets: loading them, routing alerts to them by tag, sending to one of them.

Routing. apprise's own rule (measured with apprise 2.3): `notify(tag=...)` selects services
carrying one of the tags (a list is OR, a tuple inside it AND), plus services tagged `always`;
a service *without* tags is notified only when no tag filter is given (or `tag="all"`). So with
apprise's rule, an untagged URL would miss every tagged alert. leak-watcher routes itself,
so that the simplest setup (one untagged URL) receives everything:

- an untagged target receives every alert;
- a target tagged `always` receives every alert;
- any other target receives the alerts that carry one of its tags. Leak alerts carry their
  severity (`critical`, `high`, `medium`, `low`) and `leak`; source-health notices `health`.
  A target tagged `critical` gets only critical alerts; `leak` gets every leak alert.

Each matched target is then sent to through its own one-service `Apprise` object, so the
outcome of every target is known: a target that accepted an alert is recorded and never sent
that alert again, while the others are retried.

A target's id is a short SHA-256 of its full URL (stable across restarts, no secret stored);
its name is apprise's privacy URL (passwords and tokens starred), safe to print and log.

Other kinds of target. `load_targets` also returns the JSON webhooks (`watcher.alerts.webhook`)
and the MISP instance (`watcher.alerts.misp_push`) the settings declare. Every kind is an
`AlertTarget`: the outbox asks it which alerts it `wants`, how it `batches` them (apprise: one
message, or one digest; a webhook or MISP: one request per alert) and to `deliver` them; `send`
(a `watcher test-alert` probe) asks it to `probe`. The outbox keeps one delivery state for all:
the target ids in an alert's `delivered_to`.
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import apprise
from apprise import Apprise, AppriseAsset, AppriseConfig, NotifyFormat

from ..redact import one_line
from .message import Message, digest_message, render
from .records import Alert
from .settings import AlertSettings

if TYPE_CHECKING:
    from ..store import Store

__all__ = ["AlertTarget", "SendResult", "Target", "TargetError", "load_targets", "one_line_error", "route", "send"]

log = logging.getLogger(__name__)

ALWAYS_TAG = "always"
ERROR_CHARS = 300
_URL = re.compile(r"\b([A-Za-z][A-Za-z0-9+.-]*)://\S*")


class TargetError(Exception):
    """The targets could not be loaded (an invalid URL, an unreadable apprise config).

    `key` is the `[alerts]` key at fault ("urls" or "config") and `detail` what is wrong with
    it, so a caller can locate the error in sources.toml; `str()` is one self-contained line.
    """

    def __init__(self, key: str, detail: str) -> None:
        super().__init__(f"[alerts] {key} {detail}")
        self.key = key
        self.detail = detail


class AlertTarget(Protocol):
    """What the outbox needs of a target, whatever its kind (see the module doc)."""

    @property
    def id(self) -> str: ...                    # stable, secret-free: kept in `delivered_to`
    @property
    def name(self) -> str: ...                  # printable, secret-free
    @property
    def tags(self) -> frozenset[str]: ...

    def accepts(self, tags: Iterable[str]) -> bool: ...
    def wants(self, alert: Alert) -> bool: ...
    def batches(self, alerts: Sequence[Alert], digest: bool) -> list[list[Alert]]: ...
    async def deliver(self, alerts: Sequence[Alert], digest: bool, store: Store, timeout: float) -> SendResult: ...
    async def probe(self, message: Message, timeout: float) -> SendResult: ...


def accepts_tags(own: frozenset[str], tags: Iterable[str]) -> bool:
    """The routing rule of the module doc: untagged or `always` takes all, else a common tag."""
    return not own or ALWAYS_TAG in own or not own.isdisjoint(tags)


@dataclass(frozen=True)
class Target:
    """One apprise service: `id` stable and secret-free, `name` printable, `tags` lowercase."""

    id: str
    name: str
    tags: frozenset[str]
    service: apprise.plugins.NotifyBase

    def accepts(self, tags: Iterable[str]) -> bool:
        """Whether an alert with `tags` goes to this target (see the module doc)."""
        return accepts_tags(self.tags, tags)

    def wants(self, alert: Alert) -> bool:
        return self.accepts(alert.tags)

    def batches(self, alerts: Sequence[Alert], digest: bool) -> list[list[Alert]]:
        """One digest of them all, or one message each."""
        if not alerts:
            return []
        return [list(alerts)] if digest else [[alert] for alert in alerts]

    async def deliver(self, alerts: Sequence[Alert], digest: bool, store: Store, timeout: float) -> SendResult:
        """One message: the digest of the alerts, or the alert itself."""
        message = digest_message(alerts) if digest else render(alerts[0])
        return await self.probe(message, timeout)

    async def probe(self, message: Message, timeout: float) -> SendResult:
        """Send `message` through `Apprise.async_notify`; never raises."""
        notifier = Apprise(asset=self.service.asset)
        notifier.add(self.service)
        try:
            result = await notifier.async_notify(
                body=message.body, title=message.title, notify_type=message.notify_type,
                body_format=NotifyFormat.TEXT, timeout=timeout,
            )
        except Exception as exc:  # a plugin bug must cost one attempt, never the sender
            return SendResult(self, False, one_line_error(f"{type(exc).__name__}: {exc}"))
        with result:
            if result:
                return SendResult(self, True)
            problems = [entry.message for entry in result.logs() if entry.level in ("WARNING", "ERROR")]
            return SendResult(self, False, one_line_error("; ".join([result.status.name, *problems[-2:]])))


@dataclass(frozen=True)
class SendResult:
    """The outcome of one message to one target."""

    target: AlertTarget
    ok: bool
    error: str | None = None


def quiet_apprise() -> None:
    """Keep apprise's logger at INFO or above: its DEBUG lines carry whole message bodies."""
    logger = logging.getLogger("apprise")
    if logger.getEffectiveLevel() < logging.INFO:
        logger.setLevel(logging.INFO)


def _target(service: apprise.plugins.NotifyBase) -> Target:
    url = service.url()
    return Target(
        id=hashlib.sha256(url.encode()).hexdigest()[:16],
        name=service.url(privacy=True),
        tags=frozenset(str(tag).lower() for tag in service.tags),
        service=service,
    )


def load_targets(settings: AlertSettings, strict: bool = False) -> list[AlertTarget]:
    """Every target the settings declare: apprise services deduplicated by URL, then the
    webhooks and MISP.

    Raises TargetError when a URL does not parse, or when the apprise config file loads no
    service (unreadable, invalid YAML): a declared target that silently vanished would turn
    every later alert into a log line only. An entry of the config file that apprise skips is
    an error too when `strict` (check-config, and `run` before it starts); the running sender
    keeps the targets that loaded and logs one error line (the file may have been edited since
    the start: the other targets must still get the alerts). apprise's own log lines about it
    are kept out of the logs: they quote the URL, credentials half-starred.
    """
    quiet_apprise()
    asset = AppriseAsset()
    services: list[apprise.plugins.NotifyBase] = []
    for number, entry in enumerate(settings.urls, 1):
        with _apprise_problems():
            service = Apprise.instantiate(entry.url, asset=asset, tag=list(entry.tags) or None)
        if service is None:
            raise TargetError("urls", f"entry {number} is not a URL apprise can use "
                                      f"(scheme {entry.url.split('://', 1)[0]!r})")
        services.append(service)
    if settings.config is not None:
        services.extend(_from_config(settings, asset, strict))
    targets: dict[str, AlertTarget] = {}
    for target in [*map(_target, services), *_http_targets(settings)]:
        targets.setdefault(target.id, target)
    return list(targets.values())


def _http_targets(settings: AlertSettings) -> list[AlertTarget]:
    """The webhooks and the MISP instance (their settings were validated with the file)."""
    from .misp_push import MispTarget
    from .webhook import WebhookTarget

    targets: list[AlertTarget] = [WebhookTarget.from_settings(hook) for hook in settings.webhooks]
    if settings.misp is not None:
        targets.append(MispTarget.from_settings(settings.misp))
    return targets


def _from_config(settings: AlertSettings, asset: AppriseAsset, strict: bool) -> list[apprise.plugins.NotifyBase]:
    """The services of the apprise config file. apprise skips an entry it cannot use with a log
    line only: an error when `strict`, else one error line of ours, or a typo would silently
    drop a target."""
    config = AppriseConfig(asset=asset)
    names = f"names {settings.config}"
    with _apprise_problems() as problems:
        added = config.add(str(settings.config))
        services = list(config.services()) if added else []
    said = "; ".join(dict.fromkeys(problems))
    if not added:
        raise TargetError("config", f"{names}, not a path apprise can read")
    if not services:
        why = said or "unreadable file, invalid YAML/text, or no URL in it"
        raise TargetError("config", f"{names}: no service loaded ({why})")
    if problems and strict:
        raise TargetError("config", f"{names}: {said}")
    if problems:
        log.error("apprise config %s: %s (its other %d target(s) are used)", settings.config, said, len(services))
    return services


@contextmanager
def _apprise_problems() -> Iterator[list[str]]:
    """apprise's warnings and errors while the block runs, URLs cut to their scheme (they carry
    credentials), kept from the logs: the caller reports them as one error."""
    problems: list[str] = []

    def keep(record: logging.LogRecord) -> bool:
        if record.levelno >= logging.WARNING:
            problems.append(_URL.sub(r"\1://...", one_line_error(record.getMessage()).rstrip(".")))
            return False
        return True

    logger = logging.getLogger("apprise")
    logger.addFilter(keep)
    try:
        yield problems
    finally:
        logger.removeFilter(keep)


def route(targets: Sequence[AlertTarget], tags: Iterable[str]) -> list[AlertTarget]:
    """The targets an alert with `tags` goes to."""
    wanted = frozenset(tag.lower() for tag in tags)
    return [target for target in targets if target.accepts(wanted)]


async def send(target: AlertTarget, message: Message, timeout: float) -> SendResult:
    """Send `message` to `target` alone (`watcher test-alert`); never raises."""
    return await target.probe(message, timeout)


def one_line_error(text: str) -> str:
    """An error as one redacted line of at most ERROR_CHARS characters (it may quote a page)."""
    return one_line(text, ERROR_CHARS)
