"""What the pipeline says about one document: the `Report`.

A report never holds a cleartext identifier: identifiers appear only as keyed fingerprints
(`fingerprints`, never printed) and masked samples (`samples`); members of a watchlist as their
64-bit watchlist fingerprints (`watchlist_members`, never printed: see `watcher.watchlist`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class Report:
    path: str                                  # file path, URL or "-" for stdin
    sha256: str                                # of the raw bytes as fetched/read
    size: int                                  # raw bytes
    severity: str = "none"                     # none | low | medium | high | critical
    reasons: list[str] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)   # detector -> distinct values
    insurers: list[str] = field(default_factory=list)      # canonical names
    records: int | None = None                 # rows of the largest tabular part, if any
    samples: list[str] = field(default_factory=list)       # masked, e.g. "nir 1 84 12 •• ••• ••• ••"
    fingerprints: dict[str, list[str]] = field(default_factory=dict)  # kind -> HMAC hex (sorted)
    rules: dict[str, str] = field(default_factory=dict)    # operator rule name -> its severity
    errors: list[str] = field(default_factory=list)        # parts refused (bombs, caps), readable
    revealed: dict[str, list[str]] | None = None           # clear values: only for `scan --reveal`
    watchlist_hits: dict[str, int] = field(default_factory=dict)   # watchlist -> distinct member NIRs
    watchlist_members: dict[str, list[int]] = field(default_factory=dict)  # their member fingerprints

    def to_json(self) -> dict[str, Any]:
        """The `watcher scan --format json` contract (fingerprints are not printed)."""
        return {
            "path": self.path,
            "severity": self.severity,
            "reasons": self.reasons,
            "counts": self.counts,
            "insurers": self.insurers,
            "records": self.records,
            "samples": self.samples,
            "sha256": self.sha256,
            "size": self.size,
            "errors": self.errors,
            "watchlist_hits": self.watchlist_hits,
        }
