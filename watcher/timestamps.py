"""Timestamps as stored and shown: ISO 8601 UTC to the second, `2026-11-28T16:40:00Z`; and
durations as written in the configuration and on the command line ("30s", "5m", "1h30m", "7d").

A module of its own so light commands (`watcher status`, `watcher alerts test`) need not
import the store to read or write one.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime

_DURATION_RE = re.compile(r"(\d+(?:\.\d+)?)\s*([smhd]?)")
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def format_time(moment: datetime) -> str:
    """`moment` as stored. Naive datetimes are refused: guessing their zone would silently
    shift every comparison."""
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"naive datetime {moment!r}: pass a timezone-aware datetime (UTC)")
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(text: str) -> datetime:
    """Inverse of `format_time`: an aware UTC datetime."""
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)


def parse_duration(value: object) -> float:
    """Seconds from a number or a string like "90", "30s", "5m", "1h30m", "1d".

    Raises ValueError on anything else, on zero and on negative values.
    """
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise ValueError("not a number or a duration string")
    if isinstance(value, str):
        text = value.strip().lower()
        pos, total = 0, 0.0
        for match in _DURATION_RE.finditer(text):
            if match.start() != pos or not match.group(0):
                break
            total += float(match.group(1)) * _UNITS[match.group(2)]
            pos = match.end()
            while pos < len(text) and text[pos] == " ":
                pos += 1
        if not text or pos != len(text):
            raise ValueError("not a duration")
        seconds = total
    else:
        seconds = float(value)
    if not seconds > 0 or seconds == float("inf"):
        raise ValueError("must be positive")
    return seconds
