"""The telegram source kind against a loopback replica of t.me/s (tests/support/telegram_site.py):
the page parser on the replica's markup, polls over HTTP (first poll `depth` pages deep, then
only new messages, edits as new versions), a channel without preview, Tor, hostile pages."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import AsyncIterator

import pytest

from watcher.config import SourceConfig
from watcher.fetch import Fetcher
from watcher.sources import PollContext, SourceError
from watcher.sources.markup import LXML_MAX_DEPTH
from watcher.sources.pages import PageParser
from watcher.sources.telegram import TelegramOptions, TelegramSource, message_title, with_before
from watcher.sources.telegram_page import MAX_MESSAGES, LinkedFile, parse_channel_page

from tests.support.sources import SeenStore, fetcher, poll_all, tor_settings
from tests.support.fakesites import serve
from tests.support.socksproxy import SocksProxy
from tests.support.telegram_site import START, TelegramSite


@pytest.fixture
async def site() -> AsyncIterator[TelegramSite]:
    async with serve(TelegramSite()) as served:
        yield served


def telegram(url: str, channel: str = "chan", **options: object) -> TelegramSource:
    """A telegram source on `url`, built as the brief's configuration does."""
    config = SourceConfig(name="tg", kind="telegram", url=url, allow_private=True)
    return TelegramSource(dataclasses.replace(config, options=TelegramOptions(channel=channel, **options)))


def fill(site: TelegramSite, count: int, channel: str = "chan") -> list[int]:
    """`count` messages in `channel`; their ids."""
    return [site.post(channel, f"message number {n}\nsecond line {n}") for n in range(count)]


def ids(items: list[object]) -> list[str]:
    return [item.item_id for item in items]  # type: ignore[attr-defined]


# -- the page parser -------------------------------------------------------------------------------

async def test_parse_reads_posts_dates_text_files_and_the_older_page(site: TelegramSite) -> None:
    site.post("chan", "hello", photo=True)
    dump = site.post("chan", "full base here\nhttps://files.example/exports/patients%202026.csv\n"
                             "mirror https://mega.nz/file/AbCdEf#key and https://example.org/about",
                     files=[("mutuelle-export.zip", "12.4 MB"), ("readme.txt", "1.1 KB")])
    site.post("chan", "", photo=True)                                        # a photo alone
    reply = site.post("chan", "price on request", reply_to=dump)
    fill(site, 20)
    async with fetcher() as client:
        newest = await client.get(site.url("/s/chan"))
        older = await client.get(site.url(f"/s/chan?before={newest_first(newest.body)}"))
    page = parse_channel_page(newest.body)
    assert [m.post_id for m in page.messages] == list(range(6, 26)) and page.preview
    assert page.before == 6 and page.wall is None and page.cut is None
    last = page.messages[-1]
    assert (last.post, last.link, last.channel) == ("chan/25", "https://t.me/chan/25", "chan")
    assert last.text == "message number 19\nsecond line 19"                 # <br> as a newline
    assert last.posted_at == (START.replace(minute=25)).isoformat() == "2026-03-02T08:25:00+00:00"

    page = parse_channel_page(older.body)
    assert [m.post_id for m in page.messages] == [1, 2, 3, 4, 5] and page.before is None
    created, hello, with_files, photo, answer = page.messages
    assert created.text == "Channel created" and hello.text == "hello" and hello.files == ()
    assert with_files.text.splitlines()[0] == "full base here" and len(with_files.text.splitlines()) == 3
    assert with_files.files == (
        LinkedFile("mutuelle-export.zip", size="12.4 MB"), LinkedFile("readme.txt", size="1.1 KB"),
        LinkedFile("patients 2026.csv", "https://files.example/exports/patients%202026.csv"),
        LinkedFile("AbCdEf", "https://mega.nz/file/AbCdEf"))
    assert photo.text == "" and photo.files == ()
    assert answer.post_id == reply and answer.text == "price on request"     # not the quoted reply
    for body in (newest.body, older.body):           # bs4 (content after </html>) reads the same
        assert parse_channel_page(body + b"<p>after the end</p>") == parse_channel_page(body)


def newest_first(body: bytes) -> int:
    before = parse_channel_page(body).before
    assert before is not None
    return before


