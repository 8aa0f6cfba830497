"""HTTP fetching policy: one aiohttp session per source, Tor through aiohttp-socks.

What this module guarantees, and why (the aiohttp and aiohttp-socks behaviours it relies on are
pinned by tests/test_fetch.py and tests/test_fetch_boundaries.py):

- Tor sources go through the local Tor client's SOCKS5 port with remote DNS (`rdns=True`), so
  no .onion name (nor any clearnet name) is resolved locally. Each source gets its own SOCKS
  credentials (username `leak-watcher-<source>`, a random password per session): Tor's
  IsolateSOCKSAuth then keeps every source on its own circuits, so a hostile site cannot link
  our visits to other sites.
- An onion source never reaches a non-.onion host: redirects are followed by hand and any hop
  (or any item link) off the onion is refused and logged. A clearnet fetcher never requests a
  .onion host (that would be a local DNS query for it). At most 5 redirects, http(s) only.
- A clearnet source never reaches a loopback, private, link-local, multicast, unspecified or
  reserved address (a hostile page or API record naming http://127.0.0.1:PORT/, a name that
  resolves to it, or 169.254.169.254) unless it sets `allow_private`. Names are checked by the
  connector's own resolver (`PublicOnlyResolver`), so the address checked is the address
  connected to (no check-then-resolve-again gap); aiohttp never asks the resolver about an IP
  literal, so literals (including inet_aton's forms 2130706433, 0x7f000001, 0177.0.0.1) are
  checked before each hop. Tor sources are unaffected: the proxy resolves.
- Bodies are read with a byte cap while streaming, after decompression (aiohttp's `read()` has
  no cap: a gzip bomb grows the process to gigabytes).
- Timeouts: connect, per-read and total (a 1 byte/s drip is only caught by `total`).
- No cookies are kept (`DummyCookieJar`); a configured `Cookie` header is sent as is.
- Configured headers (session cookies, API tokens) go only to the host of the source's URL and
  to its `header_hosts`, checked for every request: redirects are followed by hand, so aiohttp's
  own dropping of Authorization on a host change never runs, and a link or redirect taken from
  a hostile page must not carry the forum's session cookie to the host it names. A request's own
  `headers=` (PrivateBin's `X-Requested-With`) go to every hop of that request and never
  replace a configured header on the hosts that get those.
- aiohttp-socks errors are not `aiohttp.ClientError`s: every failure becomes a `FetchError` with
  a one-line reason, and a 429/503 with Retry-After or an API rate limit becomes `RetryLater`.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import errno
import ipaddress
import logging
import re
import secrets
import socket
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import TracebackType
from typing import Self
from urllib.parse import quote

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp_socks import ProxyConnectionError, ProxyConnector, ProxyError, ProxyTimeoutError
from multidict import CIMultiDict
from yarl import URL

from watcher.config import DEFAULT_MAX_BYTES, SourceConfig, TorSettings, is_onion_host, split_host_port

log = logging.getLogger(__name__)

TOR_BROWSER_UA = "Mozilla/5.0 (Windows NT 10.0; rv:128.0) Gecko/20100101 Firefox/128.0"
BASE_HEADERS = {
    "Accept": "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",
    "Accept-Language": "en-US,en;q=0.5",
}
CLEARNET_CONNECT_TIMEOUT = 20.0
TOR_CONNECT_TIMEOUT = 90.0      # bounds the whole SOCKS handshake incl. the onion rendezvous
READ_TIMEOUT = 60.0
TOTAL_TIMEOUT = 180.0           # the only one that catches a slow drip
MAX_REDIRECTS = 5
MAX_RETRY_AFTER = 86400.0       # a hostile Retry-After must not silence a source for weeks
CHUNK_SIZE = 64 * 1024
SOCKS_USER_PREFIX = "leak-watcher-"
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
ALLOW_PRIVATE_HINT = "set allow_private = true for an intranet source"
# (what the address is called in an error, the ipaddress property that says so), first match wins
ADDRESS_CLASSES = (("an unspecified", "is_unspecified"), ("a loopback", "is_loopback"),
                   ("a link-local", "is_link_local"), ("a multicast", "is_multicast"),
                   ("a private", "is_private"), ("a reserved", "is_reserved"),
                   ("a site-local", "is_site_local"))       # IPv6 fec0::/10 only
_NUMERIC_HOST_RE = re.compile(r"[0-9A-Fa-fXx.]+")
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# Tor's extended SOCKS5 reply codes (tor's socks-extensions.txt); python-socks reports them as
# "Invalid reply code: 0XF0".
TOR_REPLY_REASONS = {
    0xF0: "onion service descriptor not found (offline or wrong address)",
    0xF1: "onion service descriptor is invalid",
    0xF2: "onion service introduction failed",
    0xF3: "onion service rendezvous failed",
    0xF4: "onion service requires client authorization",
    0xF5: "onion service client authorization failed",
    0xF6: "invalid onion address",
    0xF7: "onion service introduction timed out",
}


class FetchError(Exception):
    """A fetch failed; `str()` is one line. `status` is the HTTP status when there was one."""

    def __init__(self, message: str, *, url: str | None = None, status: int | None = None) -> None:
        super().__init__(message)
        self.url = url
        self.status = status


class RetryLater(FetchError):
    """The server asked us to come back later (429/503 with Retry-After, an API rate limit)."""

    def __init__(self, seconds: float, message: str = "", *, url: str | None = None,
                 status: int | None = None) -> None:
        super().__init__(message or f"retry after {seconds:g} s", url=url, status=status)
        self.seconds = seconds


class PrivateAddressError(OSError):
    """A host that is, or resolves only to, addresses the source may not reach; `str()` is
    the one-line refusal. An OSError so that aiohttp's connector reports it as a DNS failure
    (`ClientConnectorDNSError.os_error`) instead of an unexpected exception."""


@dataclass(frozen=True)
class Response:
    """A fetched response. `truncated` is True when the body was cut at `max_bytes`."""

    url: str
    status: int
    headers: Mapping[str, str]
    body: bytes
    content_type: str | None
    not_modified: bool = False
    etag: str | None = None
    last_modified: str | None = None
    charset: str | None = None
    truncated: bool = False

    def text(self) -> str:
        """The body decoded with the declared charset (UTF-8 otherwise), never raising."""
        try:
            return self.body.decode(self.charset or "utf-8", errors="replace")
        except LookupError:
            return self.body.decode("utf-8", errors="replace")


@dataclass(frozen=True)
class FetchSettings:
    """Everything the fetch policy needs about one source."""

    name: str
    tor: TorSettings | None = None          # set: go through this SOCKS port
    onion_only: bool = False                # refuse every non-.onion host
    max_bytes: int = DEFAULT_MAX_BYTES
    headers: Mapping[str, str] = field(default_factory=dict)
    header_hosts: frozenset[str] = frozenset()  # the only hosts `headers` are sent to (lower case)
    allow_private: bool = False             # may reach loopback/private/link-local addresses
    user_agent: str = TOR_BROWSER_UA
    connect_timeout: float = CLEARNET_CONNECT_TIMEOUT
    read_timeout: float = READ_TIMEOUT
    total_timeout: float = TOTAL_TIMEOUT
    max_redirects: int = MAX_REDIRECTS

    @classmethod
    def from_source(cls, source: SourceConfig, tor: TorSettings | None) -> FetchSettings:
        """Settings for `source`; `tor` is required when the source has `tor = true`."""
        if source.tor and tor is None:
            raise ValueError(f"source {source.name!r} needs Tor but no [tor] socks is configured")
        use_tor = tor if source.tor else None
        total = source.timeout or TOTAL_TIMEOUT
        connect = source.connect_timeout or (TOR_CONNECT_TIMEOUT if use_tor else CLEARNET_CONNECT_TIMEOUT)
        return cls(
            name=source.name, tor=use_tor, onion_only=bool(use_tor) and source.onion,
            max_bytes=source.max_bytes, headers=dict(source.headers),
            header_hosts=frozenset(_host_key(host) for host in (URL(source.url or "").host,
                                                                 *source.header_hosts) if host),
            allow_private=source.allow_private,
            user_agent=source.user_agent or TOR_BROWSER_UA,
            connect_timeout=min(connect, total), read_timeout=min(READ_TIMEOUT, total),
            total_timeout=total,
        )


class Fetcher:
    """The HTTP client of one source: `async with Fetcher(...) as f: await f.get(url)`.

    Owns one `aiohttp.ClientSession` (keep-alive: through Tor, one CONNECT per host per
    session). `limiter` is the daemon's global semaphore on simultaneous fetches.
    """

    def __init__(self, settings: FetchSettings, *, limiter: asyncio.Semaphore | None = None,
                 socks_password: str | None = None) -> None:
        self.settings = settings
        self._limiter = limiter
        self._socks_password = socks_password or secrets.token_hex(16)
        self._session: aiohttp.ClientSession | None = None
        self._resolver: PublicOnlyResolver | None = None

    @property
    def _guarded(self) -> bool:
        """True when addresses are checked: a clearnet source without `allow_private`."""
        return self.settings.tor is None and not self.settings.allow_private

    @classmethod
    def for_source(cls, source: SourceConfig, tor: TorSettings | None = None, *,
                   limiter: asyncio.Semaphore | None = None) -> Fetcher:
        """A fetcher configured from a `[[sources]]` entry."""
        return cls(FetchSettings.from_source(source, tor), limiter=limiter)

    @property
    def socks_username(self) -> str | None:
        """The SOCKS username (one per source, for Tor stream isolation), None off Tor."""
        return SOCKS_USER_PREFIX + self.settings.name if self.settings.tor else None

    async def __aenter__(self) -> Self:
        self._session = aiohttp.ClientSession(
            connector=self._connector(),
            cookie_jar=aiohttp.DummyCookieJar(),
            headers={**BASE_HEADERS, "User-Agent": self.settings.user_agent},
            timeout=aiohttp.ClientTimeout(total=self.settings.total_timeout,
                                          sock_connect=self.settings.connect_timeout,
                                          sock_read=self.settings.read_timeout),
            trust_env=False,  # never pick up HTTP(S)_PROXY: Tor or direct, nothing else
        )
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
        if self._resolver is not None:     # the connector closes only a resolver it made itself
            await self._resolver.close()
            self._resolver = None

    def _connector(self) -> aiohttp.BaseConnector:
        """A SOCKS5 connector with remote DNS and per-source credentials, or plain TCP (through
        `PublicOnlyResolver` unless the source allows private addresses)."""
        tor = self.settings.tor
        if tor is None and self._guarded:
            self._resolver = PublicOnlyResolver()
            return aiohttp.TCPConnector(resolver=self._resolver)
        if tor is None:
            return aiohttp.TCPConnector()
        host = f"[{tor.socks_host}]" if ":" in tor.socks_host else tor.socks_host
        user = quote(self.socks_username or "", safe="")
        url = f"socks5://{user}:{quote(self._socks_password, safe='')}@{host}:{tor.socks_port}"
        return ProxyConnector.from_url(url, rdns=True)

    async def get(self, url: str, *, headers: Mapping[str, str] | None = None, etag: str | None = None,
                  last_modified: str | None = None) -> Response:
        """GET `url` under the source's policy, following redirects by hand.

        `headers` are this request's own (an API's `Accept`, `X-Requested-With`): sent to every
        hop of it, over the session's defaults. The source's configured headers keep their rule
        (only to their hosts, where they win over `headers`: a caller never replaces a
        configured token, and never takes one to another host).
        With `etag`/`last_modified`, a 304 returns `not_modified=True` and the validators.
        Raises `RetryLater` on 429/503 with Retry-After, `FetchError` on everything else.
        """
        if self._session is None:
            raise RuntimeError("Fetcher used outside 'async with'")
        extra = dict(headers or {})
        if self._limiter is None:
            return await self._get(url, extra, etag, last_modified)
        async with self._limiter:
            return await self._get(url, extra, etag, last_modified)

    async def _get(self, url: str, extra: Mapping[str, str], etag: str | None,
                   last_modified: str | None) -> Response:
        """The redirect loop under one total timeout, with errors turned into FetchError."""
        try:
            async with asyncio.timeout(self.settings.total_timeout):
                target = self._check_target(url, origin=None)
                for _hop in range(self.settings.max_redirects + 1):
                    result = await self._request(target, extra, etag, last_modified)
                    if isinstance(result, Response):
                        return result
                    target = self._check_target(result, origin=target)
                raise FetchError(f"more than {self.settings.max_redirects} redirects ({url})", url=url)
        except FetchError:
            raise
        except (ProxyConnectionError, ProxyTimeoutError, ProxyError, aiohttp.ClientError,
                TimeoutError, OSError) as exc:
            raise FetchError(f"{self._describe(exc)} ({url})", url=url) from exc

    def _check_target(self, location: str | URL, origin: URL | None) -> URL:
        """Resolve a URL or redirect `location` and refuse it if the policy forbids it."""
        try:
            target = origin.join(URL(str(location))) if origin is not None else URL(str(location))
        except ValueError as exc:
            raise FetchError(f"invalid URL {str(location)!r}: {exc}", url=str(location)) from None
        where = f"redirect from {origin} to {target}" if origin is not None else str(target)
        host = target.host
        if target.scheme not in ("http", "https") or not host:
            raise FetchError(f"refused {where}: only http(s) URLs with a host are fetched", url=str(target))
        onion = is_onion_host(host)
        if self.settings.onion_only and not onion:
            log.warning("source %s: refused %s: off the onion (an onion source never leaves Tor's "
                        "onion space)", self.settings.name, where)
            raise FetchError(f"refused {where}: not a .onion host (onion-only source)", url=str(target))
        if onion and self.settings.tor is None:
            log.warning("source %s: refused %s: .onion without Tor", self.settings.name, where)
            raise FetchError(f"refused {where}: a .onion host needs tor = true", url=str(target))
        if self._guarded:
            self._check_literal(target, where)
        return target

    def _check_literal(self, target: URL, where: str) -> None:
        """Refuse an IP-literal host that is not public (aiohttp connects to literals without
        asking the resolver, so `PublicOnlyResolver` never sees them)."""
        host = target.host or ""
        address = literal_address(host)
        problem = address_problem(address) if address is not None else None
        if problem is not None:
            shown = f"{host} is" if str(address) == host else f"{host} is {address},"
            log.warning("source %s: refused %s: %s address", self.settings.name, where, problem)
            message = refusal(shown, problem)
            raise FetchError(message if where == str(target) else f"{message} ({where})", url=str(target))

    async def _request(self, url: URL, extra: Mapping[str, str], etag: str | None,
                       last_modified: str | None) -> Response | str:
        """One request: a Response, or the Location of a redirect."""
        assert self._session is not None
        headers = CIMultiDict(extra)
        headers.update(self._configured_headers(url))   # case-insensitive: a configured header wins
        if etag:
            headers["If-None-Match"] = etag
        if last_modified:
            headers["If-Modified-Since"] = last_modified
        async with self._session.get(url, headers=headers, allow_redirects=False) as resp:
            if resp.status in REDIRECT_STATUSES:
                location = resp.headers.get("Location")
                if not location:
                    raise FetchError(f"HTTP {resp.status} without Location ({url})", url=str(url),
                                     status=resp.status)
                return location
            if resp.status == 304:
                return self._response(resp, b"", not_modified=True, etag=etag,
                                      last_modified=last_modified)
            self._raise_for_status(resp)
            body, truncated = await read_capped(resp, self.settings.max_bytes)
            if truncated:
                log.warning("source %s: %s: body cut at max_bytes=%d", self.settings.name, url,
                            self.settings.max_bytes)
            return self._response(resp, body, truncated=truncated)

    def _configured_headers(self, url: URL) -> Mapping[str, str]:
        """The source's configured headers if `url`'s host may receive them, else none."""
        if self.settings.headers and _host_key(url.host or "") in self.settings.header_hosts:
            return self.settings.headers
        return {}

    @staticmethod
    def _response(resp: aiohttp.ClientResponse, body: bytes, *, not_modified: bool = False,
                  truncated: bool = False, etag: str | None = None,
                  last_modified: str | None = None) -> Response:
        """Build our Response (new validators win over the ones sent)."""
        mimetype = resp.headers.get("Content-Type")
        return Response(
            url=str(resp.url), status=resp.status, headers=resp.headers.copy(), body=body,
            content_type=resp.content_type if mimetype else None, not_modified=not_modified,
            etag=resp.headers.get("ETag") or etag,
            last_modified=resp.headers.get("Last-Modified") or last_modified,
            charset=resp.charset, truncated=truncated,
        )

    @staticmethod
    def _raise_for_status(resp: aiohttp.ClientResponse) -> None:
        """RetryLater on 429/503 with a usable Retry-After, and on an API's rate limit (403 or
        429 with Retry-After, or with `X-RateLimit-Remaining: 0` and `X-RateLimit-Reset`, as
        GitHub answers); FetchError on other 4xx/5xx."""
        status = resp.status
        if status < 400:
            return
        url = str(resp.url)
        if status in (429, 503) or (status == 403 and _rate_limited(resp)):
            delay = parse_retry_after(resp.headers.get("Retry-After"))
            if delay is None and resp.headers.get("X-RateLimit-Remaining") == "0":
                delay = parse_rate_limit_reset(resp.headers.get("X-RateLimit-Reset"))
            if delay is not None:
                raise RetryLater(delay, f"HTTP {status}: retry after {delay:g} s ({url})", url=url,
                                 status=status)
        raise FetchError(f"HTTP {status} {resp.reason or ''}".rstrip() + f" ({url})", url=url, status=status)

    def _describe(self, exc: BaseException) -> str:
        """A one-line reason for a transport failure."""
        settings = self.settings
        if isinstance(exc, ProxyError | ProxyConnectionError | ProxyTimeoutError):
            return self._describe_proxy(exc)
        if isinstance(exc, aiohttp.ConnectionTimeoutError):
            return f"no connection within {settings.connect_timeout:g} s"
        if isinstance(exc, aiohttp.SocketTimeoutError):
            return f"no data for {settings.read_timeout:g} s"
        if isinstance(exc, TimeoutError):
            return f"timed out: took more than {settings.total_timeout:g} s in total"
        if isinstance(exc, aiohttp.ClientConnectorError) and isinstance(exc.os_error, PrivateAddressError):
            return str(exc.os_error)
        if isinstance(exc, aiohttp.ClientConnectorError):
            return f"cannot connect to {exc.host}:{exc.port}: {exc.os_error.strerror or exc.os_error}"
        # aiohttp's parser errors carry a made-up status 400 and quote the server's bytes
        cause = exc.__cause__
        parse_error = _without_excerpt(cause.message) if isinstance(cause, HttpProcessingError) else None
        if isinstance(exc, aiohttp.ClientPayloadError):   # e.g. the connection ended mid-body
            return f"broken response body: {parse_error or _first_line(exc)}"
        if isinstance(exc, aiohttp.ClientResponseError):
            if parse_error is not None:                   # unparsable: no status was sent
                return f"malformed HTTP response: {parse_error}"
            return f"invalid HTTP response: {exc.status} {_first_line(exc.message)}"
        return f"{type(exc).__name__}: {_first_line(exc)}"

    def _describe_proxy(self, exc: BaseException) -> str:
        """A one-line reason for a failure of the Tor SOCKS proxy."""
        socks = f"Tor SOCKS proxy {self.settings.tor.socks}" if self.settings.tor else ""
        if isinstance(exc, ProxyConnectionError):
            if _refused(exc):
                return f"{socks} refused the connection: is tor running?"
            return f"cannot connect to {socks}: {_first_line(exc)}"
        if isinstance(exc, ProxyTimeoutError):
            return (f"{socks}: no connection within {self.settings.connect_timeout:g} s "
                    "(onion unreachable or Tor not ready)")
        return f"{socks}: {_tor_reason(exc) if isinstance(exc, ProxyError) else _first_line(exc)}"


class PublicOnlyResolver(AbstractResolver):
    """aiohttp's default resolver, minus every address that is not public.

    The connector connects only to what `resolve` returns, so the address checked is the one
    connected to. A name with no public address left raises `PrivateAddressError`.
    """

    def __init__(self, inner: AbstractResolver | None = None) -> None:
        self._inner = inner or aiohttp.DefaultResolver()

    async def resolve(self, host: str, port: int = 0,
                      family: socket.AddressFamily = socket.AF_INET) -> list[ResolveResult]:
        """The public addresses of `host`."""
        results = await self._inner.resolve(host, port, family)
        allowed = [result for result in results
                   if address_problem(ipaddress.ip_address(result["host"])) is None]
        if allowed:
            return allowed
        first = ipaddress.ip_address(results[0]["host"])
        problem = address_problem(first)
        assert problem is not None
        raise PrivateAddressError(refusal(f"{host.rstrip('.')} is {first},", problem))

    async def close(self) -> None:
        """Close the wrapped resolver."""
        await self._inner.close()


def literal_address(host: str) -> IPAddress | None:
    """The address an IP-literal host stands for, or None for a name. Besides canonical forms,
    reads the legacy IPv4 forms that inet_aton (hence getaddrinfo) accepts: 2130706433,
    0x7f000001, 0177.0.0.1, 127.1."""
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        pass
    if _NUMERIC_HOST_RE.fullmatch(host):
        try:
            return ipaddress.IPv4Address(socket.inet_aton(host))
        except OSError:
            return None
    return None


def address_problem(address: IPAddress) -> str | None:
    """What kind of non-public address `address` is ("a loopback", ...), None if public.
    An IPv4-mapped (::ffff:a.b.c.d) or 6to4 IPv6 address is judged by the IPv4 one inside."""
    if isinstance(address, ipaddress.IPv6Address):
        inner = address.ipv4_mapped or address.sixtofour
        if inner is not None:
            return address_problem(inner)
    for name, attribute in ADDRESS_CLASSES:
        if getattr(address, attribute, False):
            return name
    return None if address.is_global else "a non-global"   # e.g. carrier-grade NAT 100.64.0.0/10


def refusal(shown: str, problem: str) -> str:
    """The one-line refusal: `refused: 127.0.0.1 is a loopback address (set allow_private ...)`."""
    return f"refused: {shown} {problem} address ({ALLOW_PRIVATE_HINT})"


async def read_capped(resp: aiohttp.ClientResponse, max_bytes: int) -> tuple[bytes, bool]:
    """Read at most `max_bytes` of the (decompressed) body; (body, truncated).

    Policy: an oversized body is cut and flagged, not refused. For a leak monitor that is the
    safer choice: a multi-gigabyte dump is exactly what we must not miss, and its first
    `max_bytes` are enough to detect it (an error would skip it, and fetch it again at every
    poll, forever). Memory stays bounded either way. On truncation the connection is closed so
    the rest is never downloaded.
    """
    declared = resp.content_length
    if declared is not None and declared > max_bytes:
        log.info("%s declares %d bytes, over max_bytes=%d: reading the first %d", resp.url,
                 declared, max_bytes, max_bytes)
    body = bytearray()
    async for chunk in resp.content.iter_chunked(CHUNK_SIZE):
        room = max_bytes - len(body)
        if len(chunk) > room:
            body += chunk[:room]
            resp.close()  # drop the connection: the rest is never read
            return bytes(body), True
        body += chunk
    return bytes(body), False


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or HTTP-date), clamped to [0, 1 day]."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return min(float(value), MAX_RETRY_AFTER)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    delay = (when - (now or datetime.now(UTC))).total_seconds()
    return min(max(delay, 0.0), MAX_RETRY_AFTER)


def _rate_limited(resp: aiohttp.ClientResponse) -> bool:
    """An API's rate limit: out of requests, or told when to come back."""
    return resp.headers.get("X-RateLimit-Remaining") == "0" or "Retry-After" in resp.headers


