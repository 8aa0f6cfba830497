"""Synthetic NIRs for the tests and benchmarks: structure-valid bodies, their keys, the written
forms of one NIR, and what the analyzer finds in a document (`values_of`).

Random, never real: every NIR comes from the caller's `random.Random`.
"""

from __future__ import annotations

import random
from collections import defaultdict

from watcher.analyze import Analyzer
from watcher.detect.nir import nir_key

MONTHS = [f"{m:02d}" for m in range(1, 13)] + ["20"] + [str(m) for m in range(30, 43)] + [str(m) for m in range(50, 100)]


def with_key(body: str) -> str:
    """The 15-character NIR of a 13-character body (key computed, 2A/2B handled)."""
    return f"{body}{nir_key(body):02d}"


STRICT_MONTHS = [f"{m:02d}" for m in range(1, 13)] + ["20"]


def random_body(rng: random.Random, sex: str | None = None, strict: bool = False) -> str:
    """A structure-valid 13-character NIR body: mainland, Corsica, overseas or abroad.

    `strict`: the common forms only (sex 1/2, month 01-12 or 20), which count without any
    other context; otherwise also sex 3/4 and months 30-42/50-99.
    """
    sex = sex or rng.choice("12" if strict else "1212121234")
    year = rng.randrange(100)
    month = rng.choice(STRICT_MONTHS if strict else MONTHS)
    place_kind = rng.random()
    order = f"{rng.randrange(1, 1000):03d}"
    if place_kind < 0.70:
        dept = rng.choice([d for d in range(1, 96) if d != 20])
        place = f"{dept:02d}{rng.randrange(1, 991):03d}"
    elif place_kind < 0.80:
        place = rng.choice(["2A", "2B"]) + f"{rng.randrange(1, 991):03d}"
    elif place_kind < 0.85:
        year = rng.randrange(0, 76)           # Corsica before 1976 is 20
        place = f"20{rng.randrange(1, 991):03d}"
    elif place_kind < 0.93:
        place = f"{rng.choice([971, 972, 973, 974, 976, 987, 988])}{rng.randrange(1, 100):02d}"
    else:
        place = f"99{rng.randrange(1, 1000):03d}"
    return f"{sex}{year:02d}{month}{place}{order}"


def random_nir(rng: random.Random, sex: str | None = None, strict: bool = False) -> str:
    return with_key(random_body(rng, sex, strict))


def nir_forms(nir: str) -> dict[str, str]:
    """Every written form of a normalized 15-character NIR."""
    groups = [nir[0], nir[1:3], nir[3:5], nir[5:7], nir[7:10], nir[10:13], nir[13:15]]
    return {
        "compact": nir,
        "spaced": " ".join(groups),
        "dotted": ".".join(groups),
        "dashed": "-".join(groups),
        "nbsp": "\u00a0".join(groups),
        "key_apart": f"{nir[:13]} {nir[13:]}",
    }


def values_of(analyzer: Analyzer, text: str | bytes) -> dict[str, set[str]]:
    """Distinct accepted values per detector for one in-memory document.

    Goes through the whole pipeline (`reveal=True`), so what is returned is what the report
    counts: identifiers in clear for sensitive detectors, canonical names for `insurer`.
    """
    data = text.encode("utf-8") if isinstance(text, str) else text
    report = analyzer.analyze_bytes(data, "test", reveal=True)
    values: dict[str, set[str]] = defaultdict(set)
    for name, found in (report.revealed or {}).items():
        values[name] = set(found)
    values["insurer"] = set(report.insurers)
    for name, count in report.counts.items():
        assert count == len(values[name]) or name not in (report.revealed or {}), name
    return values
