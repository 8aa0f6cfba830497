"""Issue 10: nothing leaks out (configured headers stay on the source's hosts) and nothing gets in
(a clearnet source never fetches a loopback, private or link-local address unless asked).

Two loopback fake sites play the source's own host (127.0.0.1) and a "foreign" host named by a
hostile page (reached as `localhost`, another host name for the same loopback interface); the
foreign one records every header it receives.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from watcher.config import ConfigError, SourceConfig, load_config
from watcher.fetch import Fetcher, FetchSettings

try:
    from conftest_sources import source_config
    from fakesites import PasteSite, serve
except ImportError:
    from tests.conftest_sources import source_config
    from tests.fakesites import PasteSite, serve

SECRETS = {"Cookie": "session=forum-secret", "Authorization": "Bearer api-token-secret"}


@pytest.fixture
async def home() -> AsyncIterator[PasteSite]:
    async with serve(PasteSite()) as site:
        yield site


@pytest.fixture
async def foreign() -> AsyncIterator[PasteSite]:
    async with serve(PasteSite()) as site:
        yield site


def on_localhost(site: PasteSite, path: str) -> str:
    """`site`'s URL under the host name `localhost` instead of 127.0.0.1 (another host)."""
    return site.url(path).replace("//127.0.0.1:", "//localhost:", 1)


def home_fetcher(home: PasteSite, **fields: object) -> Fetcher:
    """The fetcher of a source whose configured URL is on `home`, with secret headers."""
    config = source_config(url=home.url("/archive"), headers=SECRETS, allow_private=True, **fields)
    return Fetcher.for_source(config)


def leaked(site: PasteSite) -> set[str]:
    """The secret headers `site` received."""
    return {name for request in site.requests for name in SECRETS if name in request.headers}


# -- part 1: headers stay home ---------------------------------------------------------------------

async def test_headers_go_to_the_configured_host(home: PasteSite) -> None:
    async with home_fetcher(home) as client:
        await client.get(home.url("/echo"))
    assert home.requests[-1].headers["Cookie"] == SECRETS["Cookie"]
    assert home.requests[-1].headers["Authorization"] == SECRETS["Authorization"]


async def test_a_redirect_to_another_host_carries_no_header(home: PasteSite, foreign: PasteSite) -> None:
    home.redirect_to = on_localhost(foreign, "/echo")
    async with home_fetcher(home) as client:
        response = await client.get(home.url("/away"))
    assert response.status == 200 and foreign.paths() == ["/echo"]
    assert leaked(home) == set(SECRETS), "the source's own host lost its headers"
    assert leaked(foreign) == set()


async def test_a_link_to_another_host_carries_no_header(home: PasteSite, foreign: PasteSite) -> None:
    async with home_fetcher(home) as client:
        await client.get(home.url("/archive"))
        await client.get(on_localhost(foreign, "/echo"))      # a link or API field naming it
        await client.get(home.url("/echo"))                  # and back home: headers again
    assert foreign.paths() == ["/echo"] and leaked(foreign) == set()
    assert [set(SECRETS) <= set(r.headers) for r in home.requests] == [True, True]


async def test_a_redirect_back_home_gets_the_headers_again(home: PasteSite, foreign: PasteSite) -> None:
    foreign.redirect_to = home.url("/echo")
    async with home_fetcher(home) as client:
        await client.get(on_localhost(foreign, "/away"))
    assert leaked(foreign) == set() and home.paths() == ["/echo"] and leaked(home) == set(SECRETS)


async def test_header_hosts_lists_the_other_hosts_that_get_them(home: PasteSite, foreign: PasteSite) -> None:
    home.redirect_to = on_localhost(foreign, "/echo")
    async with home_fetcher(home, header_hosts=("LOCALHOST",)) as client:
        await client.get(home.url("/away"))
    assert leaked(foreign) == set(SECRETS)



# -- configuration ---------------------------------------------------------------------------------

SOURCE = """
[[sources]]
name = "forum"
kind = "forum"
url = "https://forum.example/board"
thread_links = "a.thread"
post = "div.post"
"""


def load_source(tmp_path: Path, extra: str) -> SourceConfig:
    """The one source of a config file with `extra` lines added to it."""
    path = tmp_path / "sources.toml"
    path.write_text(SOURCE + extra, encoding="utf-8")
    return load_config(path, environ={}).sources[0]


def test_config_keys_default_to_home_only_and_public_only(tmp_path: Path) -> None:
    source = load_source(tmp_path, "")
    assert source.header_hosts == () and source.allow_private is False
    assert FetchSettings.from_source(source, None).header_hosts == {"forum.example"}


def test_config_reads_header_hosts_and_allow_private(tmp_path: Path) -> None:
    source = load_source(tmp_path, 'header_hosts = ["CDN.Forum.example", "10.0.0.7"]\nallow_private = true\n')
    assert source.header_hosts == ("cdn.forum.example", "10.0.0.7") and source.allow_private
    settings = FetchSettings.from_source(source, None)
    assert settings.header_hosts == {"forum.example", "cdn.forum.example", "10.0.0.7"}


@pytest.mark.parametrize(("extra", "message"), [
    ('header_hosts = "cdn.example"', r"header_hosts\" must be a list of host names"),
    ('header_hosts = ["https://cdn.example/"]', r"header_hosts\" must list host names only"),
    ('header_hosts = ["cdn.example:8080"]', r"header_hosts\" must list host names only"),
    ("allow_private = 1", r"allow_private\" must be true or false"),
])
def test_config_rejects_bad_values(tmp_path: Path, extra: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_source(tmp_path, extra + "\n")
