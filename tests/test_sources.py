"""watcher.sources against the fake sites: only new items are fetched and yielded."""

from __future__ import annotations

import os
import random
import threading
from pathlib import Path

import pytest

from watcher.fetch import Fetcher, FetchError, RetryLater
from watcher.sources import SOURCE_CLASSES, PollContext, SourceError, build_source
from watcher.sources.base import PARSE_MAX_BYTES, link_id, off_loop
from watcher.sources.directory import DirectorySource
from watcher.sources.jsonapi import dig
from watcher.sources.links import compile_selector, page_links
from watcher.sources.markup import select_links, soup

from tests.support.sources import SeenStore, poll_all, source_config, tor_settings
from tests.support.fakesites import ApiSite, FeedSite, ForumSite, PasteSite
from tests.support.socksproxy import SocksProxy


def test_every_kind_declares_its_options() -> None:
    for kind, cls in SOURCE_CLASSES.items():
        assert cls.kind == kind and hasattr(cls.Options, "url_key"), kind
    source = build_source(source_config("inbox", "directory", path=Path("/tmp")))
    assert isinstance(source, DirectorySource) and source.name == "inbox"


def test_link_id() -> None:
    assert link_id("http://x.onion/view/abc123") == "abc123"
    assert link_id("http://x.onion/view/abc123/") == "abc123"
    assert link_id("http://x.onion/show.php?id=7") == "show.php?id=7"


# -- listing ---------------------------------------------------------------------------------------

def listing(site: PasteSite, **fields: object) -> object:
    defaults: dict[str, object] = {"url": site.url("/archive"), "item_links": "table.archive a",
                                   "item_url": site.url("/raw/{id}")}
    return build_source(source_config("paste", "listing", **{**defaults, **fields}))


async def test_listing_yields_only_new_items(paste_site: PasteSite) -> None:
    for paste_id in ("a", "b", "c"):
        paste_site.add_paste(paste_id, f"text of {paste_id}")
    source, store = listing(paste_site), SeenStore()
    async with Fetcher.for_source(source.config) as client:
        ctx = PollContext(client, store)
        first = await poll_all(source, ctx, store)
        assert [(i.item_id, i.content, i.title) for i in first] == [
            ("a", b"text of a", "Paste a"), ("b", b"text of b", "Paste b"), ("c", b"text of c", "Paste c")]
        assert paste_site.paths() == ["/archive", "/raw/a", "/raw/b", "/raw/c"]     # oldest (last listed) first
        assert all(i.source == "paste" and i.url == paste_site.url(f"/raw/{i.item_id}") for i in first)

        paste_site.clear_log()
        ctx.validators.clear()                 # is_seen alone keeps item pages from being fetched
        assert await poll_all(source, ctx, store) == []
        assert paste_site.paths() == ["/archive"]

        paste_site.clear_log()                 # now with the validators: a 304
        assert await poll_all(source, ctx, store) == []
        assert paste_site.paths() == ["/archive"] and "If-None-Match" in paste_site.requests[0].headers

        paste_site.add_paste("d", "text of d")
        paste_site.clear_log()
        assert [i.item_id for i in await poll_all(source, ctx, store)] == ["d"]
        assert paste_site.paths() == ["/archive", "/raw/d"]


async def test_listing_content_selector_keeps_the_exact_text(paste_site: PasteSite) -> None:
    text = "nom;nir\n  DUPONT;1 84 12 75 123 456 78\n"
    paste_site.add_paste("x1", text, title="Base  clients")
    source = listing(paste_site, item_url=None, content="pre")
    async with Fetcher.for_source(source.config) as client:
        [item] = await poll_all(source, PollContext(client, SeenStore()))
    assert item.content == text.encode() and item.content_type.startswith("text/plain")
    assert item.url == paste_site.url("/view/x1") and item.title == "Base clients"


async def test_failed_item_is_skipped_then_retried(paste_site: PasteSite) -> None:
    for paste_id in ("a", "b", "c"):
        paste_site.add_paste(paste_id, paste_id)
    paste_site.failing.add("b")
    source, store = listing(paste_site), SeenStore()
    async with Fetcher.for_source(source.config) as client:
        ctx = PollContext(client, store)
        assert [i.item_id for i in await poll_all(source, ctx, store)] == ["a", "c"]
        assert ctx.validators == {}            # not stored: the next poll must see the page again
        paste_site.failing.clear()
        paste_site.clear_log()
        assert [i.item_id for i in await poll_all(source, ctx, store)] == ["b"]
        assert paste_site.paths() == ["/archive", "/raw/b"]
        assert "If-None-Match" not in paste_site.requests[0].headers
        assert ctx.validators                  # complete now


