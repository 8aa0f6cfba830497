#!/usr/bin/env python3
"""Start-up of `watcher scan` on a 1 KB document: wall time and the modules it imports.

    python bench/bench_startup.py [--runs 20] [--command watcher|module] [--no-bytecode] [-- SCAN OPTIONS]

A 1 KB document (base64 of random bytes: no identifier, no finding) is scanned `--runs`
times in a row by the installed `watcher` script (`.venv/bin/watcher`, what users run), or
by `python -m watcher` with `--command module` (which runs the tree of the current directory:
how to time another commit, from a `git archive` of it). The median, 90th percentile and
minimum of the wall time (from spawning the process to its exit) are printed, and the median
CPU time (user + system), which other work on the machine moves less. Two cache states:

- **warm**: `WATCHER_CACHE_DIR` points at a directory filled by one untimed run first, so
  every timed run loads the Hyperscan databases already compiled;
- **cold**: each run gets a new empty `WATCHER_CACHE_DIR`, so it compiles the patterns and
  writes them (what the first scan on a machine pays).

Python's bytecode is cached as an installed package has it (compiled on first use into a
scratch `PYTHONPYCACHEPREFIX`, even where `PYTHONDONTWRITEBYTECODE` is set), unless
`--no-bytecode`: then the environment is left as it is, and where it forbids bytecode files
every run compiles leak-watcher's own modules again (about 0.14 s measured).

Then one more run with `python -X importtime` lists how many modules a scan imports (as it
lists them: not those `importlib.import_module` loads, the command modules), the
slowest top-level imports, and which of the modules a scan must not need (asyncio, sqlite3,
aiohttp, apprise, pymisp, stix2, cryptography, the configuration) it imported anyway.
The load average is printed first: figures on a busy machine are worth little.
"""

from __future__ import annotations

import argparse
import base64
import math
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = Path(sys.executable).with_name("watcher")
#: Modules `watcher scan` of a document must not import (tests/test_startup.py asserts it).
UNWANTED = ("asyncio", "sqlite3", "aiohttp", "apprise", "pymisp", "stix2", "cryptography", "watcher.config")


def command(kind: str, *extra: str) -> list[str]:
    """The command line of one scan: the installed script, or `python -m watcher`."""
    if kind == "watcher":
        return [str(SCRIPT), *extra]
    return [sys.executable, "-m", "watcher", *extra]


def timed_run(argv: list[str], env: dict[str, str]) -> tuple[float, float]:
    """Wall and CPU (user + system) seconds of one run, which must succeed. The CPU time
    moves less than the wall time when other work shares the machine."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run(argv, env=env, check=True, stdout=subprocess.DEVNULL, cwd=ROOT)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def percentile(values: list[float], fraction: float) -> float:
    """The nearest-rank percentile (no interpolation: the figure of an actual run)."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(fraction * len(ordered)) - 1)]


def environment(scratch: Path, bytecode: bool) -> dict[str, str]:
    """The runs' environment: with bytecode cached under `scratch` when `bytecode`."""
    env = dict(os.environ)
    if bytecode:
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        env["PYTHONPYCACHEPREFIX"] = str(scratch / "pycache")
    return env


def bench(argv: list[str], runs: int, warm: bool, env: dict[str, str],
          scratch: Path) -> list[tuple[float, float]]:
    """Wall and CPU times of `runs` runs of `argv` with a warm or a cold pattern cache (an untimed
    run first: the bytecode is compiled and, for `warm`, the pattern cache filled)."""
    env = dict(env, WATCHER_CACHE_DIR=str(scratch / ("warm" if warm else "cold-first")))
    timed_run(argv, env)
    times = []
    for index in range(runs):
        if not warm:
            env["WATCHER_CACHE_DIR"] = str(scratch / f"cold-{index}")
        times.append(timed_run(argv, env))
    return times


def imported(document: Path, env: dict[str, str], scratch: Path) -> dict[str, int]:
    """Each module a warm `watcher scan` imports; for top-level imports (what an `import` of
    ours pulled in), its cumulative import time in microseconds, else -1."""
    env = dict(env, WATCHER_CACHE_DIR=str(scratch / "warm"))
    done = subprocess.run([sys.executable, "-X", "importtime", "-m", "watcher", "scan", str(document)],
                          env=env, check=True, capture_output=True, text=True, cwd=ROOT)
    modules: dict[str, int] = {}
    for line in done.stderr.splitlines():
        if not line.startswith("import time:") or "cumulative" in line:
            continue
        _, cumulative, name = line.split("|")
        top_level = not name[1:].startswith(" ")
        modules[name.strip()] = int(cumulative) if top_level else -1
    return modules


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20, help="timed runs per cache state (default 20)")
    parser.add_argument("--command", choices=("watcher", "module"), default="watcher",
                        help="the installed `watcher` script (default) or `python -m watcher`")
    parser.add_argument("--no-bytecode", action="store_true",
                        help="leave PYTHONDONTWRITEBYTECODE as the environment has it")
    parser.add_argument("scan_options", nargs="*", metavar="SCAN OPTION",
                        help="after --: options for `watcher scan` (e.g. -- --jobs 1)")
    args = parser.parse_args()
    print(f"load average: {' '.join(f'{x:.2f}' for x in os.getloadavg())}, {os.cpu_count()} CPUs")
    with tempfile.TemporaryDirectory(prefix="bench-startup-") as tmp:
        scratch = Path(tmp)
        document = scratch / "doc.txt"
        document.write_text(base64.b64encode(os.urandom(768)).decode()[:1023] + "\n")    # 1,024 bytes
        env = environment(scratch, not args.no_bytecode)
        for warm in (True, False):
            argv = command(args.command, "scan", *args.scan_options, str(document))
            runs = bench(argv, args.runs, warm, env, scratch)
            wall, cpu = [run[0] for run in runs], [run[1] for run in runs]
            print(f"{'warm' if warm else 'cold'} cache: wall median {statistics.median(wall):.3f} s, "
                  f"p90 {percentile(wall, 0.9):.3f} s, min {min(wall):.3f} s; "
                  f"CPU median {statistics.median(cpu):.3f} s ({args.runs} runs)")
        modules = imported(document, env, scratch)
    top = sorted(((us, name) for name, us in modules.items() if us > 0), reverse=True)[:8]
    print(f"modules imported: {len(modules)}; slowest top-level imports: "
          + ", ".join(f"{name} {us / 1000:.1f} ms" for us, name in top))
    unwanted = [name for name in UNWANTED if name in modules]
    print(f"unwanted modules imported: {', '.join(unwanted) or 'none'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
