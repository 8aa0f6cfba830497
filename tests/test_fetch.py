"""watcher.fetch against fake sites on 127.0.0.1, directly and through a real SOCKS5 proxy."""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from datetime import UTC, datetime

import pytest

from watcher.fetch import (TOR_BROWSER_UA, Fetcher, FetchError, RetryLater, parse_rate_limit_reset, parse_retry_after,
                           tor_preflight)

from tests.support.sources import fetcher, source_config, tor_settings
from tests.support.fakesites import ApiSite, PasteSite, serve
from tests.support.hostile import HostileSite
from tests.support.socksproxy import SocksProxy

MiB = 1 << 20


def closed_port() -> int:
    """A loopback port nobody listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# -- byte cap --------------------------------------------------------------------------------------

async def test_gzip_bomb_is_cut_at_max_bytes_and_stops_downloading(paste_site: PasteSite) -> None:
    started = time.monotonic()
    async with fetcher(max_bytes=MiB) as client:
        response = await client.get(paste_site.url("/bomb"))
    assert response.truncated
    assert len(response.body) == MiB and response.body == bytes(MiB)
    assert time.monotonic() - started < 5
    await asyncio.sleep(0.1)
    total_on_wire = 1037 * paste_site.bomb_inflated_mib   # ~64 MB
    assert paste_site.bomb_sent < total_on_wire // 4, "the client kept downloading the bomb"


async def test_declared_length_over_cap_reads_only_the_cap(paste_site: PasteSite) -> None:
    started = time.monotonic()
    async with fetcher(max_bytes=256 * 1024) as client:
        response = await client.get(paste_site.url("/big"))
    assert response.truncated and len(response.body) == 256 * 1024
    assert time.monotonic() - started < 5, "waited for the stalled rest of the body"


@pytest.mark.parametrize(("cap", "truncated"), [(1000, False), (999, True)])
async def test_body_exactly_at_cap_is_whole(paste_site: PasteSite, cap: int, truncated: bool) -> None:
    paste_site.add_paste("p", "x" * 1000)
    async with fetcher(max_bytes=cap) as client:
        response = await client.get(paste_site.url("/raw/p"))
    assert response.truncated is truncated
    assert response.body == b"x" * min(cap, 1000)


# -- redirects -------------------------------------------------------------------------------------

async def test_clearnet_follows_at_most_five_redirects(paste_site: PasteSite) -> None:
    async with fetcher() as client:
        response = await client.get(paste_site.url("/redirect/5"))
        assert response.body == b"arrived" and response.url.endswith("/redirect/0")
        with pytest.raises(FetchError, match="more than 5 redirects"):
            await client.get(paste_site.url("/redirect/6"))


async def test_clearnet_redirect_to_other_host_is_followed(paste_site: PasteSite, api_site: ApiSite) -> None:
    paste_site.redirect_to = api_site.url("/gists/public")
    async with fetcher() as client:
        response = await client.get(paste_site.url("/away"))
    assert response.status == 200 and response.url == api_site.url("/gists/public")


async def test_redirect_to_non_http_scheme_is_refused(paste_site: PasteSite) -> None:
    async with fetcher() as client:
        with pytest.raises(FetchError, match="only http"):
            await client.get(paste_site.url("/ftp"))


async def test_clearnet_fetcher_refuses_onion_urls(paste_site: PasteSite) -> None:
    paste_site.redirect_to = "http://examplepaste.onion/archive"
    async with fetcher() as client:
        with pytest.raises(FetchError, match="needs tor"):
            await client.get("http://examplepaste.onion/archive")
        with pytest.raises(FetchError, match="needs tor"):
            await client.get(paste_site.url("/away"))


# -- statuses, validators, cookies -------------------------------------------------------------------

async def test_429_retry_after_seconds_raises_retry_later(paste_site: PasteSite) -> None:
    async with fetcher() as client:
        with pytest.raises(RetryLater) as caught:
            await client.get(paste_site.url("/ratelimited"))
    assert caught.value.seconds == 7 and caught.value.status == 429


async def test_503_retry_after_http_date_in_the_past_means_now(paste_site: PasteSite) -> None:
    async with fetcher() as client:
        with pytest.raises(RetryLater) as caught:
            await client.get(paste_site.url("/unavailable"))
    assert caught.value.seconds == 0 and caught.value.status == 503


async def test_api_rate_limit_403_waits_for_the_reset(paste_site: PasteSite) -> None:
    """GitHub's answer when a token is out of requests: come back at X-RateLimit-Reset."""
    async with fetcher() as client:
        with pytest.raises(RetryLater) as caught:
            await client.get(paste_site.url("/api-limit"))
        assert caught.value.status == 403 and 80 <= caught.value.seconds <= 91
        with pytest.raises(FetchError) as plain:                 # a 403 that is no rate limit
            await client.get(paste_site.url("/forbidden"))
        assert not isinstance(plain.value, RetryLater) and plain.value.status == 403


