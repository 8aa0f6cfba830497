#!/usr/bin/env python3
"""Member watchlists at scale (issue 16): import, memory, lookup, scan overhead, the daemon.

    python bench/bench_watchlist.py [--members 20000000] [--from-corpus 200000] [--runs 3]
                                    [--jobs N] [--no-daemon] [--keep]

1. A member file of `--members` synthetic NIRs (numpy, seeded: three quarters compact, one
   quarter spaced `1 84 12 75 123 456 78`), `--from-corpus` of them taken from the 200 MB
   bench corpus (`make bench` / bench/bench_scan.py --keep leaves it in bench/corpus/) so a
   scan of it finds members; `watcher watchlist import` in a subprocess: wall, CPU, peak RSS,
   database size.
2. In this process: loading the list (as a daemon worker does), its RSS; fingerprinting the
   corpus's 908,528 distinct NIRs (AES-CMAC in one call) against one HMAC call per NIR
   (what the store's Fingerprinter costs); the lookup of those NIRs in the list, and of a
   small document's 10 NIRs.
3. `watcher scan --format json [--jobs N] --config CFG` on the whole 200 MB corpus file,
   without and with `--watchlist bench`, alternated `--runs` times: wall, CPU (the scanner and
   its pool), peak RSS, the overhead; the members found must be the corpus NIRs in the list.
4. Unless `--no-daemon`: `watcher run` on a folder holding one small member document, with
   the list loaded: RSS and PSS of the daemon and its analysis workers once the finding is in.

Work files go to bench/corpus/watchlist/ (gitignored), deleted unless `--keep`.
Exit status: 0 when the counts match, 1 otherwise.
"""

from __future__ import annotations

import argparse
import hmac
import json
import os
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.support.commands import BASE  # noqa: E402
from watcher.privacy import read_secret  # noqa: E402
from watcher.watchlist.members import open_watchlists  # noqa: E402

CORPUS = ROOT / "bench" / "corpus"
WORK = CORPUS / "watchlist"
WHOLE = CORPUS / "v3-200mb-seed1-whole.txt"
EXPECTED = (CORPUS / "v3-200mb-seed1-extract.expected", CORPUS / "v3-200mb-seed1-text.expected")
CONFIG = BASE.replace("interval = 10", "interval = 1")     # the tests' directory source, polled each second


def corpus_nirs() -> list[str]:
    """The distinct NIRs the bench corpus holds (its generator's record)."""
    found: set[str] = set()
    for path in EXPECTED:
        with path.open() as handle:
            found.update(line.split(" ", 1)[0] for line in handle if line.strip())
    return sorted(found)


def synthetic(count: int, seed: int) -> np.ndarray:
    """`count` valid NIRs (sex 1-2, mainland, months 01-12) as 15-digit integers."""
    rng = np.random.default_rng(seed)
    departments = np.array([d for d in range(1, 96) if d != 20], dtype=np.int64)
    body = rng.integers(1, 3, count, dtype=np.int64)
    for value, scale in ((rng.integers(0, 100, count), 100), (rng.integers(1, 13, count), 100),
                         (departments[rng.integers(0, len(departments), count)], 100),
                         (rng.integers(1, 991, count), 1000), (rng.integers(1, 1000, count), 1000)):
        body = body * scale + value
    return body * 100 + (97 - body % 97)


def digits(values: np.ndarray, spaced: bool) -> bytes:
    """One line per value: 15 digits, or grouped 1-2-2-2-3-3-2 by spaces."""
    columns = np.empty((len(values), 15), dtype=np.uint8)
    rest = values.copy()
    for at in range(14, -1, -1):
        columns[:, at] = rest % 10 + 48
        rest //= 10
    if spaced:
        groups = np.split(columns, [1, 3, 5, 7, 10, 13], axis=1)
        space = np.full((len(values), 1), 32, dtype=np.uint8)
        parts = [part for group in groups for part in (group, space)][:-1]
        columns = np.hstack(parts)
    newline = np.full((len(values), 1), 10, dtype=np.uint8)
    return np.hstack([columns, newline]).tobytes()


