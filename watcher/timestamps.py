"""Timestamps as stored and shown: ISO 8601 UTC to the second, `2026-11-28T16:40:00Z`.

A module of its own so light commands (`watcher status`, `watcher alerts test`) need not
import the store and sqlite-utils to read or write one.
"""

from __future__ import annotations

from datetime import UTC, datetime


def format_time(moment: datetime) -> str:
    """`moment` as stored. Naive datetimes are refused: guessing their zone would silently
    shift every comparison."""
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"naive datetime {moment!r}: pass a timezone-aware datetime (UTC)")
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(text: str) -> datetime:
    """Inverse of `format_time`: an aware UTC datetime."""
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