def parse_rate_limit_reset(value: str | None, now: float | None = None) -> float | None:
    """Seconds until `X-RateLimit-Reset` (epoch seconds), clamped to [0, 1 day]."""
    if not value or not value.strip().isdigit():
        return None
    delay = int(value.strip()) - (time.time() if now is None else now)
    return min(max(delay, 0.0), MAX_RETRY_AFTER)


async def tor_preflight(socks: str, timeout: float = 5.0) -> str | None:
    """None if a TCP connect + SOCKS5 greeting to `socks` ("host:port") works, else why not."""
    try:
        host, port = split_host_port(socks)
    except ValueError:
        return f"invalid Tor SOCKS address {socks!r}: expected host:port"
    try:
        async with asyncio.timeout(timeout):
            reply = await _socks5_greeting(host, port)
    except ConnectionRefusedError:
        return f"Tor SOCKS proxy {socks} refused the connection: is tor running?"
    except TimeoutError:
        return f"Tor SOCKS proxy {socks} did not answer within {timeout:g} s"
    except asyncio.IncompleteReadError:
        return f"Tor SOCKS proxy {socks} closed the connection during the SOCKS5 greeting: is it a SocksPort?"
    except OSError as exc:
        return f"cannot connect to Tor SOCKS proxy {socks}: {exc.strerror or exc}"
    if reply[0] != 5 or reply[1] == 0xFF:
        return f"{socks} is not a usable SOCKS5 proxy (greeting answered {reply.hex()}): is it Tor's SocksPort?"
    return None


