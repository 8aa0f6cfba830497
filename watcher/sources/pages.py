"""Page parsing in child processes with a time budget: a hostile page costs its own parse,
never the event loop, the other sources or the daemon's shutdown.

Why: lxml's HTML tree builder is quadratic in the attributes of one element (a tag with
100,000 of them: 8 s; a 5 MB page of them: minutes), and a parse running in a thread cannot be
stopped. So the daemon parses its pages (listing, board and thread pages, feeds, item
`content` selection) here:

    parser = PageParser()                      # at start; nothing runs until the first parse
    index = await parser.run(partial(parse_index, selector, expect, url), body)
    await parser.close()                       # at stop: the children are killed, < 1 s

`run` pickles `fn` (a top-level function, or a functools.partial of one) and the body to an
idle child (watcher.sources.pagechild) and returns what `fn(body)` returned, or raises what
it raised. A parse longer than the budget kills its child and raises
SourceError("page parse exceeded 20 s"); the next parse starts a new child. Children start on
first use; a second one starts when a parse has waited SPARE_AFTER for the first (a slow page
holds one child, not every source). They die with the daemon, even on `kill -9`.

Cost per page: one round trip of a pickle through a pipe (~0.1-0.2 ms on the event loop for a
50-link listing, measured in tests/test_sources_hostile.py) instead of the parse itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import pickle
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from watcher.sources.errors import SourceError
from watcher.sources.pagechild import HEADER

log = logging.getLogger(__name__)

PARSE_BUDGET = 20.0      # seconds a page parse may take before its child is killed
MAX_CHILDREN = 2         # parsing processes at most (one per core of the machines this runs on)
SPARE_AFTER = 0.5        # seconds a parse waits for a busy child before a second one starts
STOP_WAIT = 1.0          # seconds `close` waits for killed children to be reaped

T = TypeVar("T")


@dataclass(eq=False)
class _Child:
    """One parsing process and its pipes."""

    process: asyncio.subprocess.Process

    @classmethod
    async def start(cls) -> _Child:
        """A new child (its interpreter starts while the first request is being written)."""
        try:
            process = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "watcher.sources.pagechild", str(os.getpid()),
                stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE)
        except OSError as exc:
            raise SourceError(f"cannot start the page parser process: {exc}") from None
        return cls(process)

    async def call(self, request: bytes) -> bytes:
        """Send one framed request, return the reply's payload."""
        stdin, stdout = self.process.stdin, self.process.stdout
        assert stdin is not None and stdout is not None
        try:
            stdin.write(HEADER.pack(len(request)))
            stdin.write(request)
            await stdin.drain()
            (size,) = HEADER.unpack(await stdout.readexactly(HEADER.size))
            return await stdout.readexactly(size)
        except (ConnectionError, asyncio.IncompleteReadError):
            raise SourceError(f"the page parser process ended (exit status {await self.process.wait()})") from None

    def kill(self) -> None:
        """SIGKILL the process (if it still runs)."""
        if self.process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.process.kill()


class PageParser:
    """Runs page parse functions in child processes, each parse within `budget` seconds."""

    def __init__(self, budget: float = PARSE_BUDGET, max_children: int = MAX_CHILDREN) -> None:
        self.budget = budget
        self.max_children = max_children
        self._idle: list[_Child] = []
        self._children: set[_Child] = set()     # every child started and not yet reaped
        self._usable = 0                        # children idle or running a parse (or starting)
        self._freed = asyncio.Event()           # set when a child becomes idle or is dropped
        self._closed = False

    @property
    def pids(self) -> list[int]:
        """Process ids of the children not yet reaped."""
        return [child.process.pid for child in self._children]

    async def run(self, fn: Callable[[bytes], T], body: bytes) -> T:
        """`fn(body)` in a child: its result, or the exception it raised; SourceError when it
        took longer than the budget (the child is killed) or the parser is closed."""
        request = pickle.dumps((fn, body), protocol=pickle.HIGHEST_PROTOCOL)
        child = await self._acquire()
        try:
            async with asyncio.timeout(self.budget):
                status, value = pickle.loads(await child.call(request))
        except TimeoutError:
            self._drop(child)
            log.warning("page parse exceeded %g s: parser process %d stopped", self.budget, child.process.pid)
            await self._reap([child])
            raise SourceError(f"page parse exceeded {self.budget:g} s") from None
        except BaseException:   # the child died, or the poll was cancelled: its reply would be out of step
            self._drop(child)
            if self._closed:
                raise SourceError("the page parser is closed") from None
            raise
        self._idle.append(child)
        self._freed.set()
        if status == "error":
            raise value
        return value

    async def close(self) -> None:
        """Kill every child and wait (at most STOP_WAIT) until they are reaped; parses running
        or waiting raise SourceError, and so does every later `run`."""
        self._closed = True
        self._freed.set()
        self._idle.clear()
        for child in self._children:
            child.kill()
        await self._reap(list(self._children))

    async def _reap(self, children: list[_Child]) -> None:
        """Wait (at most STOP_WAIT) until killed children are reaped; forget them."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(STOP_WAIT):
                await asyncio.gather(*(child.process.wait() for child in children))
        self._children = {c for c in self._children if c.process.returncode is None}

    async def _acquire(self) -> _Child:
        """An idle child; a new one when there is none yet, or when the busy ones have kept
        this parse waiting SPARE_AFTER seconds (up to max_children)."""
        loop = asyncio.get_running_loop()
        spare_at = loop.time() + SPARE_AFTER
        while True:
            if self._closed:
                raise SourceError("the page parser is closed")
            if self._idle:
                return self._idle.pop()
            if self._usable < self.max_children and (self._usable == 0 or loop.time() >= spare_at):
                return await self._start()
            self._freed.clear()
            wait = None if self._usable >= self.max_children else spare_at - loop.time()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(wait):
                    await self._freed.wait()

    async def _start(self) -> _Child:
        """Start a child (counted as usable from now on)."""
        self._usable += 1
        try:
            child = await _Child.start()
        except BaseException:
            self._usable -= 1
            raise
        self._children = {c for c in self._children if c.process.returncode is None} | {child}
        return child

    def _drop(self, child: _Child) -> None:
        """Kill a child that cannot be reused (timed out, dead, or its reply abandoned)."""
        child.kill()
        self._usable -= 1
        self._freed.set()
