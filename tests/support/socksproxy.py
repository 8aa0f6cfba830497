"""A small but real asyncio SOCKS5 server on 127.0.0.1 for tests (RFC 1928 + RFC 1929).

- Username/password authentication (method 0x02) is required unless `allow_no_auth`.
- CONNECT with domain-name (0x03) and IPv4 (0x01) address types; IPv6 is answered 0x08.
- The proxy resolves names itself from `hosts` (name -> (ip, port)): there is no real DNS, so a
  name the test did not map is "host unreachable" and nothing can reach the internet. IPv4
  targets are allowed on loopback only.
- `fail_hosts` (name -> reply code) answers a CONNECT with that code, e.g. 0xF0 like Tor's
  "onion descriptor not found".
- Every CONNECT is recorded (`connections`): username, password, address type and the host as
  the client sent it, which is how tests prove remote DNS and per-source credentials.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import socket
import struct
from dataclasses import dataclass, field

SOCKS_VERSION = 5
NO_AUTH, USER_PASS, NO_ACCEPTABLE = 0x00, 0x02, 0xFF
CMD_CONNECT = 0x01
ATYP_IPV4, ATYP_DOMAIN, ATYP_IPV6 = 0x01, 0x03, 0x04
REP_OK, REP_FAILURE, REP_NOT_ALLOWED, REP_HOST_UNREACHABLE = 0x00, 0x01, 0x02, 0x04
REP_REFUSED, REP_CMD_UNSUPPORTED, REP_ATYP_UNSUPPORTED = 0x05, 0x07, 0x08


@dataclass
class SocksConnection:
    """One CONNECT request as the proxy received it."""

    username: str | None
    password: str | None
    atyp: int
    host: str
    port: int
    reply: int = REP_FAILURE


@dataclass
class SocksProxy:
    """`async with SocksProxy(hosts={...}) as proxy:` then use `proxy.url` / `proxy.address`."""

    hosts: dict[str, tuple[str, int]] = field(default_factory=dict)
    users: dict[str, str] | None = None          # None: any username/password is accepted
    allow_no_auth: bool = False
    fail_hosts: dict[str, int] = field(default_factory=dict)
    connections: list[SocksConnection] = field(default_factory=list)
    port: int = 0
    _server: asyncio.base_events.Server | None = None
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)

    @property
    def address(self) -> str:
        """host:port of the listening socket."""
        return f"127.0.0.1:{self.port}"

    @property
    def requested_hosts(self) -> list[str]:
        """Hosts of every CONNECT, in order."""
        return [c.host for c in self.connections]

    async def __aenter__(self) -> SocksProxy:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        assert self._server is not None
        self._server.close()
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(BaseException):
                await task
        await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """One client: negotiate, CONNECT, relay; any protocol violation closes the socket."""
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            credentials = await self._negotiate(reader, writer)
            if credentials is None:
                return
            upstream = await self._connect(reader, writer, credentials)
            if upstream is not None:
                await self._relay(reader, writer, *upstream)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            self._tasks.discard(task)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _negotiate(self, reader: asyncio.StreamReader,
                         writer: asyncio.StreamWriter) -> tuple[str | None, str | None] | None:
        """Method selection (+ RFC 1929 sub-negotiation); (user, password) or None if refused."""
        version, count = await reader.readexactly(2)
        if version != SOCKS_VERSION:
            return None
        methods = await reader.readexactly(count)
        if USER_PASS in methods:
            writer.write(bytes([SOCKS_VERSION, USER_PASS]))
            await writer.drain()
            return await self._authenticate(reader, writer)
        if self.allow_no_auth and NO_AUTH in methods:
            writer.write(bytes([SOCKS_VERSION, NO_AUTH]))
            await writer.drain()
            return (None, None)
        writer.write(bytes([SOCKS_VERSION, NO_ACCEPTABLE]))
        await writer.drain()
        return None

    async def _authenticate(self, reader: asyncio.StreamReader,
                            writer: asyncio.StreamWriter) -> tuple[str, str] | None:
        """RFC 1929: VER=1, ULEN, UNAME, PLEN, PASSWD -> VER=1, STATUS."""
        version, length = await reader.readexactly(2)
        username = (await reader.readexactly(length)).decode("utf-8", "replace")
        (length,) = await reader.readexactly(1)
        password = (await reader.readexactly(length)).decode("utf-8", "replace")
        ok = version == 1 and (self.users is None or self.users.get(username) == password)
        writer.write(bytes([1, 0 if ok else 1]))
        await writer.drain()
        return (username, password) if ok else None

    async def _connect(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                       credentials: tuple[str | None, str | None],
                       ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter] | None:
        """Read the request, record it, open the upstream connection, reply."""
        version, command, _reserved, atyp = await reader.readexactly(4)
        if atyp == ATYP_IPV4:
            host = str(ipaddress.IPv4Address(await reader.readexactly(4)))
        elif atyp == ATYP_DOMAIN:
            (length,) = await reader.readexactly(1)
            host = (await reader.readexactly(length)).decode("idna")
        elif atyp == ATYP_IPV6:
            host = str(ipaddress.IPv6Address(await reader.readexactly(16)))
        else:
            return None
        (port,) = struct.unpack("!H", await reader.readexactly(2))
        record = SocksConnection(credentials[0], credentials[1], atyp, host, port)
        self.connections.append(record)
        target, reply = self._route(version, command, atyp, host, port)
        upstream = None
        if target is not None:
            try:
                upstream = await asyncio.open_connection(*target)
                reply = REP_OK
            except OSError:
                reply = REP_REFUSED
        record.reply = reply
        bound = upstream[1].get_extra_info("sockname") if upstream else ("0.0.0.0", 0)
        writer.write(bytes([SOCKS_VERSION, reply, 0, ATYP_IPV4]) + socket.inet_aton(bound[0])
                     + struct.pack("!H", bound[1]))
        await writer.drain()
        return upstream

    def _route(self, version: int, command: int, atyp: int, host: str,
               port: int) -> tuple[tuple[str, int] | None, int]:
        """Where a request goes: ((ip, port), 0) or (None, reply code)."""
        if version != SOCKS_VERSION:
            return None, REP_FAILURE
        if command != CMD_CONNECT:
            return None, REP_CMD_UNSUPPORTED
        if atyp == ATYP_IPV6:
            return None, REP_ATYP_UNSUPPORTED
        if host in self.fail_hosts:
            return None, self.fail_hosts[host]
        if atyp == ATYP_DOMAIN:
            target = self.hosts.get(host)
            return (target, REP_OK) if target else (None, REP_HOST_UNREACHABLE)
        if ipaddress.IPv4Address(host).is_loopback:
            return (host, port), REP_OK
        return None, REP_NOT_ALLOWED

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                     up_reader: asyncio.StreamReader, up_writer: asyncio.StreamWriter) -> None:
        """Copy bytes both ways until either side is done."""
        async def pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
            try:
                while data := await source.read(65536):
                    sink.write(data)
                    await sink.drain()
            except ConnectionError:
                pass
            finally:
                with contextlib.suppress(Exception):
                    sink.close()

        try:
            await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))
        finally:
            up_writer.close()
            with contextlib.suppress(Exception):
                await up_writer.wait_closed()
