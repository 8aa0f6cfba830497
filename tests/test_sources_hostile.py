"""Hostile listing, board and feed pages against the sources, served by real aiohttp servers on
loopback: no page stalls the poll, the event loop or shutdown, no content is silently lost,
and a source that sees nothing says why (issue 9)."""

from __future__ import annotations

import asyncio
import hashlib
import os
import random
import resource
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from functools import partial
from pathlib import Path

import pytest
from aiohttp import web
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from watcher.fetch import Fetcher
from watcher.sources import PollContext, Source, SourceError, build_source
from watcher.sources.feedparse import parse_feed, without_doctype
from watcher.sources.links import page_links, parse_index
from watcher.sources.markup import LXML_MAX_DEPTH, html_root
from watcher.sources.pages import PageParser
from watcher.sources.threads import parse_thread_page
from watcher.sources.walls import wall_reason

from tests.support.nirs import random_nir
from tests.support.sources import SeenStore, poll_all, source_config
from tests.support.fakesites import FakeSite, PasteSite, serve

BUDGET = 2.0        # the page parser's budget in these tests (the daemon's: 20 s)
SPARE = 0.3         # seconds on a busy child before a second one starts (the daemon's: 1 s)
PROPERTIES = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])


class HostileSite(FakeSite):
    """Serves the bytes a test puts at a path: `site.pages["/archive"] = (body, content_type)`,
    with an ETag (304 on If-None-Match)."""

    def __init__(self) -> None:
        self.pages: dict[str, tuple[bytes, str]] = {}
        super().__init__()

    def routes(self, router: web.UrlDispatcher) -> None:
        router.add_get("/{path:.*}", self.page)

    async def page(self, request: web.Request) -> web.Response:
        if request.path not in self.pages:
            raise web.HTTPNotFound()
        body, content_type = self.pages[request.path]
        etag = '"' + hashlib.sha256(body).hexdigest()[:16] + '"'
        if request.headers.get("If-None-Match") == etag:
            return web.Response(status=304, headers={"ETag": etag})
        return web.Response(body=body, content_type=content_type, headers={"ETag": etag})

    def html(self, path: str, markup: str) -> None:
        """Serve `markup` as an HTML page."""
        self.pages[path] = (markup.encode(), "text/html")


@pytest.fixture
async def site() -> AsyncIterator[HostileSite]:
    async with serve(HostileSite()) as served:
        yield served


@pytest.fixture
async def parser() -> AsyncIterator[PageParser]:
    page_parser = PageParser(budget=BUDGET, spare_after=SPARE)
    yield page_parser
    await page_parser.close()


def archive(links: int, wrap: tuple[str, str] = ("", "")) -> str:
    """A listing page of `links` pastes, the table inside `wrap` (opening, closing markup)."""
    rows = "".join(f"<tr><td><a href='/view/p{n}'>Paste {n}</a></td></tr>" for n in range(links))
    return (f"<html><head><title>Archive</title></head><body>{wrap[0]}<table class='archive'>{rows}</table>"
            f"{wrap[1]}</body></html>")


def attribute_bomb(attributes: int = 100_000) -> str:
    """A listing page whose first tag has `attributes` distinct attributes (lxml: quadratic)."""
    return archive(3, ("<div " + " ".join(f"a{n}='x'" for n in range(attributes)) + "></div>", ""))


def nested(depth: int, inner: str) -> tuple[str, str]:
    """`inner` `depth` levels deep: (opening, closing) markup around it."""
    return "<div>" * depth + inner, "</div>" * depth


def listing(site: FakeSite, **fields: object) -> Source:
    defaults: dict[str, object] = {"url": site.url("/archive"), "item_links": "table.archive a",
                                   "item_url": site.url("/raw/{id}")}
    return build_source(source_config("hostile", "listing", **{**defaults, **fields}))


def serve_pastes(site: HostileSite, count: int) -> None:
    for n in range(count):
        site.pages[f"/raw/p{n}"] = (f"paste {n}".encode(), "text/plain")


