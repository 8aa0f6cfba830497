#!/usr/bin/env python3
"""Start-up time and memory of the private Tor network of the end-to-end tests (tests/support/tornet.py).

    python bench/bench_tornet.py [--rounds 3] [--fetches 20] [--json FILE]

Each round: `cold` generates the authority keys and starts a network; `warm` starts a second
network on the same keys (what a second network of the same test run would cost). For each
start: seconds to a consensus with every relay as HSDir, to ready (client bootstrapped and
descriptor stored), and to the first successful onion fetch (aiohttp + aiohttp-socks, remote
DNS, as the daemon fetches); then the median of `--fetches` fetches each on a new circuit (a
new SOCKS username), and the RSS of every tor (VmRSS, MiB). `total_s`: key generation (cold)
plus start to the first fetch. Needs Debian's `tor`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
from aiohttp import web
from aiohttp.test_utils import TestServer
from aiohttp_socks import ProxyConnector

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.support.tornet import TorNetwork, generate_authorities  # noqa: E402

MIB = 1 << 20


async def fetch(network: TorNetwork, circuit: str) -> str:
    """GET / of the onion through the client's SocksPort; `circuit` is the SOCKS username."""
    connector = ProxyConnector.from_url(f"socks5://{circuit}:x@127.0.0.1:{network.socks_port}", rdns=True)
    timeout = aiohttp.ClientTimeout(total=60)
    async with aiohttp.ClientSession(connector=connector) as session, \
            session.get(f"http://{network.onion}/", timeout=timeout) as resp:
        return await resp.text()


async def measure(network: TorNetwork, fetches: int) -> dict[str, float]:
    """Start `network`, serve a page behind it, time the fetches, read the RSS; stop it."""
    app = web.Application()
    app.router.add_get("/", lambda request: web.Response(text="hello"))
    started = time.monotonic()
    await asyncio.to_thread(network.start)
    server = TestServer(app, host="127.0.0.1", port=network.http_port)
    await server.start_server()
    try:
        assert await fetch(network, "first") == "hello"
        first = time.monotonic() - started
        seconds = []
        for n in range(fetches):
            begin = time.monotonic()
            assert await fetch(network, f"circuit{n}") == "hello"
            seconds.append(time.monotonic() - begin)
        rss = network.rss_bytes()
    finally:
        await server.close()
        network.stop()
    return {"consensus_s": network.timings["consensus"], "ready_s": network.timings["ready"],
            "first_fetch_s": first, "fetch_median_s": statistics.median(seconds) if seconds else 0.0,
            "rss_total_mib": sum(rss.values()) / MIB, "rss_max_mib": max(rss.values()) / MIB}


def one_round(root: Path, fetches: int) -> dict[str, dict[str, float]]:
    began = time.monotonic()
    keys = generate_authorities(root / "keys")
    keygen = time.monotonic() - began
    cold = asyncio.run(measure(TorNetwork(root / "cold", keys), fetches))
    warm = asyncio.run(measure(TorNetwork(root / "warm", keys), fetches))
    return {"cold": {"keygen_s": keygen, **cold, "total_s": keygen + cold["first_fetch_s"]},
            "warm": {"keygen_s": 0.0, **warm, "total_s": warm["first_fetch_s"]}}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--fetches", type=int, default=20)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    results = []
    for n in range(args.rounds):
        with tempfile.TemporaryDirectory(prefix="bench-tornet-") as root:
            result = one_round(Path(root), args.fetches)
        results.append(result)
        for kind, figures in result.items():
            print(f"round {n + 1} {kind}: " + " ".join(f"{k}={v:.2f}" for k, v in figures.items()), flush=True)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
