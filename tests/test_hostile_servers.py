"""A hostile server costs its source one poll or one document, never the daemon or the others.

Each case runs a REAL daemon (`python -m watcher run --once` in a subprocess) on a config with
three sources, all on loopback:

- `healthy`: a listing on a fake paste site whose one paste is a CSV of 12 synthetic NIRs;
- `hostile-page`: a listing whose main page is the hostile answer (`HostileSite /page/CASE`);
- `hostile-item`: a listing whose page is fine and whose only item is the hostile answer.

(The archive cases, a zip bomb and 42.zip-like nested zips, are items only; their archive also
holds a leak, which must be found.) Each hostile source has `timeout = 2`. Checked, for every
case: the daemon finishes its pass and exits normally (0, or 1 for "a source or an item
failed") in bounded time without a traceback; the peak resident set of the daemon and its
worker stays under 300 MiB; the healthy critical finding is recorded; the hostile main page's
poll failed with a one-line `last_error` saying why; the hostile item's reason is recorded in
one line (its source's `last_error`, a log line of its source, or its finding's `errors`); an
item cut short by a network failure is not stored (so it is fetched again next poll); the
client stopped downloading an endless body or a bomb; no cleartext NIR reaches the log or the
state files. The onion case goes through the SOCKS5 proxy of tests/support/socksproxy.py, which must
never be asked for the clearnet host.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.support.fakesites import PasteSite, serve
from tests.support.hostile import CLEARNET, ONION, HostileSite, Measured, MiB, run_measured
from tests.support.socksproxy import SocksProxy
from tests.support.e2e import (Leaks, assert_no_clear_nir, findings_of, listing_block, sources_of, state_files,
                               write_config)
from tests.support.daemon import child_env, db_rows

RUN_TIMEOUT = 60.0          # the run is killed (and the test fails) past this
BOUNDED_SECONDS = 30.0      # a pass with 2 s source timeouts must end well within this
PEAK_RSS_MIB = 300.0
HOSTILE_TIMEOUT = 2         # seconds: the hostile sources' `timeout`


@dataclass(frozen=True)
class Case:
    """A hostile answer and the one-line reason the watcher must record for it."""

    name: str
    reason: str
    stored: bool = False        # the item is kept (cut at max_bytes: the policy), not retried
    onion: bool = False         # the sources are onion sources behind the SOCKS proxy
    archive: bool = False       # an item only, holding a leak (found) next to the hostile part

    @property
    def as_page(self) -> bool:
        """Also served as a listing's main page (an archive only makes sense as an item)."""
        return not self.archive


CASES = [
    Case("gzip-bomb", "cut at max_bytes", stored=True),
    Case("endless", "cut at max_bytes", stored=True),
    Case("drip", f"took more than {HOSTILE_TIMEOUT} s in total"),
    Case("redirect-loop", "more than 5 redirects"),
    Case("off-onion", "not a .onion host", onion=True),
    Case("huge-header", "8190 bytes"),
    Case("many-headers", "Too many headers"),
    Case("reset", "broken response body"),
    Case("zip-bomb", "decompression bomb", stored=True, archive=True),
    Case("nested-zips", "nested too deep", stored=True, archive=True),
]


@dataclass
class Run:
    """One `watcher run --once` over a hostile case, and where to look afterwards."""

    case: Case
    config: Path
    site: HostileSite
    measured: Measured
    item_url: str
    leaks: Leaks

    def findings(self) -> dict[tuple[str, str], dict[str, Any]]:
        return {(f["source"], f["item_id"]): f for f in findings_of(self.config)}

    def item_reason_lines(self) -> list[str]:
        """Where the hostile item's reason is recorded, one entry per line found."""
        places = [line for line in self.measured.output.splitlines()
                  if "hostile-item" in line and self.case.reason in line]
        last_error = sources_of(self.config)["hostile-item"].get("last_error") or ""
        if self.case.reason in last_error:
            places.append(last_error)
        finding = self.findings().get(("hostile-item", self.case.name))
        places += [error for error in (finding or {}).get("errors", []) if self.case.reason in error]
        return places


@contextlib.asynccontextmanager
async def maybe_proxy(case: Case, site: HostileSite) -> AsyncIterator[SocksProxy | None]:
    """For an onion case, a SOCKS5 proxy that alone resolves the onion and the clearnet host
    (both are the hostile site: reaching the clearnet one would be seen)."""
    if not case.onion:
        yield None
        return
    port = int(site.base_url.rsplit(":", 1)[1])
    async with SocksProxy(hosts={ONION: ("127.0.0.1", port), CLEARNET: ("127.0.0.1", port)}) as proxy:
        yield proxy


