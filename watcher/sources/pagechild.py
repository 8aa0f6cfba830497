"""The page-parser child process: `python -m watcher.sources.pagechild PARENT_PID`.

Started by watcher.sources.pages.PageParser (which imports this module for the frame header
only). It reads requests on stdin and writes replies on stdout until stdin closes; a frame is an 8-byte
big-endian length, then a pickle. An empty frame first says the child is ready (the parsing
modules imported: the first parse is not slowed by them). A request is `(fn, body)`; the reply
is `("ok", fn(body))` or `("error", exception)`. The child imports nothing else (no HTTP
client, no pipeline), to stay small.

It dies with its parent: Linux sends it SIGKILL when the parent dies (PR_SET_PDEATHSIG), so
a `kill -9` of the daemon leaves no orphan. It ignores SIGINT and SIGTERM, which a terminal or
systemd sends to the whole process group: the daemon stops it itself.
"""

from __future__ import annotations

import ctypes
import importlib
import logging
import os
import pickle
import signal
import struct
import sys
import traceback
from typing import BinaryIO

from watcher.sources.errors import SourceError

HEADER = struct.Struct("!Q")
PARSING_MODULES = ("watcher.sources.links", "watcher.sources.threads", "watcher.sources.feedparse")
_PR_SET_PDEATHSIG = 1

log = logging.getLogger(__name__)


def frame(payload: bytes) -> bytes:
    """`payload` with its length header."""
    return HEADER.pack(len(payload)) + payload


def read_frame(stream: BinaryIO) -> bytes | None:
    """The next frame's payload; None at the end of the stream."""
    header = stream.read(HEADER.size)
    if len(header) < HEADER.size:
        return None
    (size,) = HEADER.unpack(header)
    payload = stream.read(size)
    return payload if len(payload) == size else None


def answer(request: bytes) -> bytes:
    """The pickled reply to one pickled `(fn, body)` request."""
    try:
        fn, body = pickle.loads(request)
        outcome: tuple[str, object] = ("ok", fn(body))
    except Exception as exc:     # a hostile page or a bug: the caller gets the exception
        if not isinstance(exc, SourceError):
            exc.add_note(f"in the page parser process:\n{traceback.format_exc()}")
        outcome = ("error", exc)
    try:
        return pickle.dumps(outcome, protocol=pickle.HIGHEST_PROTOCOL)
    except Exception as exc:     # an outcome pickle cannot carry
        failure = SourceError(f"page parser: cannot send back {type(outcome[1]).__name__}: {exc}")
        return pickle.dumps(("error", failure), protocol=pickle.HIGHEST_PROTOCOL)


def die_with_parent(parent: int) -> None:
    """Have the kernel kill this process when its parent dies (Linux); exit now if the parent
    is already gone (it may have died before the request was made)."""
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
            log.warning("page parser: prctl(PR_SET_PDEATHSIG) failed: %s", os.strerror(ctypes.get_errno()))
    if os.getppid() != parent:
        sys.exit(0)


def main(argv: list[str]) -> int:
    """Serve requests from the parent whose pid is argv[1] until it closes stdin."""
    die_with_parent(int(argv[1]))
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    # The replies get stdout's pipe; anything a library prints goes to stderr instead.
    replies = os.fdopen(os.dup(sys.stdout.fileno()), "wb")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    for module in PARSING_MODULES:
        importlib.import_module(module)
    replies.write(frame(b""))
    replies.flush()
    requests = sys.stdin.buffer
    while (request := read_frame(requests)) is not None:
        replies.write(frame(answer(request)))
        replies.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
