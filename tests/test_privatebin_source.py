"""The `privatebin` source kind (issue 12, part 5) and a Fetcher request's own headers, against
the loopback PrivateBin replica (tests/support/privatebin_site.py) over real HTTP: an index page of
paste links becomes one decrypted document per new paste (attachments apart), burn links and
password-protected pastes are skipped, the key is nowhere, the JSON API's headers reach the
paste server and the source's configured headers still stay on their own hosts; through the
SOCKS shim for a Tor source; max_items in the daemon."""

from __future__ import annotations

import json
import logging
import random
from pathlib import Path

import pytest

from tests.support.nirs import random_nir
from watcher.config import ConfigError, load_config
from watcher.daemon import Daemon
from watcher.fetch import Fetcher
from watcher.sources import PollContext, build_source
from watcher.sources.privatebin_index import PrivateBinOptions, PrivateBinSource
from watcher.store import StateDB

from tests.support.sources import SeenStore, fetcher, poll_all, source_config, sources_toml, tor_settings
from tests.support.fakesites import PasteSite, serve
from tests.support.privatebin_site import PrivateBinSite
from tests.support.socksproxy import ATYP_DOMAIN, SocksProxy


def parts(link: str) -> tuple[str, str]:
    """(paste id, key) of a replica link (`#-` burn marker dropped)."""
    query, _, fragment = link.partition("?")[2].partition("#")
    return query, fragment.removeprefix("-")


def source(url: str, **fields: object) -> PrivateBinSource:
    built = build_source(source_config("bin", kind="privatebin", url=url, **fields))
    assert isinstance(built, PrivateBinSource)
    return built


def key_free(blob: str | bytes, keys: list[str]) -> bool:
    data = blob.encode() if isinstance(blob, str) else blob
    return not any(key.encode() in data for key in keys)


