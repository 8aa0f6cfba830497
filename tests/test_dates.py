"""A post's own date read into one sortable form (`watcher.dates`), and stored that way.

Round trips (hypothesis): a moment written in each form a source uses reads back as that moment.
A table of strings as real sources write them, and of those that must be refused.
"""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta, timezone
from email.utils import format_datetime
from pathlib import Path

import pytest
from tests.support.nirs import random_nir
from hypothesis import given
from hypothesis import strategies as st
from tests.support.receivers import Clock, leak

from watcher.dates import EARLIEST, ISO_UTC, is_normalised, normalise
from watcher.store import ItemRecord, StateDB
from watcher.timestamps import format_time

NOW = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)
FRENCH_MONTHS = ["janvier", "février", "mars", "avril", "mai", "juin", "juillet", "août", "septembre",
                 "octobre", "novembre", "décembre"]

moments = st.datetimes(min_value=datetime(1990, 1, 2), max_value=datetime(2026, 12, 7),
                       timezones=st.just(UTC)).map(lambda moment: moment.replace(microsecond=0))
offsets = st.integers(min_value=-12 * 4, max_value=14 * 4).map(
    lambda quarters: timezone(timedelta(minutes=15 * quarters)))


# --------------------------------------------------------------------------- real-world strings


@pytest.mark.parametrize(("text", "expected"), [
    # RSS pubDate (RFC 2822); the weekday is ignored (6 Dec 2026 is a Sunday)
    ("Mon, 06 Dec 2026 10:00:00 +0100", "2026-12-06T09:00:00Z"),
    ("Sun, 6 Dec 2026 10:00:00 GMT", "2026-12-06T10:00:00Z"),
    ("Sat, 05 Dec 2026 23:00:00 EST", "2026-12-06T04:00:00Z"),
    ("06 Dec 2026 10:00 -0000", "2026-12-06T10:00:00Z"),
    # Atom, ISO 8601, Telegram's time[datetime], json APIs
    ("2026-12-06T10:00:00Z", "2026-12-06T10:00:00Z"),
    ("2026-12-06T10:00:00+01:00", "2026-12-06T09:00:00Z"),
    ("2026-12-06T10:00:00.123456+01:00", "2026-12-06T09:00:00Z"),
    ("2026-12-06T10:00:00+00:00", "2026-12-06T10:00:00Z"),
    ("2026-12-06T10:00Z", "2026-12-06T10:00:00Z"),
    ("2026-12-06 10:00:00", "2026-12-06T10:00:00Z"),                 # naive: UTC
    ("2026-12-06", "2026-12-06T00:00:00Z"),
    ("2026/12/06 10:00", "2026-12-06T10:00:00Z"),
    ("1796551200", "2026-12-06T10:00:00Z"),                          # epoch seconds
    ("1796551200000", "2026-12-06T10:00:00Z"),                       # epoch milliseconds
    ("1796551200.75", "2026-12-06T10:00:00Z"),
    (1796551200, "2026-12-06T10:00:00Z"),
    (1796551200000, "2026-12-06T10:00:00Z"),
    # forums: day first, French and English month names, filler words around
    ("06/12/2026 10:00", "2026-12-06T10:00:00Z"),
    ("le 01/12/2026 a 09:15", "2026-12-01T09:15:00Z"),
    ("Posté le 06.12.2026 - 10:00", "2026-12-06T10:00:00Z"),
    ("06-12-2026", "2026-12-06T00:00:00Z"),
    ("06.12.2026 10:00 CET", "2026-12-06T09:00:00Z"),
    ("6 décembre 2026 à 10h00", "2026-12-06T10:00:00Z"),
    ("dimanche 6 décembre 2026, 22h", "2026-12-06T22:00:00Z"),
    ("1er décembre 2026", "2026-12-01T00:00:00Z"),
    ("6 déc. 2026, 10:00", "2026-12-06T10:00:00Z"),
    ("15 AOÛT 2026", "2026-08-15T00:00:00Z"),
    ("3 févr. 2026 à 08h05", "2026-02-03T08:05:00Z"),
    ("Dec 6, 2026", "2026-12-06T00:00:00Z"),
    ("December 6th, 2026 at 10:00 PM", "2026-12-06T22:00:00Z"),
    ("Posted on Sept 30, 2026 12:15 am", "2026-09-30T00:15:00Z"),
    ("Dec 6, 2026 10:00 UTC+1", "2026-12-06T09:00:00Z"),
    # relative to now (2026-12-07 12:00 UTC)
    ("Today, 10:00", "2026-12-07T10:00:00Z"),
    ("Aujourd\u2019hui à 10h00", "2026-12-07T10:00:00Z"),
    ("Yesterday 23:59", "2026-12-06T23:59:00Z"),
    ("Hier à 22h", "2026-12-06T22:00:00Z"),
    ("Hier", "2026-12-06T00:00:00Z"),                                # a day without a time: midnight
    ("avant-hier, 08:00", "2026-12-05T08:00:00Z"),
    ("il y a 3 heures", "2026-12-07T09:00:00Z"),
    ("il y a 5 min", "2026-12-07T11:55:00Z"),
    ("il y a une heure", "2026-12-07T11:00:00Z"),
    ("Il y a 2 jours", "2026-12-05T12:00:00Z"),
    ("3 hours ago", "2026-12-07T09:00:00Z"),
    ("an hour ago", "2026-12-07T11:00:00Z"),
    ("2 weeks ago", "2026-11-23T12:00:00Z"),
    ("à l'instant", "2026-12-07T12:00:00Z"),
    ("2026-12-08T11:00:00Z", "2026-12-08T11:00:00Z"),                # tomorrow: within a day, kept
])
def test_real_world_dates(text: str | int, expected: str) -> None:
    assert normalise(text, now=NOW) == expected


