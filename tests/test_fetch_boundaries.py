"""Issue 10: nothing leaks out (configured headers stay on the source's hosts) and nothing gets in
(a clearnet source never fetches a loopback, private or link-local address unless asked).

Two loopback fake sites play the source's own host (127.0.0.1) and a "foreign" host named by a
hostile page (reached as `localhost`, another host name for the same loopback interface); the
foreign one records every header it receives.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from yarl import URL

from watcher.config import ConfigError
from watcher.fetch import Fetcher, FetchError, FetchSettings, address_problem, literal_address
from watcher.sources import PollContext, build_source

from tests.support.sources import SeenStore, fetcher, load_source, poll_all, source_config, tor_settings
from tests.support.fakesites import PasteSite
from tests.support.socksproxy import SocksProxy

SECRETS = {"Cookie": "session=forum-secret", "Authorization": "Bearer api-token-secret"}


def on_localhost(site: PasteSite, path: str) -> str:
    """`site`'s URL under the host name `localhost` instead of 127.0.0.1 (another host)."""
    return site.url(path).replace("//127.0.0.1:", "//localhost:", 1)


def home_fetcher(paste_site: PasteSite, **fields: object) -> Fetcher:
    """The fetcher of a source whose configured URL is on `home`, with secret headers."""
    config = source_config(url=paste_site.url("/archive"), headers=SECRETS, allow_private=True, **fields)
    return Fetcher.for_source(config)


def leaked(site: PasteSite) -> set[str]:
    """The secret headers `site` received."""
    return {name for request in site.requests for name in SECRETS if name in request.headers}


# -- part 1: headers stay home ---------------------------------------------------------------------

async def test_headers_go_to_the_configured_host(paste_site: PasteSite) -> None:
    async with home_fetcher(paste_site) as client:
        await client.get(paste_site.url("/echo"))
    assert paste_site.requests[-1].headers["Cookie"] == SECRETS["Cookie"]
    assert paste_site.requests[-1].headers["Authorization"] == SECRETS["Authorization"]


async def test_a_redirect_to_another_host_carries_no_header(paste_site: PasteSite, foreign_site: PasteSite) -> None:
    paste_site.redirect_to = on_localhost(foreign_site, "/echo")
    async with home_fetcher(paste_site) as client:
        response = await client.get(paste_site.url("/away"))
    assert response.status == 200 and foreign_site.paths() == ["/echo"]
    assert leaked(paste_site) == set(SECRETS), "the source's own host lost its headers"
    assert leaked(foreign_site) == set()


async def test_a_link_to_another_host_carries_no_header(paste_site: PasteSite, foreign_site: PasteSite) -> None:
    async with home_fetcher(paste_site) as client:
        await client.get(paste_site.url("/archive"))
        await client.get(on_localhost(foreign_site, "/echo"))      # a link or API field naming it
        await client.get(paste_site.url("/echo"))                  # and back home: headers again
    assert foreign_site.paths() == ["/echo"] and leaked(foreign_site) == set()
    assert [set(SECRETS) <= set(r.headers) for r in paste_site.requests] == [True, True]


async def test_a_listing_whose_items_live_on_another_host_sends_them_nothing(
        paste_site: PasteSite, foreign_site: PasteSite) -> None:
    """A real source: the listing page is home, the item links it yields name the foreign host."""
    for site in (paste_site, foreign_site):
        site.add_paste("a", "text of a")
    config = source_config("paste", "listing", url=paste_site.url("/archive"), item_links="table.archive a",
                           item_url=on_localhost(foreign_site, "/raw/{id}"), headers=SECRETS)
    async with Fetcher.for_source(config) as client:
        items = await poll_all(build_source(config), PollContext(client, SeenStore()))
    assert [item.content for item in items] == [b"text of a"]
    assert paste_site.paths() == ["/archive"] and leaked(paste_site) == set(SECRETS)
    assert foreign_site.paths() == ["/raw/a"] and leaked(foreign_site) == set()


async def test_a_redirect_back_home_gets_the_headers_again(paste_site: PasteSite, foreign_site: PasteSite) -> None:
    foreign_site.redirect_to = paste_site.url("/echo")
    async with home_fetcher(paste_site) as client:
        await client.get(on_localhost(foreign_site, "/away"))
    assert leaked(foreign_site) == set() and paste_site.paths() == ["/echo"] and leaked(paste_site) == set(SECRETS)


async def test_header_hosts_lists_the_other_hosts_that_get_them(paste_site: PasteSite, foreign_site: PasteSite) -> None:
    paste_site.redirect_to = on_localhost(foreign_site, "/echo")
    async with home_fetcher(paste_site, header_hosts=("LOCALHOST",)) as client:
        await client.get(paste_site.url("/away"))
    assert leaked(foreign_site) == set(SECRETS)



# -- part 2: no private address unless asked ----------------------------------------------------------

HINT = "(set allow_private = true for an intranet source)"


def guarded(**fields: object) -> Fetcher:
    """A clearnet fetcher that did not set allow_private (the default of a configured source)."""
    return fetcher(allow_private=False, **fields)


def port_of(site: PasteSite) -> int:
    return URL(site.base_url).port or 0


@pytest.mark.parametrize(("host", "shown"), [
    ("127.0.0.1", "127.0.0.1 is"),
    ("127.1", "127.1 is 127.0.0.1,"),
    ("2130706433", "2130706433 is 127.0.0.1,"),
    ("0x7f000001", "0x7f000001 is 127.0.0.1,"),
    ("0177.0.0.1", "0177.0.0.1 is 127.0.0.1,"),
    ("[::ffff:127.0.0.1]", "::ffff:7f00:1 is"),
    ("localhost", "localhost is 127.0.0.1,"),          # a name: refused by the resolver
])
async def test_loopback_is_refused_in_every_spelling(paste_site: PasteSite, host: str, shown: str) -> None:
    async with guarded() as client:
        with pytest.raises(FetchError) as caught:
            await client.get(f"http://{host}:{port_of(paste_site)}/echo")
    assert str(caught.value).startswith(f"refused: {shown} a loopback address {HINT}")
    assert paste_site.requests == [], "the request reached the loopback site"


