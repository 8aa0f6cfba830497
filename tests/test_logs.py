"""watcher.logs: kv/json lines, escaping, journald priorities, apprise quieting, redaction."""

from __future__ import annotations

import io
import json
import logging
import os
import random
import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from watcher.logs import log_event, setup_logging, syslog_priority
from watcher.redact import redact

LOG = logging.getLogger("watcher.daemon")
TS = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z"


@pytest.fixture(autouse=True)
def restore_logging(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """setup_logging changes the root and apprise loggers: put them back after each test."""
    monkeypatch.delenv("JOURNAL_STREAM", raising=False)
    root, apprise = logging.getLogger(), logging.getLogger("apprise")
    saved = (list(root.handlers), root.level, apprise.level)
    yield
    root.handlers[:] = saved[0]
    root.setLevel(saved[1])
    apprise.setLevel(saved[2])


Capture = Callable[..., Callable[[], list[str]]]


@pytest.fixture
def capture() -> Capture:
    """`lines = capture(fmt="kv", level="DEBUG")`; `lines()` returns what was written so far."""

    def start(fmt: str = "kv", level: str = "DEBUG", **kwargs: Any) -> Callable[[], list[str]]:
        stream = io.StringIO()
        setup_logging(level, fmt, stream, **kwargs)  # type: ignore[arg-type]
        return lambda: stream.getvalue().splitlines()

    return start


def _boom() -> None:
    raise ValueError("first line\nsecond line")


# --------------------------------------------------------------------------- kv


def test_kv_line_with_fields(capture: Capture) -> None:
    lines = capture("kv")
    LOG.info("poll done", extra={"fields": {"source": "inbox", "items": 3}})
    log_event(LOG, "info", "poll done", source="inbox", items=3)
    expected = rf"ts={TS} level=info logger=watcher\.daemon msg=\"poll done\" source=inbox items=3"
    assert len(lines()) == 2
    for line in lines():
        assert re.fullmatch(expected, line), line


@pytest.mark.parametrize(
    ("value", "rendered"),
    [
        ("plain", "plain"),
        ("two words", '"two words"'),
        ('say "hi"', r'"say \"hi\""'),
        ("a=b", '"a=b"'),
        ("C:\\dir", r'"C:\\dir"'),
        ("", '""'),
        ("line1\nline2\r\tend", r'"line1\nline2\r\tend"'),
        ("esc\x1b[31mred", r'"esc\x1b[31mred"'),
        ("sep\u2028nel\x85", r'"sep\u2028nel\x85"'),
        ("é à ç", '"é à ç"'),
        (None, "null"),
        (True, "true"),
        (2.5, "2.5"),
        (["a", 1], '"[\\"a\\", 1]"'),
    ],
)
def test_kv_quoting_and_escaping(capture: Capture, value: object, rendered: str) -> None:
    lines = capture("kv")
    log_event(LOG, "info", "x", value=value)
    assert lines()[0].endswith(f" value={rendered}")


def test_kv_field_names_cannot_forge_core_keys(capture: Capture) -> None:
    lines = capture("kv")
    log_event(LOG, "info", "real", msg="forged", level="critical", **{"bad key=": 1})
    assert lines()[0].endswith("msg=real msg_=forged level_=critical bad_key_=1")


def test_kv_is_one_line_per_event_even_with_tracebacks(capture: Capture) -> None:
    lines = capture("kv")
    LOG.warning("multi\nline\r\nmessage\u2028here")
    try:
        _boom()
    except ValueError:
        LOG.exception("poll failed", extra={"fields": {"source": "inbox"}})
    out = lines()
    assert len(out) == 2
    assert 'msg="multi\\nline\\r\\nmessage\\u2028here"' in out[0]
    assert out[1].startswith("ts=") and " level=error " in out[1]
    assert ' source=inbox exc="Traceback (most recent call last):\\n' in out[1]
    assert out[1].endswith('ValueError: first line\\nsecond line"')
    assert "\n" not in "".join(out)


def test_stack_info_is_one_escaped_field(capture: Capture) -> None:
    lines = capture("kv")
    LOG.info("where", stack_info=True)
    (line,) = lines()
    assert ' stack="Stack (most recent call last):\\n' in line


def test_unformattable_arguments_do_not_raise(capture: Capture) -> None:
    logging.getLogger().handlers.clear()  # pytest's own capture handler would raise first
    lines = capture("kv")
    LOG.info("%d items", "not a number")
    assert "(unformattable arguments)" in lines()[0]


# --------------------------------------------------------------------------- json


def test_json_has_the_same_fields_one_object_per_line(capture: Capture) -> None:
    lines = capture("json")
    log_event(LOG, "info", "poll done", source="inbox", items=3, ok=True, note='a "b"\nc')
    try:
        _boom()
    except ValueError:
        log_event(LOG, "error", "poll failed", exc_info=True, source="inbox")
    LOG.debug("odd \u2028 \x85 \x9b \udcff chars")
    out = lines()
    assert len(out) == 3
    first, second, third = (json.loads(line) for line in out)
    assert re.fullmatch(TS, first.pop("ts"))
    assert first == {
        "level": "info",
        "logger": "watcher.daemon",
        "msg": "poll done",
        "source": "inbox",
        "items": 3,
        "ok": True,
        "note": 'a "b"\nc',
    }
    assert second["level"] == "error" and second["source"] == "inbox"
    assert second["exc"].startswith("Traceback (most recent call last):\n")
    assert second["exc"].endswith("ValueError: first line\nsecond line")
    assert third["msg"] == "odd \u2028 \x85 \x9b \udcff chars"
    assert all(line.isprintable() for line in out)


# --------------------------------------------------------------------------- journald


@pytest.mark.parametrize("fmt", ["kv", "json"])
def test_journald_stream_gets_priority_prefix_and_no_timestamp(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fmt: str
) -> None:
    path = tmp_path / "journal"
    with path.open("w", encoding="utf-8") as stream:
        stat = os.fstat(stream.fileno())
        monkeypatch.setenv("JOURNAL_STREAM", f"{stat.st_dev}:{stat.st_ino}")
        setup_logging("DEBUG", fmt, stream)  # type: ignore[arg-type]
        LOG.debug("d")
        LOG.info("i")
        LOG.warning("w")
        LOG.error("e")
        LOG.critical("c")
    lines = path.read_text(encoding="utf-8").splitlines()
    assert [line[:3] for line in lines] == ["<7>", "<6>", "<4>", "<3>", "<2>"]
    assert not any("ts" in line for line in lines)
    if fmt == "json":
        assert json.loads(lines[1][3:]) == {"level": "info", "logger": "watcher.daemon", "msg": "i"}
    else:
        assert lines[1] == "<6>level=info logger=watcher.daemon msg=i"


def test_journal_stream_of_another_file_is_ignored(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    other = os.stat(tmp_path)
    monkeypatch.setenv("JOURNAL_STREAM", f"{other.st_dev}:{other.st_ino}")
    path = tmp_path / "plain"
    with path.open("w", encoding="utf-8") as stream:
        setup_logging("INFO", "kv", stream)
        LOG.info("i")
    assert path.read_text(encoding="utf-8").startswith("ts=")


def test_journald_can_be_forced(capture: Capture) -> None:
    lines = capture("kv", journald=True)
    LOG.info("i")
    assert lines() == ["<6>level=info logger=watcher.daemon msg=i"]


def test_syslog_priorities() -> None:
    assert [syslog_priority(n) for n in (5, 10, 20, 25, 30, 40, 50, 60)] == [7, 7, 6, 6, 4, 3, 2, 2]


# --------------------------------------------------------------------------- setup


def test_apprise_stays_at_info_or_above_at_debug_level(capture: Capture) -> None:
    lines = capture("kv", level="DEBUG")
    apprise = logging.getLogger("apprise")
    assert apprise.getEffectiveLevel() == logging.INFO
    apprise.debug("whole alert body")
    logging.getLogger("apprise.plugins.email").debug("whole alert body")
    apprise.setLevel(logging.DEBUG)  # someone lowers it later: the handler still drops it
    apprise.debug("whole alert body")
    apprise.info("sent 1 notification")
    assert [line.split(" msg=")[1] for line in lines()] == ['"sent 1 notification"']


def test_apprise_follows_a_higher_level(capture: Capture) -> None:
    capture("kv", level="ERROR")
    assert logging.getLogger("apprise").getEffectiveLevel() == logging.ERROR


def test_setup_twice_replaces_its_own_handler_only(capture: Capture) -> None:
    foreign = logging.NullHandler()
    logging.getLogger().addHandler(foreign)
    first = capture("kv")
    second = capture("json", level="info")
    LOG.info("once")
    assert first() == []
    assert len(second()) == 1
    assert foreign in logging.getLogger().handlers
    assert logging.getLogger().level == logging.INFO


def test_setup_rejects_unknown_level_and_format() -> None:
    with pytest.raises(ValueError, match="level"):
        setup_logging("chatty")
    with pytest.raises(ValueError, match="format"):
        setup_logging("INFO", "xml")  # type: ignore[arg-type]


# --------------------------------------------------------------------------- redaction

NIRS = [
    "255072A07300443",  # valid NIR, Corse-du-Sud
    "2 53 07 2A 073 004 43",
    "2.53.07.2A.073.004.43",
    "2-53-07-2a-073-004-43",
    "184127512345678",
    "1 84 12 75 123 456 78",
    "184127512345600",  # wrong key: still redacted, shape is enough
    "299122B12345699",
    "7 01 01 99 001 001 01",
    "8 99 99 99 999 999 99",
]


@pytest.mark.parametrize("nir", NIRS)
def test_nir_shapes_are_redacted(nir: str) -> None:
    assert redact(f"found {nir} in paste") == "found [NIR] in paste"
    assert redact(f"nir={nir},") == "nir=[NIR],"


@pytest.mark.parametrize(
    "text",
    [
        "jean.dupont@mutuelle.fr",
        "a.b+tag@sub.example.co.uk",
        "FR7630006000011234567890189",
        "FR76 3000 6000 0112 3456 7890 189",
        "DE89370400440532013000",
        "GB29NWBK60161331926819",
    ],
)
def test_emails_and_ibans_are_redacted(text: str) -> None:
    assert redact(f"[{text}]").count("[") == 2
    assert not re.search(r"\d{4}|@", redact(text))


@pytest.mark.parametrize(
    "text",
    [
        "ts=1732800000",  # epoch seconds
        "1732800000123 ms",
        "1732800000123456 us",
        "1732800000123456789 ns",
        "512345678901234",  # 15 digits but no NIR sex digit
        "073282932000074",  # a SIRET with a leading zero, 15 chars
        "1841275123456789",  # 16 digits: not a NIR shape
        "a1b2c3184127512345678d9e",  # hex fingerprint with a 15-digit run inside
        "items=3 bytes=65536 took=0.25s",
        "2024-11-28T16:37:00.123Z",
        "socks5://iso-inbox:x@127.0.0.1:9050",
    ],
)
def test_ordinary_text_is_left_intact(text: str) -> None:
    assert redact(text) == text


@pytest.mark.parametrize("phone", ["0612345678", "06 12 34 56 78", "+33 6 12 34 56 78", "0033 6 12 34 56 78"])
def test_phone_numbers_are_redacted_like_every_counted_identifier(phone: str) -> None:
    assert redact(f"call {phone} now") == "call [PHONE] now"


def test_redaction_is_idempotent() -> None:
    once = redact("a 255072A07300443 b jean@x.fr c FR7630006000011234567890189")
    assert once == "a [NIR] b [EMAIL] c [IBAN]"
    assert redact(once) == once


@pytest.mark.parametrize("fmt", ["kv", "json"])
def test_every_part_of_an_event_is_redacted(capture: Capture, fmt: str) -> None:
    lines = capture(fmt)
    LOG.info("hit %s for %s", "2 53 07 2A 073 004 43", "jean.dupont@mutuelle.fr")
    log_event(LOG, "info", "hit", nir=184127512345678, iban="FR76 3000 6000 0112 3456 7890 189")
    try:
        raise ValueError("bad row: 255072A07300443;jean@x.fr")
    except ValueError:
        LOG.exception("parse failed")
    out = "\n".join(lines())
    for secret in ("53 07 2A", "2A073", "1841275", "dupont", "jean@", "FR76", "3000 6000"):
        assert secret not in out
    # The traceback shows the `raise` source line too: one more NIR and email there.
    assert out.count("[NIR]") == 4 and out.count("[EMAIL]") == 3 and out.count("[IBAN]") == 1


@pytest.mark.parametrize("chunk", ["a", "1", "a.", "FR76", "b-", "1 ", "x@y."])
def test_redaction_stays_linear_on_long_hostile_runs(chunk: str) -> None:
    """A 200 kB run once took minutes (quadratic email scan); it must take milliseconds."""
    text = chunk * (200_000 // len(chunk))
    started = time.perf_counter()
    redact(text)
    assert time.perf_counter() - started < 1.0


def _random_nir_shape(rng: random.Random) -> list[str]:
    """The seven groups of a random NIR-shaped value (key not computed: shape is enough)."""

    def digits(n: int) -> str:
        return "".join(rng.choice("0123456789") for _ in range(n))

    dept = rng.choice([digits(2), "2A", "2B", "2a", "97", "99"])
    return [rng.choice("123478"), digits(2), digits(2), dept, digits(3), digits(3), digits(2)]


def test_every_nir_shape_is_redacted_in_every_layout() -> None:
    rng = random.Random(1234)
    for _ in range(2000):
        groups = _random_nir_shape(rng)
        text = rng.choice(["", " ", ".", "-"]).join(groups)
        assert redact(f"row;{text};x") == "row;[NIR];x", text