async def test_listing_page_failure_fails_the_poll(paste_site: PasteSite) -> None:
    source = listing(paste_site, url=paste_site.url("/ratelimited"))
    async with Fetcher.for_source(source.config) as client:
        with pytest.raises(RetryLater):
            await poll_all(source, PollContext(client, SeenStore()))
    source = listing(paste_site, url=paste_site.url("/nothing-here"))
    async with Fetcher.for_source(source.config) as client:
        with pytest.raises(FetchError, match="HTTP 404"):
            await poll_all(source, PollContext(client, SeenStore()))


async def test_onion_listing_through_socks(paste_site: PasteSite, socks_proxy: SocksProxy) -> None:
    paste_site.add_paste("p1", "one")
    paste_site.add_paste("p2", "two")
    config = source_config("some-paste", "listing", url="http://examplepaste.onion/archive", tor=True,
                           item_links="table.archive a", item_url="http://examplepaste.onion/raw/{id}")
    source = build_source(config)
    async with Fetcher.for_source(config, tor_settings(socks_proxy)) as client:
        items = await poll_all(source, PollContext(client, SeenStore()))
    assert [(i.item_id, i.content) for i in items] == [("p1", b"one"), ("p2", b"two")]
    assert set(socks_proxy.requested_hosts) == {"examplepaste.onion"}
    assert {c.username for c in socks_proxy.connections} == {"leak-watcher-some-paste"}


# -- forum -----------------------------------------------------------------------------------------

def forum(site: ForumSite, **fields: object) -> object:
    defaults: dict[str, object] = {"url": site.url("/f/databases"), "thread_links": "a.thread",
                                   "post": "div.post", "next_page": "a.next", "headers": {"Cookie": site.cookie}}
    return build_source(source_config("forum", "forum", **{**defaults, **fields}))


@pytest.fixture
def threads(forum_site: ForumSite) -> ForumSite:
    forum_site.add_thread("t2", "Small", [(None, "hello"), (None, "bye")])
    forum_site.add_thread("t1", "Big dump", [(f"p{n}", f"post {n}") for n in range(1, 6)])
    return forum_site


async def test_forum_walks_thread_pages_with_the_cookie(threads: ForumSite) -> None:
    source, store = forum(threads), SeenStore()
    async with Fetcher.for_source(source.config) as client:
        ctx = PollContext(client, store)
        items = await poll_all(source, ctx, store)
        assert [i.item_id for i in items] == ["t2#0", "t2#1", "t1#p1", "t1#p2", "t1#p3", "t1#p4", "t1#p5"]
        assert threads.paths() == ["/f/databases", "/t/t2", "/t/t1", "/t/t1?page=2", "/t/t1?page=3"]
        assert items[2].content == b"anon\npost 1" and items[2].title == "Big dump"
        assert items[2].url == threads.url("/t/t1#p1") and items[6].url == threads.url("/t/t1?page=3#p5")
        assert all(r.headers["Cookie"] == threads.cookie for r in threads.requests)

        threads.clear_log()
        assert await poll_all(source, ctx, store) == []
        assert threads.paths() == ["/f/databases"]        # 304: no thread fetched

        threads.add_thread("t2", "Small (bumped)", [(None, "hello"), (None, "bye edited"), (None, "new")])
        assert [i.item_id for i in await poll_all(source, ctx, store)] == ["t2#1", "t2#2"]


async def test_forum_posts_carry_their_author(threads: ForumSite) -> None:
    source = forum(threads, author="span.author", post_date="time")
    async with Fetcher.for_source(source.config) as client:
        items = await poll_all(source, PollContext(client, SeenStore()))
    assert {(i.author, i.posted_at) for i in items} == {("anon", None)}      # the fake forum shows no date


async def test_forum_max_pages(threads: ForumSite) -> None:
    source = forum(threads, max_pages=2)
    async with Fetcher.for_source(source.config) as client:
        items = await poll_all(source, PollContext(client, SeenStore()))
    assert [i.item_id for i in items if i.item_id.startswith("t1")] == ["t1#p1", "t1#p2", "t1#p3", "t1#p4"]


async def test_forum_without_cookie_fails(threads: ForumSite) -> None:
    source = forum(threads, headers={})
    async with Fetcher.for_source(source.config) as client:
        with pytest.raises(FetchError, match="HTTP 403"):
            await poll_all(source, PollContext(client, SeenStore()))


# -- json ------------------------------------------------------------------------------------------

