"""One document through the pipeline: extract -> detect -> score -> `Report`.

Used by `watcher scan` and by the daemon's worker pool. Synchronous and CPU-bound; build one
`Analyzer` per process (compiling the patterns takes about a second) and reuse it.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING
from collections.abc import Iterable, Iterator, Sequence

from .detect import Detection, Scanner, Shape
from .detect.nir import LOOSE, take_loose
from .extract import Budget, bytes_chunks, extract, file_chunks
from .privacy import Fingerprinter
from .report import Report
from .score import DEFAULT_POLICY, MIN_SHAPED, Chance, Evidence, Policy, by_chance, score

if TYPE_CHECKING:
    from .watchlist.members import Watchlists

SAMPLES_SHOWN = 6
SAMPLES_PER_KIND = 3


@dataclass
class _Hashing:
    """Hashes and counts raw bytes as they stream past."""

    digest: hashlib._Hash = field(default_factory=hashlib.sha256)
    size: int = 0

    def wrap(self, chunks: Iterable[bytes]) -> Iterator[bytes]:
        for chunk in chunks:
            self.digest.update(chunk)
            self.size += len(chunk)
            yield chunk


class Analyzer:
    """Compiled detectors + scoring policy + (optionally) the fingerprint key."""

    def __init__(
        self,
        scanner: Scanner | None = None,
        policy: Policy = DEFAULT_POLICY,
        fingerprinter: Fingerprinter | None = None,
        watchlists: Watchlists | None = None,
    ) -> None:
        self.scanner = scanner or Scanner()
        self.policy = policy
        self.fingerprinter = fingerprinter
        self.watchlists = watchlists        # member lists: their hits raise a document to high

    def analyze_bytes(self, data: bytes, label: str, content_type: str | None = None, reveal: bool = False) -> Report:
        return self.analyze_chunks(bytes_chunks(data), label, content_type=content_type, reveal=reveal)

    def analyze_path(self, path: Path, label: str | None = None, reveal: bool = False) -> Report:
        """A file of any size, streamed (a zip or a SQLite database is read from the file)."""
        path = Path(path)
        return self.analyze_chunks(file_chunks(path), label or str(path), file_path=path, reveal=reveal)

    def analyze_chunks(
        self,
        chunks: Iterable[bytes],
        label: str,
        content_type: str | None = None,
        file_path: Path | None = None,
        reveal: bool = False,
    ) -> Report:
        hashing = _Hashing()
        budget = Budget()
        detection = self.scanner.start()
        raw = hashing.wrap(chunks)
        for part in extract(raw, label, budget, content_type, file_path):
            scan = detection.part()
            for chunk in part.chunks:
                scan.feed(chunk)
            scan.close()
        for _ in raw:       # what extraction did not need still counts in the hash and size
            pass
        return self.report(detection, label, hashing.digest.hexdigest(), hashing.size, budget.notes, reveal)

    def report(self, detection: Detection, label: str, sha256: str, size: int, notes: list[str],
               reveal: bool = False, member_blocks: Sequence[bytes] | None = None) -> Report:
        """The scored report of a document's detection (also built by `watcher.parallel` from
        the slices of a big file, which made the AES blocks of their NIRs for the watchlists
        already: `member_blocks`, see `Watchlists.match`)."""
        report = Report(path=label, sha256=sha256, size=size, errors=notes)
        self._fill(report, detection, reveal, member_blocks)
        return report

    def _fill(self, report: Report, detection: Detection, reveal: bool,
              member_blocks: Sequence[bytes] | None) -> None:
        scanner = self.scanner
        values = detection.values
        tabular = _largest_tabular(detection.shapes)
        context = bool(values["insurer"] or values["health_terms"] or (tabular and tabular.health_headers))
        rarer = 0
        kept: list[str] = []        # NIRs of the rarer forms that count
        if detection.loose_nirs:
            loose = take_loose(values["nir"])
            if context:
                kept, rarer = loose, len(loose)
            elif self.watchlists:   # a member's own NIR is context enough (a random match: N / 2^64)
                kept = self.watchlists.members_among(loose)
            values["nir"].update(kept)
        detection.samples["nir"] = [v.lstrip(LOOSE) for v in detection.samples["nir"]
                                    if v.lstrip(LOOSE) in values["nir"]]
        report.counts = {d.name: len(values[d.name]) for d in scanner.detectors}
        report.insurers = sorted(values["insurer"])
        report.records = tabular.records if tabular else None
        report.rules = {r.name: r.severity for r in scanner.rules if values[f"rule:{r.name}"]}
        if self.watchlists:
            report.watchlist_members = (self.watchlists.match(values["nir"]) if member_blocks is None
                                        else self.watchlists.match(kept, member_blocks))
            report.watchlist_hits = {name: len(found) for name, found in report.watchlist_members.items()}
        evidence = replace(_evidence(report, tabular), chance=_chance(detection, tabular), rarer_nirs=rarer,
                           watchlist_hits=report.watchlist_hits)
        report.severity, report.reasons = score(evidence, self.policy)
        report.samples = [
            f"{d.name} {d.mask(v)}"
            for d in scanner.detectors if d.sensitive
            for v in detection.samples[d.name][:SAMPLES_PER_KIND]
        ][:SAMPLES_SHOWN]
        if self.fingerprinter:
            fingerprint = self.fingerprinter
            report.fingerprints = {
                d.name: sorted(fingerprint(d.name, v) for v in values[d.name])
                for d in scanner.detectors if d.sensitive and values[d.name]
            }
        if reveal:
            report.revealed = {d.name: sorted(values[d.name]) for d in scanner.detectors
                               if d.sensitive and values[d.name]}


def _chance(detection: Detection, tabular: Shape | None) -> tuple[Chance, ...]:
    """The checked counts random digits explain: by chance for the document and for each part
    that holds enough numbers to tell. A NIR column says what its numbers are: never chance."""
    found = []
    for kind, tally in detection.tallies.items():
        if kind == "nir" and tabular and tabular.nir_column:
            continue
        if not by_chance(tally.passed, tally.failed, kind):
            continue
        parts = [t[kind] for t in detection.part_tallies if t[kind].passed + t[kind].failed >= MIN_SHAPED]
        if all(by_chance(t.passed, t.failed, kind) for t in parts):
            found.append(Chance(kind, tally.passed, tally.passed + tally.failed))
    return tuple(found)


def _largest_tabular(shapes: list[Shape]) -> Shape | None:
    tabular = [s for s in shapes if s.format]
    return max(tabular, key=lambda s: s.records) if tabular else None


def _evidence(report: Report, tabular: Shape | None) -> Evidence:
    return Evidence(
        counts=report.counts,
        insurers=report.insurers,
        tabular=tabular.describe() if tabular else None,
        records=report.records,
        nir_column=bool(tabular and tabular.nir_column),
        health_headers=tuple(tabular.health_headers) if tabular else (),
        professional=bool(tabular and tabular.professional),
        rule_severities=report.rules,
    )
