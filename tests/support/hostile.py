"""Hostile web servers, hostile archives and measured `watcher` processes, for the tests that
prove a hostile site costs one source or one document, never the daemon
(tests/test_hostile_servers.py, tests/test_kill_loop.py).

- `HostileSite`: an aiohttp app on 127.0.0.1 whose `/page/{case}` is one hostile answer
  (a gzip bomb, an endless or 1 byte/s body, a redirect loop, a redirect off the onion, 1 MB
  of header or 100,000 header lines, a reset mid-body, a zip bomb, nested zips) and whose
  `/list/{case}` is a listing page linking to it, so that the same answer can be a source's
  main page or one of its items. `sent` counts the body bytes written per case, which shows
  whether the client stopped downloading.
- `zip_archive`, `zip_bomb`, `nested_zips`: archives built from pre-compressed members, so a
  2.5 GiB bomb costs a second of CPU and a few MB of memory, not a 2.5 GiB compression.
- `run_measured`: a command in its own session, under a small measuring parent: its exit
  status, how long it took and the peak resident set of it and of every child it waited for
  (the daemon joins its workers), with a guard that kills a runaway process tree before it
  hurts the machine. `processes_with`: the processes still carrying a run's marker (orphans).
"""

from __future__ import annotations

import asyncio
import contextlib
import html
import os
import signal
import socket
import struct
import subprocess
import sys
import time
import zlib
from collections.abc import Awaitable, Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from functools import cache
from pathlib import Path

from aiohttp import web

from tests.support.fakesites import FakeSite, gzip_bomb_blocks

MiB = 1 << 20
GZIP_HEADER = 10                 # zlib's gzip header: magic, method, flags, mtime, xfl, os
EMPTY_FINAL_BLOCK = b"\x03\x00"  # a final, fixed-Huffman deflate block holding only end-of-block
DEFLATE = 8                      # zip compression method


# --------------------------------------------------------------------------- archives

@dataclass(frozen=True)
class ZipMember:
    """A zip member already compressed: `data` as stored, `size` and `crc` of what it expands to."""

    name: str
    data: bytes
    crc: int
    size: int
    method: int = DEFLATE


