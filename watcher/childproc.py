"""What the daemon's helper processes share: the frames on their pipes, dying with the parent.

Two kinds of child processes serve the daemon over their stdin and stdout: the analysis
workers (watcher.worker) and the page parsers (watcher.sources.pagechild). A frame is an
8-byte big-endian length, then that many bytes (a pickle). A child dies with its parent: Linux
sends it SIGKILL when the parent dies (PR_SET_PDEATHSIG), so a `kill -9` of the daemon leaves
no orphan; it ignores SIGINT and SIGTERM, which a terminal or systemd sends to the whole
process group (the daemon stops its children itself). Standard library only: a child imports
this before anything else.
"""

from __future__ import annotations

import asyncio
import ctypes
import logging
import os
import signal
import struct
import sys
from typing import BinaryIO

HEADER = struct.Struct("!Q")
_PR_SET_PDEATHSIG = 1

log = logging.getLogger(__name__)


def frame(payload: bytes) -> bytes:
    """`payload` with its length header (small payloads: a big one is better written in two)."""
    return HEADER.pack(len(payload)) + payload


def read_frame(stream: BinaryIO) -> bytes | None:
    """The next frame's payload; None at the end of the stream."""
    header = stream.read(HEADER.size)
    if len(header) < HEADER.size:
        return None
    (size,) = HEADER.unpack(header)
    payload = stream.read(size)
    return payload if len(payload) == size else None


async def read_frame_async(stream: asyncio.StreamReader) -> bytes | None:
    """The next frame's payload from a child's stdout; None when the child is gone."""
    try:
        (size,) = HEADER.unpack(await stream.readexactly(HEADER.size))
        return await stream.readexactly(size)
    except (asyncio.IncompleteReadError, ConnectionError):
        return None


def write_frame_async(stream: asyncio.StreamWriter, payload: bytes) -> None:
    """Queue a frame to a child's stdin; header and payload apart (no copy of a big body)."""
    stream.write(HEADER.pack(len(payload)))
    stream.write(payload)


def die_with_parent(parent: int) -> None:
    """Have the kernel kill this process when its parent dies (Linux); exit now if the parent
    is already gone (it may have died before the request was made)."""
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
            log.warning("prctl(PR_SET_PDEATHSIG) failed: %s", os.strerror(ctypes.get_errno()))
    if os.getppid() != parent:
        sys.exit(0)


def serve_stdio(parent: int) -> tuple[BinaryIO, BinaryIO]:
    """Set up a child: die with `parent`, ignore SIGINT/SIGTERM, and return (requests, replies).
    The replies get stdout's pipe; anything a library prints (Python or C) goes to stderr, and
    warnings are logged there as the daemon logs them: one redacted line each (a warning may
    quote a zip member or a file name)."""
    from .logs import setup_logging

    setup_logging("WARNING")
    die_with_parent(parent)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    replies = os.fdopen(os.dup(sys.stdout.fileno()), "wb")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    return sys.stdin.buffer, replies
