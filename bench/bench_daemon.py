#!/usr/bin/env python3
"""End-to-end throughput, peak memory and idle CPU of the daemon (`watcher run`).

    python bench/bench_daemon.py [--sources 200] [--items 50] [--item-kb N] [--workers 2] [--idle 30]
                                 [--concurrency 8] [--seed 1] [--json FILE] [--profile]

One fake paste site (aiohttp.web, in this process, on 127.0.0.1) serves `--sources` archive
pages `/s/<n>/archive` (ETag + 304), each linking `--items` pastes `/raw/<id>`: 2-20 KB (or
`--item-kb` KB each) of seeded text (logs, code, prose, JSON, clean CSV), 5% with 1-3 NIRs and an insurer (high),
3% member extracts with a NIR column (critical). Then:

1. once: `python -m watcher run --once --workers N` (subprocess, fresh state): items/s end to
   end (fetch, extract, detect, store: process start to exit, and from the first request to
   exit), CPU seconds (getrusage RUSAGE_CHILDREN delta: daemon + workers, summed), peak RSS
   of the process tree (VmRSS and PSS of parent + workers summed, sampled every 0.2 s from
   /proc), and a check of the database (items, findings by severity).
2. idle: `python -m watcher run --workers N` (forever, interval 3600, fresh state); after its
   first pass (one "poll done" per source in its log), the CPU time (utime + stime of every
   process of the tree, from /proc/<pid>/stat) over `--idle` seconds, as % of one core.

`--profile` instead says where the CPU goes, per stage, in-process (see `profile()`): the
worker stage (Analyzer, cProfile'd), each event-loop stage alone (listing parse, HTTP fetch,
pool round trip, store calls), then a whole pass with the CPU of each thread; with
`--cprofile-loop` the pass again under cProfile, the event-loop thread and the store thread
each profiled (`--cprofile-dump FILE` writes both as pstats files).

`--what-if NAME[,NAME]` runs the daemon with candidate fixes patched in through a
sitecustomize.py on PYTHONPATH (watcher/ is not edited; the spawned workers get them too):
`switch-interval`, `deep-queue` (see WHAT_IFS; the earlier `cached-trigger` and `lazy-buckets`
were merged in 983ce22). The multiprocessing resource tracker is left
unpatched (importing watcher there would add ~20 MB to the measured RSS).

Targets (issue 15): >= 2,500 items/s on 2 cores (>= 400 with `--item-kb 100`), peak RSS < 250
MB, idle CPU < 1%.
Exit status 0 when the run completed and the database holds every item, 1 otherwise.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import hashlib
import html
import io
import json
import logging
import os
import pstats
import random
import resource
import shutil
import signal
import sqlite3
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from aiohttp import web

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from tests.support.nirs import nir_forms, random_nir  # noqa: E402  (the tests' valid-NIR generators)
import contextlib

CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE_KB = os.sysconf("SC_PAGE_SIZE") // 1024
SAMPLE_EVERY = 0.2
TARGET_ITEMS_PER_S = 2500          # issue 15, small pastes
TARGET_BIG_ITEMS_PER_S = 400       # issue 15, --item-kb 100
TARGET_RSS_MB = 250
TARGET_IDLE_CPU = 1.0
PROFILE_BATCH = 16    # --profile: items per pool task and per transaction (~ the daemon's batches here)

WORDS = ["le", "la", "les", "un", "une", "des", "et", "ou", "mais", "donc", "avec", "sans", "pour", "dans", "sur", "sous", "entre", "vers", "chez", "depuis", "service", "client", "rapport", "réunion", "projet", "équipe", "semaine", "mois", "année", "budget", "livraison", "commande", "facture", "produit", "serveur", "réseau", "sauvegarde", "version", "correctif", "incident", "ticket", "utilisateur", "compte", "accès", "journal", "erreur", "document", "archive", "export", "import", "fichier", "dossier", "nouveau", "ancien", "the", "of", "and", "to", "in", "is", "for", "on", "with", "as", "by", "at", "from", "this", "that", "be", "are", "was", "were", "have", "has", "will", "update", "deploy", "release", "build", "test", "merge", "branch", "cache", "queue", "token", "session", "password", "login", "Paris", "Lyon", "Marseille", "Toulouse", "Nantes", "Lille", "Bordeaux", "Rennes", "Strasbourg", "lundi", "mardi"]
LAST = ["MARTIN", "BERNARD", "THOMAS", "PETIT", "ROBERT", "RICHARD", "DURAND", "DUBOIS", "MOREAU", "LAURENT", "SIMON", "MICHEL", "LEFEBVRE", "LEROY", "ROUX", "DAVID", "BERTRAND", "MOREL", "FOURNIER", "GIRARD", "BONNET", "DUPONT", "LAMBERT"]
FIRST = ["Jean", "Marie", "Pierre", "Sophie", "Michel", "Nathalie", "Philippe", "Isabelle", "Alain", "Catherine", "Léa", "Hugo", "Chloé"]
INSURERS = ("Harmonie Mutuelle", "MGEN", "Malakoff Humanis", "Aésio", "Almerys", "Viamedis", "Apréva")
SERVICES = ("api", "worker-1", "worker-2", "auth", "billing", "sync", "cron", "gateway")


# --------------------------------------------------------------------------- corpus

def _words(rng: random.Random, n: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(n))


def _fill(rng: random.Random, size: int, line) -> str:  # noqa: ANN001
    lines: list[str] = []
    total = 0
    while total < size:
        text = line(rng)
        lines.append(text)
        total += len(text.encode()) + 1
    return "\n".join(lines) + "\n"


def _log_line(rng: random.Random) -> str:
    ts = f"2024-{rng.randrange(1, 13):02d}-{rng.randrange(1, 29):02d}T{rng.randrange(24):02d}:" \
         f"{rng.randrange(60):02d}:{rng.randrange(60):02d}.{rng.randrange(1000):03d}Z"
    level = rng.choice(("INFO", "INFO", "INFO", "WARN", "ERROR", "DEBUG"))
    return (f"{ts} {level} [{rng.choice(SERVICES)}] req={rng.getrandbits(64):016x} "
            f"took={rng.randrange(1, 3000)}ms status={rng.choice((200, 200, 201, 304, 404, 500))} "
            f"{_words(rng, rng.randrange(3, 10))}")


def _code_line(rng: random.Random) -> str:
    name = rng.choice(("user", "item", "cfg", "row", "data", "ctx", "resp"))
    return rng.choice((
        f"    {name} = fetch_{rng.choice(WORDS[:20])}({name}, timeout={rng.randrange(1, 60)})",
        f"    if {name}.status != {rng.choice((200, 404))}:",
        f"        raise ValueError('{_words(rng, 4)}')",
        f"def handle_{rng.choice(SERVICES).replace('-', '_')}(request, *args, **kwargs):",
        f"    return {{'id': {rng.randrange(10**6)}, 'ok': {rng.choice(('True', 'False'))}}}",
        f"    # {_words(rng, rng.randrange(4, 12))}",
        f"const {name}{rng.randrange(100)} = await client.get(`/api/v{rng.randrange(1, 4)}/{name}s/${{id}}`);",
    ))


def _prose_line(rng: random.Random) -> str:
    return _words(rng, rng.randrange(8, 25)).capitalize() + "."


def _json_line(rng: random.Random) -> str:
    record = {"id": rng.randrange(10**9), "sku": f"SKU-{rng.randrange(10**6):06d}",
              "label": _words(rng, 3), "qty": rng.randrange(1, 50), "price": round(rng.uniform(1, 500), 2),
              "updated": f"2024-{rng.randrange(1, 13):02d}-{rng.randrange(1, 29):02d}"}
    return json.dumps(record, ensure_ascii=False) + ","


def _csv_clean(rng: random.Random, size: int) -> str:
    header = "order_id;date;product;quantity;unit_price;city\n"
    return header + _fill(rng, size - len(header), lambda r: (
        f"{r.randrange(10**7)};2024-{r.randrange(1, 13):02d}-{r.randrange(1, 29):02d};{_words(r, 2)};"
        f"{r.randrange(1, 20)};{r.uniform(1, 900):.2f};{r.choice(WORDS[-11:-2])}"))


def _high(rng: random.Random, size: int) -> str:
    nirs = ", ".join(random_nir(rng, strict=True) for _ in range(rng.randrange(1, 4)))
    head = (f"Compte adhérent {rng.choice(INSURERS)} récupéré, tiers payant actif. "
            f"NIR : {nirs}. Contact {rng.choice(FIRST)} {rng.choice(LAST)}.\n")
    return head + _fill(rng, max(0, size - len(head)), _prose_line)


def _critical(rng: random.Random, size: int) -> str:
    header = "nom;prenom;date_naissance;nir;mutuelle;num_adherent\n"
    forms = ("compact", "spaced", "dotted", "compact")
    return header + _fill(rng, size - len(header), lambda r: (
        f"{r.choice(LAST)};{r.choice(FIRST)};19{r.randrange(40, 99)}-{r.randrange(1, 13):02d}-"
        f"{r.randrange(1, 29):02d};{nir_forms(random_nir(r, strict=True))[r.choice(forms)]};"
        f"{r.choice(INSURERS)};A{r.randrange(10**7):07d}"))


KINDS = (  # (name, share, generator(rng, size))
    ("log", 0.30, lambda r, s: _fill(r, s, _log_line)),
    ("code", 0.22, lambda r, s: _fill(r, s, _code_line)),
    ("prose", 0.20, lambda r, s: _fill(r, s, _prose_line)),
    ("json", 0.12, lambda r, s: "[\n" + _fill(r, s, _json_line) + "{}]\n"),
    ("csv", 0.08, _csv_clean),
    ("high", 0.05, _high),
    ("critical", 0.03, _critical),
)


@dataclass
class Corpus:
    pastes: dict[str, bytes]                       # paste id -> body
    sources: list[list[str]]                       # source n -> its paste ids
    kinds: Counter = field(default_factory=Counter)

    @property
    def total_bytes(self) -> int:
        return sum(len(b) for b in self.pastes.values())


def make_corpus(sources: int, per_source: int, seed: int, item_kb: int = 0) -> Corpus:
    """The pastes: 2-20 KB each, or `item_kb` KB each when given."""
    rng = random.Random(seed)
    names = [k[0] for k in KINDS]
    weights = [k[1] for k in KINDS]
    generators = {k[0]: k[2] for k in KINDS}
    corpus = Corpus({}, [])
    for n in range(sources):
        ids = []
        for k in range(per_source):
            kind = rng.choices(names, weights)[0]
            size = item_kb * 1024 if item_kb else rng.randrange(2048, 20481)
            paste_id = f"{n:03d}x{k:03d}{rng.getrandbits(24):06x}"
            corpus.pastes[paste_id] = generators[kind](rng, size).encode()
            corpus.kinds[kind] += 1
            ids.append(paste_id)
        corpus.sources.append(ids)
    return corpus


# --------------------------------------------------------------------------- the fake site

class Site:
    """/s/<n>/archive (ETag, 304) linking /view/<id>; /raw/<id> is the paste (text/plain)."""

    def __init__(self, corpus: Corpus) -> None:
        self.corpus = corpus
        self.archives: dict[str, tuple[bytes, str]] = {}
        for n, ids in enumerate(corpus.sources):
            rows = "".join(f"<tr><td><a href='/view/{pid}'>Paste {html.escape(pid)}</a></td><td>text</td>"
                           f"<td>{len(corpus.pastes[pid])} B</td></tr>" for pid in ids)
            page = (f"<!doctype html><html><head><meta charset='utf-8'><title>Archive {n}</title></head>"
                    f"<body><nav><a href='/'>home</a></nav><table class='archive'>{rows}</table></body></html>")
            etag = '"' + hashlib.sha256(page.encode()).hexdigest()[:16] + '"'
            self.archives[str(n)] = (page.encode(), etag)
        self.requests = Counter()
        self.first_request: float | None = None
        self.last_request: float | None = None
        self.app = web.Application()
        self.app.router.add_get("/s/{n}/archive", self.archive)
        self.app.router.add_get("/raw/{id}", self.raw)
        self.runner: web.AppRunner | None = None
        self.port = 0

    def _seen(self, kind: str) -> None:
        now = time.monotonic()
        self.first_request = self.first_request or now
        self.last_request = now
        self.requests[kind] += 1

    async def archive(self, request: web.Request) -> web.Response:
        self._seen("archive")
        page, etag = self.archives[request.match_info["n"]]
        if request.headers.get("If-None-Match") == etag:
            self.requests["304"] += 1
            return web.Response(status=304, headers={"ETag": etag})
        return web.Response(body=page, content_type="text/html", charset="utf-8", headers={"ETag": etag})

    async def raw(self, request: web.Request) -> web.Response:
        self._seen("raw")
        return web.Response(body=self.corpus.pastes[request.match_info["id"]], content_type="text/plain",
                            charset="utf-8")

    async def start(self) -> None:
        self.runner = web.AppRunner(self.app, access_log=None)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0, backlog=1024)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()

    def reset(self) -> None:
        self.requests.clear()
        self.first_request = self.last_request = None

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"


def write_config(folder: Path, site: Site, sources: int, interval: float, concurrency: int) -> Path:
    blocks = [f'[watcher]\nstate_dir = "./state"\nconcurrency = {concurrency}\n']
    for n in range(sources):
        blocks.append(
            f'[[sources]]\nname = "paste-{n:03d}"\nkind = "listing"\nurl = "{site.url(f"/s/{n}/archive")}"\n'
            f'item_links = "table.archive a"\nitem_url = "{site.url("/raw/{id}")}"\ninterval = {interval:g}\nallow_private = true\n')
    path = folder / "sources.toml"
    path.write_text("\n".join(blocks), encoding="utf-8")
    return path


# --------------------------------------------------------------------------- /proc sampling

def _children_map() -> dict[int, list[int]]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        fields = stat[stat.rindex(b")") + 2:].split()
        children.setdefault(int(fields[1]), []).append(int(entry))
    return children


def process_tree(root: int) -> list[int]:
    """`root` and all its descendants (scanning /proc/*/stat: no /proc/.../children here)."""
    children = _children_map()
    tree, todo = [], [root]
    while todo:
        pid = todo.pop()
        tree.append(pid)
        todo.extend(children.get(pid, ()))
    return tree


def _status_kb(pid: int, key: bytes) -> int:
    try:
        with open(f"/proc/{pid}/status", "rb") as f:
            for line in f:
                if line.startswith(key):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def _pss_kb(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/smaps_rollup", "rb") as f:
            for line in f:
                if line.startswith(b"Pss:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def cpu_ticks(pid: int) -> int:
    """utime + stime of one process, in clock ticks (0 if it is gone)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return 0
    fields = stat[stat.rindex(b")") + 2:].split()
    return int(fields[11]) + int(fields[12])


def thread_ticks(pid: int) -> dict[int, int]:
    """tid -> utime + stime of every thread of `pid`."""
    ticks = {}
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return ticks
    for tid in tids:
        try:
            with open(f"/proc/{pid}/task/{tid}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        fields = stat[stat.rindex(b")") + 2:].split()
        ticks[int(tid)] = int(fields[11]) + int(fields[12])
    return ticks


@dataclass
class Peak:
    rss_kb: int = 0
    pss_kb: int = 0
    processes: int = 0
    per_process_rss_kb: dict[int, int] = field(default_factory=dict)
    samples: int = 0
    # last seen CPU ticks: of each thread of the root process, and of each worker process
    root_threads: dict[int, int] = field(default_factory=dict)
    workers: dict[int, int] = field(default_factory=dict)
    roles: dict[int, str] = field(default_factory=dict)        # pid -> command line

    def cpu_breakdown(self, root: int) -> dict[str, float]:
        """CPU seconds by role: the daemon's threads in creation order, then the workers."""
        out = {}
        for rank, tid in enumerate(sorted(self.root_threads)):
            name = "main thread (event loop)" if tid == root else f"thread #{rank}"
            out[name] = round(self.root_threads[tid] / CLK_TCK, 2)
        rank = 0
        for pid in sorted(self.workers):
            role = self.roles.get(pid, "")
            if "resource_tracker" in role:
                name = "multiprocessing resource tracker"
            else:
                rank += 1
                name = f"worker process #{rank}"
            out[name] = round(self.workers[pid] / CLK_TCK, 2)
        return out


async def sample_memory(root: int, peak: Peak, stop: asyncio.Event) -> None:
    """Every SAMPLE_EVERY s: sum VmRSS and PSS over the tree of `root`; keep the peaks (and
    the last CPU ticks per thread of `root` and per worker, for the per-stage breakdown)."""
    while not stop.is_set():
        pids = process_tree(root)
        rss = {pid: _status_kb(pid, b"VmRSS:") for pid in pids}
        total_rss = sum(rss.values())
        total_pss = sum(_pss_kb(pid) for pid in pids)
        peak.samples += 1
        peak.rss_kb = max(peak.rss_kb, total_rss)
        peak.pss_kb = max(peak.pss_kb, total_pss)
        peak.processes = max(peak.processes, len(pids))
        for pid, kb in rss.items():
            peak.per_process_rss_kb[pid] = max(peak.per_process_rss_kb.get(pid, 0), kb)
        peak.root_threads.update(thread_ticks(root))
        for pid in pids:
            if pid != root:
                peak.workers[pid] = max(peak.workers.get(pid, 0), cpu_ticks(pid))
                if pid not in peak.roles:
                    try:
                        peak.roles[pid] = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
                    except OSError:
                        peak.roles[pid] = ""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), SAMPLE_EVERY)


# --------------------------------------------------------------------------- runs

# `--what-if NAME[,NAME...]`: the daemon with candidate fixes patched in, to measure them
# without editing watcher/: the patches go into a sitecustomize.py put on PYTHONPATH, so the
# spawned workers get them too. Results (findings by severity) must stay the same.
WHAT_IFS = {
    # The parent runs 4+ threads under one GIL (event loop, store, pool manager, queue feeder):
    # a shorter switch interval hands the GIL over sooner (default 5 ms).
    "switch-interval": """
import sys
sys.setswitchinterval(0.0005)
""",
}


def what_if_source(names: str) -> str:
    """The patches, skipped in multiprocessing's resource tracker (no need to import watcher
    there: it would add ~20 MB to the measured RSS)."""
    parts = ["import sys as _sys", "_tracker = 'multiprocessing.resource_tracker' in ' '.join(getattr(_sys, 'orig_argv', ()))"]
    for name in (n.strip() for n in names.split(",")):
        if not name:
            continue
        body = "\n".join("        " + line if line else line for line in WHAT_IFS[name].strip("\n").splitlines())
        parts.append(f"if not _tracker:\n    try:\n{body}\n    except ImportError as _exc:\n"
                     f"        print(_exc, file=_sys.stderr)")
    return "\n".join(parts) + "\n"


def clean_env(what_if: str | None = None, work: Path | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("STATE_DIRECTORY", "NOTIFY_SOCKET", "WATCHDOG_USEC", "JOURNAL_STREAM")}
    env["PYTHONUNBUFFERED"] = "1"
    if what_if:
        assert work is not None
        patch_dir = work / "what-if"
        patch_dir.mkdir(exist_ok=True)
        (patch_dir / "sitecustomize.py").write_text(what_if_source(what_if), encoding="utf-8")
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(patch_dir), env.get("PYTHONPATH")]))
    return env


def db_summary(state: Path) -> dict[str, object]:
    conn = sqlite3.connect(f"file:{state / 'watcher.db'}?mode=ro", uri=True)
    try:
        items = conn.execute("SELECT count(*) FROM items").fetchone()[0]
        severities = dict(conn.execute("SELECT severity, count(*) FROM findings GROUP BY severity").fetchall())
        failing = conn.execute("SELECT count(*) FROM sources WHERE state != 'ok'").fetchone()[0]
    finally:
        conn.close()
    return {"items": items, "findings": severities, "failing_sources": failing}


async def run_once(args: argparse.Namespace, site: Site, work: Path) -> dict[str, object]:
    folder = work / "once"
    folder.mkdir()
    config = write_config(folder, site, args.sources, 3600, args.concurrency)
    site.reset()
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    self_before = resource.getrusage(resource.RUSAGE_SELF)
    err_path = folder / "daemon.log"
    with open(err_path, "wb") as err:
        started = time.monotonic()
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "watcher", "run", "--once", "--workers", str(args.workers),
            "--config", str(config), cwd=folder, env=clean_env(args.what_if, work),
            stdin=asyncio.subprocess.DEVNULL, stdout=err, stderr=err)
        peak, stop = Peak(), asyncio.Event()
        sampler = asyncio.create_task(sample_memory(proc.pid, peak, stop))
        rc = await proc.wait()
        ended = time.monotonic()
        stop.set()
        await sampler
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    self_after = resource.getrusage(resource.RUSAGE_SELF)
    wall = ended - started
    items = args.sources * args.items
    busy = ended - (site.first_request or started)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    summary = db_summary(folder / "state") if rc == 0 else {}
    log_tail = err_path.read_text(errors="replace").splitlines()[-3:]
    return {
        "rc": rc, "wall_s": round(wall, 2), "startup_s": round((site.first_request or ended) - started, 2),
        "busy_s": round(busy, 2), "items": items,
        "items_per_s": round(items / wall, 1), "items_per_s_after_startup": round(items / busy, 1),
        "mb_per_s": round(site.corpus.total_bytes / 1e6 / wall, 2),
        "daemon_cpu_s": round(cpu, 2), "cpu_ms_per_item": round(cpu * 1000 / items, 2),
        "site_cpu_s": round((self_after.ru_utime - self_before.ru_utime)
                            + (self_after.ru_stime - self_before.ru_stime), 2),
        "peak_rss_mb": round(peak.rss_kb / 1024, 1), "peak_pss_mb": round(peak.pss_kb / 1024, 1),
        "peak_rss_per_process_mb": sorted((round(v / 1024, 1) for v in peak.per_process_rss_kb.values()),
                                          reverse=True)[:6],
        "processes": peak.processes, "samples": peak.samples,
        "cpu_s_by_thread_and_worker": peak.cpu_breakdown(proc.pid),
        "requests": dict(site.requests), "db": summary, "log_tail": log_tail,
    }


async def run_idle(args: argparse.Namespace, site: Site, work: Path) -> dict[str, object]:
    folder = work / "idle"
    folder.mkdir()
    config = write_config(folder, site, args.sources, 3600, args.concurrency)
    site.reset()
    log_path = folder / "daemon.log"
    with open(log_path, "wb") as log:
        started = time.monotonic()
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "watcher", "run", "--workers", str(args.workers), "--config", str(config),
            cwd=folder, env=clean_env(args.what_if, work), stdin=asyncio.subprocess.DEVNULL, stdout=log,
            stderr=log)
        peak, stop = Peak(), asyncio.Event()
        sampler = asyncio.create_task(sample_memory(proc.pid, peak, stop))
        try:
            deadline = time.monotonic() + args.first_pass_timeout
            while True:
                text = log_path.read_bytes()
                failed = text.count(b'msg="poll failed"')
                polls = text.count(b'msg="poll done"') + failed
                if polls >= args.sources:
                    break
                if proc.returncode is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"first pass not done ({polls}/{args.sources} polls): see {log_path}")
                await asyncio.sleep(0.2)
            first_pass = time.monotonic() - started
            await asyncio.sleep(1.0)   # let the last store writes and worker bookkeeping settle
            requests_before = sum(site.requests.values())
            pids = process_tree(proc.pid)
            t0, ticks0 = time.monotonic(), {pid: cpu_ticks(pid) for pid in pids}
            await asyncio.sleep(args.idle)
            t1, ticks1 = time.monotonic(), {pid: cpu_ticks(pid) for pid in pids}
            requests_during = sum(site.requests.values()) - requests_before
        finally:
            if proc.returncode is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    await asyncio.wait_for(proc.wait(), 30)
                except TimeoutError:
                    proc.kill()
                    await proc.wait()
            stop.set()
            await sampler
    used = {pid: (ticks1[pid] - ticks0[pid]) / CLK_TCK for pid in pids}
    seconds = t1 - t0
    return {
        "db": db_summary(folder / "state"), "failed_polls_in_first_pass": failed,
        "first_pass_s": round(first_pass, 2),
        "first_pass_items_per_s": round(args.sources * args.items / first_pass, 1),
        "idle_s": round(seconds, 1), "idle_cpu_s": round(sum(used.values()), 3),
        "idle_cpu_percent": round(100 * sum(used.values()) / seconds, 3),
        "idle_cpu_percent_per_process": [round(100 * v / seconds, 3) for v in used.values()],
        "processes": len(pids), "requests_while_idle": requests_during,
        "peak_rss_mb": round(peak.rss_kb / 1024, 1), "peak_pss_mb": round(peak.pss_kb / 1024, 1),
        "exit_code_after_sigterm": proc.returncode,
    }


# --------------------------------------------------------------------------- profile

def profile(args: argparse.Namespace, corpus: Corpus, work: Path) -> None:
    """Where the CPU goes, per stage (in-process; the fake site in its own thread).

    1. worker stage: `--profile-sample` documents through one Analyzer (what a pool worker does
       per item: extract, detect, score), timed, then under cProfile for the split.
    2. each event-loop stage alone, without a profiler, CPU of the calling thread
       (time.thread_time: GIL and I/O waits excluded) and of the helper threads.
    3. a whole pass in-process (`Daemon(once=True)`): CPU of the event-loop thread, of the store
       thread, of the other threads; compared with the sum of the stages of 2.
    4. with --cprofile-loop, 3 again under cProfile (thread CPU timer); cProfile inflates
       Python-heavy code (bs4, asyncio) several times more than C calls: read proportions.
    """

    from watcher import daemon as daemon_module
    from watcher import store as store_module
    from watcher.analyze import Analyzer
    from watcher.config import load_config
    from watcher.fetch import Fetcher, FetchSettings
    from watcher.privacy import Fingerprinter
    from watcher.sources.listing import parse_links
    from watcher.score import Policy
    from watcher.worker import AnalysisPool, Init, Job

    logging.basicConfig(level=logging.ERROR)   # the in-process daemon's finding/alert lines
    if args.what_if:
        exec(compile(what_if_source(args.what_if), "<what-if>", "exec"), {})   # noqa: S102 (our own patch)
        os.environ["PYTHONPATH"] = str(clean_env(args.what_if, work)["PYTHONPATH"])  # spawned workers too
    items = args.sources * args.items

    # -- 1. worker stage
    analyzer = Analyzer(fingerprinter=Fingerprinter(b"k" * 32))
    docs = list(corpus.pastes.items())[: args.profile_sample]
    size = sum(len(body) for _, body in docs)
    started = time.process_time()
    reports = [analyzer.analyze_bytes(body, pid, "text/plain; charset=utf-8") for pid, body in docs]
    worker_cpu = time.process_time() - started
    print(f"\n== 1. worker stage (extract + detect + score), one process: {worker_cpu * 1000 / len(docs):.2f} "
          f"ms/item ({size / 1e6 / worker_cpu:.1f} MB/s) over {len(docs)} items")
    prof = cProfile.Profile()
    prof.enable()
    for paste_id, body in docs:
        analyzer.analyze_bytes(body, paste_id, "text/plain; charset=utf-8")
    prof.disable()
    out = io.StringIO()
    pstats.Stats(prof, stream=out).sort_stats("tottime").print_stats(12)
    print("   under cProfile, by own time:\n" + out.getvalue())

    # the site in a thread of its own
    site = Site(corpus)
    ready = threading.Event()
    site_loop = asyncio.new_event_loop()

    def serve() -> None:
        asyncio.set_event_loop(site_loop)
        site_loop.run_until_complete(site.start())
        ready.set()
        site_loop.run_forever()

    threading.Thread(target=serve, daemon=True).start()
    ready.wait()

    # -- 2. each event-loop stage alone
    stage: dict[str, float] = {}
    page, _ = site.archives["0"]
    reps = 50
    t = time.thread_time()
    for _ in range(reps):
        parse_links("table.archive a", site.url("/s/0/archive"), page)
    stage["listing page parse (lxml, XPath, urljoin)"] = (time.thread_time() - t) / (reps * args.items)

    ids = list(corpus.pastes)[:2000]

    async def fetch_all() -> float:
        limiter = asyncio.Semaphore(args.concurrency)
        async with Fetcher(FetchSettings(name="bench", allow_private=True), limiter=limiter) as fetcher:
            await fetcher.get(site.url(f"/raw/{ids[0]}"))
            t0 = time.thread_time()
            await asyncio.gather(*(fetcher.get(site.url(f"/raw/{i}")) for i in ids))
            return (time.thread_time() - t0) / len(ids)

    stage["HTTP fetch of the item (Fetcher.get, aiohttp)"] = asyncio.run(fetch_all())

    jobs = [Job(corpus.pastes[i], None, site.url(f"/raw/{i}"), "text/plain") for i in ids]
    batches = [jobs[n:n + PROFILE_BATCH] for n in range(0, len(jobs), PROFILE_BATCH)]

    async def pool_round_trips() -> float:
        """Loop-side CPU per item of the worker pool (pickling, pipes): the analysis itself
        runs in the workers."""
        pool = AnalysisPool(Init((), Policy(), b"k" * 32), args.workers)
        try:
            await pool.analyze(jobs[:1])
            t0 = time.thread_time()
            await asyncio.gather(*(pool.analyze(batch) for batch in batches))
            return (time.thread_time() - t0) / len(ids)
        finally:
            await pool.close()

    stage[f"pool round trip, loop side (one batch per {PROFILE_BATCH} items)"] = asyncio.run(pool_round_trips())
    helper_stage: dict[str, float] = {}

    async def store_calls() -> tuple[float, float]:
        store = await store_module.Store.open(work / "stage.db")
        try:
            await store.call(store_module.StateDB.upsert_source, "s", "listing")
            thread_cpu = await store._run(time.thread_time)
            records = [store_module.ItemRecord("s", paste_id, "", site.url(f"/raw/{paste_id}"), f"Paste {n}",
                                               reports[n]) for n, (paste_id, _) in enumerate(docs)]
            t0 = time.thread_time()
            for n in range(0, len(records), PROFILE_BATCH):
                for record in records[n:n + PROFILE_BATCH]:
                    await store.is_seen("s", record.item_id, "")
                await store.call(store_module.StateDB.record_items, records[n:n + PROFILE_BATCH])
            main = (time.thread_time() - t0) / len(docs)
            return main, (await store._run(time.thread_time) - thread_cpu) / len(docs)
        finally:
            await store.close()

    main, store_thread = asyncio.run(store_calls())
    stage["store facade on the loop (is_seen + record_items)"] = main
    helper_stage[f"store thread (record_items, one transaction per {PROFILE_BATCH} items)"] = store_thread
    print("== 2. stages alone, CPU per item (no profiler)")
    for name, seconds in {**stage, **helper_stage}.items():
        print(f"   {name:<66} {seconds * 1000:6.3f} ms")
    loop_sum = sum(stage.values())
    print(f"   {'sum, event-loop thread':<66} {loop_sum * 1000:6.3f} ms")

    # -- 3. a whole pass in-process
    folder = work / "profile"
    folder.mkdir()
    config = load_config(write_config(folder, site, args.sources, 3600, args.concurrency))

    def whole_pass(profiler: cProfile.Profile | None) -> None:
        folder_state = folder / "state"
        shutil.rmtree(folder_state, ignore_errors=True)
        daemon = daemon_module.Daemon(config, once=True, workers=args.workers)
        threads_before = {t.ident for t in threading.enumerate()}
        store_cpu: list[float] = []
        original_close = store_module.StateDB.close

        def close(self):  # noqa: ANN001, ANN202  (runs on the store thread: read its CPU clock)
            store_cpu.append(time.thread_time())
            original_close(self)

        store_module.StateDB.close = close  # type: ignore[method-assign]
        try:
            started, process0, thread0 = time.monotonic(), time.process_time(), time.thread_time()
            if profiler:
                profiler.enable()
            rc = asyncio.run(daemon.run())
            if profiler:
                profiler.disable()
            wall = time.monotonic() - started
            process_cpu, main_cpu = time.process_time() - process0, time.thread_time() - thread0
        finally:
            store_module.StateDB.close = original_close  # type: ignore[method-assign]
        del threads_before
        store_thread_cpu = store_cpu[0] if store_cpu else float("nan")
        print(f"   rc={rc}, {wall:.2f} s wall = {items / wall:.0f} items/s; per item: event-loop thread "
              f"{main_cpu * 1000 / items:.3f} ms (stages alone: {loop_sum * 1000:.3f}), store thread "
              f"{store_thread_cpu * 1000 / items:.3f} ms, all threads of the process (site thread "
              f"included) {process_cpu * 1000 / items:.3f} ms")

    print(f"== 3. whole pass in-process ({items} items, site in a thread of this process)")
    whole_pass(None)
    if args.cprofile_loop:
        print("== 4. the same under cProfile (thread CPU timer; proportions only)")
        prof, store_prof = cProfile.Profile(time.thread_time), cProfile.Profile(time.thread_time)
        original_run = store_module.Store._run

        async def run(self, function, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN202
            def profiled(*inner_args, **inner_kwargs):  # noqa: ANN002, ANN003, ANN202  (on the store thread)
                return store_prof.runcall(function, *inner_args, **inner_kwargs)
            return await original_run(self, profiled, *args, **kwargs)

        store_module.Store._run = run  # type: ignore[method-assign]
        try:
            whole_pass(prof)
        finally:
            store_module.Store._run = original_run  # type: ignore[method-assign]
        for name, profiler in (("event-loop thread", prof), ("store thread", store_prof)):
            out = io.StringIO()
            pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(25)
            print(f"   -- {name}, by own time\n{out.getvalue()}")
            if args.cprofile_dump:
                dump = f"{args.cprofile_dump}.{name.split()[0]}"
                profiler.dump_stats(dump)
                print(f"   profile written to {dump} (pstats)")
    site_loop.call_soon_threadsafe(site_loop.stop)


# --------------------------------------------------------------------------- main

def verdict(value: float, target: float, higher_is_better: bool) -> str:
    ok = value >= target if higher_is_better else value < target
    return "ok" if ok else "MISSED"


async def bench(args: argparse.Namespace, corpus: Corpus, work: Path) -> dict[str, object]:
    site = Site(corpus)
    await site.start()
    try:
        once = await run_once(args, site, work)
        idle = await run_idle(args, site, work) if args.idle > 0 else None
    finally:
        await site.stop()
    return {"once": once, "idle": idle}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sources", type=int, default=200)
    parser.add_argument("--items", type=int, default=50, help="new items per source")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=8, help="[watcher] concurrency (default: the shipped 8)")
    parser.add_argument("--idle", type=float, default=30.0, help="seconds of idleness measured (0: skip)")
    parser.add_argument("--first-pass-timeout", type=float, default=600.0)
    parser.add_argument("--item-kb", type=int, default=0, help="every paste this size (KB) instead of 2-20 KB")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json", help="also write the figures to this file")
    parser.add_argument("--profile", action="store_true", help="profile one in-process pass instead")
    parser.add_argument("--cprofile-loop", action="store_true", help="with --profile: also cProfile a whole pass")
    parser.add_argument("--cprofile-dump", metavar="FILE", help="with --cprofile-loop: write the pstats there")
    parser.add_argument("--profile-sample", type=int, default=1000,
                        help="documents for the worker-stage profile (default 1000)")
    parser.add_argument("--what-if", metavar="NAME[,NAME]",
                        help=f"run with candidate fixes patched in ({', '.join(WHAT_IFS)}); watcher/ is not edited")
    args = parser.parse_args(argv)
    unknown = {n.strip() for n in (args.what_if or "").split(",") if n.strip()} - set(WHAT_IFS)
    if unknown:
        parser.error(f"--what-if: unknown {sorted(unknown)} (known: {', '.join(WHAT_IFS)})")

    started = time.monotonic()
    corpus = make_corpus(args.sources, args.items, args.seed, args.item_kb)
    print(f"corpus: {len(corpus.pastes)} pastes, {corpus.total_bytes / 1e6:.1f} MB "
          f"(generated in {time.monotonic() - started:.1f} s); kinds {dict(corpus.kinds)}")
    print(f"machine: {os.cpu_count()} CPUs, load average before {os.getloadavg()[0]:.2f}")
    work = Path(tempfile.mkdtemp(prefix="bench-daemon-"))
    try:
        if args.profile:
            profile(args, corpus, work)
            return 0
        results = asyncio.run(bench(args, corpus, work))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    results["corpus"] = {"items": len(corpus.pastes), "mb": round(corpus.total_bytes / 1e6, 1),
                         "kinds": dict(corpus.kinds)}
    results["load_average_after"] = os.getloadavg()
    results["what_if"] = args.what_if
    once, idle = results["once"], results["idle"]
    expected_findings = corpus.kinds["high"] + corpus.kinds["critical"]
    print(json.dumps(results, indent=2, default=str))
    print()
    if args.what_if:
        print(f"what-if: {args.what_if} (candidate fixes patched in; watcher/ unchanged)")
    target = TARGET_BIG_ITEMS_PER_S if args.item_kb >= 100 else TARGET_ITEMS_PER_S
    print(f"once   : {once['items']} items in {once['wall_s']} s = {once['items_per_s']} items/s end to end "
          f"({once['items_per_s_after_startup']} items/s after a {once['startup_s']} s startup); "
          f"target >= {target}: {verdict(once['items_per_s'], target, True)}")
    print(f"         daemon CPU {once['daemon_cpu_s']} s = {once['cpu_ms_per_item']} ms/item; "
          f"fake site CPU {once['site_cpu_s']} s")
    print(f"memory : peak RSS of the tree {once['peak_rss_mb']} MB (PSS {once['peak_pss_mb']} MB, "
          f"{once['processes']} processes); target < {TARGET_RSS_MB}: "
          f"{verdict(once['peak_rss_mb'], TARGET_RSS_MB, False)}")
    db = once["db"]
    print(f"db     : {db.get('items')} items, findings {db.get('findings')} "
          f"(documents with NIRs generated: {expected_findings}), failing sources {db.get('failing_sources')}")
    if idle:
        print(f"idle   : {idle['idle_cpu_percent']}% of one core over {idle['idle_s']} s "
              f"(after a first pass of {idle['first_pass_s']} s); target < {TARGET_IDLE_CPU}%: "
              f"{verdict(idle['idle_cpu_percent'], TARGET_IDLE_CPU, False)}; "
              f"peak RSS {idle['peak_rss_mb']} MB")
        print(f"         first pass of the forever daemon: {idle['first_pass_items_per_s']} items/s; "
              f"db {idle['db']}, failed polls {idle['failed_polls_in_first_pass']}")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2, default=str), encoding="utf-8")
    complete = once["rc"] == 0 and db.get("items") == once["items"]
    return 0 if complete else 1


if __name__ == "__main__":
    sys.exit(main())