def test_dig() -> None:
    record = {"id": 7, "files": {"a.txt": {"raw_url": "u1"}, "b.txt": {"raw_url": "u2"}}, "l": [{"x": 1}]}
    assert dig(record, "files.*.raw_url") == "u1"
    assert dig(record, "l.0.x") == 1 and dig(record, "l.*.x") == 1
    assert dig([1, 2], "") == [1, 2]
    with pytest.raises(LookupError):
        dig(record, "files.*.nope")
    with pytest.raises(LookupError):
        dig({"files": {}}, "files.*.raw_url")


async def test_json_gists_like_api(api_site: ApiSite) -> None:
    api_site.add_gist("g1", "first", {"a.txt": "alpha"})
    api_site.add_gist("g2", "second", {"b.txt": "beta", "c.txt": "gamma"})
    config = source_config("gists", "json", url=api_site.url("/gists/public"), id_field="id",
                           url_field="files.*.raw_url", title_field="description")
    source, store = build_source(config), SeenStore()
    async with Fetcher.for_source(config) as client:
        ctx = PollContext(client, store)
        items = await poll_all(source, ctx, store)
        assert [(i.item_id, i.title, i.content) for i in items] == [
            ("g1", "first", b"alpha"), ("g2", "second", b"beta")]
        assert items[1].url == api_site.url("/raw/g2/b.txt")
        api_site.add_gist("g3", "third", {"d.txt": "delta"})
        api_site.clear_log()
        assert [i.item_id for i in await poll_all(source, ctx, store)] == ["g3"]
        assert api_site.paths() == ["/gists/public", "/raw/g3/d.txt"]


async def test_json_pastebin_like_api(api_site: ApiSite) -> None:
    api_site.add_gist("k1", "a paste", {"x": "content"})
    config = source_config("pastebin", "json", url=api_site.url("/api_scraping.php?limit=100"),
                           id_field="key", url_field="scrape_url", title_field="title")
    async with Fetcher.for_source(config) as client:
        [item] = await poll_all(build_source(config), PollContext(client, SeenStore()))
    assert (item.item_id, item.title, item.content) == ("k1", "a paste", b"content")


async def test_json_items_path_must_be_a_list(api_site: ApiSite) -> None:
    config = source_config("bad", "json", url=api_site.url("/gists/public"), items="data",
                           id_field="id", url_field="url")
    async with Fetcher.for_source(config) as client:
        with pytest.raises(SourceError, match="no 'data'"):
            await poll_all(build_source(config), PollContext(client, SeenStore()))


# -- feed ------------------------------------------------------------------------------------------

async def test_rss_entries_and_followed_pages(feed_site: FeedSite) -> None:
    feed_site.add_entry("e1", "First", "NIR 1 84 12 75 123 456 78", page="full dump 1")
    feed_site.add_entry("e2", "Second", "nothing", page="full dump 2")
    feed_site.failing_pages.add("e2")
    config = source_config("rss", "feed", url=feed_site.url("/rss.xml"), follow=True)
    source, store = build_source(config), SeenStore()
    async with Fetcher.for_source(config) as client:
        ctx = PollContext(client, store)
        items = await poll_all(source, ctx, store)
        assert [i.item_id for i in items] == ["urn:entry:e1", "urn:entry:e1#link", "urn:entry:e2"]   # oldest first
        assert items[0].content == b"First\nNIR 1 84 12 75 123 456 78"     # HTML stripped
        assert items[1].content == b"full dump 1" and items[1].url == feed_site.url("/page/e1")
        assert ctx.validators == {}
        feed_site.failing_pages.clear()
        feed_site.clear_log()
        assert [i.item_id for i in await poll_all(source, ctx, store)] == ["urn:entry:e2#link"]
        assert feed_site.paths() == ["/rss.xml", "/page/e2"]


async def test_atom_entries(feed_site: FeedSite) -> None:
    feed_site.add_entry("e1", "Leak &amp; more", "CSV <attached>")
    config = source_config("atom", "feed", url=feed_site.url("/atom.xml"))
    async with Fetcher.for_source(config) as client:
        [item] = await poll_all(build_source(config), PollContext(client, SeenStore()))
    assert item.item_id == "tag:example,2024:e1" and item.url == feed_site.url("/page/e1")
    assert item.title == "Leak &amp; more" and item.content == b"Leak &amp; more\nCSV <attached>"


async def test_not_a_feed_fails_the_poll(paste_site: PasteSite) -> None:
    paste_site.add_paste("x", "plain text")
    config = source_config("feed", "feed", url=paste_site.url("/view/x"))
    async with Fetcher.for_source(config) as client:
        with pytest.raises(SourceError, match="not an RSS or Atom feed"):
            await poll_all(build_source(config), PollContext(client, SeenStore()))


