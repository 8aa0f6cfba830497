"""The ready-made sources of sources.d/ (issue 12, part 3): the shipped sources.toml turns them
on with its commented `include` line; `watcher check-config` loads every definition; each family
polled by the daemon on a loopback replica of its real format (the definition copied with its
url pointed at the replica, under a prefix named after the source, path and query kept).
Also the `[]` segment of a json `url` (every file of a gist)."""

from __future__ import annotations

import html
import json
import random
import re
import shutil
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web

from watcher.config import ConfigError, load_config
from watcher.daemon import Daemon
from watcher.sources.jsonapi import dig_every
from watcher.store import StateDB

from tests.support.nirs import nir_forms, random_nir
from tests.support.fakesites import FakeSite, serve

REPO = Path(__file__).resolve().parent.parent
INCLUDE_LINE = '# include = ["sources.d/*.toml"]'
SHIPPED = {  # name: (file, kind, follow, mention_severity, interval in seconds)
    "ransomware-live": ("ransomware.toml", "feed", False, "high", 1800),
    "rlive-press": ("ransomware.toml", "feed", True, "medium", 7200),
    "ransomlook": ("ransomware.toml", "feed", False, "high", 1800),
    "zataz": ("press.toml", "feed", True, "medium", 3600),
    "certfr": ("press.toml", "feed", False, "low", 7200),
    "cnil": ("press.toml", "feed", False, "low", 21600),
    "hibp": ("press.toml", "feed", False, "medium", 21600),
    "github-gists": ("gists.toml", "json", None, "low", 300),
}


def shipped_copy(tmp_path: Path, include: list[str], site: FakeSite | None = None) -> Path:
    """The shipped sources.toml and sources.d/ in tmp_path, the commented include line turned
    into `include = [...]`; with `site`, every definition's url points at the replica
    (`<site>/<source name><path and query of the real url>`), without Tor, loopback allowed."""
    text = (REPO / "sources.toml").read_text(encoding="utf-8")
    assert INCLUDE_LINE in text
    (tmp_path / "sources.toml").write_text(text.replace(INCLUDE_LINE, f"include = {json.dumps(include)}"),
                                           encoding="utf-8")
    (tmp_path / "inbox").mkdir()
    shutil.copytree(REPO / "sources.d", tmp_path / "sources.d")
    if site is not None:
        for path in (tmp_path / "sources.d").glob("*.toml"):
            blocks = path.read_text(encoding="utf-8").split("\n[[sources]]\n")
            path.write_text("\n[[sources]]\n".join([blocks[0]] + [local(block, site) for block in blocks[1:]]),
                            encoding="utf-8")
    return tmp_path / "sources.toml"


def local(block: str, site: FakeSite) -> str:
    """One [[sources]] block pointed at the replica."""
    name = re.search(r'^name = "([^"]+)"', block, re.MULTILINE)
    assert name
    block, count = re.subn(r'^(url|endpoint) = "https://[^/"]+', lambda m: f'{m[1]} = "{site.url("/" + name[1])}',
                           block, count=1, flags=re.MULTILINE)
    block, tor = re.subn(r"^tor = true$", "tor = false\nallow_private = true", block, flags=re.MULTILINE)
    assert count == 1 and tor == 1, block
    return block


# -- check-config ----------------------------------------------------------------------------------

def test_check_config_loads_every_shipped_definition(tmp_path: Path) -> None:
    config_path = shipped_copy(tmp_path, ["sources.d/*.toml"])
    run = subprocess.run([sys.executable, "-m", "watcher", "check-config", "--config", str(config_path)],
                         capture_output=True, text=True, timeout=60, cwd=REPO)
    assert run.returncode == 0, run.stderr
    assert "ok: 9 enabled sources of 10, 8 through Tor" in run.stdout   # + inbox, pastebin (off)
    config = load_config(config_path, environ={})
    included = {s.name: s for s in config.sources if s.origin is not None}
    assert set(included) == set(SHIPPED)
    for name, (file, kind, follow, severity, interval) in SHIPPED.items():
        source = included[name]
        assert source.origin and source.origin[0] == tmp_path / "sources.d" / file, name
        assert (source.kind, source.enabled, source.tor, source.allow_private) == (kind, True, True, False), name
        assert (source.mention_severity, source.interval) == (severity, interval), name
        assert (source.url or "").startswith("https://"), name
        if follow is not None:
            assert source.options.follow is follow, name
    gists = included["github-gists"]
    assert gists.url == "https://api.github.com/gists/public?per_page=100"
    assert (gists.options.items, gists.options.id_field, gists.options.url_field) == ("", "id", "files.[].raw_url")