@pytest.mark.parametrize(("url", "problem"), [
    ("http://[::1]:9/", "::1 is a loopback"),
    ("http://169.254.169.254/latest/meta-data/", "169.254.169.254 is a link-local"),
    ("http://[fe80::1]/", "fe80::1 is a link-local"),
    ("http://10.0.0.7/", "10.0.0.7 is a private"),
    ("http://192.168.1.1/", "192.168.1.1 is a private"),
    ("http://[fd00::1]/", "fd00::1 is a private"),
    ("http://224.0.0.1/", "224.0.0.1 is a multicast"),
    ("http://0.0.0.0:9/", "0.0.0.0 is an unspecified"),
    ("http://[::]:9/", ":: is an unspecified"),
    ("http://[2002:7f00:1::]/", "2002:7f00:1:: is a loopback"),   # 6to4 wrapping 127.0.0.1
    ("http://[64:ff9b::7f00:1]/", "64:ff9b::7f00:1 is a reserved"),   # NAT64 of 127.0.0.1
    ("http://[fec0::1]/", "fec0::1 is a site-local"),
    ("http://100.64.0.1/", "100.64.0.1 is a non-global"),
])
async def test_non_public_addresses_are_refused_before_connecting(url: str, problem: str) -> None:
    async with guarded(connect_timeout=0.5) as client:
        with pytest.raises(FetchError, match="^refused: ") as caught:
            await client.get(url)
    assert str(caught.value) == f"refused: {problem} address {HINT}"


@pytest.mark.parametrize("host", ["93.184.216.34", "8.8.8.8", "2606:4700::1111", "::ffff:8.8.8.8",
                                  "0x5db8d822"])
def test_public_addresses_pass(host: str) -> None:
    address = literal_address(host)
    assert address is not None and address_problem(address) is None


def test_names_are_left_to_the_resolver() -> None:
    assert literal_address("forum.example") is None and literal_address("cafe") is None


def test_every_hop_is_checked(paste_site: PasteSite) -> None:
    """Redirects go through the same gate as the first URL (links and API fields are each a
    `get`, checked above): a public page redirecting to loopback or to the metadata address is
    refused, a redirect to a name is left to the resolver."""
    client = guarded()
    origin = URL("https://forum.example/board")
    for location in (f"http://127.0.0.1:{port_of(paste_site)}/echo", "http://0x7f000001/",
                     "http://169.254.169.254/latest/"):
        with pytest.raises(FetchError, match=rf"^refused: .* address \(set allow_private.*\) "
                                             rf"\(redirect from {origin} to "):
            client._check_target(location, origin=origin)
    assert client._check_target("/next", origin=origin) == URL("https://forum.example/next")


async def test_allow_private_reaches_the_intranet_site(paste_site: PasteSite) -> None:
    for host in ("127.0.0.1", "localhost"):
        async with fetcher(allow_private=True) as client:
            response = await client.get(f"http://{host}:{port_of(paste_site)}/echo")
        assert response.status == 200
    assert len(paste_site.requests) == 2


async def test_tor_sources_are_unaffected(paste_site: PasteSite, socks_proxy: SocksProxy) -> None:
    """Through Tor the proxy resolves: no local check (the proxy here is on loopback, and so
    is the site it reaches)."""
    async with guarded(tor=tor_settings(socks_proxy)) as client:
        response = await client.get("http://clearnet.example/echo")
    assert response.status == 200 and paste_site.paths() == ["/echo"]


async def test_a_configured_source_refuses_loopback_by_default(paste_site: PasteSite) -> None:
    source = source_config(url=paste_site.url("/archive"), allow_private=False)
    async with Fetcher.for_source(source) as client:
        with pytest.raises(FetchError, match=r"^refused: 127\.0\.0\.1 is a loopback address"):
            await client.get(paste_site.url("/archive"))


# -- configuration ---------------------------------------------------------------------------------

SOURCE = """
[[sources]]
name = "forum"
kind = "forum"
url = "https://forum.example/board"
thread_links = "a.thread"
post = "div.post"
"""


def test_config_keys_default_to_home_only_and_public_only(tmp_path: Path) -> None:
    source = load_source(tmp_path, SOURCE + "")
    assert source.header_hosts == () and source.allow_private is False
    assert FetchSettings.from_source(source, None).header_hosts == {"forum.example"}


def test_config_reads_header_hosts_and_allow_private(tmp_path: Path) -> None:
    source = load_source(tmp_path, SOURCE + 'header_hosts = ["CDN.Forum.example", "10.0.0.7"]\nallow_private = true\n')
    assert source.header_hosts == ("cdn.forum.example", "10.0.0.7") and source.allow_private
    settings = FetchSettings.from_source(source, None)
    assert settings.header_hosts == {"forum.example", "cdn.forum.example", "10.0.0.7"}
    assert settings.allow_private


@pytest.mark.parametrize(("extra", "message"), [
    ('header_hosts = "cdn.example"', r"header_hosts\" must be a list of host names"),
    ('header_hosts = ["https://cdn.example/"]', r"header_hosts\" must list host names only"),
    ('header_hosts = ["cdn.example:8080"]', r"header_hosts\" must list host names only"),
    ("allow_private = 1", r"allow_private\" must be true or false"),
])
def test_config_rejects_bad_values(tmp_path: Path, extra: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_source(tmp_path, SOURCE + extra + "\n")