# -- directory -------------------------------------------------------------------------------------

def age(path: Path, seconds_ago: float, ns_offset: int = 0) -> None:
    mtime = int((os.path.getmtime(path) - seconds_ago) * 1e9) + ns_offset
    os.utime(path, ns=(mtime, mtime))


async def test_directory_new_changed_and_unchanged_files(tmp_path: Path) -> None:
    inbox = tmp_path / "inbox"
    (inbox / "sub").mkdir(parents=True)
    (inbox / "a.csv").write_text("nir;nom\n")
    (inbox / "sub" / "b.txt").write_text("hello")
    (inbox / ".partial.upload").write_text("in progress")
    (inbox / "link.txt").symlink_to("/etc/hostname")
    for path in (inbox / "a.csv", inbox / "sub" / "b.txt"):
        age(path, 60)
    source, store = DirectorySource(source_config("inbox", "directory", path=inbox)), SeenStore()
    ctx = PollContext(None, store)
    items = await poll_all(source, ctx, store)
    assert sorted(i.item_id for i in items) == ["a.csv", "sub/b.txt"]
    a = next(i for i in items if i.item_id == "a.csv")
    assert a.path == inbox / "a.csv" and a.content is None and a.content_type == "text/csv"
    assert a.version == f"8:{(inbox / 'a.csv').stat().st_mtime_ns}"

    assert await poll_all(source, ctx, store) == []          # unchanged

    (inbox / "a.csv").write_text("nir;nom\n1;x\n")             # changed
    age(inbox / "a.csv", 30)
    (inbox / "c.bin").write_bytes(b"\0" * 10)                  # new, but still being written
    changed = await poll_all(source, ctx, store)
    assert [i.item_id for i in changed] == ["a.csv"]
    age(inbox / "c.bin", 10)
    assert [i.item_id for i in await poll_all(source, ctx, store)] == ["c.bin"]


async def test_missing_directory_fails_the_poll(tmp_path: Path) -> None:
    source = DirectorySource(source_config("inbox", "directory", path=tmp_path / "nope"))
    with pytest.raises(SourceError, match="is not a directory"):
        await poll_all(source, PollContext(None, SeenStore()))


# -- parsing -----------------------------------------------------------------------------------------

async def test_big_pages_are_parsed_off_the_loop_and_capped() -> None:
    def parse(body: bytes) -> tuple[int, int]:
        return threading.get_ident(), len(body)

    loop_thread = threading.get_ident()
    assert await off_loop(b"x" * 1000, parse) == (loop_thread, 1000)
    thread, size = await off_loop(b"x" * (PARSE_MAX_BYTES + 100), parse)
    assert thread != loop_thread and size == PARSE_MAX_BYTES


# -- links through lxml ------------------------------------------------------------------------------
# `page_links` must give exactly what bs4 + soupsieve give (`select_links(soup(...))`): same
# links, same order, same text, on regular and broken pages, in every encoding bs4 detects.

PAGES = [
    "<!doctype html><html><head><meta charset='utf-8'></head><body><table class='archive x'><tr><td>"
    "<a href='/view/1'>Pé 1</a></td></tr><tr><td><a href='/view/2#frag'>  two <b>bold</b>\n</a></td>"
    "<td><a href='mailto:x@y'>m</a></td></tr></table><a href='/other'>o</a></body></html>".encode(),
    "<html><body><div id='main' class='list\u00a0items'><ul><li class='item'><a href='http://ex.org/a?x=1'>"
    "A<!-- c -->B<script>var s</script>C</a></li><li class='item new'><span><a>no</a><a href=''>empty</a>"
    "<a href='/b'>b</a></span></li><li class=ITEM><a href='/c' data-id='7' title=\"it's\">c</a></li></ul>"
    "</div><template><a href='/t'>tt</a></template><p><a href='/r'>x<ruby>k<rt>kk</rt></ruby></a></p>"
    "<script href='/s'>s</script></body></html>".encode(),
    b"<A HREF='/up' CLASS='Big'>UP</A><TABLE CLASS=archive><TR><TD><A HREF=/z>z</A>",
    "<html><head><meta http-equiv='Content-Type' content='text/html; charset=iso-8859-1'></head><body>"
    "<div class='item'><a href='/caf\xe9'>caf\xe9</a></div></body></html>".encode("latin-1"),
    "<html><body><div class='item'><a href='/é'>é ü</a></div></body></html>".encode("cp1252"),
    b"\xef\xbb\xbf<html><body><p class='item'><a href='  /bom  '>bom</a></p></body></html>",
    b"<html><body><meta charset='shift_jis'><a href='/v/1'>x</a><ul class='x\xc2\xa0y'></ul></body></html>",
    b"<html><body><meta charset='bogus'><a href='/v/1'>x</a></body></html>",
    b"", b"plain text, no html", b"<a href='/x'>x</a><a href='/x'>dup</a><a href='javascript:void(0)'>js</a>",
    b"<div class='a'><div class='b'><a href='/ab'>ab</a></div></div><div class='b'><a href='/b'>b</a></div>",
    b"<html><body><a href='/in'>in</a></body></html>\n<!-- served in 2 ms -->\n",
    b"<html><body><a href='/in'>in</a></body></html><table class='archive'><a href='/after'>after</a></table>",
    b"<html><body><script>var end = '</html>';</script><a href='/s'>s</a></body></html>",
]
SELECTORS = ["table.archive a", "a", "table.archive td > a", ".item a", "li.item > span a", "div#main a",
             "a[href]", "a[href^='/v']", 'a[href$="1"]', "a[href*=view]", "a[data-id='7']", "a[title=\"it's\"]",
             "*", "table.archive a, a[href='/other']", "div.a div.b a", ".a > .b > a", "TABLE.archive A",
             ".ITEM a", "li.item", "[href]", "a:not([href])", "a[rel~=x]", "li:nth-child(2) a"]


