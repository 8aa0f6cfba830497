"""End to end: `watcher run` against the fake paste site and forum on 127.0.0.1.

Real parts only, all on loopback: the CLI in a subprocess (`python -m watcher ...`) or the
`Daemon` class in-process, the aiohttp fake sites of tests/support/fakesites.py, the SOCKS5 proxy of
tests/support/socksproxy.py standing in for Tor (it alone resolves `examplepaste.onion`), a spawned
worker pool (`workers=1` to keep spawn cost down) and the SQLite state in tmp_path.

The fake sites run in the test's event loop, so subprocesses are started with
`asyncio.create_subprocess_exec` (a blocking `subprocess.run` would starve the sites).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import signal
import sys
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from watcher.config import load_config
from watcher.daemon import Daemon
from watcher.timestamps import parse_time

from tests.support.daemon import SERVICE_VARIABLES
from tests.support.fakesites import ApiSite, ForumSite, PasteSite, serve
from tests.support.nirs import nir_forms
from tests.support.socksproxy import SocksProxy
from tests.support.e2e import (Leaks, assert_no_clear_nir, cli, findings_of, json_lines, listing_block, sources_of,
                               state_files, wait_until, watcher, write_config)

ONION = "examplepaste.onion"
RETRY_AFTER = 60


# --------------------------------------------------------------------------- config

def onion_paste_block(name: str = "paste", extra: str = "") -> str:
    return listing_block(name, f"http://{ONION}/archive", f"http://{ONION}/raw/{{id}}", tor=True, extra=extra)


def forum_block(site: ForumSite, name: str = "forum", extra: str = "") -> str:
    return (f'[[sources]]\nname = "{name}"\nkind = "forum"\nurl = "{site.url("/f/databases")}"\n'
            'thread_links = "a.thread"\npost = "div.post"\nnext_page = "a.next"\nmax_pages = 5\n'
            'interval = 60\nheaders = { Cookie = "env:FORUM_COOKIE" }\nallow_private = true\n' + extra + "\n")


# --------------------------------------------------------------------------- running it

@pytest.fixture
def cli_env(monkeypatch: pytest.MonkeyPatch, forum_site: ForumSite) -> dict[str, str]:
    """The environment of the CLI (subprocess and in-process): forum cookie set, no systemd."""
    for name in SERVICE_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("FORUM_COOKIE", forum_site.cookie)
    env = dict(os.environ)
    env["PYTHONUNBUFFERED"] = "1"
    return env


async def run_daemon(config: Path, **kwargs: Any) -> Daemon:
    """`Daemon(config, once=True, workers=1).run()` in-process; the daemon, for its counters."""
    daemon = Daemon(load_config(config), once=True, workers=1, **kwargs)
    assert await daemon.run() == 0
    return daemon


def whole_seconds(moment: datetime) -> datetime:
    return moment.replace(microsecond=0)


# --------------------------------------------------------------------------- fake site additions

class HostilePasteSite(PasteSite):
    """PasteSite plus hostile listing pages: /hostile/500, /hostile/garbage (not HTML at all),
    /hostile/429 (Retry-After: RETRY_AFTER, long enough to outlast a slow restart)."""

    def routes(self, router: web.UrlDispatcher) -> None:
        super().routes(router)
        router.add_get("/hostile/{kind}", self.hostile)

    async def hostile(self, request: web.Request) -> web.Response:
        kind = request.match_info["kind"]
        if kind == "500":
            raise web.HTTPInternalServerError()
        if kind == "429":
            return web.Response(status=429, text="slow down", headers={"Retry-After": str(RETRY_AFTER)})
        if kind == "garbage":
            noise = random.Random(7).randbytes(20_000)
            return web.Response(body=b"\x00\xff<html<<a href=\x00'/view/zz'>>>" + noise + b"</table></<<",
                                content_type="text/html")
        raise web.HTTPNotFound()


@pytest.fixture
async def hostile_site() -> AsyncIterator[HostilePasteSite]:
    async with serve(HostilePasteSite()) as site:
        yield site


# --------------------------------------------------------------------------- the whole life cycle

async def test_once_then_nothing_new_then_only_the_new_paste(
        tmp_path: Path, cli_env: dict[str, str], paste_site: PasteSite, forum_site: ForumSite,
        socks_proxy: SocksProxy) -> None:
    """Three `watcher run --once` processes over the same state: the first finds everything,
    the second fetches no item page, the third processes only the paste added meanwhile."""
    leaks = Leaks(seed=1)
    paste_site.add_paste("pclean", Leaks.clean_text(), "holiday notes")
    paste_site.add_paste("phigh", leaks.high_text(2), leaks.title_with_nir("mutuelle acct"))
    paste_site.add_paste("pcrit", leaks.critical_csv(12), "clients_mgen.csv")
    forum_site.add_thread("tchat", "Anyone has the Free leak?", [(None, "no"), (None, Leaks.clean_text(20))])
    forum_site.add_thread("tleak", "Vente base mutuelle", [
        ("p1", leaks.critical_post(11)), ("p2", "bump, still available"),
        ("p3", leaks.high_text(1, insurer="MGEN"))])      # page 2: next_page is followed
    config = write_config(tmp_path, onion_paste_block(), forum_block(forum_site), proxy=socks_proxy)
    state = tmp_path / "state"
    outputs: dict[str, bytes] = {}

    # -- run 1: everything is new
    before = whole_seconds(datetime.now(UTC))
    first = await watcher(tmp_path, cli_env, "run", "--once", "--workers", "1", "--config", str(config))
    after = datetime.now(UTC)
    assert first.rc == 0, first.err
    outputs |= {"run1.out": first.out.encode(), "run1.err": first.err.encode()}
    assert sorted(paste_site.paths()) == sorted(["/archive", "/raw/pclean", "/raw/phigh", "/raw/pcrit"])
    assert forum_site.paths() == ["/f/databases", "/t/tchat", "/t/tleak", "/t/tleak?page=2"]   # oldest thread first
    # the onion is only ever resolved by the proxy, with the source's own credentials
    assert set(socks_proxy.requested_hosts) == {ONION}
    assert {(c.atyp, c.username) for c in socks_proxy.connections} == {(0x03, "leak-watcher-paste")}

    found = await watcher(tmp_path, cli_env, "findings", "--format", "json", "--config", str(config))
    assert found.rc == 0, found.err
    outputs |= {"findings.out": found.out.encode(), "findings.err": found.err.encode()}
    findings = {(f["source"], f["item_id"]): f for f in json_lines(found.out)}
    forum = forum_site.base_url
    expected = {
        ("paste", "pcrit"): ("critical", 12, f"http://{ONION}/raw/pcrit", "clients_mgen.csv"),
        ("paste", "phigh"): ("high", 2, f"http://{ONION}/raw/phigh", None),
        ("forum", "tleak#p1"): ("critical", 11, f"{forum}/t/tleak#p1", "Vente base mutuelle"),
        ("forum", "tleak#p3"): ("high", 1, f"{forum}/t/tleak?page=2#p3", "Vente base mutuelle"),
    }
    assert set(findings) == set(expected)
    for key, (severity, nirs, url, title) in expected.items():
        finding = findings[key]
        assert (finding["severity"], finding["counts"]["nir"], finding["url"]) == (severity, nirs, url), key
        if title is not None:
            assert finding["title"] == title
        assert before <= parse_time(finding["first_seen"]) <= after
        assert all(sample.startswith("nir ") and "••" in sample for sample in finding["samples"])
    # a title carrying a NIR is blanked before it is stored
    assert findings["paste", "phigh"]["title"].startswith("mutuelle acct") and "[NIR]" in findings["paste", "phigh"]["title"]

    listed = await watcher(tmp_path, cli_env, "sources", "--format", "json", "--config", str(config))
    assert listed.rc == 0, listed.err
    outputs |= {"sources.out": listed.out.encode(), "sources.err": listed.err.encode()}
    health1 = {row["name"]: row for row in json_lines(listed.out)}
    assert {name: (row["state"], row["items"], row["findings"], row["consecutive_failures"])
            for name, row in health1.items()} == {"paste": ("ok", 3, 2, 0), "forum": ("ok", 5, 2, 0)}

    # -- run 2: nothing new; the listing and the board answer 304, no item page is fetched
    paste_site.clear_log()
    forum_site.clear_log()
    second = await watcher(tmp_path, cli_env, "run", "--once", "--workers", "1", "--config", str(config))
    assert second.rc == 0, second.err
    outputs |= {"run2.out": second.out.encode(), "run2.err": second.err.encode()}
    assert paste_site.paths() == ["/archive"]
    assert forum_site.paths() == ["/f/databases"]
    assert "If-None-Match" in paste_site.requests[0].headers
    assert 'msg="pass done" polls=2 items=0 findings=0 failing=0' in second.err
    assert {(n, r["items"], r["findings"]) for n, r in sources_of(config).items()} == \
        {(n, r["items"], r["findings"]) for n, r in health1.items()}
    assert [f["id"] for f in findings_of(config)] == sorted(f["id"] for f in findings.values())

    # -- run 3 (a restart, again): only the paste published meanwhile is processed
    paste_site.add_paste("pnew", leaks.high_text(3, insurer="Malakoff Humanis"), "new dump")
    paste_site.clear_log()
    forum_site.clear_log()
    third = await watcher(tmp_path, cli_env, "run", "--once", "--workers", "1", "--config", str(config))
    assert third.rc == 0, third.err
    outputs |= {"run3.out": third.out.encode(), "run3.err": third.err.encode()}
    assert paste_site.paths() == ["/archive", "/raw/pnew"]
    assert forum_site.paths() == ["/f/databases"]
    assert 'msg="pass done" polls=2 items=1 findings=1' in third.err
    after_third = {(f["source"], f["item_id"]): f for f in findings_of(config)}
    assert set(after_third) == set(expected) | {("paste", "pnew")}
    assert all(after_third[key]["first_seen"] == findings[key]["first_seen"] for key in expected)
    new = after_third["paste", "pnew"]
    assert (new["severity"], new["counts"]["nir"], new["insurers"]) == ("high", 3, ["Malakoff Humanis"])
    assert sources_of(config)["paste"]["items"] == 4

    # -- nothing in clear: not on stdout/stderr of any command, not in the state files' bytes
    assert_no_clear_nir(leaks.nirs, outputs)
    assert_no_clear_nir(leaks.nirs, state_files(state))


# --------------------------------------------------------------------------- deduplication

async def test_same_content_on_two_sources_is_one_finding_linked_to_both(
        tmp_path: Path, cli_env: dict[str, str], paste_site: PasteSite, socks_proxy: SocksProxy) -> None:
    """A leak cross-posted on an onion paste site and a clearnet mirror: one finding (one
    alert), linked to the item of each source."""
    leaks = Leaks(seed=2)
    text = leaks.critical_csv(15)
    paste_site.add_paste("a1", text, "dump")
    alerts: list[str] = []

    async def on_finding(item, report, result) -> None:  # noqa: ANN001
        alerts.append(item.source)

    async with serve(PasteSite()) as mirror:
        mirror.add_paste("zz9", text, "dump (mirror)")
        mirror.add_paste("other", Leaks.clean_text(), "nothing")
        config = write_config(
            tmp_path, onion_paste_block(),
            listing_block("mirror", mirror.url("/archive"), mirror.url("/raw/{id}")), proxy=socks_proxy)
        daemon = await run_daemon(config, on_finding=on_finding)

    findings = findings_of(config)
    assert len(findings) == 1 and len(alerts) == 1
    assert daemon.counters.findings == 1 and daemon.counters.items == 3
    finding = findings[0]
    assert finding["severity"] == "critical" and finding["counts"]["nir"] == 15
    assert {(i["source"], i["item_id"], i["url"]) for i in finding["items"]} == {
        ("paste", "a1", f"http://{ONION}/raw/a1"), ("mirror", "zz9", mirror.url("/raw/zz9"))}
    health = sources_of(config)
    assert (health["paste"]["findings"], health["mirror"]["findings"]) == (1, 1)
    assert (health["paste"]["items"], health["mirror"]["items"]) == (1, 2)


# --------------------------------------------------------------------------- a broken source

BROKEN = {
    # name: (path on the hostile site, extra source keys, expected last_error fragment)
    "http-500": ("/hostile/500", "", "HTTP 500"),
    "slow-drip": ("/drip", "timeout = 1", "timed out"),
    # declares 100 MiB, sends 2 MiB then stalls 30 s: cut at max_bytes, never waited for
    "huge-body": ("/big", "max_bytes = 65536\ntimeout = 20", "(cut at max_bytes)"),
    "invalid-html": ("/hostile/garbage", "", "is not an HTML page"),
}


@pytest.mark.parametrize("case", list(BROKEN))
async def test_a_broken_source_costs_that_source_one_poll(
        case: str, tmp_path: Path, cli_env: dict[str, str], hostile_site: HostilePasteSite,
        forum_site: ForumSite) -> None:
    path, extra, error = BROKEN[case]
    leaks = Leaks(seed=3)
    forum_site.add_thread("t1", "db", [("p1", leaks.critical_post(10))])
    broken = listing_block("broken", hostile_site.url(path), hostile_site.url("/raw/{id}"), extra=extra)
    config = write_config(tmp_path, broken, forum_block(forum_site))

    done = await watcher(tmp_path, cli_env, "run", "--once", "--workers", "1", "--config", str(config))

    assert done.rc == 1, done.err                                  # --once: 1 when a source failed
    assert done.seconds < 15, "the hostile page held the pass"
    assert hostile_site.paths() == [path]                         # one poll, nothing else fetched
    assert [(f["source"], f["item_id"], f["severity"]) for f in findings_of(config)] == [
        ("forum", "t1#p1", "critical")]
    health = sources_of(config)
    assert (health["forum"]["state"], health["forum"]["consecutive_failures"]) == ("ok", 0)
    assert health["broken"]["items"] == 0
    assert health["broken"]["state"] == "failing"
    assert health["broken"]["consecutive_failures"] == 1
    assert error in health["broken"]["last_error"]
    assert 'msg="poll failed" source=broken' in done.err
    assert_no_clear_nir(leaks.nirs, {"out": done.out.encode(), "err": done.err.encode()})


# --------------------------------------------------------------------------- configuration

@pytest.mark.parametrize("where, line", [("source", 9), ("watcher", 3)])
async def test_unknown_key_exits_2_with_file_and_line(
        where: str, line: int, tmp_path: Path, cli_env: dict[str, str]) -> None:
    typo = {"source": ("", "intervall = 60\n"), "watcher": ("concurency = 3\n", "")}[where]
    text = (f'[watcher]\nstate_dir = "./state"\n{typo[0]}\n[[sources]]\nname = "paste"\nkind = "listing"\n'
            f'url = "http://127.0.0.1:9/archive"\nitem_links = "a"\n{typo[1]}')
    config = tmp_path / "sources.toml"
    config.write_text(text, encoding="utf-8")
    assert text.splitlines()[line - 1].startswith(("intervall", "concurency"))

    for command in (["run", "--once"], ["run"], ["check-config"]):
        done = await watcher(tmp_path, cli_env, *command, "--config", str(config), timeout=20)
        assert done.rc == 2, (command, done.err)
        assert done.out == ""
        lines = done.err.splitlines()
        assert len(lines) == 1, (command, done.err)
        assert lines[0].startswith(f"watcher: error: {config}:{line}: ")
        assert "is unknown" in lines[0]
    assert not (tmp_path / "state").exists(), "an unusable config must not create state"


# --------------------------------------------------------------------------- 429 + Retry-After

@contextlib.asynccontextmanager
async def daemon_process(tmp_path: Path, env: dict[str, str], config: Path,
                         label: str) -> AsyncIterator[asyncio.subprocess.Process]:
    """`watcher run` (forever) in a subprocess; SIGTERM on exit, which must end it with 0."""
    out = open(tmp_path / f"{label}.out", "wb")  # noqa: SIM115 (closed below)
    err = open(tmp_path / f"{label}.err", "wb")  # noqa: SIM115
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "watcher", "run", "--workers", "1", "--config", str(config),
        cwd=tmp_path, env=env, stdin=asyncio.subprocess.DEVNULL, stdout=out, stderr=err)
    try:
        yield proc
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(proc.wait(), 20)
            except TimeoutError:
                proc.kill()
                await proc.wait()
        out.close()
        err.close()
    assert proc.returncode == 0, (tmp_path / f"{label}.err").read_text()


def rate_limited_config(tmp_path: Path, site: HostilePasteSite) -> Path:
    """`limited` answers 429 Retry-After: 60; `control` (same interval, 1 s) shows time passing."""
    return write_config(
        tmp_path,
        listing_block("limited", site.url("/hostile/429"), site.url("/raw/{id}"), interval=1),
        listing_block("control", site.url("/archive"), site.url("/raw/{id}"), interval=1))


async def test_retry_after_on_a_listing_is_honoured(
        tmp_path: Path, cli_env: dict[str, str], hostile_site: HostilePasteSite) -> None:
    config = rate_limited_config(tmp_path, hostile_site)
    started = whole_seconds(datetime.now(UTC))
    async with daemon_process(tmp_path, cli_env, config, "daemon"):
        await wait_until(lambda: "/hostile/429" in hostile_site.paths(), 20, "the first poll")
        # the control source, also every 1 s, polls 3 more times: the limited one must not
        await wait_until(lambda: hostile_site.paths().count("/archive") >= 4, 10, "control polls")
        assert hostile_site.paths().count("/hostile/429") == 1
    limited = sources_of(config)["limited"]
    assert parse_time(limited["next_poll"]) >= started + timedelta(seconds=RETRY_AFTER)
    assert parse_time(limited["next_poll"]) - parse_time(limited["last_poll"]) >= timedelta(seconds=RETRY_AFTER - 1)
    assert "429" in limited["last_error"] and f"wait {RETRY_AFTER} s" in limited["last_error"]
    control = sources_of(config)["control"]
    assert parse_time(control["next_poll"]) - parse_time(control["last_poll"]) <= timedelta(seconds=2)


@pytest.mark.parametrize("how", ["sighup", "restart"])
async def test_retry_after_survives_reload_and_restart(
        how: str, tmp_path: Path, cli_env: dict[str, str], hostile_site: HostilePasteSite) -> None:
    config = rate_limited_config(tmp_path, hostile_site)
    async with daemon_process(tmp_path, cli_env, config, "first") as proc:
        await wait_until(lambda: "/hostile/429" in hostile_site.paths(), 20, "the first poll")
        if how == "sighup":
            controls = hostile_site.paths().count("/archive")
            proc.send_signal(signal.SIGHUP)
            await wait_until(lambda: hostile_site.paths().count("/archive") >= controls + 3, 10, "control polls")
            assert hostile_site.paths().count("/hostile/429") == 1
    if how == "restart":
        async with daemon_process(tmp_path, cli_env, config, "second"):
            controls = hostile_site.paths().count("/archive")
            await wait_until(lambda: hostile_site.paths().count("/archive") >= controls + 2, 20, "control polls")
            assert hostile_site.paths().count("/hostile/429") == 1


# --------------------------------------------------------------------------- privacy of titles

async def test_a_title_with_a_no_break_space_nir_is_not_stored_in_clear(
        tmp_path: Path, cli_env: dict[str, str], api_site: ApiSite) -> None:
    leaks = Leaks(seed=4)
    title = f"export adherents {nir_forms(leaks.nir())['nbsp']}"
    api_site.add_gist("g1", title, {"dump.csv": leaks.critical_csv(10)})
    block = (f'[[sources]]\nname = "gists"\nkind = "json"\nendpoint = "{api_site.url("/gists/public")}"\n'
             'items = ""\nid = "id"\nurl = "files.*.raw_url"\ntitle = "description"\nallow_private = true\n')
    config = write_config(tmp_path, block)
    await run_daemon(config)
    found = cli("findings", "--format", "json", "--config", str(config))
    assert [f["severity"] for f in json_lines(found.out)] == ["critical"]
    assert_no_clear_nir(leaks.nirs, {"findings": found.out.encode(), **state_files(tmp_path / "state")})