@pytest.mark.parametrize("family, names", [
    ("ransomware.toml", {"ransomware-live", "rlive-press", "ransomlook"}),
    ("press.toml", {"zataz", "certfr", "cnil", "hibp"}),
    ("gists.toml", {"github-gists"}),
])
def test_one_family_at_a_time(tmp_path: Path, family: str, names: set[str]) -> None:
    config = load_config(shipped_copy(tmp_path, [f"sources.d/{family}"]), environ={})
    assert {s.name for s in config.enabled_sources} == names | {"inbox"}


def test_the_shipped_file_includes_nothing() -> None:
    text = (REPO / "sources.toml").read_text(encoding="utf-8")
    assert not re.search(r"^include", text, re.MULTILINE)
    assert text.index(INCLUDE_LINE) < text.index("[watcher]")     # uncommented, it is a top-level key
    assert all(s.origin is None for s in load_config(REPO / "sources.toml", environ={}).sources)


# -- replicas --------------------------------------------------------------------------------------

class ShippedSites(FakeSite):
    """Each shipped source's format under /<source name>/<its real path>: RSS shaped like
    ransomware.live, RansomLook, ZATAZ (WordPress), CERT-FR, CNIL (Drupal), HIBP (FeedBurner);
    GitHub's public gists (several files each, answered only with per_page=100)."""

    FEEDS = {"ransomware-live": "/rss.xml", "rlive-press": "/cyberattacks.xml", "ransomlook": "/rss.xml",
             "zataz": "/feed/", "certfr": "/feed/", "cnil": "/fr/rss.xml", "hibp": "/HaveIBeenPwnedLatestBreaches"}

    def __init__(self) -> None:
        self.items: dict[str, list[str]] = {name: [] for name in self.FEEDS}   # <item> XML, newest first
        self.pages: dict[str, str] = {}                                        # path -> text
        self.gists: list[dict[str, object]] = []
        super().__init__()

    def routes(self, router: web.UrlDispatcher) -> None:
        for name, path in self.FEEDS.items():
            router.add_get(f"/{name}{path}", self.feed)
        router.add_get("/github-gists/gists/public", self.public_gists)
        router.add_get("/{page:.*}", self.page)

    async def feed(self, request: web.Request) -> web.Response:
        name = request.path.split("/")[1]
        xml = ("<?xml version='1.0' encoding='UTF-8'?><rss version='2.0' "
               "xmlns:content='http://purl.org/rss/1.0/modules/content/' xmlns:dc='http://purl.org/dc/elements/1.1/' "
               "xmlns:atom='http://www.w3.org/2005/Atom' xmlns:feedburner='http://rssnamespace.org/feedburner/ext/1.0'>"
               f"<channel><title>{name}</title><link>{self.base_url}/{name}/</link><description>{name}</description>"
               f"<atom:link href='{self.base_url}{request.path}' rel='self' type='application/rss+xml'/>"
               + "".join(self.items[name]) + "</channel></rss>")
        return web.Response(text=xml, content_type="application/rss+xml", charset="utf-8")

    async def page(self, request: web.Request) -> web.Response:
        if request.path not in self.pages:
            raise web.HTTPNotFound()
        return web.Response(text=self.pages[request.path], content_type="text/html", charset="utf-8")

    async def public_gists(self, request: web.Request) -> web.Response:
        if request.query.get("per_page") != "100":
            raise web.HTTPBadRequest(text="this replica answers per_page=100 only")
        return web.json_response(self.gists)

    def item(self, name: str, xml: str) -> None:
        self.items[name].insert(0, f"<item>{xml}</item>")

    def victim(self, n: int, group: str, victim: str, blurb: str) -> None:
        """ransomware.live rss.xml (bin/rsslib.py): title, blurb as description, country as category."""
        self.item("ransomware-live", f"<title>{html.escape(group)} has just published a new victim : "
                                     f"{html.escape(victim)}</title><description>{html.escape(blurb)}</description>"
                                     f"<link>https://www.ransomware.live/id/{n}</link><guid>rlive-{n}</guid>"
                                     f"<category>FR</category><pubDate>Mon, 07 Dec 2026 10:0{n}:00 +0000</pubDate>")

    def article(self, name: str, n: int, title: str, excerpt: str, page: str, content: str = "") -> None:
        """A press entry whose link is an article page here (ZATAZ's with content:encoded)."""
        path = f"/{name}/article/{n}"
        self.pages[path] = (f"<html><body><article><h1>{html.escape(title)}</h1><p>{html.escape(page)}</p>"
                            "</article></body></html>")
        encoded = f"<content:encoded><![CDATA[<p>{content}</p>]]></content:encoded>" if content else ""
        self.item(name, f"<title>{html.escape(title)}</title><link>{self.base_url}{path}</link>"
                        f"<dc:creator><![CDATA[redaction]]></dc:creator><guid isPermaLink='false'>{name}-{n}</guid>"
                        f"<description><![CDATA[{excerpt}]]></description>{encoded}")

    def gist(self, gist_id: str, description: str, files: dict[str, str]) -> None:
        """A public gist (first in the list); its files are served at /github-gists/raw/<id>/<name>."""
        for name, text in files.items():
            self.pages[f"/github-gists/raw/{gist_id}/{name}"] = text
        self.gists.insert(0, {"id": gist_id, "description": description, "public": True, "files": {
            name: {"filename": name, "type": "text/plain", "language": None, "size": len(text),
                   "raw_url": f"{self.base_url}/github-gists/raw/{gist_id}/{name}"} for name, text in files.items()}})