def test_parse_rate_limit_reset() -> None:
    assert parse_rate_limit_reset("1000120", now=1000000.0) == 120
    assert parse_rate_limit_reset("999000", now=1000000.0) == 0            # already passed
    assert parse_rate_limit_reset("9999999999", now=1000000.0) == 86400    # clamped
    assert parse_rate_limit_reset("soon") is None and parse_rate_limit_reset(None) is None


def test_parse_retry_after() -> None:
    now = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)
    assert parse_retry_after("Wed, 01 May 2024 12:02:00 GMT", now) == 120
    assert parse_retry_after("120", now) == 120
    assert parse_retry_after("99999999", now) == 86400      # clamped
    assert parse_retry_after("soon", now) is None
    assert parse_retry_after(None, now) is None


@pytest.mark.parametrize(("path", "status"), [("/raw/broken", 500), ("/raw/missing", 404)])
async def test_http_errors_carry_the_status(paste_site: PasteSite, path: str, status: int) -> None:
    paste_site.add_paste("broken", "x")
    paste_site.failing.add("broken")
    async with fetcher() as client:
        with pytest.raises(FetchError, match=f"HTTP {status}") as caught:
            await client.get(paste_site.url(path))
    assert caught.value.status == status and not isinstance(caught.value, RetryLater)


async def test_conditional_get_returns_not_modified(paste_site: PasteSite) -> None:
    paste_site.add_paste("a", "one")
    async with fetcher() as client:
        first = await client.get(paste_site.url("/archive"))
        assert first.etag and not first.not_modified
        second = await client.get(paste_site.url("/archive"), etag=first.etag)
        assert second.not_modified and second.status == 304 and second.body == b""
        assert second.etag == first.etag
        paste_site.add_paste("b", "two")
        third = await client.get(paste_site.url("/archive"), etag=first.etag)
    assert not third.not_modified and b"/view/b" in third.body and third.etag != first.etag
    assert paste_site.requests[1].headers["If-None-Match"] == first.etag


async def test_no_cookies_unless_configured(paste_site: PasteSite) -> None:
    async with fetcher() as client:
        await client.get(paste_site.url("/setcookie"))
        echoed = (await client.get(paste_site.url("/echo"))).body
    assert b"Cookie" not in echoed and b"you-were-here" not in echoed
    async with fetcher(headers={"Cookie": "session=letmein"}, header_hosts=frozenset({"127.0.0.1"})) as client:
        await client.get(paste_site.url("/setcookie"))
        await client.get(paste_site.url("/echo"))
    assert paste_site.requests[-1].headers["Cookie"] == "session=letmein"


async def test_default_user_agent_is_tor_browser(paste_site: PasteSite) -> None:
    async with Fetcher.for_source(source_config(url=paste_site.url("/archive"))) as client:
        await client.get(paste_site.url("/echo"))
    assert paste_site.requests[-1].headers["User-Agent"] == TOR_BROWSER_UA


# -- timeouts and connection failures ------------------------------------------------------------------

async def test_drip_is_stopped_by_the_total_timeout(paste_site: PasteSite) -> None:
    started = time.monotonic()
    async with fetcher(total_timeout=0.5) as client:
        with pytest.raises(FetchError, match=r"more than 0\.5 s in total"):
            await client.get(paste_site.url("/drip"))
    assert time.monotonic() - started < 2


async def test_silent_server_is_stopped_by_the_read_timeout(paste_site: PasteSite) -> None:
    paste_site.add_paste("slow", "late")
    paste_site.slow["slow"] = 3
    async with fetcher(read_timeout=0.3) as client:
        with pytest.raises(FetchError, match=r"no data for 0\.3 s"):
            await client.get(paste_site.url("/raw/slow"))


@pytest.mark.parametrize(("case", "reason"), [
    ("huge-header", "malformed HTTP response: Got more than 8190 bytes"),   # one 1 MiB header
    ("many-headers", "malformed HTTP response: Too many headers received"),  # 100,000 header lines
    ("reset", "broken response body: Not enough data to satisfy content length header"),  # RST mid-body
])
async def test_a_broken_response_is_one_clear_line(case: str, reason: str) -> None:
    async with serve(HostileSite()) as site, fetcher() as client:
        with pytest.raises(FetchError) as caught:
            await client.get(site.url(f"/page/{case}"))
    message = str(caught.value)
    assert message.startswith(reason) and message.endswith(f" ({site.url(f'/page/{case}')})"), message
    said = message.rsplit(" (http", 1)[0]
    assert "\n" not in said and "aaaa" not in said            # none of the server's header bytes
    assert "400" not in said                                   # nor aiohttp's made-up status


