"""`watcher scan`: score files, directories or stdin, without a daemon or a database.

Contract (other tools rely on it): `--format json` prints one object per document per line;
exit 0, 1 when `--fail-on` is reached, 2 on error (one line on stderr each). A document that
cannot be read or analysed gets its line too, with `error` (and severity "none"); the others
are scanned, and the exit status is 2 at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from collections.abc import Iterator

from ..analyze import Analyzer
from ..detect import Scanner
from ..report import Report
from ..score import DEFAULT_POLICY, SEVERITIES, severity_rank
from . import CliError


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("scan", help="score files, directories or stdin (-)")
    parser.add_argument("paths", nargs="+", metavar="PATH", help="file, directory (walked) or - for stdin")
    parser.add_argument("--format", choices=("text", "json"), default="text")
    parser.add_argument("--fail-on", choices=SEVERITIES[1:], metavar="SEVERITY",
                        help="exit 1 when a document reaches this severity (low|medium|high|critical)")
    parser.add_argument("--reveal", action="store_true",
                        help="also print identifiers in clear (only to a terminal, never by default)")
    parser.add_argument("--config", help="take operator rules and scoring from this sources.toml")
    parser.add_argument("--jobs", type=int, metavar="N",
                        help="processes scanning at once (default: the CPUs this process may use; 1: no pool). "
                             "A directory's files are spread over them, a big text file is cut into slices")
    parser.add_argument("--watchlist", action="append", metavar="NAME",
                        help="count the members of this watchlist (repeatable; from the state directory of "
                             "--config or the default configuration)")
    parser.set_defaults(func=run)


def _analyzer(config_path: str | None, watchlists: list[str] | None = None) -> Analyzer:
    """Operator rules and thresholds come from the configuration when one is given; the
    watchlists from its state directory (the default configuration's without one)."""
    if not config_path and not watchlists:
        return Analyzer()
    from ..config import ConfigError, find_config, load_config

    try:
        config = load_config(Path(config_path) if config_path else find_config(None), sources=False)
    except (ConfigError, OSError) as exc:
        raise CliError(str(exc)) from None
    analyzer = Analyzer(Scanner(config.rules), policy=config.policy or DEFAULT_POLICY) if config_path else Analyzer()
    if watchlists:
        from .watchlist import scan_watchlists

        analyzer.watchlists = scan_watchlists(config, watchlists)
    return analyzer


def _documents(paths: list[str], errors: list[str]) -> Iterator[Path | str]:
    """Files in argument order; directories walked in name order; '-' is stdin."""
    for raw in paths:
        if raw == "-":
            yield "-"
            continue
        path = Path(raw)
        if path.is_dir():
            for folder, dirs, files in os.walk(path, onerror=lambda e: errors.append(f"{e.filename}: {e.strerror}")):
                dirs.sort()
                for name in sorted(files):
                    yield Path(folder) / name
        elif path.exists():
            yield path
        else:
            errors.append(f"{raw}: no such file or directory")


def run(args: argparse.Namespace) -> int:
    if args.reveal and not sys.stdout.isatty():
        raise CliError("--reveal prints identifiers in clear and only does so to a terminal, not a pipe or a file")
    if args.jobs is not None and args.jobs < 1:
        raise CliError("--jobs takes a number of processes, 1 or more")
    from ..parallel import ScanPool, available_cpus

    analyzer = _analyzer(args.config, args.watchlist)
    errors: list[str] = []
    worst = "none"
    if args.format == "text":
        print(f"{'SEVERITY':<9} {'NIRS':>6} {'RECORDS':>8}  {'INSURERS':<28} PATH")

    def whole(document: Path | str) -> Report:
        if document == "-":
            chunks = iter(lambda: sys.stdin.buffer.read(1 << 20), b"")
            return analyzer.analyze_chunks(chunks, "-", reveal=args.reveal)
        return analyzer.analyze_path(Path(document), reveal=args.reveal)

    with ScanPool(analyzer, args.jobs or available_cpus()) as pool:
        for document, outcome in pool.reports(_documents(args.paths, errors), whole, args.reveal):
            if isinstance(outcome, Exception):
                errors.append(_failed(document, _reason(outcome), args.format))
                continue
            _print(outcome, args.format, args.reveal)
            if severity_rank(outcome.severity) > severity_rank(worst):
                worst = outcome.severity
    for error in errors:
        print(f"watcher: error: {error}", file=sys.stderr)
    if errors:
        return 2
    if args.fail_on and severity_rank(worst) >= severity_rank(args.fail_on):
        return 1
    return 0


def _reason(exc: Exception) -> str:
    """Why a document was not scanned: unreadable, or a bug or a hostile file (that document only)."""
    if isinstance(exc, OSError):
        return exc.strerror or str(exc)
    return f"analysis failed: {type(exc).__name__}: {exc}"


def _failed(document: Path | str, reason: str, fmt: str) -> str:
    """Report a document that could not be scanned (its JSON line carries `error`); the line
    for stderr. The reason is redacted: an exception may quote the document."""
    from ..redact import redact

    reason = redact(" ".join(reason.split()))
    if fmt == "json":
        print(json.dumps({"path": str(document), "severity": "none", "error": reason}, ensure_ascii=False), flush=True)
    return f"{document}: {reason}"


def _print(report: Report, fmt: str, reveal: bool) -> None:
    if fmt == "json":
        data = report.to_json()
        if reveal and report.revealed:
            data["revealed"] = report.revealed
        print(json.dumps(data, ensure_ascii=False), flush=True)
        return
    insurers = ", ".join(report.insurers) or "-"
    if len(insurers) > 28:
        insurers = insurers[:27] + "\u2026"
    records = "-" if report.records is None else f"{report.records:,}"
    print(f"{report.severity.upper():<9} {report.counts.get('nir', 0):>6,} {records:>8}  {insurers:<28} {report.path}")
    for line in report.reasons + [f"sample: {s}" for s in report.samples[:3]] + [f"note: {e}" for e in report.errors]:
        print(f"{'':<9} {line}")
    for name, values in (report.revealed or {}).items() if reveal else ():
        print(f"{'':<9} REVEALED {name}: {', '.join(values[:20])}{' ...' if len(values) > 20 else ''}")
    sys.stdout.flush()