def deflated(name: str, content: bytes) -> ZipMember:
    """A member holding `content`, raw-deflated."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    return ZipMember(name, compressor.compress(content) + compressor.flush(), zlib.crc32(content), len(content))


@cache
def zeros(mib: int) -> ZipMember:
    """A member of `mib` MiB of zero bytes: fakesites' repeatable gzip blocks without their
    gzip header, so its size costs nothing to compress (about 1 KB per MiB), only a CRC."""
    first, repeat = gzip_bomb_blocks()
    block, crc = bytes(MiB), 0
    for _ in range(mib):
        crc = zlib.crc32(block, crc)
    data = first[GZIP_HEADER:] + repeat * (mib - 1) + EMPTY_FINAL_BLOCK
    return ZipMember("zeros.bin", data, crc, mib * MiB)


def zip_archive(members: Sequence[ZipMember]) -> bytes:
    """A zip file of pre-compressed members (zipfile only stores what it compresses itself)."""
    body, central = bytearray(), bytearray()
    for member in members:
        name = member.name.encode()
        fields = struct.pack("<HHHHHIII", 20, 0, member.method, 0, 0x21, member.crc, len(member.data),
                             member.size)
        central += (b"PK\x01\x02" + struct.pack("<H", 20) + fields
                    + struct.pack("<HHHHHII", len(name), 0, 0, 0, 0, 0, len(body)) + name)
        body += b"PK\x03\x04" + fields + struct.pack("<HH", len(name), 0) + name + member.data
    end = b"PK\x05\x06" + struct.pack("<HHHHIIH", 0, 0, len(members), len(members), len(central), len(body), 0)
    return bytes(body + central + end)


def zip_bomb(leak: bytes, members: int = 10, mib: int = 250) -> bytes:
    """`leak.csv`, then `members` members of `mib` MiB of zeros each (2.5 GiB in 2.5 MB): each
    declares a size under the extraction budget, so each is opened and inflated."""
    bomb = zeros(mib)
    return zip_archive([deflated("leak.csv", leak),
                        *(replace(bomb, name=f"bomb-{n}.bin") for n in range(members))])


def nested_zips(leak: bytes, levels: int = 4, fan_out: int = 10, mib: int = 250) -> bytes:
    """42.zip's shape: `leak.csv` and `archive.zip`, which holds `fan_out` zips, each holding
    `fan_out` zips, ... `levels` deep; the innermost ones hold `fan_out` members of `mib` MiB of
    zeros: fan_out^levels x mib MiB (10^4 x 250 MiB = 2.4 TiB). A zip of identical deflate
    streams deflates well again, so the whole is under 2 KB."""
    inner = zip_archive([replace(zeros(mib), name=f"{n}.bin") for n in range(fan_out)])
    for level in range(levels - 1):
        member = deflated("", inner)
        inner = zip_archive([replace(member, name=f"level{level}-{n}.zip") for n in range(fan_out)])
    return zip_archive([deflated("leak.csv", leak), deflated("archive.zip", inner)])


# --------------------------------------------------------------------------- the hostile site

ONION = "examplepaste.onion"
CLEARNET = "clearnet.example"


class HostileSite(FakeSite):
    """`/page/{case}`: one hostile answer; `/list/{case}`: a listing (`table.archive a`) whose
    only item is `/page/{case}`. `zip_leak` is the text hidden in the zip cases' archives."""

    def __init__(self, zip_leak: bytes = b"") -> None:
        self.sent: dict[str, int] = {}
        self.zip_leak = zip_leak
        self.cases: dict[str, Callable[[web.Request], Awaitable[web.StreamResponse]]] = {
            "gzip-bomb": self.gzip_bomb, "endless": self.endless, "drip": self.drip,
            "redirect-loop": self.redirect_loop, "off-onion": self.off_onion,
            "huge-header": self.huge_header, "many-headers": self.many_headers, "reset": self.reset,
            "zip-bomb": self.zip_bomb, "nested-zips": self.nested_zips,
        }
        super().__init__()

    def routes(self, router: web.UrlDispatcher) -> None:
        router.add_get("/page/{case}", self.page)
        router.add_get("/list/{case}", self.listing)

    async def page(self, request: web.Request) -> web.StreamResponse:
        handler = self.cases.get(request.match_info["case"])
        if handler is None:
            raise web.HTTPNotFound()
        return await handler(request)

    async def listing(self, request: web.Request) -> web.Response:
        case = html.escape(request.match_info["case"])
        page = (f"<!doctype html><html><body><table class='archive'><tr><td>"
                f"<a href='/page/{case}'>{case}</a></td></tr></table></body></html>")
        return web.Response(text=page, content_type="text/html")

    async def _stream(self, request: web.Request, case: str, chunks: Callable[[], Iterable[bytes]],
                      headers: dict[str, str] | None = None, pause: float = 0.0) -> web.StreamResponse:
        """Write every chunk `chunks()` yields until the client leaves; `sent[case]` adds up
        the bytes written, over every request of that case."""
        response = web.StreamResponse(headers={"Content-Type": "text/plain", **(headers or {})})
        await response.prepare(request)
        with contextlib.suppress(ConnectionError):
            for chunk in chunks():
                await response.write(chunk)
                self.sent[case] = self.sent.get(case, 0) + len(chunk)
                await asyncio.sleep(pause)
        return response

    async def gzip_bomb(self, request: web.Request) -> web.StreamResponse:
        """Content-Encoding: gzip, inflating to 64 GiB (about 64 MB on the wire)."""
        first, repeat = gzip_bomb_blocks()
        return await self._stream(request, "gzip-bomb", lambda: [first, *([repeat] * (64 * 1024 - 1))],
                                  {"Content-Encoding": "gzip"})

    async def endless(self, request: web.Request) -> web.StreamResponse:
        """A chunked body that never ends (until the client goes away)."""
        block = b"endless " * 8192

        def forever() -> Iterator[bytes]:
            while True:
                yield block
        return await self._stream(request, "endless", forever)

    async def drip(self, request: web.Request) -> web.StreamResponse:
        """One byte a second for two minutes: no read timeout fires, only the total one."""
        return await self._stream(request, "drip", lambda: [b"x"] * 120, pause=1.0)

    async def redirect_loop(self, request: web.Request) -> web.Response:
        raise web.HTTPFound("/page/redirect-loop")

    async def off_onion(self, request: web.Request) -> web.Response:
        raise web.HTTPFound(f"http://{CLEARNET}/list/off-onion")

    async def huge_header(self, request: web.Request) -> web.Response:
        return web.Response(text="ok", headers={"X-Padding": "a" * MiB})

    async def many_headers(self, request: web.Request) -> web.Response:
        response = web.Response(text="ok")
        for n in range(100_000):
            response.headers.add(f"X-Header-{n}", "v")
        return response

    async def reset(self, request: web.Request) -> web.StreamResponse:
        """Declares 1 MiB, sends 256 KiB, then resets the connection (RST, not FIN)."""
        response = web.StreamResponse(headers={"Content-Type": "text/plain"})
        response.content_length = MiB
        await response.prepare(request)
        await response.write(b"r" * (256 * 1024))
        transport = request.transport
        assert transport is not None
        transport.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        transport.abort()
        return response

    async def zip_bomb(self, request: web.Request) -> web.Response:
        return web.Response(body=zip_bomb(self.zip_leak), content_type="application/zip")

    async def nested_zips(self, request: web.Request) -> web.Response:
        return web.Response(body=nested_zips(self.zip_leak), content_type="application/zip")