def hostile_blocks(case: Case, site: HostileSite) -> tuple[list[str], str]:
    """The hostile sources' config blocks, and the URL of the hostile item."""
    base = f"http://{ONION}" if case.onion else site.base_url
    extra = f"timeout = {HOSTILE_TIMEOUT}"
    blocks = [listing_block("hostile-item", f"{base}/list/{case.name}", "{href}", tor=case.onion, extra=extra)]
    if case.as_page:
        blocks.append(listing_block("hostile-page", f"{base}/page/{case.name}", "{href}", tor=case.onion,
                                    extra=extra))
    return blocks, f"{base}/page/{case.name}"


async def run_case(case: Case, tmp_path: Path) -> Run:
    leaks = Leaks(seed=9)
    async with serve(PasteSite()) as healthy, serve(HostileSite(leaks.critical_csv(12).encode())) as site, \
            maybe_proxy(case, site) as proxy:
        healthy.add_paste("leak1", leaks.critical_csv(12), "clients.csv")
        blocks, item_url = hostile_blocks(case, site)
        config = write_config(tmp_path, listing_block("healthy", healthy.url("/archive"), healthy.url("/raw/{id}")),
                              *blocks, proxy=proxy)
        argv = [sys.executable, "-m", "watcher", "run", "--once", "--workers", "1", "--config", str(config)]
        measured = await asyncio.to_thread(run_measured, argv, cwd=tmp_path, env=child_env(),
                                           output=tmp_path / "daemon.log", timeout=RUN_TIMEOUT)
        if proxy is not None:
            assert CLEARNET not in proxy.requested_hosts, "an onion source reached a clearnet host"
            assert all(request.host == ONION for request in site.requests), "a request left the onion"
    return Run(case, config, site, measured, item_url, leaks)


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
async def test_a_hostile_server_costs_one_source_or_one_document(case: Case, tmp_path: Path) -> None:
    run = await run_case(case, tmp_path)
    measured = run.measured
    print(f"\n{case.name}: {measured.seconds:.1f} s, peak RSS {measured.peak_rss_mib:.0f} MiB, "
          f"{run.site.sent.get(case.name, 0)} body bytes sent")

    # the daemon: a normal exit (the pass done; 1 says a source or an item failed), in bounded
    # time and memory, no traceback
    assert measured.returncode in (0, 1) and 'msg="pass done"' in measured.output, measured.output[-3000:]
    assert measured.seconds < BOUNDED_SECONDS, f"the pass took {measured.seconds:.1f} s"
    assert measured.peak_rss_mib < PEAK_RSS_MIB, f"peak RSS {measured.peak_rss_mib:.0f} MiB"
    assert "Traceback" not in measured.output, measured.output[-3000:]

    # the healthy source's leak is recorded, and its source is healthy
    findings = run.findings()
    healthy = findings.get(("healthy", "leak1"))
    assert healthy is not None, f"no finding from the healthy source: {sorted(findings)}"
    assert (healthy["severity"], healthy["counts"]["nir"]) == ("critical", 12)
    health = sources_of(run.config)
    assert health["healthy"]["state"] == "ok", health["healthy"]

    # the hostile main page failed its poll, with one clear line
    if case.as_page:
        page = health["hostile-page"]
        assert page["state"] == "failing", page
        last_error = page["last_error"] or ""
        assert case.reason in last_error and "\n" not in last_error, last_error
        print(f"  page: {last_error}")

    # the hostile item: its reason recorded in one line; not stored when the network broke it
    # (it is fetched again next poll), stored when cut at max_bytes or read whole
    places = run.item_reason_lines()
    assert places, f"no line gives the reason ({case.reason!r}) for {run.item_url}:\n{measured.output[-3000:]}"
    assert all("\n" not in place for place in places)
    print(f"  item: {places[0][:300]}")
    stored = db_rows(run.config.parent / "state",
                     f"SELECT count(*) FROM items WHERE source = 'hostile-item' AND item_id = '{case.name}'")
    assert stored == [(int(case.stored),)], f"hostile item stored {stored} times, expected {int(case.stored)}"
    if case.archive:
        leak = findings.get(("hostile-item", case.name))
        assert leak is not None and leak["counts"]["nir"] == 12, "the leak inside the archive was missed"

    # the client stopped reading what it did not need
    assert run.site.sent.get(case.name, 0) < 48 * MiB, f"{run.site.sent[case.name]} bytes were sent"
    assert_no_clear_nir(run.leaks.nirs, {"log": measured.output.encode(),
                                         **state_files(run.config.parent / "state")})
