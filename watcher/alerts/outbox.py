"""The sender task: emits new alerts (log + JSONL) and delivers pending ones to their targets.

Alerts are rows of the `alerts` table (the outbox), written in the transaction of the finding
that raised them. `AlertSender.run()` loops, every round:

1. health: every `health_check` seconds, turn long failure streaks and recoveries of sources
   into `health` alerts (`watcher.alerts.health`);
2. emit: log each alert not yet emitted and append it to the JSONL sink, then mark it (once
   per alert, across restarts: see `watcher.alerts.sink`);
3. deliver: send each due pending alert to the targets it routes to (apprise targets and
   webhooks by tags, MISP by its own rule: `watcher.alerts.targets`). A target that
   accepts it is recorded and never sent it again; the alert is `sent` once every routed
   target accepted it, `logged` when no target is routed (nothing configured, or no tag
   matches). Otherwise it is retried with exponential backoff (retry_after doubling up to
   retry_max, +-10% jitter) and is `failed` after max_tries attempts, with an ERROR line.
   Alerts below `digest_below` wait until the oldest of them is `digest_every` old, then go
   out as one digest per target.

Crash safety: an alert is marked delivered to a target only after the target reported success,
so a crash loses nothing; the only duplicate possible is an alert in flight during the crash,
and every payload carries its stable `Alert ID` for receivers to drop it (a webhook gets it as
its `Idempotency-Key` header too; MISP turns a second add of an event into an edit).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta

from ..logs import log_event
from ..store import Store
from ..timestamps import format_time, parse_time
from .health import check_sources
from .incidents import IncidentPolicy
from .message import jsonl_record
from .records import Alert, due_alerts, mark_emitted, record_attempt, unemitted_alerts
from .settings import AlertSettings
from .sink import JsonlSink
from .targets import AlertTarget, SendResult, TargetError, load_targets

__all__ = ["AlertSender"]

log = logging.getLogger(__name__)

JITTER = 0.1
POLL_EVERY = 1.0
_Plan = tuple[AlertTarget, list[Alert]]   # a target and the alerts one request to it carries


def _utc_now() -> datetime:
    return datetime.now(UTC)


class AlertSender:
    """Delivers the outbox of one state database; one instance per daemon.

    `policy` is the matching `AlertHook` for `Store.record_item(..., alert=sender.policy)`.
    `targets` overrides the ones the settings declare (tests); `clock` and `rng` make time
    and jitter controllable. `on_outcome(ok)` is called after every delivery attempt of an
    alert: True when it completed the alert (`sent`), False when it failed (to be retried, or
    `failed` for good); e.g. `watcher.metrics.Metrics.alert`.
    """

    def __init__(
        self,
        store: Store,
        settings: AlertSettings,
        *,
        clock: Callable[[], datetime] = _utc_now,
        poll_every: float = POLL_EVERY,
        rng: random.Random | None = None,
        targets: Sequence[AlertTarget] | None = None,
        on_outcome: Callable[[bool], None] | None = None,
    ) -> None:
        self.store = store
        self._on_outcome = on_outcome
        self._clock = clock
        self._poll_every = poll_every
        self._rng = rng or random.Random()
        self._fixed_targets = list(targets) if targets is not None else None
        self._wake = asyncio.Event()
        self._reconciled = False
        self._next_health = 0.0
        self.reconfigure(settings)

    # -- configuration -------------------------------------------------------------------

    def reconfigure(self, settings: AlertSettings) -> None:
        """Use new settings (SIGHUP); targets are reloaded on the next delivery."""
        self.settings = settings
        self.policy = IncidentPolicy(settings)
        self._sink = JsonlSink(settings.jsonl) if settings.jsonl is not None else None
        self._targets: list[AlertTarget] | None = self._fixed_targets
        self._target_error: str | None = None

    async def _load_targets(self) -> list[AlertTarget] | None:
        """The targets, loaded once per configuration; None (and an ERROR line) if they fail.

        In a thread: apprise loads its ~190 plugins on first use (0.5 s measured) and may read
        a config file, which must not stall the event loop (and the watchdog with it).
        """
        if self._targets is None and self._target_error is None:
            try:
                self._targets = await asyncio.to_thread(load_targets, self.settings)
                log_event(log, "info", "alert targets loaded", targets=len(self._targets),
                          names=", ".join(t.name for t in self._targets))
            except TargetError as exc:
                self._target_error = str(exc)
                log_event(log, "error", "alert targets unusable: alerts wait and retry", reason=str(exc))
        return self._targets

    # -- loop ----------------------------------------------------------------------------

    def wake(self) -> None:
        """Start the next round now (e.g. right after an alert was recorded)."""
        self._wake.set()

    async def run(self) -> None:
        """Rounds until cancelled; a failing round is logged and retried, never fatal."""
        while True:
            try:
                await self.run_once()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("alert sender round failed; retrying")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self._poll_every)
            self._wake.clear()

    async def run_once(self) -> None:
        """One round: health (when due), emit, deliver."""
        if time.monotonic() >= self._next_health:
            self._next_health = time.monotonic() + self.settings.health_check
            await self.check_health()
        await self.emit()
        await self.deliver()

    # -- health --------------------------------------------------------------------------

    async def check_health(self) -> int:
        """Write the source-health notices due now; returns how many."""
        created = await self.store.call(check_sources, self._clock(), self.settings.health_after)
        return len(created)

    # -- emit ----------------------------------------------------------------------------

    async def emit(self) -> int:
        """Log and write to the JSONL sink every alert not emitted yet; returns how many."""
        emitted = 0
        while alerts := await self.store.call(unemitted_alerts):
            skip = await self._already_in_sink(alerts)
            for alert in alerts:
                if alert.alert_id not in skip:
                    _log_alert(alert)
            await self._write_sink([a for a in alerts if a.alert_id not in skip])
            await self.store.call(mark_emitted, [a.id for a in alerts], format_time(self._clock()))
            emitted += len(alerts)
        return emitted

    async def _write_sink(self, alerts: list[Alert]) -> None:
        """Append the alerts to the JSONL sink. A sink that cannot be written (disk full,
        permissions) costs its lines, with an ERROR naming the alerts, never the delivery:
        the alerts are in the log already and still go out through apprise."""
        if self._sink is None or not alerts:
            return
        try:
            await asyncio.to_thread(self._sink.append, [jsonl_record(a) for a in alerts])
        except OSError as exc:
            log_event(log, "error", "alerts not written to the JSONL sink", path=str(self._sink.path),
                      reason=str(exc), alerts=",".join(str(a.id) for a in alerts))

    async def _already_in_sink(self, alerts: list[Alert]) -> set[str]:
        """On the first round after a start, the unmarked alerts a crash left in the sink."""
        if self._reconciled or self._sink is None:
            return set()
        self._reconciled = True
        found = await asyncio.to_thread(self._sink.written_ids, [a.alert_id for a in alerts])
        if found:
            log_event(log, "info", "alerts already in the JSONL sink before a restart", alerts=len(found))
        return found

    # -- deliver -------------------------------------------------------------------------

    async def deliver(self) -> int:
        """Attempt every due alert, most severe first (digests when their period is over).

        Returns how many alerts this completed (`sent`, or `logged` when no target is routed).
        """
        now = self._clock()
        due = await self.store.call(due_alerts, format_time(now))
        if not due:
            return 0
        due.sort(key=lambda a: (-a.rank, a.id))  # critical first: a slow target delays the rest
        if self._targets is None:
            self._target_error = None  # a broken apprise config may have been fixed: load again
        batched = [a for a in due if a.kind != "health" and self.settings.digested(a.severity)]
        single = [a for a in due if not (a.kind != "health" and self.settings.digested(a.severity))]
        delivered = 0
        for alert in single:
            delivered += await self._attempt([alert], digest=False)
        if batched and self._digest_due(batched, now):
            delivered += await self._attempt(batched, digest=True)
        return delivered

    def _digest_due(self, alerts: Sequence[Alert], now: datetime) -> bool:
        """A digest goes out when its oldest alert waited digest_every, or as a retry."""
        oldest = min(parse_time(a.created_at) for a in alerts)
        return now - oldest >= timedelta(seconds=self.settings.digest_every) or any(a.tries for a in alerts)

    async def _attempt(self, alerts: Sequence[Alert], digest: bool) -> int:
        """One delivery attempt of `alerts` (one message, or one digest, per target)."""
        targets = [] if not self.settings.has_targets and self._fixed_targets is None else await self._load_targets()
        if targets is None:
            error = f"no usable target: {self._target_error}"
            return await self._record(alerts, targets=[], results=[], error=error)
        plans = self._plan(alerts, targets, digest)
        results = await asyncio.gather(*(target.deliver(batch, digest, self.store, self.settings.timeout)
                                         for target, batch in plans))
        accepted: dict[str, set[int]] = {}
        for result, (target, batch) in zip(results, plans, strict=True):
            if result.ok:
                accepted.setdefault(target.id, set()).update(alert.id for alert in batch)
        return await self._record(alerts, targets=targets, results=list(results), accepted=accepted)

    @staticmethod
    def _plan(alerts: Sequence[Alert], targets: Sequence[AlertTarget], digest: bool) -> list[_Plan]:
        """(target, the alerts of one request) for every request to make: each target is sent
        what it wants and has not accepted yet, batched its way (a digest, or one by one)."""
        plans: list[_Plan] = []
        for target in targets:
            todo = [a for a in alerts if target.wants(a) and target.id not in a.delivered_to]
            plans.extend((target, batch) for batch in target.batches(todo, digest))
        return plans

    async def _record(self, alerts: Sequence[Alert], *, targets: Sequence[AlertTarget], results: list[SendResult],
                      accepted: dict[str, set[int]] | None = None, error: str | None = None) -> int:
        """Store each alert's new state after an attempt; returns how many are now complete."""
        accepted = accepted or {}
        failures = "; ".join(f"{r.target.name}: {r.error}" for r in results if not r.ok) or error
        now = self._clock()
        done = 0
        for alert in alerts:
            routed = {t.id for t in targets if t.wants(alert)}
            delivered = alert.delivered_to | {tid for tid, ids in accepted.items() if alert.id in ids}
            if error is None and routed <= delivered:
                new_state, next_try, last_error = ("sent" if routed else "logged"), now, None
                done += 1
            elif alert.tries + 1 >= self.settings.max_tries:
                new_state, next_try, last_error = "failed", now, failures
            else:
                new_state, last_error = "pending", failures
                next_try = now + timedelta(seconds=self._delay(alert.tries + 1))
            await self.store.call(record_attempt, alert.id, delivered_to=delivered,
                                  new_state=new_state, next_try=format_time(next_try), error=last_error,
                                  now=format_time(now))
            _log_outcome(alert, new_state, len(routed), next_try, last_error)
            if self._on_outcome is not None and new_state != "logged":
                self._on_outcome(new_state == "sent")
        return done

    def _delay(self, tries: int) -> float:
        return self.settings.retry_delay(tries) * self._rng.uniform(1 - JITTER, 1 + JITTER)


def _log_alert(alert: Alert) -> None:
    """The alert itself, as one WARNING line (no identifier: counts, names, masked samples)."""
    payload = alert.payload
    log_event(log, "warning", "alert", alert=alert.id, alert_id=alert.alert_id, kind=alert.kind,
              severity=alert.severity, incident=alert.incident_id, source=alert.source,
              url=payload.get("url"), nirs=payload.get("counts", {}).get("nir"), title=alert.title,
              changes="; ".join(payload.get("changes", [])) or None)


def _log_outcome(alert: Alert, state: str, routed: int, next_try: datetime, error: str | None) -> None:
    if state == "sent":
        log_event(log, "info", "alert delivered", alert=alert.id, alert_id=alert.alert_id, targets=routed)
    elif state == "logged":
        log_event(log, "info", "alert not routed to any target (log and JSONL only)", alert=alert.id)
    elif state == "failed":
        log_event(log, "error", "alert delivery failed for good", alert=alert.id, alert_id=alert.alert_id,
                  tries=alert.tries + 1, error=error)
    else:
        log_event(log, "warning", "alert delivery failed, will retry", alert=alert.id, tries=alert.tries + 1,
                  next_try=format_time(next_try), error=error)