async def test_connection_refused_is_a_fetch_error() -> None:
    async with fetcher() as client:
        with pytest.raises(FetchError, match=r"cannot connect to 127\.0\.0\.1"):
            await client.get(f"http://127.0.0.1:{closed_port()}/")


async def test_global_limiter_bounds_concurrent_fetches(paste_site: PasteSite) -> None:
    paste_site.add_paste("slow", "late")
    paste_site.slow["slow"] = 0.2
    limiter = asyncio.Semaphore(1)
    started = time.monotonic()
    async with Fetcher(fetcher().settings, limiter=limiter) as a, Fetcher(fetcher("b").settings, limiter=limiter) as b:
        await asyncio.gather(a.get(paste_site.url("/raw/slow")), b.get(paste_site.url("/raw/slow")))
    assert time.monotonic() - started >= 0.4


# -- through Tor (a real SOCKS5 proxy on loopback) ----------------------------------------------------------

def onion_fetcher(name: str, proxy: SocksProxy, url: str = "http://examplepaste.onion/archive") -> Fetcher:
    return Fetcher.for_source(source_config(name, url=url, tor=True), tor_settings(proxy))


async def test_onion_name_is_resolved_by_the_proxy(paste_site: PasteSite, socks_proxy: SocksProxy) -> None:
    paste_site.add_paste("abc", "secret")
    async with onion_fetcher("some-paste", socks_proxy) as client:
        response = await client.get("http://examplepaste.onion/raw/abc")
    assert response.body == b"secret"
    [connection] = socks_proxy.connections
    assert connection.host == "examplepaste.onion" and connection.atyp == 0x03   # a name, not an IP
    assert connection.username == "leak-watcher-some-paste" and connection.password
    assert paste_site.requests[-1].host == "examplepaste.onion"


async def test_each_source_has_its_own_socks_credentials(paste_site: PasteSite, socks_proxy: SocksProxy) -> None:
    async with onion_fetcher("one", socks_proxy) as first, onion_fetcher("two", socks_proxy) as second:
        await first.get("http://examplepaste.onion/archive")
        await second.get("http://examplepaste.onion/archive")
        await first.get("http://examplepaste.onion/echo")   # keep-alive: no new CONNECT
    users = [(c.username, c.password) for c in socks_proxy.connections]
    assert [u for u, _ in users] == ["leak-watcher-one", "leak-watcher-two"]
    assert users[0][1] != users[1][1]


async def test_onion_source_never_follows_a_redirect_off_the_onion(
        paste_site: PasteSite, socks_proxy: SocksProxy, caplog: pytest.LogCaptureFixture) -> None:
    paste_site.redirect_to = "http://clearnet.example/redirect/0"
    caplog.set_level(logging.WARNING, logger="watcher.fetch")
    async with onion_fetcher("some-paste", socks_proxy) as client:
        with pytest.raises(FetchError, match=r"not a \.onion host"):
            await client.get("http://examplepaste.onion/away")
        with pytest.raises(FetchError, match=r"not a \.onion host"):
            await client.get("http://clearnet.example/redirect/0")   # e.g. an item link
    assert socks_proxy.requested_hosts == ["examplepaste.onion"]
    assert "off the onion" in caplog.text


async def test_clearnet_source_over_tor_may_change_host(paste_site: PasteSite, socks_proxy: SocksProxy) -> None:
    paste_site.redirect_to = "http://clearnet.example/redirect/0"
    async with onion_fetcher("clear", socks_proxy, url="http://clearnet.example/away") as client:
        response = await client.get("http://clearnet.example/away")
    assert response.body == b"arrived"
    assert set(socks_proxy.requested_hosts) == {"clearnet.example"}


async def test_tor_not_running_is_a_clear_error(socks_proxy: SocksProxy) -> None:
    socks_proxy.port = closed_port()
    async with onion_fetcher("x", socks_proxy) as client:
        with pytest.raises(FetchError, match=r"Tor SOCKS proxy 127\.0\.0\.1:\d+ refused the connection: "
                                             r"is tor running\?"):
            await client.get("http://examplepaste.onion/archive")


async def test_tor_extended_error_is_explained(socks_proxy: SocksProxy) -> None:
    socks_proxy.fail_hosts["gone.onion"] = 0xF0
    async with onion_fetcher("x", socks_proxy, url="http://gone.onion/") as client:
        with pytest.raises(FetchError, match="onion service descriptor not found"):
            await client.get("http://gone.onion/")


async def test_tor_preflight(socks_proxy: SocksProxy, paste_site: PasteSite) -> None:
    assert await tor_preflight(socks_proxy.address) is None
    refused = await tor_preflight(f"127.0.0.1:{closed_port()}")
    assert refused is not None and "refused the connection: is tor running?" in refused
    not_socks = await tor_preflight(paste_site.base_url.removeprefix("http://"))
    assert not_socks is not None and "SOCKS" in not_socks
    assert "\n" not in refused + not_socks