# --------------------------------------------------------------------------- processes

# Runs a command and writes, to the file named first, the largest resident set (KiB) of it and
# of the children it reaped. A fresh, small process: at exec() Linux carries the peak resident
# set of the process that forked into the new program's (exec_mmap), so measuring a daemon
# forked by the test process directly would report the test's own peak.
MEASURE = """import resource, subprocess, sys
status = subprocess.call(sys.argv[2:])
with open(sys.argv[1], "w") as out:
    out.write(str(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss))
sys.exit(status if status >= 0 else 128 - status)
"""


@dataclass(frozen=True)
class Measured:
    """How a command ended: exit status, seconds, and the peak resident set (MiB) of the
    process and of the children it reaped (a daemon's workers)."""

    returncode: int
    seconds: float
    peak_rss_mib: float
    output: str


def run_measured(argv: Sequence[str], *, cwd: Path, env: dict[str, str], output: Path, timeout: float,
                 rss_guard_mib: float = 1024) -> Measured:
    """Run `argv` under MEASURE in a session of its own; blocking (call it in a thread when the
    test's event loop serves the sites). Past `timeout` seconds, or when the session's
    processes together hold more than `rss_guard_mib`, the whole session is killed and
    AssertionError says why (a runaway bomb must not take the shared machine down)."""
    started = time.monotonic()
    peak = output.with_suffix(".maxrss")
    with output.open("wb") as sink:
        proc = subprocess.Popen([sys.executable, "-c", MEASURE, str(peak), *argv], cwd=cwd, env=env,
                                stdin=subprocess.DEVNULL, stdout=sink, stderr=subprocess.STDOUT,
                                start_new_session=True)
    problem = ""
    while proc.poll() is None and not problem:
        if time.monotonic() - started > timeout:
            problem = f"still running after {timeout:g} s"
        elif (held := session_rss_mib(proc.pid)) > rss_guard_mib:
            problem = f"its processes held {held:.0f} MiB"
        time.sleep(0.05)
    if problem:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    text = output.read_text(encoding="utf-8", errors="replace")
    if problem:
        raise AssertionError(f"{' '.join(argv[:4])}... killed: {problem}\n{text[-3000:]}")
    return Measured(proc.returncode, time.monotonic() - started, int(peak.read_text()) / 1024, text)


def _pids() -> list[int]:
    return [int(name) for name in os.listdir("/proc") if name.isdigit()]


def _read(pid: int, name: str) -> bytes:
    """/proc/PID/NAME, or b"" when the process is gone or not ours."""
    try:
        return Path(f"/proc/{pid}/{name}").read_bytes()
    except OSError:
        return b""


def session_rss_mib(session: int) -> float:
    """Resident memory (MiB) of the processes of `session` together."""
    total_kib = 0
    for pid in _pids():
        stat = _read(pid, "stat")
        fields = stat[stat.rfind(b")") + 2:].split()
        if len(fields) > 3 and int(fields[3]) == session:
            for line in _read(pid, "status").splitlines():
                if line.startswith(b"VmRSS:"):
                    total_kib += int(line.split()[1])
    return total_kib / 1024


@dataclass(frozen=True)
class Leftover:
    """A process left behind by a run: its pid and command line."""

    pid: int
    cmdline: str


def processes_with(marker: str, *needles: str) -> list[Leftover]:
    """Processes (but this one) whose environment holds the `marker` entry (NAME=value),
    which every child and grandchild inherits (workers, multiprocessing's resource tracker),
    or whose command line contains one of `needles` (a config or state path)."""
    found = []
    for pid in _pids():
        if pid == os.getpid():
            continue
        cmdline = _read(pid, "cmdline").replace(b"\0", b" ").decode(errors="replace").strip()
        environ = _read(pid, "environ").split(b"\0")
        if marker.encode() in environ or any(needle in cmdline for needle in needles):
            found.append(Leftover(pid, cmdline))
    return found