@pytest.mark.parametrize("text", [
    None, "", "   ", "garbage", "10:00", "2026", "todays",                      # no date, or no day
    "12/25/2026",                       # month first: never read so (day first, no fallback)
    "31/02/2026", "2026-13-01", "06/12/2026 24:00", "06/12/2026 13:00 pm",      # impossible
    "06/12/26",                         # two-digit year
    "posted 06/12/2026, edited 07/12/2026", "#12 06/12/2026 10:00",            # more than one number
    "2026-12-08T13:00:01Z", "2099-01-01",                                      # more than a day ahead
    "1989-12-31T23:59:59Z", "631151999",                                       # before 1990
    "il y a 2 mois", "3 years ago", "il y a quelques jours",                   # no fixed length
    "123456789012345", "17965512000", True,                                    # not an epoch form
    "x" * 201 + " 2026-12-06",
])
def test_refused(text: str | None) -> None:
    assert normalise(text, now=NOW) is None


def test_relative_dates_need_a_zone_aware_now() -> None:
    with pytest.raises(ValueError, match="naive"):
        normalise("il y a 3 heures", now=datetime(2026, 12, 7, 12))


def test_an_identifier_in_the_text_is_never_read_as_or_into_a_date() -> None:
    """The stored value is a normalised date or nothing: a NIR beside a date makes it unreadable,
    and no output can hold more than the date's own 14 digits."""
    rng = random.Random(12)
    for _ in range(50):
        clear = random_nir(rng)
        assert normalise(f"06/12/2026 10:00 {clear}", now=NOW) is None
        assert normalise(clear, now=NOW) is None


# --------------------------------------------------------------------------- round trips


@given(moments, offsets)
def test_iso_8601_round_trip(moment: datetime, zone: timezone) -> None:
    local = moment.astimezone(zone)
    assert normalise(local.isoformat(), now=NOW) == format_time(moment)
    assert normalise(local.isoformat(timespec="milliseconds"), now=NOW) == format_time(moment)
    assert normalise(moment.strftime("%Y-%m-%dT%H:%M:%SZ"), now=NOW) == format_time(moment)


