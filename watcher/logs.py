"""Logging setup: one line per event, key=value (`kv`) or JSON, journald-aware, redacted.

    ts=2024-11-28T16:37:00.123Z level=info logger=watcher.daemon msg="poll done" items=3

Structured fields come from `extra={"fields": {...}}` or from `log_event(logger, "info",
"poll done", source="inbox", items=3)`. Every event is exactly one line: newlines, control
characters and line separators in messages, values and tracebacks are escaped, because logs
contain text copied from hostile pages and a forged line would mislead an analyst.

Under journald (`$JOURNAL_STREAM` matches our stream) the timestamp is left out (journald
stamps each line) and the line starts with the sd-daemon(3) `<N>` syslog priority, which
journald strips and stores as PRIORITY, so `journalctl -p warning` works.

`RedactingFilter` passes every message, field and traceback through `watcher.redact` (every
identifier the detectors count, and NIR/IBAN/e-mail shapes). It is a last line of defence:
code must never log identifiers.
The `apprise` logger is kept at INFO or above: its DEBUG output contains whole alert bodies.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import re
import sys
from collections.abc import Mapping
from typing import Any, Literal, TextIO

from .redact import redact

__all__ = [
    "JsonFormatter",
    "KeyValueFormatter",
    "RedactingFilter",
    "log_event",
    "setup_logging",
    "syslog_priority",
]

Format = Literal["kv", "json"]

#: Loggers whose records below INFO are dropped whatever the configured level.
QUIET_LOGGERS = ("apprise",)
#: Keys every line carries; colliding field names get a trailing underscore.
CORE_KEYS = frozenset({"ts", "level", "logger", "msg", "exc", "stack"})

def _redact_value(value: Any) -> Any:
    """Redact a field value; non-strings are redacted through their text form if needed."""
    if value is None or isinstance(value, bool):
        return value
    try:
        text = value if isinstance(value, str) else str(value)
    except Exception:  # a broken __str__ must not lose the whole event
        return "(unrepresentable)"
    cleaned = redact(text)
    return value if cleaned == text else cleaned


class RedactingFilter(logging.Filter):
    """Mask identifiers in the message, the fields, the traceback and the stack of a record.

    Attach it to a handler: it runs once per record before any formatter, and it renders the
    message and traceback itself so that `%`-arguments and exception texts are covered too.
    It never drops a record and never raises.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # bad %-arguments: logging would report it later, keep the text
            message = f"{record.msg!s} (unformattable arguments)"
        record.msg, record.args = redact(message), None
        fields = getattr(record, "fields", None)
        if isinstance(fields, Mapping):
            record.fields = {key: _redact_value(value) for key, value in fields.items()}
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        return True


class _QuietLoggersFilter(logging.Filter):
    """Drop records below INFO from `QUIET_LOGGERS`, even if someone lowers their level."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno >= logging.INFO:
            return True
        return not any(record.name == n or record.name.startswith(n + ".") for n in QUIET_LOGGERS)


# --------------------------------------------------------------------------- escaping

_SIMPLE_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escape_char(char: str, json_style: bool) -> str:
    """Escape one non-printable character as `\\n`, `\\xNN`, `\\uNNNN` (JSON: `\\uNNNN` only)."""
    if char in _SIMPLE_ESCAPES:
        return _SIMPLE_ESCAPES[char]
    code = ord(char)
    if code > 0xFFFF:
        if not json_style:
            return f"\\U{code:08x}"
        code -= 0x10000
        return f"\\u{0xD800 + (code >> 10):04x}\\u{0xDC00 + (code & 0x3FF):04x}"
    if code <= 0xFF and not json_style:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}"


def _escape_nonprintable(text: str, json_style: bool = False) -> str:
    """Escape control characters, line/paragraph separators, lone surrogates and the like."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else _escape_char(c, json_style) for c in text)


