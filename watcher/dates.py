"""A post's own date, as the source wrote it, read into one sortable form: `2026-12-06T09:00:00Z`.

Sources give dates as they find them: an RSS pubDate (`Mon, 06 Dec 2026 10:00:00 +0100`), an
Atom or API ISO 8601 stamp (`2026-12-06T10:00:00.250+01:00`), a Telegram `time[datetime]`, an
API's epoch seconds or milliseconds, a forum's `06/12/2026 10:00`, `6 décembre 2026 à 10h00`,
`Dec 6, 2026`, `Aujourd'hui, 10:00` or `il y a 3 heures`. `normalise()` reads them into ISO 8601
UTC to the second (the store's own time format, `watcher.timestamps`), so post dates sort and
compare as text, or gives None. Pure: no I/O; "now" is a parameter.

Decisions, and why:

- A time without a zone is read as UTC. The alternative, Europe/Paris (most sources are
  French), would be a guess too: leak forums and paste sites run on servers anywhere, many
  show UTC, and a wrong zone shifts a date by one or two hours either way. UTC is the guess
  that is the same for every source and says so (this docstring, the README); a source that
  gives its zone (ISO offsets, RFC 2822 zones, `CET`/`CEST`, `UTC+1`) is read exactly.
- `dd/mm/yyyy` is read day first (also with `.` or `-`): the sources are French, where
  `06/12/2026` is the 6th of December. There is no month-first fallback when the day is over
  12 (`12/25/2026` is refused): reading one post of a site month first and the next day first
  would mix two conventions silently. Year-first `2026/12/06` is unambiguous and read. Two-digit
  years are refused (`06/12/26`: which century, which order).
- Only an unambiguous text is read: the date must be the only thing in it holding digits
  (`le 06/12/2026 à 10:00` is read, `posted 06/12/2026, edited 07/12/2026` is not), and an
  impossible calendar date or time is refused. Weekday names are ignored (feeds often get them
  wrong: `Mon, 06 Dec 2026` was a Sunday).
- A date with no time is its midnight UTC (`Dec 6, 2026` -> `2026-12-06T00:00:00Z`).
- Relative forms are read against `now`: `today`/`aujourd'hui`, `yesterday`/`hier`,
  `avant-hier` (with an optional time of day, zone-less so UTC), `il y a 3 heures`,
  `3 hours ago`, `il y a une minute`, `just now`/`à l'instant`. Months and years ago are
  refused (no fixed length).
- A date more than a day after `now`, or before 1990, is refused: a clock or a parser gone
  wrong, not a post (1990 predates every source; a day of slack covers zones ahead of UTC).
- Epoch numbers are read when the whole text is one: 9-10 digits are seconds (1973-2286),
  12-13 digits milliseconds; fractional seconds are dropped everywhere (truncated).
"""

from __future__ import annotations

import re
import unicodedata
from datetime import UTC, datetime, timedelta, timezone
from typing import TypeGuard

from .timestamps import format_time

__all__ = ["EARLIEST", "ISO_UTC", "is_normalised", "normalise"]

EARLIEST = datetime(1990, 1, 1, tzinfo=UTC)     # older than any source: an earlier date is an error
FUTURE_SLACK = timedelta(days=1)                # a date after now + this is refused
MAX_CHARS = 200                                 # sources cap the text at 200 characters
ISO_UTC = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z")

_MONTHS = {
    "january": 1, "jan": 1, "janvier": 1, "janv": 1,
    "february": 2, "feb": 2, "fevrier": 2, "fevr": 2, "fev": 2,
    "march": 3, "mar": 3, "mars": 3,
    "april": 4, "apr": 4, "avril": 4, "avr": 4,
    "may": 5, "mai": 5,
    "june": 6, "jun": 6, "juin": 6,
    "july": 7, "jul": 7, "juillet": 7, "juil": 7,
    "august": 8, "aug": 8, "aout": 8,
    "september": 9, "sep": 9, "sept": 9, "septembre": 9,
    "october": 10, "oct": 10, "octobre": 10,
    "november": 11, "nov": 11, "novembre": 11,
    "december": 12, "dec": 12, "decembre": 12,
}
# Zones by name: UTC's names, the French ones, and RFC 2822's US zones (feeds use them).
_ZONE_HOURS = {"z": 0, "ut": 0, "utc": 0, "gmt": 0, "cet": 1, "cest": 2, "est": -5, "edt": -4,
               "cst": -6, "cdt": -5, "mst": -7, "mdt": -6, "pst": -8, "pdt": -7}
