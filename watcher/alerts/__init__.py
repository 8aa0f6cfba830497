"""Alerting: incidents, the alert outbox and its delivery through apprise.

    finding recorded --(same transaction)--> incident updated --> alert row (outbox)
    AlertSender: health notices --> log + JSONL sink (once) --> apprise targets (retried)

Public API:

- `alert_settings(config)` validates the `[alerts]` table into `AlertSettings`
  (keys and defaults in `watcher.alerts.settings`);
- `AlertSender(store, settings)`: `.policy` is the `AlertHook` to pass to
  `Store.record_item(..., alert=...)`; `await .run()` is the sender task; `await .run_once()`
  one round (health, emit, deliver); `.reconfigure(settings)` on reload; `.wake()`;
- `IncidentPolicy(settings)`: the hook alone (grouping and when to alert);
- `load_targets(settings)`, `route(targets, tags)`, `send(target, message, timeout)`:
  apprise targets, tag routing (an untagged target receives everything) and one send;
- `records`: the alert rows (`Alert`) and the queries the CLI uses.

Nothing here ever holds a cleartext identifier: alerts are rendered from counts, reasons,
names and masked samples, and every outgoing text is passed through `watcher.redact`.
"""

from .incidents import IncidentPolicy
from .message import Message, digest_message, jsonl_record, probe_message, render
from .outbox import AlertSender
from .records import Alert
from .settings import AlertSettings, alert_settings
from .targets import SendResult, Target, TargetError, load_targets, route, send

__all__ = [
    "Alert",
    "AlertSender",
    "AlertSettings",
    "IncidentPolicy",
    "Message",
    "SendResult",
    "Target",
    "TargetError",
    "alert_settings",
    "digest_message",
    "jsonl_record",
    "load_targets",
    "probe_message",
    "render",
    "route",
    "send",
]