@given(moments, offsets)
def test_rfc_2822_round_trip(moment: datetime, zone: timezone) -> None:
    assert normalise(format_datetime(moment.astimezone(zone)), now=NOW) == format_time(moment)
    assert normalise(format_datetime(moment, usegmt=True), now=NOW) == format_time(moment)


@given(moments)
def test_epoch_round_trip(moment: datetime) -> None:
    seconds = int(moment.timestamp())
    for form in (seconds, str(seconds), str(seconds * 1000 + 999), seconds * 1000):
        assert normalise(form, now=NOW) == format_time(moment)


@given(moments)
def test_forum_forms_round_trip(moment: datetime) -> None:
    """Naive forum times are UTC; day first; month names in French and English."""
    minute = moment.replace(second=0)
    forms = {
        moment.strftime("%d/%m/%Y %H:%M:%S"): moment,
        moment.strftime("le %d.%m.%Y à %H:%M:%S"): moment,
        f"{minute.day} {FRENCH_MONTHS[minute.month - 1]} {minute.year} à {minute.hour}h{minute.minute:02d}": minute,
        minute.strftime("%b %d, %Y %I:%M %p"): minute,
        minute.strftime("%A %d %B %Y, %H:%M"): minute,
    }
    for form, expected in forms.items():
        assert normalise(form, now=NOW) == format_time(expected), form


@given(st.integers(min_value=0, max_value=5000), st.sampled_from([
    ("il y a {} minutes", 60), ("il y a {} heures", 3600), ("il y a {} jours", 86400),
    ("{} minutes ago", 60), ("{} hours ago", 3600), ("{} days ago", 86400), ("{}h ago", 3600)]))
def test_relative_round_trip(count: int, form: tuple[str, int]) -> None:
    text, unit = form
    moment = NOW - timedelta(seconds=count * unit)
    expected = format_time(moment) if moment >= EARLIEST else None
    assert normalise(text.format(count), now=NOW) == expected


@given(st.one_of(st.text(max_size=60), st.integers(), moments.map(format_datetime),
                 st.from_regex(r"\d{1,2}[/.-]\d{1,2}[/.-]\d{4}( \d{1,2}[:h]\d{2})?", fullmatch=True)))
def test_any_output_is_a_normalised_date_in_range_and_reads_as_itself(text: str | int) -> None:
    date = normalise(text, now=NOW)
    if date is not None:
        assert ISO_UTC.fullmatch(date) and is_normalised(date)
        assert format_time(EARLIEST) <= date <= format_time(NOW + timedelta(days=1))
        assert normalise(date, now=NOW) == date


# --------------------------------------------------------------------------- stored


def test_the_store_keeps_the_normalised_date_or_nothing(tmp_path: Path) -> None:
    """Normalised once, on the way in (`record_items`), relative forms against the store's clock;
    the source's own text is not kept; `findings()` shows the stored date."""
    clock = Clock(NOW)
    clear = random_nir(random.Random(3))
    with StateDB(tmp_path / "watcher.db", clock=clock) as state:
        state.upsert_source("forum", "forum")
        posted = ["Mon, 06 Dec 2026 10:00:00 +0100", "il y a 3 heures", "garbage", f"06/12/2026 {clear}", None]
        state.record_items([ItemRecord("forum", f"t{n}", "1", None, None, leak(range(10), tag=str(n)),
                                       posted_at=text) for n, text in enumerate(posted)])
        stored = state.db.execute("SELECT posted_at FROM items ORDER BY item_id").fetchall()
        linked = state.db.execute("SELECT posted_at FROM item_findings ORDER BY item_id").fetchall()
        shown = [finding["posted_at"] for finding in state.findings()]
    expected = ["2026-12-06T09:00:00Z", "2026-12-07T09:00:00Z", None, None, None]
    assert [row[0] for row in stored] == [row[0] for row in linked] == shown == expected