def alive(pid: int) -> bool:
    """True while the process runs (a zombie, killed and waiting for its reaper, does not)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state not in ("Z", "X")


async def loop_stalls(task: asyncio.Future[object]) -> float:
    """The longest the event loop went without running a 10 ms ticker while `task` ran."""
    worst, last = 0.0, time.monotonic()
    while not task.done():
        await asyncio.sleep(0.01)
        now = time.monotonic()
        worst, last = max(worst, now - last), now
    return worst


# -- case 1: a page that takes lxml minutes ----------------------------------------------------------

async def test_attribute_bomb_ends_its_poll_within_the_budget_and_spares_the_others(
        site: HostileSite, paste_site: PasteSite, parser: PageParser) -> None:
    site.html("/archive", attribute_bomb())
    serve_pastes(site, 3)
    paste_site.add_paste("ok1", "healthy")
    hostile, healthy = listing(site), listing(paste_site)
    async with Fetcher.for_source(hostile.config) as client_a, Fetcher.for_source(healthy.config) as client_b:
        started = time.monotonic()
        bomb = asyncio.ensure_future(poll_all(hostile, PollContext(client_a, SeenStore(), parser=parser)))
        await asyncio.sleep(0.2)                             # the bomb holds the first child
        ctx = PollContext(client_b, SeenStore(), parser=parser)
        items = await poll_all(healthy, ctx)
        healthy_done = time.monotonic() - started
        stall = await loop_stalls(bomb)
        with pytest.raises(SourceError, match=f"page parse exceeded {BUDGET:g} s"):
            await bomb
        took = time.monotonic() - started
    assert [i.item_id for i in items] == ["ok1"] and ctx.links == 1
    assert healthy_done < BUDGET                             # parsed by a second child meanwhile
    assert BUDGET <= took < BUDGET + 2                       # the budget, not lxml's minutes
    assert stall < 0.5
    assert len(parser.pids) == 1 and all(alive(pid) for pid in parser.pids)   # the killed one is gone
    # the next parse of a healthy page works (on the remaining child, or a new one)
    index = await parser.run(partial(parse_index, "table.archive a", None, "http://h/"), archive(2).encode())
    assert len(index.links) == 2


async def test_closing_the_parser_mid_parse_kills_its_children(parser: PageParser) -> None:
    parse = asyncio.ensure_future(parser.run(partial(parse_index, "a", None, "http://h/"),
                                             attribute_bomb(300_000).encode()))
    while not parser.pids:
        await asyncio.sleep(0.01)
    pids = parser.pids
    await asyncio.sleep(0.3)                                 # the child is in lxml now
    started = time.monotonic()
    await parser.close()
    assert time.monotonic() - started < 2
    with pytest.raises(SourceError, match="closed"):
        await parse
    assert parser.pids == [] and not any(alive(pid) for pid in pids)
    with pytest.raises(SourceError, match="closed"):
        await parser.run(partial(parse_index, "a", None, "http://h/"), b"<a href='/x'>x</a>")


def test_children_die_with_their_parent_on_kill_9(tmp_path: Path) -> None:
    """A parent killed with SIGKILL leaves no parsing child behind (PR_SET_PDEATHSIG)."""
    script = tmp_path / "parent.py"
    script.write_text(
        "import asyncio, sys\nfrom functools import partial\n"
        "from watcher.sources.links import parse_index\nfrom watcher.sources.pages import PageParser\n"
        "async def main():\n"
        "    parser = PageParser(budget=600)\n"
        "    parse = asyncio.ensure_future(parser.run(partial(parse_index, 'a', None, 'http://h/'), sys.stdin.buffer.read()))\n"
        "    while not parser.pids:\n        await asyncio.sleep(0.01)\n"
        "    print(parser.pids[0], flush=True)\n    await parse\n"
        "asyncio.run(main())\n")
    parent = subprocess.Popen([sys.executable, str(script)], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        assert parent.stdin is not None and parent.stdout is not None
        parent.stdin.write(attribute_bomb(300_000).encode())
        parent.stdin.close()
        child = int(parent.stdout.readline())
        time.sleep(0.5)
        assert alive(child)
        os.kill(parent.pid, signal.SIGKILL)
        parent.wait(5)
        deadline = time.monotonic() + 3
        while alive(child) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert not alive(child)
    finally:
        parent.kill()
        parent.wait()


async def test_parsing_in_the_parser_gives_what_parsing_here_gives(
        paste_site: PasteSite, parser: PageParser) -> None:
    for paste_id in ("a", "b", "c"):
        paste_site.add_paste(paste_id, f"text of {paste_id}")
    source = listing(paste_site, item_url=None, content="pre")
    async with Fetcher.for_source(source.config) as client:
        here = await poll_all(source, PollContext(client, SeenStore()))
        there = await poll_all(source, PollContext(client, SeenStore(), parser=parser))
    assert here == there and [i.content for i in there] == [b"text of a", b"text of b", b"text of c"]


async def test_a_parse_error_in_the_child_is_raised_here(parser: PageParser) -> None:
    with pytest.raises(SourceError, match="not an RSS or Atom feed"):
        await parser.run(partial(parse_feed, "http://h/"), b"plain text")
    with pytest.raises(ValueError, match="invalid literal"):   # a bug: its type and the child's traceback
        await parser.run(int, b"not a number")
    assert len(parser.pids) == 1                             # the same child served all three


# -- case 2: content nested deeper than lxml's limits ------------------------------------------------

@pytest.mark.parametrize("depth", [1_000, LXML_MAX_DEPTH + 3_000])
async def test_links_nested_deep_are_found(site: HostileSite, depth: int) -> None:
    opening, closing = nested(depth, "")
    site.html("/archive", archive(5, (opening, closing + "<a class='late' href='/view/late'>late</a>")))
    serve_pastes(site, 5)
    source = listing(site)
    async with Fetcher.for_source(source.config) as client:
        started = time.monotonic()
        ctx = PollContext(client, SeenStore())
        items = await poll_all(source, ctx)
    assert [i.item_id for i in items] == [f"p{n}" for n in reversed(range(5))] and ctx.warnings == []
    assert time.monotonic() - started < 5
    links = page_links("a.late", "http://h/", site.pages["/archive"][0])
    assert links == [("http://h/view/late", "late")]          # after the deep part too


async def test_posts_and_threads_nested_deep_are_found(site: HostileSite) -> None:
    board = "".join(f"<a class='thread' href='/t/{n}'>thread {n}</a>" for n in range(2))
    site.html("/board", f"<html><body>{''.join(nested(1_000, board))}</body></html>")
    for n in range(2):
        posts = "".join(f"<div class='post' id='t{n}p{p}'>post {p}</div>" for p in range(3))
        site.html(f"/t/{n}", f"<html><body>{''.join(nested(1_000, posts))}<div class='post'>last</div></body></html>")
    config = source_config("deep-forum", "forum", url=site.url("/board"), thread_links="a.thread", post="div.post")
    async with Fetcher.for_source(config) as client:
        items = await poll_all(build_source(config), PollContext(client, SeenStore()))
    assert [i.item_id for i in items] == ["1#t1p0", "1#t1p1", "1#t1p2", "1#3", "0#t0p0", "0#t0p1", "0#t0p2", "0#3"]


def test_deep_nesting_stays_linear() -> None:
    """10x deeper costs about 10x, not 100x (bs4 past lxml's limit included)."""
    def cost(depth: int) -> float:
        body = archive(20, nested(depth, "")).encode()
        started = time.perf_counter()
        assert len(page_links("table.archive a", "http://h/", body)) == 20
        return time.perf_counter() - started

    for shallow, deep in ((150, 1_500), (3_000, 30_000)):   # lxml, then bs4 past lxml's limit
        cost(shallow)                                        # warm up
        small, big = cost(shallow), cost(deep)
        assert big < 30 * small + 0.5 and big < 5, (shallow, deep)


# -- case 3: an entity-expansion bomb in a feed ------------------------------------------------------

def laughs_feed(entries: list[tuple[str, str]]) -> str:
    """An RSS feed whose DOCTYPE declares a billion laughs, expanded in the first entry."""
    declarations = ['<!ENTITY lol0 "lol">'] + [
        f'<!ENTITY lol{n} "{f"&lol{n - 1};" * 10}">' for n in range(1, 10)]
    items = "".join(f"<item><guid>{guid}</guid><title>{guid}</title><description>{text}</description></item>"
                    for guid, text in entries)
    return (f"<?xml version='1.0'?>\n<!DOCTYPE rss [\n {' '.join(declarations)}\n"
            f" <!-- a ]> in a comment --> <!ENTITY quoted ']>'> ]>\n"
            f"<rss version='2.0'><channel><title>t</title>{items}</channel></rss>")


async def test_billion_laughs_loses_no_entry(site: HostileSite, parser: PageParser,
                                             rng: random.Random, caplog: pytest.LogCaptureFixture) -> None:
    nirs = [random_nir(rng, strict=True) for _ in range(2)]
    site.pages["/feed"] = (laughs_feed([("e1", "&lol9;"), ("e2", f"NIR {nirs[0]}"), ("e3", f"NIR {nirs[1]}")]).encode(),
                           "application/rss+xml")
    config = source_config("laughs", "feed", url=site.url("/feed"))
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    async with Fetcher.for_source(config) as client:
        for ctx in (PollContext(client, SeenStore()), PollContext(client, SeenStore(), parser=parser)):
            started = time.monotonic()
            items = await poll_all(build_source(config), ctx)
            assert time.monotonic() - started < 5
            assert [i.item_id for i in items] == ["e3", "e2", "e1"] and ctx.links == 3 and ctx.warnings == []
            assert nirs[0] in items[1].content.decode() and nirs[1] in items[0].content.decode()
            assert b"lollol" not in items[0].content
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss_before < 50 * 1024   # KiB
    assert not any(nir in caplog.text for nir in nirs)


def test_doctype_is_cut_from_the_prolog_only() -> None:
    feed = laughs_feed([("e1", "x")]).encode()
    stripped = without_doctype(feed)
    assert b"<!DOCTYPE" not in stripped and stripped.startswith(b"<?xml") and b"<rss" in stripped
    cdata = b"<rss><channel><item><description><![CDATA[<!DOCTYPE html><p>x</p>]]></description></item></channel></rss>"
    assert without_doctype(cdata) == cdata                   # a DOCTYPE in content stays
    external = b'<!DOCTYPE rss PUBLIC "-//Netscape//DTD RSS 0.91//EN" "http://x/rss.dtd"><rss/>'
    assert without_doctype(external) == b"<rss/>"
    utf16 = laughs_feed([("e1", "&lol9;"), ("e2", "two")]).encode("utf-16")
    assert [e.entry_id for e in parse_feed("http://h/", utf16).entries] == ["e1", "e2"]


def test_a_feed_cut_at_libxml2s_depth_limit_says_so() -> None:
    deep = "<x>" * (LXML_MAX_DEPTH + 10) + "</x>" * (LXML_MAX_DEPTH + 10)
    feed = parse_feed("http://h/", f"<rss><channel><item><guid>1</guid></item>{deep}"
                                   f"<item><guid>2</guid></item></channel></rss>".encode())
    assert [e.entry_id for e in feed.entries] == ["1"]
    assert feed.cut and "not read" in feed.cut


# -- case 4: honest health ---------------------------------------------------------------------------

LOGIN_PAGE = ("<html><head><title>Connexion</title></head><body><a href='/register'>register</a>"
              "<form action='/ucp.php?mode=login' method='post'><input name='username'>"
              "<input type='password' name='password'></form></body></html>")
CHALLENGE_PAGE = ("<html><head><title>Just a moment...</title></head><body><div id='cf-chl-widget'></div>"
                  "<noscript>Checking your browser before accessing</noscript></body></html>")


async def poll_with(source: Source, previous: int | None = None,
                    parser: PageParser | None = None) -> tuple[PollContext, list[object]]:
    async with Fetcher.for_source(source.config) as client:
        ctx = PollContext(client, SeenStore(), previous_links=previous, parser=parser)
        return ctx, await poll_all(source, ctx)


async def test_a_login_wall_is_a_warning(site: HostileSite, parser: PageParser) -> None:
    site.html("/archive", LOGIN_PAGE)
    ctx, items = await poll_with(listing(site), previous=12, parser=parser)
    assert items == [] and ctx.links == 0
    [warning] = ctx.warnings
    assert warning == (f"item_links 'table.archive a' matched no link on {site.url('/archive')}: it looks like "
                       "a login page (a login title, a password field, a form posting to a login URL); "
                       "the last poll found 12")


async def test_a_challenge_page_is_a_warning(site: HostileSite) -> None:
    site.html("/archive", CHALLENGE_PAGE)
    ctx, _ = await poll_with(listing(site))
    [warning] = ctx.warnings
    assert "it looks like a challenge page (a challenge title, Cloudflare's challenge)" in warning


async def test_links_gone_since_the_last_poll(site: HostileSite) -> None:
    site.html("/archive", "<html><head><title>Archive</title></head><body><ul class='new-layout'>"
                          "<li><a href='/view/1'>1</a></li></ul></body></html>")
    ctx, _ = await poll_with(listing(site), previous=12)
    assert ctx.warnings == [f"item_links 'table.archive a' matched no link on {site.url('/archive')}; "
                            "the last poll found 12"]
    ctx, _ = await poll_with(listing(site), previous=None)
    assert ctx.links == 0 and ctx.warnings == [
        f"item_links 'table.archive a' matched no link on {site.url('/archive')} "
        "(an empty page, or a layout the selector misses?)"]


async def test_expect_matching_nothing_is_a_warning(site: HostileSite) -> None:
    site.html("/archive", archive(2))
    serve_pastes(site, 2)
    ctx, items = await poll_with(listing(site, expect="div.board"))
    assert len(items) == 2 and ctx.links == 2
    assert ctx.warnings == [f"expect 'div.board' matched nothing on {site.url('/archive')}"]
    for expect in ("table.archive", "tr:nth-child(2) a"):   # XPath, then soupsieve
        ctx, _ = await poll_with(listing(site, expect=expect))
        assert ctx.warnings == [], expect


async def test_a_login_titled_page_with_links_still_warns(site: HostileSite) -> None:
    site.html("/archive", archive(1).replace("<title>Archive</title>", "<title>Sign in</title>"))
    serve_pastes(site, 1)
    ctx, items = await poll_with(listing(site))
    assert len(items) == 1 and ctx.links == 1
    assert ctx.warnings == [f"{site.url('/archive')}: it looks like a login page (a login title), "
                            "though item_links 'table.archive a' matched 1 link"]


async def test_a_healthy_page_with_a_login_box_does_not_warn(site: HostileSite) -> None:
    site.html("/archive", archive(1, (LOGIN_PAGE.split("<body>")[1].split("</body>")[0], "")))
    serve_pastes(site, 1)
    ctx, items = await poll_with(listing(site))
    assert len(items) == 1 and ctx.warnings == []


async def test_not_a_page_still_fails_the_poll(site: HostileSite) -> None:
    site.pages["/archive"] = (b"\x00\x01binary" * 100, "application/octet-stream")
    with pytest.raises(SourceError, match="is not an HTML page"):
        await poll_with(listing(site))


async def test_links_counted_only_when_the_page_was_read(paste_site: PasteSite) -> None:
    paste_site.add_paste("a", "x")
    source, store = listing(paste_site), SeenStore()
    async with Fetcher.for_source(source.config) as client:
        ctx = PollContext(client, store)
        await poll_all(source, ctx, store)
        assert ctx.links == 1
        again = PollContext(client, store, validators=ctx.validators, previous_links=1)
        assert await poll_all(source, again, store) == []
        assert again.links is None and again.warnings == []       # 304


async def test_failed_items_are_reported_skipped(paste_site: PasteSite) -> None:
    for paste_id in ("a", "b"):
        paste_site.add_paste(paste_id, paste_id)
    paste_site.failing.add("b")
    source = listing(paste_site)
    async with Fetcher.for_source(source.config) as client:
        ctx = PollContext(client, SeenStore())
        assert [i.item_id for i in await poll_all(source, ctx)] == ["a"]
    [(url, reason)] = ctx.skipped
    assert url == paste_site.url("/raw/b") and "500" in reason and ctx.warnings == []
    content = listing(paste_site, item_url=None, content="div.missing")
    paste_site.failing.clear()
    async with Fetcher.for_source(content.config) as client:
        ctx = PollContext(client, SeenStore())
        assert await poll_all(content, ctx) == []
    assert sorted(ctx.skipped) == [(paste_site.url(f"/view/{p}"), "content 'div.missing' matched nothing")
                                   for p in ("a", "b")]


async def test_a_thread_page_over_the_budget_costs_that_thread(site: HostileSite) -> None:
    """bs4 reads thread pages (linear, even on the attribute bomb): a big page is what takes it
    longer than a short budget."""
    site.html("/board", "<a class='thread' href='/t/big'>big</a><a class='thread' href='/t/ok'>ok</a>")
    site.html("/t/big", "<div class='post'>post</div>" * 100_000)
    site.html("/t/ok", "<div class='post' id='p1'>fine</div>")
    config = source_config("forum", "forum", url=site.url("/board"), thread_links="a.thread", post="div.post")
    parser = PageParser(budget=0.5)
    try:
        await parser.run(partial(parse_index, "a", None, "http://h/"), b"")    # started, modules imported
        ctx, items = await poll_with(build_source(config), parser=parser)
    finally:
        await parser.close()
    assert [i.item_id for i in items] == ["ok#p1"] and ctx.links == 2
    assert ctx.skipped == [(site.url("/t/big"), "page parse exceeded 0.5 s")]
    assert ctx.validators == {}                               # the board is read again next poll


async def test_a_forum_login_wall_is_a_warning(site: HostileSite) -> None:
    site.html("/board", LOGIN_PAGE)
    config = source_config("forum", "forum", url=site.url("/board"), thread_links="a.thread", post="div.post")
    ctx, items = await poll_with(build_source(config), previous=3)
    assert items == [] and ctx.links == 0
    assert ctx.warnings[0].startswith(f"thread_links 'a.thread' matched no link on {site.url('/board')}: "
                                      "it looks like a login page")


async def test_a_feed_answering_a_login_page_fails_with_the_reason(site: HostileSite) -> None:
    site.html("/feed", LOGIN_PAGE)
    config = source_config("rss", "feed", url=site.url("/feed"))
    with pytest.raises(SourceError, match=r"not an RSS or Atom feed: it looks like a login page \(a login title"):
        await poll_with(build_source(config))


async def test_a_feed_that_lost_its_entries_or_expect_warns(site: HostileSite) -> None:
    site.pages["/feed"] = (b"<rss><channel><title>t</title></channel></rss>", "application/rss+xml")
    config = source_config("rss", "feed", url=site.url("/feed"), expect="channel > item")
    ctx, _ = await poll_with(build_source(config), previous=4)
    assert ctx.links == 0 and ctx.warnings == [
        f"{site.url('/feed')} has no entry; the last poll found 4",
        f"expect 'channel > item' matched nothing on {site.url('/feed')}"]
    ctx, _ = await poll_with(build_source(config), previous=None)
    assert ctx.warnings == [f"expect 'channel > item' matched nothing on {site.url('/feed')}"]


async def test_an_api_answering_a_login_page_fails_with_the_reason(site: HostileSite) -> None:
    site.html("/api", CHALLENGE_PAGE)
    config = source_config("api", "json", url=site.url("/api"), id_field="id", url_field="url")
    with pytest.raises(SourceError, match=r"answered an HTML page, not JSON: it looks like a challenge page"):
        await poll_with(build_source(config))
    site.pages["/api"] = (b"[]", "application/json")
    ctx, _ = await poll_with(build_source(config), previous=5)
    assert ctx.links == 0 and ctx.warnings == [f"{site.url('/api')} listed no record; the last poll found 5"]


def test_wall_reason_markers() -> None:
    def reason(markup: str, found_links: bool = False) -> str | None:
        body = markup.encode()
        return wall_reason(html_root(body), body, found_links)

    assert reason("<title>DDoS-Guard</title>") == "it looks like a challenge page (a challenge title, DDoS-Guard)"
    assert reason("<div class='g-recaptcha'></div>") == "it looks like a challenge page (a captcha)"
    assert reason("<form action='/signin'><input type=PASSWORD></form>") == (
        "it looks like a login page (a password field, a form posting to a login URL)")
    assert reason("<title>Se connecter</title>", found_links=True) == "it looks like a login page (a login title)"
    assert reason("<input type=password><img src=captcha.png>", found_links=True) is None
    assert reason("<title>Logins leaked 2024</title><p>plain page</p>") is None


# -- property tests: the parsers never raise on generated markup -------------------------------------

FRAGMENTS = st.sampled_from([
    "<a href='/v/1'>", "<a href='http://o.org/x#f'>", "<a>", "</a>", "<div class='post' id='p'>", "</div>",
    "<table class='archive'>", "<td>", "<p>", "<title>", "</title>", "<input type=password>", "<form action=login>",
    "<a class='next' href='?page=2'>", "<!-- c -->", "<![CDATA[x]]>", "<?pi x?>", "&amp;", "&#0;", "&#x110000;",
    "&lol;", "<!DOCTYPE html>", "<!DOCTYPE rss [<!ENTITY lol 'x'>]>", "<rss>", "<channel>", "<item>", "</item>",
    "<entry>", "<guid>", "</guid>", "<link>http://h/x</link>", "<description>", "</description>",
    "<feed xmlns='http://www.w3.org/2005/Atom'>", "<script>", "</script>", "\x00", "\xe9", "\ufeff", "<", ">", "'", '"',
])
MARKUP = st.lists(st.one_of(FRAGMENTS, st.text(max_size=12)), max_size=40).map("".join)


@st.composite
def bodies(draw: st.DrawFn) -> bytes:
    """Generated markup, sometimes nested past lxml's depth limit, in a few encodings, or bytes."""
    if draw(st.integers(0, 9)) == 0:
        return draw(st.binary(max_size=200))
    markup = draw(MARKUP)
    depth = draw(st.sampled_from([0, 0, 0, 5, LXML_MAX_DEPTH + 1]))
    markup = "<div>" * depth + markup + draw(MARKUP)
    return markup.encode(draw(st.sampled_from(["utf-8", "utf-16", "cp1252"])), errors="replace")


SELECTORS = st.sampled_from(["table.archive a", "a", "div.post a, a.next", "td > a", "a:not(.x)", "[href]"])


@PROPERTIES
@given(body=bodies(), selector=SELECTORS)
def test_page_links_never_raise(body: bytes, selector: str) -> None:
    links = page_links(selector, "http://h/b/", body)
    assert all(url.startswith(("http://", "https://")) and isinstance(text, str) for url, text in links)
    index = parse_index(selector, "div.post", "http://h/b/", body)
    assert index.links == links


@PROPERTIES
@given(body=bodies(), next_page=st.sampled_from([None, "a.next", "div.post"]))
def test_parse_thread_page_never_raises(body: bytes, next_page: str | None) -> None:
    page = parse_thread_page("div.post", next_page, "http://h/t/1", body)
    assert page.next_url is None or page.next_url.startswith("http")


@PROPERTIES
@given(body=bodies())
def test_parse_feed_raises_nothing_but_source_error(body: bytes) -> None:
    try:
        feed = parse_feed("http://h/feed", body, expect="item")
    except SourceError as exc:
        assert "not an RSS or Atom feed" in str(exc)
    else:
        assert all(entry.entry_id for entry in feed.entries)


async def test_a_second_child_starts_only_for_a_slow_parse(parser: PageParser) -> None:
    """One child serves a burst of small pages in turn; a second starts when a parse has run
    `spare_after` on the first."""
    fn = partial(parse_index, "a", None, "http://h/")
    results = await asyncio.gather(*(parser.run(fn, b"<a href='/x'>x</a>") for _ in range(50)))
    assert all(r.links == [("http://h/x", "x")] for r in results) and len(parser.pids) == 1
    slow_started = time.monotonic()
    slow = asyncio.ensure_future(parser.run(fn, attribute_bomb(300_000).encode()))
    await asyncio.sleep(0.05)
    await parser.run(fn, b"<a href='/y'>y</a>")
    assert SPARE <= time.monotonic() - slow_started < BUDGET and len(parser.pids) == 2
    with pytest.raises(SourceError):
        await slow


async def test_parses_waiting_for_a_dropped_child_get_a_new_one() -> None:
    parser = PageParser(budget=1.0, max_children=1)
    fn = partial(parse_index, "a", None, "http://h/")
    try:
        slow = asyncio.ensure_future(parser.run(fn, attribute_bomb(300_000).encode()))
        await asyncio.sleep(0.1)
        waiting = [asyncio.ensure_future(parser.run(fn, f"<a href='/{n}'>{n}</a>".encode())) for n in range(3)]
        await asyncio.sleep(0.1)
        waiting[0].cancel()                                  # a poll cancelled while it waits
        with pytest.raises(SourceError, match="exceeded 1 s"):
            await slow
        assert [(await w).links for w in waiting[1:]] == [[("http://h/1", "1")], [("http://h/2", "2")]]
        assert waiting[0].cancelled() and len(parser.pids) == 1
    finally:
        await parser.close()