def _kv_value(value: Any) -> str:
    """Render a value for key=value output, quoting it when it is not a bare token."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    text = json.dumps(value, ensure_ascii=False, default=str) if isinstance(value, (list, tuple, dict)) else str(value)
    if text and text.isprintable() and not any(c in text for c in ' ="\\'):
        return text
    escaped = text.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{_escape_nonprintable(escaped)}"'


_KEY_UNSAFE = re.compile(r"[^A-Za-z0-9_.\-]")


def _field_key(key: object) -> str:
    """A safe key: no spaces, quotes or '='; core keys are suffixed with '_'."""
    name = _KEY_UNSAFE.sub("_", str(key)) or "_"
    return f"{name}_" if name in CORE_KEYS else name


# --------------------------------------------------------------------------- formatters

# sd-daemon(3) priorities: <2> crit, <3> err, <4> warning, <6> info, <7> debug.
_PRIORITIES = ((logging.CRITICAL, 2), (logging.ERROR, 3), (logging.WARNING, 4), (logging.INFO, 6))


def syslog_priority(levelno: int) -> int:
    """Map a logging level number to a syslog priority (0 emerg ... 7 debug)."""
    return next((prio for floor, prio in _PRIORITIES if levelno >= floor), 7)


class _EventFormatter(logging.Formatter):
    """Collect the fields of one event; subclasses render them on one line."""

    def __init__(self, journald: bool = False) -> None:
        super().__init__()
        self.journald = journald

    def event(self, record: logging.LogRecord) -> dict[str, Any]:
        """Ordered fields: ts (not under journald), level, logger, msg, extras, exc, stack."""
        event: dict[str, Any] = {}
        if not self.journald:
            stamp = dt.datetime.fromtimestamp(record.created, tz=dt.UTC)
            event["ts"] = stamp.isoformat(timespec="milliseconds").replace("+00:00", "Z")
        event["level"] = record.levelname.lower()
        event["logger"] = record.name
        event["msg"] = record.getMessage()
        fields = getattr(record, "fields", None)
        if isinstance(fields, Mapping):
            event.update((_field_key(key), value) for key, value in fields.items())
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            event["exc"] = record.exc_text
        if record.stack_info:
            event["stack"] = self.formatStack(record.stack_info)
        return event

    def render(self, event: dict[str, Any]) -> str:
        raise NotImplementedError

    def format(self, record: logging.LogRecord) -> str:
        line = self.render(self.event(record))
        if self.journald:
            return f"<{syslog_priority(record.levelno)}>{line}"
        return line


class KeyValueFormatter(_EventFormatter):
    """`key=value` pairs (logfmt style); values with spaces, quotes or '=' are quoted."""

    def render(self, event: dict[str, Any]) -> str:
        return " ".join(f"{key}={_kv_value(value)}" for key, value in event.items())


class JsonFormatter(_EventFormatter):
    """One JSON object per line; non-JSON values are rendered with str()."""

    def render(self, event: dict[str, Any]) -> str:
        text = json.dumps(event, ensure_ascii=False, default=str, separators=(",", ":"))
        # json.dumps leaves U+2028, NEL, DEL, C1 controls and lone surrogates raw.
        return _escape_nonprintable(text, json_style=True)


# --------------------------------------------------------------------------- setup


def _is_journal_stream(stream: TextIO) -> bool:
    """True when `stream` is the journald stream named by `$JOURNAL_STREAM` (`dev:inode`)."""
    expected = os.environ.get("JOURNAL_STREAM", "")
    device, _, inode = expected.partition(":")
    if not (device.isdigit() and inode.isdigit()):
        return False
    try:
        stat = os.fstat(stream.fileno())
    except (AttributeError, OSError, ValueError):  # StringIO, closed or detached streams
        return False
    return (stat.st_dev, stat.st_ino) == (int(device), int(inode))


def _level_number(level: str | int) -> int:
    """Accept `"debug"`, `"INFO"`, `20`...; reject unknown names with ValueError."""
    if isinstance(level, int):
        return level
    number = logging.getLevelName(level.strip().upper())
    if not isinstance(number, int):
        raise ValueError(f"unknown log level: {level!r}")
    return number


class _WatcherHandler(logging.StreamHandler[TextIO]):
    """Marker class, so that `setup_logging` can replace its own handler and no other."""


def setup_logging(
    level: str | int = "INFO",
    fmt: Format = "kv",
    stream: TextIO | None = None,
    *,
    journald: bool | None = None,
) -> logging.Handler:
    """Configure the root logger to write one redacted line per event to `stream`.

    `stream` defaults to stderr. `journald=None` detects journald through `$JOURNAL_STREAM`.
    Calling it again (e.g. on reload) replaces the handler it installed before; handlers
    installed by others are left alone. Returns the new handler.
    """
    number = _level_number(level)
    formatters = {"kv": KeyValueFormatter, "json": JsonFormatter}
    if fmt not in formatters:
        raise ValueError(f"unknown log format: {fmt!r} (expected 'kv' or 'json')")
    target = sys.stderr if stream is None else stream
    use_journald = _is_journal_stream(target) if journald is None else journald

    handler = _WatcherHandler(target)
    handler.setFormatter(formatters[fmt](journald=use_journald))
    handler.addFilter(_QuietLoggersFilter())
    handler.addFilter(RedactingFilter())

    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, _WatcherHandler)]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(number)
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(max(number, logging.INFO))
    return handler


def log_event(
    logger: logging.Logger,
    level: str | int,
    msg: str,
    /,
    *,
    exc_info: Any = None,
    **fields: Any,
) -> None:
    """Log `msg` with structured `fields`: `log_event(log, "info", "poll done", items=3)`.

    `msg` is used verbatim (no %-formatting): put variable parts in fields.
    """
    number = _level_number(level)
    if logger.isEnabledFor(number):
        logger.log(number, "%s", msg, exc_info=exc_info, extra={"fields": fields}, stacklevel=2)