async def test_index_pastes_are_decrypted_items_burn_and_password_skipped(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    async with serve(PrivateBinSite()) as site, serve(PrivateBinSite(base="/bin/")) as other:
        plain = site.add_paste("first paste text")
        attached = site.add_paste("see file", attachment=("adherents.csv", b"nom;nir\nA;1\n", "text/csv"))
        in_text = other.add_paste("a paste on another instance").replace("127.0.0.1", "localhost")
        burn = site.add_paste("read me once", burn=True)
        locked = site.add_paste("protected", password=b"pw")
        relative = "/?" + plain.split("?", 1)[1]         # a relative href on the instance's own index
        index = site.set_page("/index", (
            f"<html><body><table><tr><td><a href='{relative}'>paste 1</a></td></tr>"
            f"<tr><td><a href='{attached}'>paste 2</a></td></tr><tr><td><a href='{burn}'>burn</a></td></tr>"
            f"<tr><td><a href='{locked}'>locked</a></td></tr></table>"
            f"<p>also posted: {in_text} (mirror)</p><a href='/about'>about</a></body></html>"))
        store = SeenStore()
        async with fetcher("bin") as client:
            ctx = PollContext(fetcher=client, seen=store)
            items = await poll_all(source(index), ctx, store)

            ids = {parts(link)[0]: link for link in (plain, attached, in_text, burn, locked)}
            host = site.base_url.split("//")[1]
            other_host = other.base_url.split("//")[1].replace("127.0.0.1", "localhost")
            plain_id, attached_id, other_id = parts(plain)[0], parts(attached)[0], parts(in_text)[0]
            assert [i.item_id for i in items] == [f"{plain_id}@{host}", f"{attached_id}@{host}",
                                                  f"{attached_id}@{host}/attachment-1", f"{other_id}@{other_host}"]
            assert [i.content for i in items] == [b"first paste text", b"see file", b"nom;nir\nA;1\n",
                                                  b"a paste on another instance"]
            assert items[0].url == site.url(f"/?{plain_id}")
            assert items[0].title == f"PrivateBin paste {plain_id} on {host}"
            assert items[2].title == "adherents.csv (attachment of a PrivateBin paste)"
            assert ctx.links == 5
            reasons = dict(ctx.skipped)
            assert reasons[site.url(f"/?{parts(burn)[0]}")] == "PrivateBin paste: burn-after-reading link: never opened"
            assert "a paste protected by a password" in reasons[site.url(f"/?{parts(locked)[0]}")]
            assert parts(burn)[0] in site.pastes                       # never asked: still there
            assert not any(parts(burn)[0] in r.path for r in site.requests)
            api = [r for r in site.requests + other.requests if r.path != "/index"]
            assert len(api) == 4 and all(r.headers["X-Requested-With"] == "JSONHttpRequest"
                                         and r.headers["Accept"] == "application/json" for r in api)
            index_request = next(r for r in site.requests if r.path == "/index")
            assert "X-Requested-With" not in index_request.headers          # for that request only

            site.clear_log()
            other.clear_log()
            again = PollContext(fetcher=client, seen=store, validators=ctx.validators)
            assert await poll_all(source(index), again, store) == []
            assert site.paths() == ["/index"] and other.paths() == []       # 304: nothing else asked

            site.set_page("/index", site.pages["/index"] + f"<a href='{plain}'>again</a>")
            third = PollContext(fetcher=client, seen=store)
            assert await poll_all(source(index), third, store) == []       # seen: not fetched again
            assert [p for p in site.paths() if p != "/index"] == [f"/?{parts(locked)[0]}"]   # the skipped one, retried
    keys = [parts(link)[1] for link in ids.values()]
    fields = json.dumps([[i.item_id, i.url, i.title] for i in items] + list(ctx.skipped))
    assert key_free(fields, keys) and key_free(caplog.text, keys)
    assert all("#" not in r.path for r in site.requests + other.requests)


async def test_item_links_selects_the_hrefs_read_and_text_links_count_too() -> None:
    async with serve(PrivateBinSite()) as site:
        chosen, ignored, written = (site.add_paste(f"paste {n}") for n in range(3))
        index = site.set_page("/index", (
            f"<div class='pastes'><a href='{chosen}'>one</a></div><div class='sig'><a href='{ignored}'>sig</a></div>"
            f"<pre>{written}</pre><script>var x = '{ignored}';</script>"))
        async with fetcher("bin") as client:
            ctx = PollContext(fetcher=client, seen=SeenStore())
            items = await poll_all(source(index, item_links="div.pastes a"), ctx)
        assert [i.content for i in items] == [b"paste 0", b"paste 2"]


async def test_request_headers_reach_every_hop_and_configured_headers_stay_home() -> None:
    """`Fetcher.get(headers=...)` goes to each hop of its request; the source's configured
    headers still go to their host only, and win there over a request's own."""
    async with serve(PasteSite()) as forum, serve(PrivateBinSite()) as bin_site:
        link = bin_site.add_paste("redirected to")
        forum.redirect_to = link.split("#")[0].replace("127.0.0.1", "localhost")     # another host
        configured = {"Cookie": "session=forum-secret", "Accept": "text/x-configured"}
        async with fetcher("forum", headers=configured, header_hosts=frozenset({"127.0.0.1"})) as client:
            response = await client.get(forum.url("/away"), headers={"accept": "application/json",
                                                                     "X-Requested-With": "JSONHttpRequest"})
        assert json.loads(response.body)["status"] == 0                 # the JSON answer: the header got there
        [first] = forum.requests
        [second] = bin_site.requests
        assert first.headers["Cookie"] == "session=forum-secret" and first.headers["Accept"] == "text/x-configured"
        assert first.headers["X-Requested-With"] == "JSONHttpRequest"
        assert second.headers["X-Requested-With"] == "JSONHttpRequest"
        assert second.headers["Accept"] == "application/json"
        assert "Cookie" not in second.headers and "forum-secret" not in json.dumps(second.headers)


async def test_configured_headers_never_go_to_a_foreign_paste_host() -> None:
    async with serve(PasteSite()) as forum, serve(PrivateBinSite()) as bin_site:
        link = bin_site.add_paste("on a foreign host").replace("127.0.0.1", "localhost")
        forum.pastes.clear()
        forum.add_paste("p1", f"see {link}")
        index = forum.url("/raw/p1")
        async with fetcher("forum", headers={"Cookie": "session=forum-secret"},
                           header_hosts=frozenset({"127.0.0.1"})) as client:
            items = await poll_all(source(index), PollContext(fetcher=client, seen=SeenStore()))
        assert [i.content for i in items] == [b"on a foreign host"]
        assert forum.requests[0].headers["Cookie"] == "session=forum-secret"
        [request] = bin_site.requests
        assert request.host.startswith("localhost") and request.headers["X-Requested-With"] == "JSONHttpRequest"
        assert "forum-secret" not in json.dumps(request.headers)


async def test_through_tor_the_onion_index_and_its_pastes() -> None:
    async with serve(PrivateBinSite()) as site:
        port = int(site.base_url.rsplit(":", 1)[1])
        onion = "http://examplebin.onion"
        link = site.add_paste("onion paste").replace(site.base_url, onion)
        site.set_page("/index", f"<ul><li><a href='{link}'>leak</a></li></ul>")
        async with SocksProxy(hosts={"examplebin.onion": ("127.0.0.1", port)}) as proxy:
            bin_source = source(f"{onion}/index", tor=True, allow_private=False)
            async with Fetcher.for_source(bin_source.config, tor_settings(proxy)) as client:
                items = await poll_all(bin_source, PollContext(fetcher=client, seen=SeenStore()))
        assert [(i.item_id, i.url, i.content) for i in items] == [
            (f"{parts(link)[0]}@examplebin.onion", link.split("#")[0], b"onion paste")]
        assert {(c.host, c.atyp, c.username) for c in proxy.connections} == {
            ("examplebin.onion", ATYP_DOMAIN, "leak-watcher-bin")}
        assert site.requests[1].headers["X-Requested-With"] == "JSONHttpRequest"


def test_the_kind_in_toml(tmp_path: Path) -> None:
    config = load_config(sources_toml(tmp_path, '[[sources]]\nname = "idx"\nkind = "privatebin"\n'
                                                 'url = "https://index.example/pastes"\n'))
    [entry] = config.sources
    assert entry.options == PrivateBinOptions(item_links="a[href]")
    with pytest.raises(ConfigError, match='key "item_links" is not a valid CSS selector'):
        load_config(sources_toml(tmp_path, '[[sources]]\nname = "idx"\nkind = "privatebin"\n'
                                           'url = "https://index.example/pastes"\nitem_links = "a[["\n'))
    with pytest.raises(ConfigError, match='key "url" is missing'):
        load_config(sources_toml(tmp_path, '[[sources]]\nname = "idx"\nkind = "privatebin"\n'))


async def test_daemon_finds_the_leak_takes_max_items_and_stores_no_key(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    rng = random.Random(12)
    extract = "nom;prenom;nir;mutuelle\n" + "\n".join(f"N{i};P{i};{random_nir(rng, strict=True)};MGEN"
                                                      for i in range(12))
    async with serve(PrivateBinSite()) as site:
        links = [site.add_paste(extract), site.add_paste("nothing here"), site.add_paste("nor here")]
        index = site.set_page("/index", "".join(f"<p><a href='{link}'>paste</a></p>" for link in links))
        config = sources_toml(tmp_path, f'[[sources]]\nname = "bin"\nkind = "privatebin"\nurl = "{index}"\n'
                                        f'allow_private = true\nmax_items = 2\n')
        for _ in range(2):
            assert await Daemon(load_config(config), once=True, workers=1).run() == 0
        api = [r.path for r in site.requests if r.path != "/index"]
    host = site.base_url.split("//")[1]
    assert api == [f"/?{parts(link)[0]}" for link in links]               # 2, then the third: each once
    with StateDB(tmp_path / "state" / "watcher.db") as state:
        findings = state.findings()
        ids = {row[0] for row in state.db.execute("SELECT item_id FROM items")}
    assert len(ids) == 3
    assert [(f["severity"], f["item_id"]) for f in findings] == [("critical", f"{parts(links[0])[0]}@{host}")]
    keys = [parts(link)[1] for link in links]
    blobs = {p.name: p.read_bytes() for p in (tmp_path / "state").rglob("*") if p.is_file()}
    blobs["log"] = caplog.text.encode()
    assert [where for where, blob in blobs.items() if not key_free(blob, keys)] == []

