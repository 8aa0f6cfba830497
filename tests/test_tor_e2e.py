"""End to end through a REAL Tor network: an onion forum sells a sample of NIRs, `watcher run
--once` finds it.

Everything is real and on 127.0.0.1 (see tests/support/tornet.py): five tor directory authorities
(also the relays and HSDirs), a tor v3 onion service in front of the fake forum of
tests/support/fakesites.py (an aiohttp server in this process), a tor client whose SocksPort is the
daemon's `[tor] socks`, and the daemon as a subprocess with its worker pool and SQLite state.

What is checked: the forum (board, then thread) was fetched through the onion service, with the
onion as Host; the critical finding is recorded with its NIR count and onion URL; the daemon's
log names no host but the onion (no clearnet fetch, no refusal) and holds no NIR in clear, nor
does the state.

The network starts once per test run (about 10 s, key generation included); the test needs
`tor` (Debian's package): it fails without it in CI or as root, and skips elsewhere.
"""

from __future__ import annotations

import os
import random
import re
from pathlib import Path

import pytest

from tests.support.nirs import nir_forms, random_nir

from tests.support.fakesites import ForumSite
from tests.support.daemon import SERVICE_VARIABLES
from tests.support.e2e import assert_no_clear_nir, findings_of, sources_of, state_files, watcher
from tests.support.tornet import TorNetwork, serve_onion

pytestmark = pytest.mark.slow

NIRS = 12
RUN_TIMEOUT = 90.0          # the daemon's connect timeout through Tor is 90 s
URL = re.compile(r"\b[a-z][a-z0-9+.-]*://([^/\s\"'<>]+)", re.IGNORECASE)


def forum_post(nirs: list[str]) -> str:
    """A sale sample on a forum: free text, one NIR a line in its grouped form."""
    lines = ["Base mutuelle 2024, 2M lignes, echantillon :"]
    lines += [f"client {n}: {nir_forms(nir)['spaced']}" for n, nir in enumerate(nirs)]
    return "\n".join(lines)


def onion_forum_config(tmp_path: Path, network: TorNetwork, site: ForumSite) -> Path:
    """sources.toml: state in ./state, the Tor client's SocksPort, the onion forum (tor = true)."""
    text = (f'[watcher]\nstate_dir = "./state"\n\n[tor]\nsocks = "127.0.0.1:{network.socks_port}"\n\n'
            f'[[sources]]\nname = "onion-forum"\nkind = "forum"\nurl = "{site.url("/f/databases")}"\n'
            f'tor = true\nthread_links = "a.thread"\npost = "div.post"\nnext_page = "a.next"\n'
            f'interval = 60\nheaders = {{ Cookie = "{site.cookie}" }}\n')
    path = tmp_path / "sources.toml"
    path.write_text(text, encoding="utf-8")
    return path


def daemon_env() -> dict[str, str]:
    """The test's environment without what would make the daemon talk to systemd."""
    env = {name: value for name, value in os.environ.items() if name not in SERVICE_VARIABLES}
    env["PYTHONUNBUFFERED"] = "1"
    return env


async def test_a_leak_on_an_onion_forum_is_found_through_real_tor(
        tmp_path: Path, tor_network: TorNetwork) -> None:
    rng = random.Random(9)
    nirs = [random_nir(rng, strict=True) for _ in range(NIRS)]
    onion = tor_network.onion
    site = ForumSite()
    site.add_thread("t1", "Vente base mutuelle", [("p1", forum_post(nirs))])
    site.add_thread("t0", "Bienvenue", [(None, "lisez les regles")])

    async with serve_onion(site, tor_network):
        config = onion_forum_config(tmp_path, tor_network, site)
        done = await watcher(tmp_path, daemon_env(), "run", "--once", "--workers", "1",
                             "--log-level", "DEBUG", "--config", str(config), timeout=RUN_TIMEOUT)

    assert done.rc == 0, done.err
    # the onion service received the daemon's requests, addressed to the onion
    assert site.paths() == ["/f/databases", "/t/t1", "/t/t0"], done.err   # oldest (last listed) first
    assert {request.host for request in site.requests} == {onion}

    findings = findings_of(config)
    assert [(f["source"], f["item_id"], f["severity"], f["counts"]["nir"], f["url"]) for f in findings] == [
        ("onion-forum", "t1#p1", "critical", NIRS, f"http://{onion}/t/t1#p1")]
    health = sources_of(config)["onion-forum"]
    assert (health["state"], health["consecutive_failures"], health["findings"]) == ("ok", 0, 1)

    # the log: the onion is the only host named, nothing refused, no NIR in clear
    log = done.out + done.err
    assert 'msg="pass done" polls=1 items=2 findings=1 failing=0' in done.err
    assert {host.lower() for host in URL.findall(log)} <= {onion}, "a non-onion URL in the daemon's log"
    assert f"127.0.0.1:{tor_network.http_port}" not in log
    assert ": refused " not in log, "the daemon refused a fetch (off the onion, or .onion without Tor)"
    assert_no_clear_nir(nirs, {"out": done.out.encode(), "err": done.err.encode()})
    assert_no_clear_nir(nirs, state_files(tmp_path / "state"))