def test_parse_album_caption_entities_and_no_preview_page() -> None:
    album = (b"<html><body><section class='tgme_channel_history'>"
             b"<div class='tgme_widget_message' data-post='chan/7'><div class='tgme_widget_message_text js-message_text'>"
             b"<div class='tgme_widget_message_text js-message_text'>Caption &amp; <b>bold</b><br/>"
             b"<i class='emoji'><b>\xf0\x9f\x94\xb9</b></i>&nbsp;next<!-- c --><script>x()</script></div></div>"
             b"<a class='tgme_widget_message_date'><time datetime='2026-01-01T00:00:00+00:00'>00:00</time></a>"
             b"</div><a class='tme_messages_more' data-after='9'></a><a class='tme_messages_more' data-before='x'></a>"
             b"</section></body></html>")
    page = parse_channel_page(album)
    assert [(m.post_id, m.text, m.posted_at) for m in page.messages] == [
        (7, "Caption & bold\n\U0001f539 next", "2026-01-01T00:00:00+00:00")]
    assert page.before is None                       # data-after, and a data-before that is no id
    contact = parse_channel_page(b"<html><head><title>Telegram: Contact @chan</title></head>"
                                 b"<body><div class='tgme_page'>x</div></body></html>")
    assert contact.messages == [] and not contact.preview and contact.before is None


# -- polls over HTTP -------------------------------------------------------------------------------

async def test_first_poll_reads_depth_pages_then_only_new_messages(site: TelegramSite) -> None:
    fill(site, 99)                                   # ids 2..100, 1 is "Channel created"
    source, store = telegram(site.url("/s/chan"), depth=2), SeenStore()
    async with fetcher() as client:
        ctx = PollContext(client, store)
        first = await poll_all(source, ctx, store)
        assert site.paths() == ["/s/chan", "/s/chan?before=81", "/s/chan?before=61"]
        assert ids(first) == [f"chan/{n}" for n in range(41, 101)]           # oldest first
        assert ctx.links == 20 and ctx.warnings == [] and ctx.skipped == []
        item = first[-1]
        assert item.url == "https://t.me/chan/100" and item.title == "message number 98"
        assert item.content_type == "text/plain; charset=utf-8" and item.version
        assert item.content.decode() == ("channel: chan\ndate: 2026-03-02T09:40:00+00:00\n"
                                         "link: https://t.me/chan/100\n\nmessage number 98\nsecond line 98\n")

        site.clear_log()                             # unchanged: one conditional GET, a 304
        assert await poll_all(source, ctx, store) == [] and site.paths() == ["/s/chan"]

        site.clear_log()
        new = [site.post("chan", f"new {n}") for n in range(3)]
        second = await poll_all(source, ctx, store)
        assert ids(second) == [f"chan/{n}" for n in new] and site.paths() == ["/s/chan"]

        site.clear_log()
        burst = fill(site, 30)                       # more than a page: one older page is read
        third = await poll_all(source, ctx, store)
        assert ids(third) == [f"chan/{n}" for n in burst]
        assert site.paths() == ["/s/chan", f"/s/chan?before={burst[-20]}"]


async def test_depth_zero_reads_the_newest_page_only(site: TelegramSite) -> None:
    fill(site, 40)
    async with fetcher() as client:
        items = await poll_all(telegram(site.url("/s/chan"), depth=0), PollContext(client, SeenStore()))
    assert len(items) == 20 and site.paths() == ["/s/chan"]


async def test_an_edited_message_is_a_new_version(site: TelegramSite) -> None:
    fill(site, 5)
    source, store = telegram(site.url("/s/chan")), SeenStore()
    async with fetcher() as client:
        ctx = PollContext(client, store)
        before = {i.item_id: i for i in await poll_all(source, ctx, store)}
        site.edit("chan", 4, "message number 2, now with a file https://files.example/x/base.sql")
        edited = await poll_all(source, ctx, store)
    assert ids(edited) == ["chan/4"] and edited[0].version != before["chan/4"].version
    assert b"files: base.sql (https://files.example/x/base.sql)" in edited[0].content


async def test_files_are_named_in_the_document_never_fetched(site: TelegramSite) -> None:
    post = site.post("chan", "", files=[("assures-2026.xlsx", "3.2 MB")])
    async with fetcher() as client:
        items = await poll_all(telegram(site.url("/s/chan")), PollContext(client, SeenStore()))
    item = next(i for i in items if i.item_id == f"chan/{post}")
    assert item.title == "assures-2026.xlsx"
    assert b"\nfiles: assures-2026.xlsx (3.2 MB)\n" in item.content
    assert site.paths() == ["/s/chan"]                               # nothing else was requested


