"""PrivateBin links in fetched content are opened, decrypted and analysed (issue 12, part 5):
a forum-like paste site posts a link to an encrypted paste holding a members' extract; the
daemon finds it critical. The key (the link's #fragment) never reaches the server, the
database or the logs; a burn-after-reading link is never requested."""

from __future__ import annotations

import logging
import random
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.support.nirs import random_nir
from watcher.config import load_config
from watcher.daemon import Daemon
from watcher.store import StateDB

from tests.support.fakesites import PasteSite, serve
from tests.support.privatebin_site import PrivateBinSite


@pytest.fixture
async def sites() -> AsyncIterator[tuple[PasteSite, PrivateBinSite]]:
    async with serve(PasteSite()) as pastes, serve(PrivateBinSite()) as privatebin:
        yield pastes, privatebin


async def test_a_linked_privatebin_paste_is_decrypted_and_analysed(
        tmp_path: Path, sites: tuple[PasteSite, PrivateBinSite], caplog: pytest.LogCaptureFixture) -> None:
    pastes, privatebin = sites
    rng = random.Random(8)
    extract = "nom;prenom;nir;mutuelle\n" + "\n".join(f"N{i};P{i};{random_nir(rng, strict=True)};MGEN"
                                                      for i in range(12))
    link = privatebin.add_paste(extract)
    burn = privatebin.add_paste("secret once", burn=True)
    attached = privatebin.add_paste("see the attached file", attachment=("adherents.csv", extract.encode(),
                                                                         "text/csv"))
    pastes.pastes.clear()
    pastes.add_paste("p1", f"Fresh base, sample here: {link}\nand here (burn): {burn}\nmore: {attached}")
    config = tmp_path / "sources.toml"
    config.write_text(f'[watcher]\nstate_dir = "./state"\n\n[[sources]]\nname = "paste"\nkind = "listing"\n'
                      f'url = "{pastes.url("/archive")}"\nitem_links = "table.archive a"\n'
                      f'item_url = "{pastes.url("/raw/{id}")}"\nallow_private = true\n', encoding="utf-8")
    caplog.set_level(logging.DEBUG)
    assert await Daemon(load_config(config), once=True, workers=1).run() == 0

    with StateDB(tmp_path / "state" / "watcher.db") as state:
        findings = state.findings()
        items = {row[0] for row in state.db.execute("SELECT item_id FROM items")}
    paste_id = link.split("?")[1].split("#")[0]
    assert f"p1#privatebin:{paste_id}" in items
    assert {f["severity"] for f in findings} == {"critical"} and len(findings) == 1     # same CSV twice: one finding
    assert any(i.endswith("/attachment-1") for i in items)
    burn_id = burn.split("?")[1].split("#")[0]
    assert not any(burn_id in r.path for r in privatebin.requests)                  # never opened
    keys = [link.split("#")[1], burn.split("#-")[1], attached.split("#")[1]]
    assert all("#" not in r.path for r in privatebin.requests)
    blobs = {p.name: p.read_bytes() for p in (tmp_path / "state").iterdir() if p.is_file()}
    blobs["log"] = caplog.text.encode()
    assert not [(where, key) for where, blob in blobs.items() for key in keys if key.encode() in blob]


async def test_follow_links_fetches_links_to_the_listed_hosts_only(tmp_path: Path) -> None:
    rng = random.Random(9)
    extract = "nom;nir;mutuelle\n" + "\n".join(f"N{i};{random_nir(rng, strict=True)};MGEN" for i in range(12))
    async with serve(PasteSite()) as forum, serve(PasteSite()) as rentry, serve(PasteSite()) as elsewhere:
        rentry.pastes.clear()
        rentry.add_paste("r1", extract)
        elsewhere.pastes.clear()
        elsewhere.add_paste("e1", extract)
        followed = rentry.url("/raw/r1").replace("127.0.0.1", "localhost")
        forum.pastes.clear()
        forum.add_paste("post1", f"full base at {followed}, mirror {elsewhere.url('/raw/e1')}.")
        config = tmp_path / "sources.toml"
        config.write_text(f'[watcher]\nstate_dir = "./state"\n\n[[sources]]\nname = "forum"\nkind = "listing"\n'
                          f'url = "{forum.url("/archive")}"\nitem_links = "table.archive a"\n'
                          f'item_url = "{forum.url("/raw/{id}")}"\nallow_private = true\n'
                          f'follow_links = ["localhost"]\n', encoding="utf-8")
        assert await Daemon(load_config(config), once=True, workers=1).run() == 0
        with StateDB(tmp_path / "state" / "watcher.db") as state:
            findings = state.findings()
        assert [(f["severity"], f["item_id"]) for f in findings] == [("critical", f"post1#link:{followed}")]
        assert rentry.paths() == ["/raw/r1"] and elsewhere.paths() == []
        again = Daemon(load_config(config), once=True, workers=1)
        assert await again.run() == 0
        assert rentry.paths() == ["/raw/r1"]                      # seen: not fetched again


def test_follow_links_is_for_network_sources(tmp_path: Path) -> None:
    from watcher.config import ConfigError

    config = tmp_path / "sources.toml"
    config.write_text('[[sources]]\nname = "inbox"\nkind = "directory"\npath = "."\nfollow_links = ["rentry.co"]\n')
    with pytest.raises(ConfigError, match=r'key "follow_links" applies to network sources'):
        load_config(config)
