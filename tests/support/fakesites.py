"""Fake sites for tests, as aiohttp.web apps served on 127.0.0.1 (random ports).

    async with serve(PasteSite()) as site:
        site.url("/archive")           # http://127.0.0.1:PORT/archive
        site.add_paste("abc", "text")  # shows up in the archive at the next request
        site.paths()                   # request log: ["/archive", "/raw/abc", ...]

- PasteSite: an archive listing, raw and HTML paste pages, a 304 on If-None-Match, a 429/503
  with Retry-After, failing (500) and slow pastes, redirect chains and a redirect to another
  host, a gzip bomb, a lying Content-Length, a 1-byte drip, cookie setter and header echo.
- ForumSite: a board and threads with several pages (a.next), posts in div.post, behind a
  login cookie.
- FeedSite: RSS 2.0 and Atom feeds whose entries link to pages.
- ApiSite: a GitHub-gists-like JSON list (files.*.raw_url) and a Pastebin-scraping-like one.

Links inside pages are relative, and absolute URLs are built from the request's Host header,
so the same site works when reached as `http://examplepaste.onion/` through a SOCKS proxy.
"""

from __future__ import annotations

import asyncio
import hashlib
import html
import json
import time
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import TypeVar

from aiohttp import web
from aiohttp.test_utils import TestServer

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
S = TypeVar("S", bound="FakeSite")


@dataclass(frozen=True)
class Request:
    """One request as the fake site saw it."""

    method: str
    path: str        # path and query
    host: str
    headers: dict[str, str]


class FakeSite:
    """Base of the fake sites: an app with a request log."""

    def __init__(self) -> None:
        self.requests: list[Request] = []
        self.base_url = ""
        self.app = web.Application(middlewares=[self._log_request])
        self.routes(self.app.router)

    def routes(self, router: web.UrlDispatcher) -> None:
        """Add the site's routes (subclasses)."""

    @web.middleware
    async def _log_request(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        self.requests.append(Request(request.method, request.path_qs, request.host, dict(request.headers)))
        return await handler(request)

    def url(self, path: str) -> str:
        """Absolute loopback URL of `path`."""
        return self.base_url + path

    def paths(self) -> list[str]:
        """Paths (with query) requested so far, in order."""
        return [r.path for r in self.requests]

    def clear_log(self) -> None:
        """Forget the requests seen so far."""
        self.requests.clear()


@asynccontextmanager
async def serve(site: S) -> AsyncIterator[S]:
    """Serve `site` on 127.0.0.1 on a free port for the duration of the block."""
    server = TestServer(site.app, host="127.0.0.1")
    await server.start_server()
    site.base_url = str(server.make_url("")).rstrip("/")
    try:
        yield site
    finally:
        await server.close()


def _etag(text: str) -> str:
    return '"' + hashlib.sha256(text.encode()).hexdigest()[:16] + '"'


def _html_page(title: str, body: str) -> str:
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            f"</head><body><nav><a href='/'>home</a></nav>{body}</body></html>")


def conditional(request: web.Request, text: str, content_type: str) -> web.Response:
    """200 with an ETag, or 304 when If-None-Match matches."""
    etag = _etag(text)
    if request.headers.get("If-None-Match") == etag:
        return web.Response(status=304, headers={"ETag": etag})
    return web.Response(text=text, content_type=content_type, headers={"ETag": etag})


def gzip_bomb_blocks() -> tuple[bytes, bytes]:
    """(first, repeat): gzip header + 1 MiB of zeros, then a block inflating to 1 MiB more.

    A full flush resets the compressor, so every following block is byte-identical: repeating
    it makes a valid stream of any inflated size at no CPU cost (about 1 KB per MiB).
    """
    compressor = zlib.compressobj(9, zlib.DEFLATED, 31)
    zeros = bytes(1 << 20)
    first = compressor.compress(zeros) + compressor.flush(zlib.Z_FULL_FLUSH)
    repeat = compressor.compress(zeros) + compressor.flush(zlib.Z_FULL_FLUSH)
    return first, repeat


@dataclass
class Paste:
    """A paste of the fake paste site."""

    title: str
    text: str