def random_page(rng: random.Random) -> bytes:
    """A random, often broken, page mixing the constructs bs4 and lxml could disagree on."""
    def node(depth: int) -> str:
        if depth > 4 or rng.random() < 0.3:
            return rng.choice(["txt", "a b", "<!--c-->", "&amp;", "é", "\n", "<br>", "<?pi x?>", "<![CDATA[cd]]>",
                               "<a HREF='/U'>U</a>", "<a href>bare</a>", "<rt>r</rt>", "<style>s</style>",
                               "<noscript><a href='/ns'>ns</a></noscript>", "<textarea><a href='/t'>t</a></textarea>",
                               "<a href='/v/1'>x<a href='/v/2'>y</a></a>", "<meta charset='bogus'>"])
        tag = rng.choice(["div", "p", "a", "span", "table", "tr", "td", "li", "template", "script", "A", "TD"])
        attributes = " ".join(f"{name}='{rng.choice(values)}'" for name, values in (
            ("class", ["x", "item", "archive", "X", "x y", "x\u00a0y", " item ", "item\tx"]),
            ("href", ["/v/1", "/v/2", "v3", "", "#f", "http://o.org/x", " /w ", "ftp://x/y", "/ü"]),
            ("id", ["m", "M"]), ("data-k", ["1", "x"])) if rng.random() < 0.4)
        inner = "".join(node(depth + 1) for _ in range(rng.randrange(4)))
        return f"<{tag} {attributes}>{inner}" + (f"</{tag}>" if rng.random() < 0.85 else "")

    page = "<html><body>" + "".join(node(0) for _ in range(rng.randrange(1, 6))) + "</body></html>"
    page += node(0) if rng.random() < 0.2 else ""          # lxml drops what follows </html>; bs4 keeps it
    return page.encode(rng.choice(["utf-8", "cp1252"]), errors="replace")


def random_selector(rng: random.Random) -> str:
    def compound() -> str:
        return rng.choice(["", "a", "div", "td", "*", "li", "TD"]) + "".join(rng.choice(
            [".x", ".item", "#m", "[href]", "[href^='/v']", "[href$='1']", "[href*=v]", "[data-k='1']"])
            for _ in range(rng.randrange(3))) or "a"

    parts = [compound()]
    for _ in range(rng.randrange(3)):
        parts += [rng.choice([" ", " > ", ">"]), compound()]
    return "".join(parts) + (", " + compound() if rng.random() < 0.2 else "")


def test_page_links_are_the_links_bs4_finds() -> None:
    base = "http://site.example/s/0/archive"
    rng = random.Random(7)
    cases = [(page, selector) for page in PAGES for selector in SELECTORS]
    cases += [(random_page(rng), random_selector(rng)) for _ in range(800)]
    for page, selector in cases:
        assert page_links(selector, base, page) == select_links(soup(page), selector, base), (selector, page)


def test_simple_selectors_skip_bs4() -> None:
    for selector in ("table.archive a", "div#main > ul li.item a", "a[href^='/view/']", "td > a, th > a"):
        assert compile_selector(selector) is not None, selector
    for selector in ("a:not([href])", "a[rel~=x]", "a[type=text]", "a[href='']", "h2 + a", r"a.\31 x", "a[href=x i]"):
        assert compile_selector(selector) is None, selector