@pytest.fixture
async def sites() -> AsyncIterator[ShippedSites]:
    async with serve(ShippedSites()) as site:
        yield site


async def poll(config: Path) -> dict[str, list[dict[str, object]]]:
    """One daemon pass; the findings by source."""
    assert await Daemon(load_config(config, environ={}), once=True, workers=1).run() == 0
    with StateDB(config.parent / "state" / "watcher.db") as state:
        findings = state.findings()
    by_source: dict[str, list[dict[str, object]]] = {}
    for finding in findings:
        by_source.setdefault(str(finding["source"]), []).append(finding)
    return by_source


async def test_ransomware_family(tmp_path: Path, sites: ShippedSites) -> None:
    sites.victim(1, "lockbit5", "Boulangerie Dupont", "Bakery in Lyon, 20 GB.")
    sites.victim(2, "qilin", "Harmonie Mutuelle", "French mutual insurer. Members database, 400 GB.")
    sites.item("ransomlook", "<title>Malakoff Humanis</title><link>https://www.ransomlook.io/group/akira</link>"
                             "<description>Insurance group, France. 1.2 TB exfiltrated.</description>"
                             "<guid isPermaLink='false'>ransomlook-1</guid>")
    sites.article("rlive-press", 1, "Cyberattaque contre un tiers payant", "Un opérateur touché.",
                  "Viamedis confirme une intrusion dans son système d'information.")
    findings = await poll(shipped_copy(tmp_path, ["sources.d/ransomware.toml"], sites))
    assert set(findings) == {"ransomware-live", "ransomlook", "rlive-press"}
    [rlive] = findings["ransomware-live"]
    assert rlive["severity"] == "high" and rlive["title"] == "qilin has just published a new victim : Harmonie Mutuelle"
    assert "named on ransomware-live (mention_severity high)" in str(rlive["reasons"])
    assert [(f["severity"], f["title"]) for f in findings["ransomlook"]] == [("high", "Malakoff Humanis")]
    [press] = findings["rlive-press"]                       # the followed article names the insurer
    assert press["severity"] == "medium" and press["item_id"] == "rlive-press-1#link"
    assert "/rlive-press/article/1" in sites.paths()