async def test_a_channel_without_preview_fails_with_the_reason(site: TelegramSite) -> None:
    fill(site, 3, "hidden")
    site.private.add("hidden")
    async with fetcher() as client:
        ctx = PollContext(client, SeenStore())
        with pytest.raises(SourceError, match="redirected to .*/hidden: channel 'hidden' has no public preview"):
            await poll_all(telegram(site.url("/s/hidden"), "hidden"), ctx)


async def test_a_page_that_is_no_channel_preview_warns(site: TelegramSite) -> None:
    site.raw["login"] = ("<html><head><title>Log in</title></head><body><form action='/login'>"
                         "<input type='password'></form></body></html>")
    site.raw["other"] = "<html><body><p>nothing here</p></body></html>"
    async with fetcher() as client:
        for name, expected in (("login", "it looks like a login page"), ("other", "no message history")):
            ctx = PollContext(client, SeenStore())
            assert await poll_all(telegram(site.url(f"/raw/{name}")), ctx) == []
            assert len(ctx.warnings) == 1 and expected in ctx.warnings[0], ctx.warnings
        site.raw["empty"] = site.page("chan", [], older=False, newer=False)
        ctx = PollContext(client, SeenStore(), previous_links=20)
        assert await poll_all(telegram(site.url("/raw/empty")), ctx) == []
        assert ctx.warnings == [f"no message on {site.url('/raw/empty')}; the last poll found 20"]


async def test_an_older_page_that_fails_is_skipped_and_the_page_read_again(site: TelegramSite) -> None:
    fill(site, 30)
    site.failing_older.add("chan")
    source, store = telegram(site.url("/s/chan")), SeenStore()
    async with fetcher() as client:
        ctx = PollContext(client, store)
        items = await poll_all(source, ctx, store)
        assert len(items) == 20 and [url for url, _ in ctx.skipped] == [site.url("/s/chan?before=12")]
        assert ctx.validators == {}                   # the newest page is read in full next time
        site.failing_older.clear()
        site.clear_log()
        assert await poll_all(source, ctx, store) == []           # its messages were seen: no walk
        assert site.paths() == ["/s/chan"] and ctx.validators


async def test_through_socks_to_an_onion_mirror(site: TelegramSite) -> None:
    fill(site, 25)
    port = int(site.base_url.rsplit(":", 1)[1])
    async with SocksProxy(hosts={"tgmirror.onion": ("127.0.0.1", port)}) as proxy:
        config = SourceConfig(name="tg-onion", kind="telegram", url="http://tgmirror.onion/s/chan", tor=True)
        source = TelegramSource(dataclasses.replace(config, options=TelegramOptions(channel="chan", depth=1)))
        async with Fetcher.for_source(source.config, tor_settings(proxy)) as client:
            items = await poll_all(source, PollContext(client, SeenStore()))
    assert ids(items) == [f"chan/{n}" for n in range(1, 27)]
    assert site.paths() == ["/s/chan", "/s/chan?before=7"]
    assert {c.host for c in proxy.connections} == {"tgmirror.onion"}       # remote DNS, nothing else
    assert {r.host for r in site.requests} == {"tgmirror.onion"}


# -- hostile pages ---------------------------------------------------------------------------------

def messages_markup(count: int, start: int = 1) -> str:
    return "".join(f"<div class='tgme_widget_message' data-post='chan/{n}'><div class='tgme_widget_message_text'>"
                   f"m{n}</div><time datetime='2026-01-01T00:00:00+00:00'></time></div>"
                   for n in range(start, start + count))


@pytest.mark.parametrize("depth", [1_000, LXML_MAX_DEPTH + 3_000])
def test_messages_nested_deep_are_found(depth: int) -> None:
    body = ("<html><body>" + "<div>" * depth + messages_markup(3) + "</div>" * depth
            + messages_markup(2, start=4) + "<a class='tme_messages_more' data-before='1'></a></body></html>")
    started = time.monotonic()
    page = parse_channel_page(body.encode())
    assert [m.post_id for m in page.messages] == [1, 2, 3, 4, 5] and page.before == 1
    assert [m.text for m in page.messages] == ["m1", "m2", "m3", "m4", "m5"]
    assert time.monotonic() - started < 5