async def _socks5_greeting(host: str, port: int) -> bytes:
    """Offer no-auth and username/password; return the 2-byte method selection."""
    reader, writer = await asyncio.open_connection(host, port)
    try:
        writer.write(b"\x05\x02\x00\x02")
        await writer.drain()
        return await reader.readexactly(2)
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


def _tor_reason(exc: ProxyError) -> str:
    """Readable reason for a SOCKS reply error, decoding Tor's extended codes."""
    code = exc.error_code
    if code is None:
        match = re.search(r"0X([0-9A-F]{2})", str(exc), re.IGNORECASE)
        code = int(match.group(1), 16) if match else None
    if code in TOR_REPLY_REASONS:
        return f"{TOR_REPLY_REASONS[code]} (SOCKS reply {code:#04x})"
    return _first_line(exc)


def _refused(exc: BaseException | None) -> bool:
    """True if `exc` or one of its causes is a refused TCP connection."""
    while exc is not None:
        if isinstance(exc, ConnectionRefusedError) or getattr(exc, "errno", None) == errno.ECONNREFUSED:
            return True
        exc = exc.__cause__ or exc.__context__
    return False


def _without_excerpt(message: str) -> str:
    """An aiohttp parse error without the bytes of the response it quotes (`...: b'aaaa...'.`):
    a hostile server's bytes have no place in our logs and database."""
    return _first_line(re.split(r":? b['\"]", message, maxsplit=1)[0]).rstrip(". ")


def _host_key(host: str) -> str:
    """A host name as compared for `header_hosts`: lower case, no trailing dot."""
    return host.lower().rstrip(".")


def _first_line(value: object) -> str:
    """First line of str(value)."""
    text = str(value).strip()
    return text.splitlines()[0] if text else type(value).__name__