_UNIT_SECONDS = {"second": 1, "sec": 1, "seconde": 1, "s": 1, "minute": 60, "min": 60, "mn": 60,
                 "hour": 3600, "hr": 3600, "h": 3600, "heure": 3600, "day": 86400, "jour": 86400,
                 "j": 86400, "d": 86400, "week": 604800, "semaine": 604800, "wk": 604800}
_DAYS_BACK = {"today": 0, "aujourd'hui": 0, "yesterday": 1, "hier": 1, "avant-hier": 2}
_ONE = {"a": 1, "an": 1, "un": 1, "une": 1, "one": 1}

_MONTH = r"(?<![a-z])(?P<month_name>" + "|".join(sorted(_MONTHS, key=len, reverse=True)) + r")(?![a-z])\.?"
_DAY = r"(?P<day>\d{1,2})(?:er|st|nd|rd|th)?"
_TIME = (r"(?P<hour>\d{1,2})(?:\s*[:h]\s*(?P<minute>\d{2})(?:\s*:\s*(?P<second>\d{2})(?:[.,]\d+)?)?"
         r"|\s*h(?![a-z])|(?=\s*[ap]\.?\s?m))(?:\s*(?P<ampm>[ap])\.?\s?m\.?(?![a-z]))?")
_JOIN = r"(?:\s*(?:,|a|at|-|\||@|t)?\s*)"
_ZONE = (r"(?:\s*(?P<zone>z|[+-]\d{2}(?::?\d{2})?|(?:utc|gmt|ut)(?:\s*[+-]\d{1,2}(?::?\d{2})?)?"
         r"|" + "|".join(sorted(_ZONE_HOURS, key=len, reverse=True)) + r")(?![a-z]))?")
_WHEN = rf"(?:{_JOIN}{_TIME}{_ZONE})?"
_NOT_DIGIT_BEFORE, _NOT_DIGIT_AFTER = r"(?<![\d.:/-])", r"(?![\d])"
_ABSOLUTE = [re.compile(_NOT_DIGIT_BEFORE + pattern + _WHEN + _NOT_DIGIT_AFTER) for pattern in (
    r"(?P<year>\d{4})[-/.](?P<month>\d{1,2})[-/.](?P<day>\d{1,2})",          # ISO 8601, 2026/12/06
    r"(?P<day>\d{1,2})[/.-](?P<month>\d{1,2})[/.-](?P<year>\d{4})",          # 06/12/2026: day first
    rf"{_DAY}(?:\s+|-){_MONTH}(?:\s+|-|,\s*)(?P<year>\d{{4}})",               # 6 decembre 2026, 06 Dec 2026
    rf"{_MONTH}\s*{_DAY},?\s+(?P<year>\d{{4}})",                              # Dec 6, 2026
)]
_RELATIVE_DAY = re.compile(r"(?<![a-z'-])(?P<days>avant-hier|aujourd'hui|today|yesterday|hier)(?![a-z'])"
                           + _WHEN + _NOT_DIGIT_AFTER)
_AGO = re.compile(r"(?:(?<![a-z])il y a\s+(?P<n1>\d{1,4}|une?|quelques)\s*(?P<u1>[a-z]+)"
                  r"|(?<![a-z\d])(?P<n2>\d{1,4}|an?|one)\s*(?P<u2>[a-z]+)\s+ago)(?![a-z])")
_NOW = re.compile(r"(?<![a-z])(?:just now|right now|a l'instant)(?![a-z])")
_EPOCH = re.compile(r"(?P<seconds>\d{9,10})(?:\.\d+)?|(?P<millis>\d{12,13})")


def normalise(text: str | float | None, *, now: datetime | None = None) -> str | None:
    """The post date in `text` as `2026-12-06T09:00:00Z` (UTC), or None when it cannot be read
    unambiguously or is out of range (see the module docstring for the rules).

    `now` (an aware datetime; default the current time) anchors relative forms and the
    "not in the future" check. An int or float is an epoch timestamp (seconds, or milliseconds
    when 12-13 digits), like the same digits in a string.
    """
    if now is None:
        now = datetime.now(UTC)
    elif now.tzinfo is None or now.utcoffset() is None:
        raise ValueError(f"naive now {now!r}: pass a timezone-aware datetime")
    if text is None or isinstance(text, bool):
        return None
    flat = _flatten(str(text))
    if not flat or len(flat) > MAX_CHARS:
        return None
    moment = _read(flat, now)
    if moment is None or not EARLIEST <= moment <= now + FUTURE_SLACK:
        return None
    return format_time(moment)


