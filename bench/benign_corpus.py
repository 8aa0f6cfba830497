"""Scan benign text the machine already has; no document may reach `medium`.

    python bench/benign_corpus.py                 # the full set (`make benign`): ~650 MB, ~50 s
    python bench/benign_corpus.py --quick --json  # what the test suite runs: ~320 MB, ~20 s

The corpus is what a leak monitor must stay quiet on: documentation (/usr/share/doc, man
pages), locale data (/usr/share/i18n/locales: glibc's collation files hold thousands of
15-digit stroke codes), translations, and source code (the Python standard library, the
installed packages, Perl). Text files only: a NUL in the first 8 KB (of the decompressed
content for .gz) and the file is skipped.
Prints the count per severity, the `low` ones by reason, and every document at `medium` or
above; exits 1 if there is one.

Excluded, with reasons (a finding there is right, not a false alarm): python-stdnum's
`fr/nir.py`, whose doctests publish valid NIRs next to the word NIR.
"""

from __future__ import annotations

import argparse
import collections
import gzip
import json
import os
import sys
import sysconfig
import time
from pathlib import Path

from watcher.analyze import Analyzer

QUICK = [
    "/usr/share/i18n/locales",
    sysconfig.get_paths()["stdlib"],
    sysconfig.get_paths()["purelib"],
]
FULL = QUICK + ["/usr/share/doc", "/usr/share/man", "/usr/share/perl", "/usr/share/perl5", "/usr/share/locale"]
EXCLUDED = ("stdnum/fr/nir.py",)
ALERTS = ("medium", "high", "critical")


def documents(roots: list[str]) -> list[Path]:
    """Regular text files under `roots` (symlinks and missing roots skipped), in a stable order."""
    found = []
    for root in roots:
        for folder, dirs, files in os.walk(root):
            dirs.sort()
            for name in sorted(files):
                path = Path(folder) / name
                if path.is_symlink() or not path.is_file() or str(path).endswith(EXCLUDED):
                    continue
                try:
                    with (gzip.open if name.endswith(".gz") else open)(path, "rb") as handle:
                        head = handle.read(8192)
                except (OSError, EOFError):
                    continue
                if b"\0" not in head:
                    found.append(path)
    return found


def scan(roots: list[str]) -> dict[str, object]:
    analyzer = Analyzer()
    started = time.perf_counter()
    severities: collections.Counter[str] = collections.Counter()
    low: collections.Counter[str] = collections.Counter()
    alerts = []
    size = 0
    for path in documents(roots):
        report = analyzer.analyze_path(path)
        severities[report.severity] += 1
        size += report.size
        if report.severity == "low":
            low[report.reasons[0] if report.reasons else "?"] += 1
        elif report.severity in ALERTS:
            alerts.append({"path": str(path), "severity": report.severity, "reasons": report.reasons})
    return {
        "roots": [r for r in roots if Path(r).is_dir()],
        "documents": sum(severities.values()),
        "megabytes": round(size / 1e6, 1),
        "seconds": round(time.perf_counter() - started, 1),
        "severities": dict(severities),
        "low_reasons": dict(low.most_common()),
        "alerts": alerts,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="locale data and Python code only (the test)")
    parser.add_argument("--json", action="store_true", help="one JSON object on stdout")
    args = parser.parse_args(argv)
    result = scan(QUICK if args.quick else FULL)
    if args.json:
        print(json.dumps(result))
    else:
        print(f"{result['documents']:,} documents, {result['megabytes']} MB in {result['seconds']} s "
              f"from {', '.join(result['roots'])}")
        print("severities:", result["severities"])
        for reason, count in result["low_reasons"].items():  # type: ignore[union-attr]
            print(f"  low x{count}: {reason}")
        for alert in result["alerts"]:  # type: ignore[union-attr]
            print(f"ALERT {alert['severity']}: {alert['path']}: {'; '.join(alert['reasons'])}")
    return 1 if result["alerts"] else 0


if __name__ == "__main__":
    sys.exit(main())