class PasteSite(FakeSite):
    """A paste site: /archive lists /view/<id>; /raw/<id> is the raw text."""

    def __init__(self) -> None:
        self.pastes: dict[str, Paste] = {}
        self.failing: set[str] = set()        # paste ids answering 500
        self.slow: dict[str, float] = {}      # paste id -> delay in seconds
        self.redirect_to = "http://clearnet.example/landing"
        self.bomb_inflated_mib = 65536        # 64 GiB of zeros, ~64 MB on the wire
        self.bomb_sent = 0
        self.big_sent = 0
        super().__init__()

    def add_paste(self, paste_id: str, text: str, title: str | None = None) -> None:
        """Publish a paste (it appears first in the archive)."""
        others = {pid: p for pid, p in self.pastes.items() if pid != paste_id}
        self.pastes = {paste_id: Paste(title or f"Paste {paste_id}", text), **others}

    def routes(self, router: web.UrlDispatcher) -> None:
        router.add_get("/archive", self.archive)
        router.add_get("/view/{id}", self.view)
        router.add_get("/raw/{id}", self.raw)
        router.add_get("/ratelimited", self.ratelimited)
        router.add_get("/unavailable", self.unavailable)
        router.add_get("/api-limit", self.api_limit)
        router.add_get("/forbidden", self.forbidden)
        router.add_get("/redirect/{n}", self.redirect_chain)
        router.add_get("/away", self.away)
        router.add_get("/ftp", self.ftp)
        router.add_get("/bomb", self.bomb)
        router.add_get("/big", self.big)
        router.add_get("/drip", self.drip)
        router.add_get("/setcookie", self.setcookie)
        router.add_get("/echo", self.echo)

    async def archive(self, request: web.Request) -> web.Response:
        rows = "".join(f"<tr><td><a href='/view/{pid}'>{html.escape(p.title)}</a></td><td>text</td></tr>"
                       for pid, p in self.pastes.items())
        page = _html_page("Archive", f"<a href='/about'>about</a><table class='archive'>{rows}</table>")
        return conditional(request, page, "text/html")

    async def _paste(self, request: web.Request) -> Paste:
        paste_id = request.match_info["id"]
        if paste_id not in self.pastes:
            raise web.HTTPNotFound()
        if paste_id in self.failing:
            raise web.HTTPInternalServerError()
        if paste_id in self.slow:
            await asyncio.sleep(self.slow[paste_id])
        return self.pastes[paste_id]

    async def view(self, request: web.Request) -> web.Response:
        paste = await self._paste(request)
        body = f"<h1>{html.escape(paste.title)}</h1><pre>{html.escape(paste.text)}</pre><footer>ads</footer>"
        return web.Response(text=_html_page(paste.title, body), content_type="text/html")

    async def raw(self, request: web.Request) -> web.Response:
        paste = await self._paste(request)
        return web.Response(text=paste.text, content_type="text/plain")

    async def ratelimited(self, request: web.Request) -> web.Response:
        return web.Response(status=429, text="slow down", headers={"Retry-After": "7"})

    async def api_limit(self, request: web.Request) -> web.Response:
        """GitHub's primary rate limit: 403, no requests left, the reset time in epoch seconds."""
        reset = str(int(time.time()) + 90)
        return web.Response(status=403, text='{"message": "API rate limit exceeded"}',
                            headers={"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": reset})

    async def forbidden(self, request: web.Request) -> web.Response:
        return web.Response(status=403, text="no", headers={"X-RateLimit-Remaining": "42"})

    async def unavailable(self, request: web.Request) -> web.Response:
        return web.Response(status=503, text="later", headers={"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"})

    async def redirect_chain(self, request: web.Request) -> web.Response:
        hops = int(request.match_info["n"])
        if hops == 0:
            return web.Response(text="arrived")
        raise web.HTTPFound(f"/redirect/{hops - 1}")

    async def away(self, request: web.Request) -> web.Response:
        raise web.HTTPFound(self.redirect_to)

    async def ftp(self, request: web.Request) -> web.Response:
        raise web.HTTPFound("ftp://files.example/dump.csv")

    async def bomb(self, request: web.Request) -> web.StreamResponse:
        """A gzip body inflating to `bomb_inflated_mib` MiB; counts compressed bytes sent."""
        first, repeat = gzip_bomb_blocks()
        response = web.StreamResponse(headers={"Content-Encoding": "gzip", "Content-Type": "text/plain"})
        await response.prepare(request)
        self.bomb_sent = 0
        try:
            await response.write(first)
            self.bomb_sent += len(first)
            for _ in range(self.bomb_inflated_mib - 1):
                await response.write(repeat)
                self.bomb_sent += len(repeat)
        except ConnectionError:
            pass
        return response

    async def big(self, request: web.Request) -> web.StreamResponse:
        """Declares 100 MiB, sends 2 MiB, then stalls."""
        response = web.StreamResponse(headers={"Content-Type": "text/plain"})
        response.content_length = 100 << 20
        await response.prepare(request)
        try:
            for _ in range(32):
                await response.write(b"A" * 65536)
                self.big_sent += 65536
            await asyncio.sleep(30)
        except ConnectionError:
            pass
        return response

    async def drip(self, request: web.Request) -> web.StreamResponse:
        """One byte every 50 ms: a sock_read timeout never fires, only the total one."""
        response = web.StreamResponse(headers={"Content-Type": "text/plain"})
        await response.prepare(request)
        try:
            for _ in range(2000):
                await response.write(b"x")
                await asyncio.sleep(0.05)
        except ConnectionError:
            pass
        return response

    async def setcookie(self, request: web.Request) -> web.Response:
        response = web.Response(text="hello")
        response.set_cookie("tracker", "you-were-here")
        return response

    async def echo(self, request: web.Request) -> web.Response:
        return web.json_response(dict(request.headers))