def is_normalised(text: object) -> TypeGuard[str]:
    """Whether `text` is a date as `normalise` writes it (what the store keeps, or nothing)."""
    return isinstance(text, str) and ISO_UTC.fullmatch(text) is not None


# --------------------------------------------------------------------------- reading


def _flatten(text: str) -> str:
    """Lower case, one space between words, accents and typographic apostrophes gone."""
    text = unicodedata.normalize("NFKD", text.replace("\u2019", "'").replace("\u02bc", "'"))
    text = "".join(c for c in text if not unicodedata.combining(c))
    return " ".join(text.lower().split())


def _read(text: str, now: datetime) -> datetime | None:
    """The one date in `text`, aware; None when there is none, or more than one thing with digits."""
    epoch = _EPOCH.fullmatch(text)
    if epoch:
        return _from_epoch(epoch)
    for pattern in _ABSOLUTE:
        match = pattern.search(text)
        if match and _alone(text, match):
            return _absolute(match)
    match = _RELATIVE_DAY.search(text)
    if match and _alone(text, match):
        return _relative_day(match, now)
    match = _AGO.search(text)
    if match and _alone(text, match):
        return _ago(match, now)
    match = _NOW.search(text)
    if match and _alone(text, match):
        return now.astimezone(UTC)
    return None


def _alone(text: str, match: re.Match[str]) -> bool:
    """No digit outside the match: another number would make the reading a guess."""
    rest = text[: match.start()] + " " + text[match.end():]
    return not any(c.isdigit() for c in rest)


def _from_epoch(match: re.Match[str]) -> datetime | None:
    seconds = int(match["seconds"]) if match["seconds"] else int(match["millis"]) // 1000
    try:
        return datetime.fromtimestamp(seconds, UTC)
    except (OverflowError, OSError, ValueError):
        return None


def _absolute(match: re.Match[str]) -> datetime | None:
    groups = match.groupdict()
    month = _MONTHS[groups["month_name"]] if groups.get("month_name") else int(groups["month"])
    clock = _clock(groups)
    zone = _zone(groups["zone"])
    if clock is None or zone is None:
        return None
    try:
        return datetime(int(groups["year"]), month, int(groups["day"]), *clock, tzinfo=zone)
    except ValueError:          # 31/02, month 13
        return None


def _relative_day(match: re.Match[str], now: datetime) -> datetime | None:
    clock = _clock(match.groupdict())
    zone = _zone(match["zone"])
    if clock is None or zone is None:
        return None
    day = now.astimezone(zone).date() - timedelta(days=_DAYS_BACK[match["days"]])
    return datetime(day.year, day.month, day.day, *clock, tzinfo=zone)


def _ago(match: re.Match[str], now: datetime) -> datetime | None:
    count, unit = (match["n1"], match["u1"]) if match["n1"] else (match["n2"], match["u2"])
    seconds = _UNIT_SECONDS.get(unit.removesuffix("s")) or _UNIT_SECONDS.get(unit)
    if seconds is None:
        return None             # months, years: no fixed length
    if count == "quelques":
        return None             # "a few": not a date
    number = _ONE.get(count) or int(count)
    return now.astimezone(UTC) - timedelta(seconds=number * seconds)


def _clock(groups: dict[str, str | None]) -> tuple[int, int, int] | None:
    """(hour, minute, second) of a match (midnight without a time); None if impossible."""
    if groups.get("hour") is None:
        return 0, 0, 0
    hour, minute, second = int(groups["hour"] or 0), int(groups["minute"] or 0), int(groups["second"] or 0)
    ampm = groups.get("ampm")
    if ampm:
        if not 1 <= hour <= 12:
            return None
        hour = hour % 12 + (12 if ampm == "p" else 0)
    if hour > 23 or minute > 59 or second > 59:
        return None
    return hour, minute, second


def _zone(name: str | None) -> timezone | None:
    """The zone of a match: UTC when it names none (see the module docstring); None if invalid."""
    if name is None:
        return UTC
    name = name.replace(" ", "")
    letters = name.rstrip("+-:0123456789")
    offset = name[len(letters):]
    minutes = _ZONE_HOURS[letters] * 60 if letters else 0
    if offset:
        sign = -1 if offset[0] == "-" else 1
        digits = offset[1:].replace(":", "")
        hours, mins = (digits, "0") if len(digits) <= 2 else (digits[:-2], digits[-2:])
        if int(hours) > 14 or int(mins) > 59:
            return None
        minutes += sign * (int(hours) * 60 + int(mins))
    return timezone(timedelta(minutes=minutes))