def write_members(path: Path, count: int, from_corpus: list[str], seed: int, corpus: list[str]) -> int:
    """Write the member file; how many corpus NIRs it holds (the chosen ones, and the random
    ones that happen to be corpus NIRs too: real matches, not false ones)."""
    in_corpus = np.array(sorted(int(n) for n in corpus if n.isdigit()), dtype=np.int64)
    chosen = {int(n) for n in from_corpus if n.isdigit()}
    extra: set[int] = set()
    with path.open("wb") as out:
        out.write("".join(" ".join([n[0], n[1:3], n[3:5], n[5:7], n[7:10], n[10:13], n[13:]]) + "\n"
                          for n in from_corpus).encode())
        left = count - len(from_corpus)
        step = 2_000_000
        for at in range(0, left, step):
            block = synthetic(min(step, left - at), seed + at)
            out.write(digits(block, spaced=(at // step) % 4 == 3))
            extra.update(int(v) for v in block[np.isin(block, in_corpus)])
    return len(from_corpus) + len(extra - chosen)


def timed(argv: list[str], cwd: Path) -> dict[str, float | str]:
    """(wall s, CPU s, peak RSS MB, stdout, stderr) of one `watcher` subprocess and its pool.
    CPU from wait4; the peak RSS is the largest VmHWM of the process and its children, polled
    (wait4's ru_maxrss would start at this benchmark's own RSS: Linux keeps it across exec)."""
    started = time.perf_counter()
    out_file, err_file = (WORK / "out.txt").open("w+b"), (WORK / "err.txt").open("w+b")
    proc = subprocess.Popen([sys.executable, "-m", "watcher", *argv], cwd=cwd, stdout=out_file, stderr=err_file,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    peak = 0.0
    while True:
        for pid in family(proc.pid):
            peak = max(peak, hwm_mb(pid))
        done, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if done:
            break
        time.sleep(0.02)
    proc.returncode = code = os.waitstatus_to_exitcode(status)
    out_file.seek(0)
    err_file.seek(0)
    out, err = out_file.read().decode(), err_file.read().decode()
    out_file.close()
    err_file.close()
    if code not in (0, 1):
        sys.exit(f"watcher {' '.join(argv)} failed ({code}): {err[-2000:]}")
    return {"wall": time.perf_counter() - started, "cpu": usage.ru_utime + usage.ru_stime, "rss_mb": peak,
            "out": out, "err": err}


def family(pid: int) -> list[int]:
    """`pid` and its children (a scan's pool)."""
    found = [pid]
    try:
        for task in Path(f"/proc/{pid}/task").iterdir():
            found += [int(child) for child in (task / "children").read_text().split()]
    except OSError:
        pass
    return found


def hwm_mb(pid: int) -> float:
    """The peak RSS (VmHWM) of `pid`, 0 when it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def in_process(state: Path, nirs: list[str]) -> dict[str, float]:
    secret = read_secret(state / "secret.key")
    assert secret is not None
    before = rss_mb()
    started = time.perf_counter()
    lists, _ = open_watchlists(state / "watcher.db", secret)
    load_s = time.perf_counter() - started
    loaded_rss = rss_mb() - before
    hasher = lists.hasher
    started = time.perf_counter()
    hasher.blocks(nirs)
    cmac_s = time.perf_counter() - started
    started = time.perf_counter()
    for nir in nirs:
        hmac.digest(secret, f"nir:{nir}".encode(), "sha256")
    hmac_s = time.perf_counter() - started
    started = time.perf_counter()
    found = lists.match(nirs)
    match_s = time.perf_counter() - started
    small = nirs[:10]
    started = time.perf_counter()
    for _ in range(1000):
        lists.match(small)
    small_us = (time.perf_counter() - started) * 1000
    return {"load_s": load_s, "load_rss_mb": loaded_rss, "cmac_s": cmac_s, "hmac_s": hmac_s, "match_s": match_s,
            "match_hits": float(len(found.get("bench", []))), "small_doc_us": small_us,
            "members": float(sum(len(v) // 8 for v in lists.lists.values()))}


def per_document(state: Path, runs: int) -> dict[str, list[float]]:
    """CPU seconds of `Analyzer.analyze_path` on the whole corpus file in this process, without
    and with the watchlists (loaded once beforehand, as a daemon worker holds them), alternated:
    as `watcher scan` analyses (no fingerprints) and as a daemon worker does (the store's HMAC
    fingerprints of every NIR too)."""
    from watcher.analyze import Analyzer
    from watcher.privacy import Fingerprinter

    secret = read_secret(state / "secret.key")
    assert secret is not None
    lists, _ = open_watchlists(state / "watcher.db", secret)
    keyed = Fingerprinter(secret)
    analyzers = {"scan": Analyzer(), "scan+list": Analyzer(watchlists=lists),
                 "worker": Analyzer(fingerprinter=keyed), "worker+list": Analyzer(fingerprinter=keyed, watchlists=lists)}
    analyzers["scan"].analyze_bytes(b"warm up", "-")
    times: dict[str, list[float]] = {name: [] for name in analyzers}
    for _ in range(max(1, runs)):
        for name, analyzer in analyzers.items():
            started = time.process_time()
            analyzer.analyze_path(WHOLE)
            times[name].append(time.process_time() - started)
    return times


def tree_memory(pid: int) -> tuple[float, float, int]:
    """(RSS MB, PSS MB, processes) of `pid` and its descendants."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    todo, seen = [pid], []
    while todo:
        current = todo.pop()
        seen.append(current)
        todo.extend(children.get(current, []))
    rss = pss = 0.0
    for process in seen:
        try:
            rollup = Path(f"/proc/{process}/smaps_rollup").read_text().splitlines()
        except OSError:
            continue
        for line in rollup:
            if line.startswith("Rss:"):
                rss += int(line.split()[1]) / 1024
            elif line.startswith("Pss:"):
                pss += int(line.split()[1]) / 1024
    return rss, pss, len(seen)


def daemon_memory(work: Path, members: list[str]) -> dict[str, float]:
    inbox = work / "inbox"
    inbox.mkdir(exist_ok=True)
    document = inbox / "members.txt"
    document.write_text("mutuelle export\n" + "\n".join(members[:10]) + "\n")
    past = time.time() - 30
    os.utime(document, (past, past))
    log = (work / "daemon.log").open("wb")
    proc = subprocess.Popen([sys.executable, "-m", "watcher", "run", "--config", str(work / "sources.toml")],
                            cwd=work, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        deadline = time.monotonic() + 300
        hits = None
        while time.monotonic() < deadline and hits is None:
            time.sleep(0.5)
            with sqlite3.connect(f"file:{work / 'state' / 'watcher.db'}?mode=ro", uri=True) as db:
                row = db.execute("SELECT watchlist_hits FROM findings WHERE watchlist_hits != '{}'").fetchone()
            hits = json.loads(row[0]) if row else None
        time.sleep(1)
        rss, pss, processes = tree_memory(proc.pid)
        own_rss, own_pss, _ = tree_memory_single(proc.pid)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)
        log.close()
    return {"rss_mb": rss, "pss_mb": pss, "processes": processes, "daemon_rss_mb": own_rss,
            "daemon_pss_mb": own_pss, "hits": float((hits or {}).get("bench", 0))}


def tree_memory_single(pid: int) -> tuple[float, float, int]:
    rss = pss = 0.0
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        if line.startswith("Rss:"):
            rss = int(line.split()[1]) / 1024
        elif line.startswith("Pss:"):
            pss = int(line.split()[1]) / 1024
    return rss, pss, 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--members", type=int, default=20_000_000)
    parser.add_argument("--from-corpus", type=int, default=200_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--jobs", type=int)
    parser.add_argument("--seed", type=int, default=16)
    parser.add_argument("--no-daemon", action="store_true")
    parser.add_argument("--keep", action="store_true")
    args = parser.parse_args(argv)
    args.runs = max(1, args.runs)
    if not WHOLE.exists() or not all(path.exists() for path in EXPECTED):
        sys.exit(f"no bench corpus in {CORPUS}: run `python bench/bench_scan.py --keep` first")
    nirs = corpus_nirs()
    chosen = nirs[:: max(1, len(nirs) // args.from_corpus)][: args.from_corpus]
    shutil.rmtree(WORK, ignore_errors=True)
    WORK.mkdir(parents=True)
    (WORK / "sources.toml").write_text(CONFIG)
    ok = True
    try:
        members_file = WORK / "members.txt"
        started = time.perf_counter()
        expected = write_members(members_file, args.members, chosen, args.seed, nirs)
        print(f"member file: {args.members:,} NIRs ({len(chosen):,} chosen from the corpus, {expected:,} "
              "corpus NIRs in all), "
              f"{members_file.stat().st_size / 1e6:,.0f} MB, written in {time.perf_counter() - started:.1f} s")

        imported = timed(["watchlist", "import", "bench", str(members_file), "--config", "sources.toml"], WORK)
        database = sum(p.stat().st_size for p in (WORK / "state").glob("watcher.db*"))
        print(f"import: {imported['wall']:.1f} s wall, {imported['cpu']:.1f} s CPU, peak RSS {imported['rss_mb']:.0f} MB, "
              f"database {database / 1e6:.0f} MB; {str(imported['out']).strip()}")

        figures = in_process(WORK / "state", nirs)
        print(f"load (a worker's start): {figures['load_s']:.2f} s, +{figures['load_rss_mb']:.0f} MB RSS for "
              f"{figures['members']:,.0f} members")
        print(f"fingerprints of the corpus's {len(nirs):,} NIRs: AES-CMAC in one call {figures['cmac_s']:.3f} s, "
              f"one HMAC-SHA256 call per NIR {figures['hmac_s']:.3f} s")
        print(f"lookup of those {len(nirs):,} NIRs (fingerprints, sort, one walk through the list): {figures['match_s']:.3f} s, "
              f"{figures['match_hits']:,.0f} members found (expected {expected:,}); a 10-NIR document "
              f"{figures['small_doc_us']:.0f} us")
        ok &= figures["match_hits"] == expected
        print(f"false matches expected per NIR looked up: {figures['members']:,.0f} / 2**64 = "
              f"{figures['members'] / 2**64:.1e}")

        steady = per_document(WORK / "state", args.runs)
        for kind in ("scan", "worker"):
            plain, listed = steady[kind], steady[f"{kind}+list"]
            print(f"per document, the list loaded beforehand ({kind}: whole 200 MB file, one process): without "
                  f"{' '.join(f'{v:.2f}' for v in plain)} s, with {' '.join(f'{v:.2f}' for v in listed)} s CPU; "
                  f"overhead {100 * (statistics.median(listed) / statistics.median(plain) - 1):+.1f}% (medians)")

        jobs = ["--jobs", str(args.jobs)] if args.jobs else []
        base = ["scan", "--format", "json", *jobs, "--config", "sources.toml", str(WHOLE)]
        runs: dict[str, list[dict[str, float | str]]] = {"without": [], "with": []}
        for _ in range(args.runs):
            runs["without"].append(timed(base, WORK))
            runs["with"].append(timed([*base[:-1], "--watchlist", "bench", str(WHOLE)], WORK))
        hits = json.loads(str(runs["with"][-1]["out"]).splitlines()[0]).get("watchlist_hits", {})
        ok &= hits.get("bench") == expected
        for name, done in runs.items():
            walls = [float(r["wall"]) for r in done]
            cpus = [float(r["cpu"]) for r in done]
            print(f"scan {name:<7} the watchlist: wall {' '.join(f'{w:.2f}' for w in walls)} s "
                  f"(median {statistics.median(walls):.2f}), CPU {' '.join(f'{c:.2f}' for c in cpus)} s "
                  f"(median {statistics.median(cpus):.2f}), peak RSS {max(float(r['rss_mb']) for r in done):.0f} MB")
        wall = [statistics.median(float(r["wall"]) for r in runs[k]) for k in ("without", "with")]
        cpu = [statistics.median(float(r["cpu"]) for r in runs[k]) for k in ("without", "with")]
        print(f"scan overhead: wall {100 * (wall[1] / wall[0] - 1):+.1f}%, CPU {100 * (cpu[1] / cpu[0] - 1):+.1f}%; "
              f"members found {hits.get('bench', 0):,} of {expected:,}")

        if not args.no_daemon:
            memory = daemon_memory(WORK, chosen)
            print(f"daemon with the list loaded: {memory['processes']:.0f} processes, RSS {memory['rss_mb']:.0f} MB, "
                  f"PSS {memory['pss_mb']:.0f} MB (the daemon's own process RSS {memory['daemon_rss_mb']:.0f} MB); "
                  f"members found {memory['hits']:.0f} of 10")
            ok &= memory["hits"] == 10
        print(f"load: {os.getloadavg()[0]:.2f} (1 min), {os.cpu_count()} CPUs")
    finally:
        if not args.keep:
            shutil.rmtree(WORK, ignore_errors=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