@dataclass
class Thread:
    """A forum thread: title and posts as (id attribute or None, text)."""

    title: str
    posts: list[tuple[str | None, str]] = field(default_factory=list)


class ForumSite(FakeSite):
    """A forum behind a login cookie: /f/databases lists /t/<id>; threads paginate by 2 posts."""

    cookie_name = "session"
    cookie_value = "letmein"
    per_page = 2

    def __init__(self) -> None:
        self.threads: dict[str, Thread] = {}
        super().__init__()

    @property
    def cookie(self) -> str:
        """The Cookie header value a logged-in client sends."""
        return f"{self.cookie_name}={self.cookie_value}"

    def add_thread(self, thread_id: str, title: str, posts: list[tuple[str | None, str]]) -> None:
        """A new or replaced thread (it appears first on the board, as a bumped thread does)."""
        others = {tid: t for tid, t in self.threads.items() if tid != thread_id}
        self.threads = {thread_id: Thread(title, list(posts)), **others}

    def routes(self, router: web.UrlDispatcher) -> None:
        router.add_get("/f/databases", self.board)
        router.add_get("/t/{id}", self.thread)

    def _check_login(self, request: web.Request) -> None:
        if request.cookies.get(self.cookie_name) != self.cookie_value:
            raise web.HTTPForbidden(text="login required")

    async def board(self, request: web.Request) -> web.Response:
        self._check_login(request)
        rows = "".join(f"<li><a class='thread' href='/t/{tid}'>{html.escape(t.title)}</a> "
                       f"<a class='user' href='/u/x'>x</a></li>" for tid, t in self.threads.items())
        return conditional(request, _html_page("Databases", f"<ul>{rows}</ul>"), "text/html")

    async def thread(self, request: web.Request) -> web.Response:
        self._check_login(request)
        thread = self.threads.get(request.match_info["id"])
        if thread is None:
            raise web.HTTPNotFound()
        page = int(request.query.get("page", "1"))
        start = (page - 1) * self.per_page
        posts = "".join(
            (f"<div class='post' id='{pid}'>" if pid else "<div class='post'>")
            + f"<span class='author'>anon</span><p>{html.escape(text)}</p></div>"
            for pid, text in thread.posts[start:start + self.per_page])
        more = start + self.per_page < len(thread.posts)
        nav = f"<a class='next' href='?page={page + 1}'>next</a>" if more else ""
        return web.Response(text=_html_page(thread.title, posts + nav), content_type="text/html")


@dataclass
class FeedEntry:
    """An entry of the fake feeds; its page is /page/<id>."""

    entry_id: str
    title: str
    summary: str
    page: str


