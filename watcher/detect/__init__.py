"""Detection: pure, synchronous code from UTF-8 text chunks to distinct values per detector.

    scanner = Scanner(rules)            # compile once (about a second), reuse
    detection = scanner.start()         # one per document
    part = detection.part()             # one per extracted part (the text, a decoded blob...)
    for chunk in chunks: part.feed(chunk)
    part.close()
    detection.values["nir"]             # distinct normalized NIRs: never leave the process

Detectors (one module each, one interface: `base.Detector`): nir, insurers, siret, rpps, iban,
email, phone, health (context words), and one `rules.RuleDetector` per operator rule. The shape of each part
(tabular or not, records, headers) comes from `shape.ShapeReader`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from collections.abc import Iterable, Sequence

from .base import CHECKED, FAILED, Detector, Window
from .compiled import DISABLED, speedups
from .email import EmailDetector
from .health import HealthTermsDetector
from .engine import ChunkWindow, Engine, default_cache_dir
from .iban import IbanDetector, registered
from .insurers import InsurerDetector, Name
from .nir import NirDetector
from .phone import PhoneDetector
from .rpps import RppsDetector
from .rules import Rule, RuleDetector
from .shape import Shape, ShapeReader
from .siret import SiretDetector

SAMPLES_PER_DETECTOR = 3
log = logging.getLogger(__name__)


# What `_speedups.scan_numbers` finds in one pass: a list per kind, in the order it returns
# them (NIRs of the rarer forms, marked `~`, come in a list of their own), then the failed
# checks per CHECKED kind. The C module exports both orders, checked below at import.
NUMBER_KINDS = ("nir", "loose_nir", "siret", "rpps", "phone", "iban")
# The detector whose values each list holds.
NUMBER_DETECTORS = tuple("nir" if kind == "loose_nir" else kind for kind in NUMBER_KINDS)
_LOOSE = NUMBER_KINDS.index("loose_nir")


def check_order(what: str, compiled: Sequence[str] | None, expected: Sequence[str]) -> None:
    """Refuse a `_speedups` that returns its results in another order than this package reads
    them (its enum changed alone, or a build older than the Python code): every value would be
    counted under the wrong detector."""
    if compiled is None or tuple(compiled) != tuple(expected):
        given = "no order (a build older than this check)" if compiled is None else f"the order {tuple(compiled)}"
        raise ImportError(
            f"watcher.detect._speedups gives {what} in {given}, watcher.detect reads them in the order "
            f"{tuple(expected)}: the enum in _speedups.c and the tuple in watcher/detect must agree "
            "(after changing _speedups.c, rebuild it: make setup, or pip install -e .)"
        )


if speedups:
    check_order("NUMBER_KINDS", getattr(speedups, "NUMBER_KINDS", None), NUMBER_KINDS)
    check_order("FAILED_KINDS", getattr(speedups, "FAILED_KINDS", None), CHECKED)


def builtin_detectors(insurers: list[Name] | None = None, compiled: bool = True) -> list[Detector]:
    return [
        NirDetector(compiled), InsurerDetector(insurers), SiretDetector(compiled), RppsDetector(compiled),
        IbanDetector(compiled), EmailDetector(), PhoneDetector(compiled), HealthTermsDetector(),
    ]


class Scanner:
    """Every detector's patterns compiled into one Hyperscan database, and the dense numbers
    (NUMBER_KINDS) found by one compiled pass when `_speedups` is built.

    `compiled=False`: everything through Hyperscan and Python (the tests compare the two).
    """

    def __init__(self, rules: Sequence[Rule] = (), insurers: list[Name] | None = None, compiled: bool = True) -> None:
        self.rules = list(rules)
        self.numbers = bool(compiled and speedups)
        if compiled and not speedups and not DISABLED:
            log.warning("compiled detector helpers not built (no C compiler at install?): scanning about 3x slower")
        operator_rules: list[Detector] = [RuleDetector(r) for r in self.rules]
        self.detectors: list[Detector] = builtin_detectors(insurers, self.numbers) + operator_rules
        self.by_name = {d.name: d for d in self.detectors}
        self.engine = Engine(self.detectors, cache=default_cache_dir())

    def start(self) -> Detection:
        return Detection(self)


@dataclass
class KeyTally:
    """Numbers with the shape and structure of a checked identifier (NIR key, SIRET/RPPS Luhn)
    seen in a part or a document, occurrences: how many passed the check, how many failed.
    The scoring compares them with what random digits would give (`watcher.plausibility`)."""

    passed: int = 0
    failed: int = 0

    def add(self, other: KeyTally) -> None:
        self.passed += other.passed
        self.failed += other.failed


def _tallies() -> dict[str, KeyTally]:
    return {kind: KeyTally() for kind in CHECKED}


class Detection:
    """Distinct values, part shapes and check tallies (`tallies`: the document's, and
    `part_tallies`: one per part) found in one document."""

    def __init__(self, scanner: Scanner) -> None:
        self.scanner = scanner
        self.values: dict[str, set[str]] = {d.name: set() for d in scanner.detectors}
        self.samples: dict[str, list[str]] = {d.name: [] for d in scanner.detectors}
        self.shapes: list[Shape] = []
        self.tallies = _tallies()
        self.part_tallies: list[dict[str, KeyTally]] = []
        # NIRs of the rarer forms (marked `~`, see `nir.take_loose`) may be among the values:
        # always on the Python path, when the compiled pass returned some otherwise.
        self.loose_nirs = not scanner.numbers

    def add(self, name: str, value: str) -> None:
        seen = self.values[name]
        if value not in seen:
            seen.add(value)
            if len(self.samples[name]) < SAMPLES_PER_DETECTOR:
                self.samples[name].append(value)

    def part(self) -> PartScan:
        return PartScan(self)

    def scan_text(self, data: bytes) -> None:
        """Scan one whole part held in memory (tests, small documents)."""
        part = self.part()
        part.feed(data)
        part.close()


class PartScan:
    """Feeds one part's chunks to the engine (with overlap) and to its shape reader.

    Chunks are gathered up to SCAN_AT bytes before a scan, so a small paste is scanned once,
    at `close()`, instead of once per chunk and again for its tail.
    """

    SCAN_AT = 1 << 20

    def __init__(self, detection: Detection) -> None:
        self._detection = detection
        self._window = ChunkWindow()
        self._shape = ShapeReader(lambda nir: detection.add("nir", nir))
        self._tallies = _tallies()
        self._pending: list[bytes] = []
        self._pending_size = 0

    def feed(self, chunk: bytes) -> None:
        if chunk:
            self._shape.feed(chunk)
            self._pending.append(chunk)
            self._pending_size += len(chunk)
            if self._pending_size >= self.SCAN_AT:
                self._flush(final=False)

    def close(self) -> None:
        self._flush(final=True)
        detection = self._detection
        detection.shapes.append(self._shape.finish())
        detection.part_tallies.append(self._tallies)
        for kind, tally in self._tallies.items():
            detection.tallies[kind].add(tally)

    def _flush(self, final: bool) -> None:
        data = b"".join(self._pending) if len(self._pending) != 1 else self._pending[0]
        self._pending, self._pending_size = [], 0
        self._scan(data, final)

    def _scan(self, chunk: bytes, final: bool) -> None:
        buf, accept_from, accept_to = self._window.next(chunk, final)
        if accept_to <= accept_from:
            return
        detection = self._detection
        scanner = detection.scanner
        window = (accept_from, accept_to)
        hits = scanner.engine.hits(buf, accept_from, accept_to)
        if scanner.numbers:
            self._numbers(buf, window)
        for detector, found in zip(scanner.detectors, hits, strict=False):
            if found:
                accepted: Iterable[str] = detector.find(buf, found, window, detection.values[detector.name])
                if detector.name in self._tallies:
                    accepted = self._tallied(detector.name, accepted)
                self._accept(detector.name, accepted)

    def _numbers(self, buf: bytes, window: Window) -> None:
        """The dense numbers of `buf` (NUMBER_KINDS) in one compiled pass, and their tallies."""
        *numbers, failed = speedups.scan_numbers(buf, *window)
        detection = self._detection
        detection.loose_nirs = detection.loose_nirs or bool(numbers[_LOOSE])
        tallies = self._tallies
        for kind, count in zip(CHECKED, failed, strict=False):
            tallies[kind].failed += count
        for name, values in zip(NUMBER_DETECTORS, numbers, strict=False):
            if values and name == "iban":
                values = registered(values)
            if values:
                if name in tallies:
                    tallies[name].passed += len(values)
                self._accept(name, values)

    def _tallied(self, name: str, accepted: Iterable[str]) -> list[str]:
        """The values a checked-number detector accepted, its FAILED marks counted apart."""
        values = list(accepted)
        failed = values.count(FAILED)
        if failed:
            values = [v for v in values if v != FAILED]
        tally = self._tallies[name]
        tally.failed += failed
        tally.passed += len(values)
        return values

    def _accept(self, name: str, accepted: Iterable[str]) -> None:
        detection = self._detection
        if len(detection.samples[name]) < SAMPLES_PER_DETECTOR:
            for value in accepted:
                detection.add(name, value)
        else:
            detection.values[name].update(accepted)      # the hot path of dense extracts: no per-value call


__all__ = ["Detection", "Detector", "Rule", "Scanner", "Shape"]
