"""How the store shapes the texts it keeps: every identifier masked (`watcher.redact`), errors
as one bounded line, JSON in one compact form, post dates normalised (`watcher.dates`).

Shared by the query modules and the migrations that rewrote older rows (schema 5 and 7).
"""

from __future__ import annotations

import json
import logging
from typing import Any

from ..dates import normalise as normalise_date
from ..redact import one_line as flat_line
from ..redact import redact, redact_tree
from ..timestamps import parse_time

__all__ = ["ERROR_MAX_CHARS", "normalise_stored_date", "one_line", "post_date", "redact_json", "redact_text",
           "to_json"]

logger = logging.getLogger("watcher.store")

ERROR_MAX_CHARS = 500


def redact_text(text: str | None) -> str | None:
    """`text` as stored: every identifier masked (see `watcher.redact`)."""
    return None if text is None else redact(text)


def redact_json(text: str | None) -> str | None:
    """A JSON column with every string in it redacted (text that is not JSON: redacted)."""
    if text is None:
        return None
    try:
        return to_json(redact_tree(json.loads(text)))
    except ValueError:
        return redact(text)


def one_line(error: str | None) -> str | None:
    """An error message as one redacted line of at most ERROR_MAX_CHARS characters."""
    return None if error is None else flat_line(error, ERROR_MAX_CHARS)


def to_json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def post_date(text: str | None, now: str) -> str | None:
    """A post's date as stored: normalised (`watcher.dates`, relative forms read against the
    recording time `now`), or None.

    The source's own text is not kept: it was shown as is before (unsortable, in a dozen
    forms), a readable one says nothing more than its normalised date, and an unreadable one is
    attacker-chosen free text in a field an analyst trusts as a date. A text that cannot be
    read is logged (masked, at debug level) so the form can be added to `watcher.dates`.
    """
    if text is None:
        return None
    date = normalise_date(text, now=parse_time(now))
    if date is None:
        logger.debug("post date not read: %.80r", redact(str(text)))
    return date


def normalise_stored_date(text: str | None, written_at: str | None) -> str | None:
    """`normalise_date` for SQL (migration 7): `text` read against the row's own time."""
    if text is None:
        return None
    try:
        now = parse_time(written_at) if written_at else None
    except ValueError:
        now = None
    return normalise_date(text, now=now)