class FeedSite(FakeSite):
    """/rss.xml (RSS 2.0) and /atom.xml over the same entries; /page/<id> are their pages."""

    def __init__(self) -> None:
        self.entries: list[FeedEntry] = []
        self.failing_pages: set[str] = set()
        super().__init__()

    def add_entry(self, entry_id: str, title: str, summary: str, page: str = "") -> None:
        """A new entry (first in the feeds)."""
        self.entries.insert(0, FeedEntry(entry_id, title, summary, page or f"page of {entry_id}"))

    def routes(self, router: web.UrlDispatcher) -> None:
        router.add_get("/rss.xml", self.rss)
        router.add_get("/atom.xml", self.atom)
        router.add_get("/page/{id}", self.page)

    async def rss(self, request: web.Request) -> web.Response:
        base = f"http://{request.host}"
        items = "".join(
            f"<item><title>{html.escape(e.title)}</title><link>{base}/page/{e.entry_id}</link>"
            f"<guid isPermaLink='false'>urn:entry:{e.entry_id}</guid>"
            f"<description>{html.escape('<p>' + html.escape(e.summary) + '</p>')}</description></item>"
            for e in self.entries)
        xml = ("<?xml version='1.0' encoding='utf-8'?><rss version='2.0'><channel><title>Leaks</title>"
               f"<link>{base}/</link><description>x</description>{items}</channel></rss>")
        return conditional(request, xml, "application/rss+xml")

    async def atom(self, request: web.Request) -> web.Response:
        entries = "".join(
            f"<entry><id>tag:example,2024:{e.entry_id}</id><title>{html.escape(e.title)}</title>"
            f"<link rel='alternate' href='/page/{e.entry_id}'/><updated>2024-01-01T00:00:00Z</updated>"
            f"<content type='html'>{html.escape('<b>' + html.escape(e.summary) + '</b>')}</content></entry>"
            for e in self.entries)
        xml = ("<?xml version='1.0' encoding='utf-8'?><feed xmlns='http://www.w3.org/2005/Atom'>"
               f"<title>Leaks</title><id>tag:example,2024:feed</id><updated>2024-01-01T00:00:00Z</updated>"
               f"{entries}</feed>")
        return web.Response(text=xml, content_type="application/atom+xml")

    async def page(self, request: web.Request) -> web.Response:
        entry_id = request.match_info["id"]
        entry = next((e for e in self.entries if e.entry_id == entry_id), None)
        if entry is None:
            raise web.HTTPNotFound()
        if entry_id in self.failing_pages:
            raise web.HTTPBadGateway()
        return web.Response(text=entry.page, content_type="text/plain")


class ApiSite(FakeSite):
    """/gists/public (GitHub-like: files.*.raw_url) and /api_scraping.php (Pastebin-like)."""

    def __init__(self) -> None:
        self.gists: list[dict[str, object]] = []      # {"id", "description", "files": {name: text}}
        self.files: dict[str, str] = {}               # "gist_id/name" -> text
        super().__init__()

    def add_gist(self, gist_id: str, description: str, files: dict[str, str]) -> None:
        """A new public gist (first in the list)."""
        self.gists.insert(0, {"id": gist_id, "description": description, "files": list(files)})
        for name, text in files.items():
            self.files[f"{gist_id}/{name}"] = text

    def routes(self, router: web.UrlDispatcher) -> None:
        router.add_get("/gists/public", self.public_gists)
        router.add_get("/raw/{gist}/{name}", self.raw)
        router.add_get("/api_scraping.php", self.scraping)
        router.add_get("/api_scrape_item.php", self.scrape_item)

    async def public_gists(self, request: web.Request) -> web.Response:
        base = f"http://{request.host}"
        listing = [{"id": g["id"], "description": g["description"], "public": True,
                    "files": {name: {"filename": name, "type": "text/plain",
                                     "raw_url": f"{base}/raw/{g['id']}/{name}"}
                              for name in g["files"]}}  # type: ignore[attr-defined]
                   for g in self.gists]
        return conditional(request, json.dumps(listing), "application/json")

    async def raw(self, request: web.Request) -> web.Response:
        key = f"{request.match_info['gist']}/{request.match_info['name']}"
        if key not in self.files:
            raise web.HTTPNotFound()
        return web.Response(text=self.files[key], content_type="text/plain")

    async def scraping(self, request: web.Request) -> web.Response:
        base = f"http://{request.host}"
        listing = [{"key": g["id"], "title": g["description"],
                    "scrape_url": f"{base}/api_scrape_item.php?i={g['id']}"} for g in self.gists]
        return web.json_response(listing)

    async def scrape_item(self, request: web.Request) -> web.Response:
        gist = next((g for g in self.gists if g["id"] == request.query.get("i")), None)
        if gist is None:
            raise web.HTTPNotFound()
        name = gist["files"][0]  # type: ignore[index]
        return web.Response(text=self.files[f"{gist['id']}/{name}"], content_type="text/plain")