def test_a_page_of_too_many_messages_keeps_the_newest() -> None:
    page = parse_channel_page(f"<html><body>{messages_markup(MAX_MESSAGES + 100)}</body></html>".encode())
    assert len(page.messages) == MAX_MESSAGES and page.messages[-1].post_id == MAX_MESSAGES + 100
    assert page.cut == f"{MAX_MESSAGES + 100} messages on one page: only the newest {MAX_MESSAGES} were read"


async def test_a_hostile_page_costs_its_poll_only(site: TelegramSite) -> None:
    """An attribute bomb (lxml: quadratic) in the page parser: the budget ends the poll, the
    event loop keeps running; a huge page is capped and parsed within the budget."""
    bomb = "<div " + " ".join(f"a{n}='x'" for n in range(100_000)) + "></div>"
    site.raw["bomb"] = f"<html><body>{bomb}{messages_markup(3)}</body></html>"
    site.raw["huge"] = f"<html><body>{messages_markup(60_000)}</body></html>"      # ~8 MB
    parser = PageParser(budget=2.0)
    try:
        async with fetcher(max_bytes=64 << 20) as client:
            ctx = PollContext(client, SeenStore(), parser=parser)
            task = asyncio.ensure_future(poll_all(telegram(site.url("/raw/bomb")), ctx))
            ticks = 0
            while not task.done():
                await asyncio.sleep(0.01)
                ticks += 1
            with pytest.raises(SourceError, match="page parse exceeded 2 s"):
                await task
            assert ticks > 50                                   # the loop ran all along
            ctx = PollContext(client, SeenStore(), parser=parser)
            items = await poll_all(telegram(site.url("/raw/huge")), ctx)
        assert 0 < len(items) <= MAX_MESSAGES and any("only the newest" in w for w in ctx.warnings)
    finally:
        await parser.close()


def test_options_are_checked() -> None:
    assert TelegramOptions(channel="chan").page_url == "https://t.me/s/chan"
    assert TelegramOptions(channel="chan", url="http://m.onion/s/chan").page_url == "http://m.onion/s/chan"
    for bad in ("@chan", "https://t.me/chan", "", "a/b"):
        with pytest.raises(ValueError, match="channel must be a public channel username"):
            TelegramOptions(channel=bad)
    with pytest.raises(ValueError, match="depth must be 0 to 50"):
        TelegramOptions(channel="chan", depth=-1)
    assert with_before("https://t.me/s/chan?q=x&before=3#f", 9) == "https://t.me/s/chan?q=x&before=9"
    source = telegram("https://t.me/s/chan")
    assert source.page_url == "https://t.me/s/chan" and source.kind == "telegram"


def test_message_titles() -> None:
    from watcher.sources.telegram_page import Message
    long_line = "x" * 300
    assert message_title(Message("chan/1", 1, "", f"\n  {long_line}\nb")) == "x" * 99 + "…"
    assert message_title(Message("chan/2", 2, "", "", (LinkedFile("a.zip"),))) == "a.zip"
    assert message_title(Message("chan/3", 3, "", "")) == "chan/3"


# -- through the daemon, configured in TOML -------------------------------------------------------

async def test_a_telegram_source_in_sources_toml_raises_a_finding(site: TelegramSite, tmp_path) -> None:
    """`kind = "telegram"` in sources.toml, polled by the daemon: a message posting a sample of
    NIRs is a critical finding whose title is the message's first line, its URL the post."""
    import random

    from tests.support.nirs import random_nir
    from watcher.config import load_config
    from watcher.daemon import Daemon
    from watcher.store import StateDB

    rng = random.Random(12)
    fill(site, 3)
    sample = "\n".join(random_nir(rng, strict=True) for _ in range(12))
    post = site.post("chan", f"Base mutuelle 2026, extrait\n{sample}")
    config = tmp_path / "sources.toml"
    config.write_text(f'[watcher]\nstate_dir = "./state"\n\n[[sources]]\nname = "tg"\nkind = "telegram"\n'
                      f'channel = "chan"\nurl = "{site.url("/s/chan")}"\nallow_private = true\n', encoding="utf-8")
    daemon = Daemon(load_config(config), once=True, workers=1)
    assert await daemon.run() == 0
    with StateDB(tmp_path / "state" / "watcher.db") as state:
        findings = state.findings()
    assert [(f["severity"], f["title"], f["url"]) for f in findings] == [
        ("critical", "Base mutuelle 2026, extrait", f"https://t.me/chan/{post}")]
    assert findings[0]["posted_at"].startswith("20")                 # the message's own date