async def test_press_family(tmp_path: Path, sites: ShippedSites) -> None:
    sites.article("zataz", 1, "Vente de données de santé", "Un pirate propose une base.",
                  "La base vendue viendrait d'Almerys, selon le vendeur.", content="Un pirate propose une base.")
    sites.item("certfr", "<title>CERTFR-2026-AVI-0999 : Vulnérabilité dans un portail</title>"
                         "<link>https://www.cert.ssi.gouv.fr/avis/CERTFR-2026-AVI-0999/</link>"
                         "<description>Le portail adhérents utilisé par Aésio est affecté.</description>"
                         "<guid>https://www.cert.ssi.gouv.fr/avis/CERTFR-2026-AVI-0999/</guid>")
    sites.item("cnil", "<title>Sanction : défaut de sécurité</title><link>https://www.cnil.fr/fr/sanction-x</link>"
                       "<description>&lt;p&gt;La CNIL sanctionne AG2R La Mondiale.&lt;/p&gt;</description>"
                       "<dc:creator>CNIL</dc:creator><guid isPermaLink='false'>cnil-1</guid>")
    sites.item("hibp", "<title>Harmonie Mutuelle - 12,345 breached accounts</title>"
                       "<link>https://haveibeenpwned.com/PwnedWebsites#x</link><guid isPermaLink='false'>hibp-1</guid>"
                       "<description>&lt;p&gt;Email addresses, names, phone numbers.&lt;/p&gt;</description>"
                       "<feedburner:origLink>https://haveibeenpwned.com/PwnedWebsites#x</feedburner:origLink>")
    findings = await poll(shipped_copy(tmp_path, ["sources.d/press.toml"], sites))
    severities = {name: sorted(str(f["severity"]) for f in found) for name, found in findings.items()}
    assert severities == {"zataz": ["medium"], "certfr": ["low"], "cnil": ["low"], "hibp": ["medium"]}
    assert findings["zataz"][0]["item_id"] == "zataz-1#link" and "/zataz/article/1" in sites.paths()


def members_csv(rng: random.Random, rows: int = 12) -> str:
    """A members' extract with generated NIRs (critical)."""
    lines = ["nom;prenom;nir;mutuelle"]
    lines += [f"NOM{i};Prenom{i};{nir_forms(random_nir(rng, strict=True))['spaced']};MGEN" for i in range(rows)]
    return "\n".join(lines) + "\n"


async def test_gists_every_file_of_a_gist(tmp_path: Path, sites: ShippedSites) -> None:
    rng = random.Random(12)
    sites.gist("g1", "notes", {"README.md": "nothing here", "export.csv": members_csv(rng), "run.sh": "echo ok"})
    sites.gist("g2", "", {"a.txt": "hello"})
    config = shipped_copy(tmp_path, ["sources.d/gists.toml"], sites)
    findings = await poll(config)
    assert [(f["severity"], f["item_id"]) for f in findings["github-gists"]] == [("critical", "g1/export.csv")]
    raw = sorted(p for p in sites.paths() if "/raw/" in p)
    assert raw == ["/github-gists/raw/g1/README.md", "/github-gists/raw/g1/export.csv",
                   "/github-gists/raw/g1/run.sh", "/github-gists/raw/g2/a.txt"]
    sites.gist("g3", "second", {"x.txt": "x", "y.txt": "y"})
    sites.clear_log()
    await poll(config)
    assert sorted(p for p in sites.paths() if "/raw/" in p) == ["/github-gists/raw/g3/x.txt",
                                                                "/github-gists/raw/g3/y.txt"]


# -- the `[]` segment ------------------------------------------------------------------------------

def test_dig_every() -> None:
    record = {"files": {"a.txt": {"raw_url": "u1"}, "b.txt": {"raw_url": "u2"}, "c": {}},
              "l": [{"x": 1}, {"x": 2}], "nested": {"p": [{"u": "v1"}, {"u": "v2"}]}}
    assert dig_every(record, "files.[].raw_url") == [("a.txt", "u1"), ("b.txt", "u2")]   # "c" lacks raw_url
    assert dig_every(record, "l.[].x") == [("0", 1), ("1", 2)]
    assert dig_every(record, "nested.[].[].u") == [("p/0", "v1"), ("p/1", "v2")]
    assert dig_every(record, "files.*.raw_url") == [("", "u1")]                           # no [] : one value
    with pytest.raises(LookupError):
        dig_every(record, "files.[].nope")
    with pytest.raises(LookupError):
        dig_every({"files": {}}, "files.[].raw_url")


@pytest.mark.parametrize("line, key", [('id = "files.[].id"', "id"), ('title = "files.[].filename"', "title"),
                                       ('fields = ["files.[].filename"]', "fields")])
def test_every_value_is_for_url_only(tmp_path: Path, line: str, key: str) -> None:
    path = tmp_path / "sources.toml"
    block = '[[sources]]\nname = "g"\nkind = "json"\nendpoint = "https://api.example.org/g"\nurl = "files.[].raw_url"\n'
    path.write_text(block + ('id = "id"\n' if key != "id" else "") + line + "\n")
    with pytest.raises(ConfigError, match=rf'key "{key}" cannot take "\[\]"'):
        load_config(path)
