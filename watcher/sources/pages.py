"""Page parsing in child processes with a time budget: a hostile page costs its own parse,
never the event loop, the other sources or the daemon's shutdown.

Why: lxml's HTML tree builder is quadratic in the attributes of one element (a tag with
100,000 of them: 8 s; a 5 MB page of them: minutes), and a parse running in a thread cannot be
stopped. So the daemon parses its pages (listing, board and thread pages, feeds, Telegram
channel previews, item `content` selection) here:

    parser = PageParser()                      # at start; nothing runs until the first parse
    index = await parser.run(partial(parse_index, selector, expect, url), body)
    await parser.close()                       # at stop: the children are killed, < 1 s

`run` pickles `fn` (a top-level function, or a functools.partial of one) and the body to an
idle child (watcher.sources.pagechild) and returns what `fn(body)` returned, or raises what
it raised. A parse longer than the budget kills its child and raises
SourceError("page parse exceeded 20 s"); the next parse starts a new child. Children start on
first use. Parses waiting for a child are served in order; a second child starts when a parse
has run SPARE_AFTER on a busy one (a slow page holds one child, not every source; a burst of
small pages does not start a second). Children die with the daemon, even on `kill -9`.

Cost per page on the event loop: a pickle through a pipe and back, 0.08-0.10 ms of CPU for
the bench's 50-link listing page instead of 0.4 ms to parse it in-process (0.7 ms wall per
round trip, the child's parse included). A child holds ~25-28 MB: it imports only the parsing
modules. (PR_SET_PDEATHSIG follows the thread that started the child: the event loop's.)
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import pickle
import sys
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from watcher.sources.errors import SourceError
from watcher.childproc import read_frame_async, write_frame_async

log = logging.getLogger(__name__)

PARSE_BUDGET = 20.0      # seconds a page parse may take before its child is killed
MAX_CHILDREN = 2         # parsing processes at most (one per core of the machines this runs on)
SPARE_AFTER = 1.0        # seconds a parse runs on a busy child before a second child starts
STOP_WAIT = 1.0          # seconds `close` waits for killed children to be reaped
START_WAIT = 30.0        # seconds a new child may take to say it is ready

T = TypeVar("T")


@dataclass(eq=False)
class _Child:
    """One parsing process and its pipes; `busy_since`: loop time its current parse began."""

    process: asyncio.subprocess.Process
    busy_since: float = 0.0

    @classmethod
    async def start(cls) -> _Child:
        """A new child, once it says it is ready (its start is no parse's budget)."""
        try:
            process = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "watcher.sources.pagechild", str(os.getpid()),
                stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE)
        except OSError as exc:
            raise SourceError(f"cannot start the page parser process: {exc}") from None
        child = cls(process)
        try:
            async with asyncio.timeout(START_WAIT):
                await child.reply()
        except TimeoutError:
            child.kill()
            raise SourceError(f"the page parser process did not start within {START_WAIT:g} s") from None
        except BaseException:
            child.kill()
            raise
        return child

    async def call(self, request: bytes) -> bytes:
        """Send one framed request, return the reply's payload."""
        stdin = self.process.stdin
        assert stdin is not None
        try:
            write_frame_async(stdin, request)
            await stdin.drain()
        except ConnectionError:
            raise SourceError(f"the page parser process ended (exit status {await self.process.wait()})") from None
        return await self.reply()

    async def reply(self) -> bytes:
        """The payload of the next frame the child sends."""
        stdout = self.process.stdout
        assert stdout is not None
        payload = await read_frame_async(stdout)
        if payload is None:
            raise SourceError(f"the page parser process ended (exit status {await self.process.wait()})")
        return payload

    def kill(self) -> None:
        """SIGKILL the process (if it still runs)."""
        if self.process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.process.kill()


class PageParser:
    """Runs page parse functions in child processes, each parse within `budget` seconds."""

    def __init__(self, budget: float = PARSE_BUDGET, max_children: int = MAX_CHILDREN,
                 spare_after: float = SPARE_AFTER) -> None:
        self.budget = budget
        self.max_children = max_children
        self.spare_after = spare_after
        self._idle: list[_Child] = []
        self._busy: set[_Child] = set()
        self._starting = 0
        self._children: set[_Child] = set()     # every child started and not yet reaped
        # Parses waiting for a child, in order: handed one, or None (look again: a child was
        # dropped, or the parser closed).
        self._waiters: deque[asyncio.Future[_Child | None]] = deque()
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
        self._release(child)
        if status == "error":
            raise value
        return value

    async def close(self) -> None:
        """Kill every child and wait (at most STOP_WAIT) until they are reaped; parses running
        or waiting raise SourceError, and so does every later `run`."""
        self._closed = True
        self._wake(len(self._waiters))
        self._idle.clear()
        self._busy.clear()
        for child in self._children:
            child.kill()
        await self._reap(list(self._children))

    @property
    def _usable(self) -> int:
        """Children idle, busy or starting."""
        return len(self._idle) + len(self._busy) + self._starting

    async def _acquire(self) -> _Child:
        """An idle child, else the next one freed (parses are served in order); a new child
        when there is none, or when a parse has run `spare_after` on a busy one."""
        loop = asyncio.get_running_loop()
        while True:
            if self._closed:
                raise SourceError("the page parser is closed")
            if self._idle:
                return self._busy_now(self._idle.pop())
            wait = self._spare_wait(loop)
            if self._usable < self.max_children and (self._usable == 0 or wait == 0):
                return await self._start()
            child = await self._wait_turn(loop, wait)
            if child is not None:
                return child

    def _spare_wait(self, loop: asyncio.AbstractEventLoop) -> float | None:
        """Seconds until a busy child has spent `spare_after` on its current parse (0: one
        has); None when no second child may start."""
        if self._usable >= self.max_children:
            return None
        if not self._busy:              # the first child is starting: look again shortly
            return self.spare_after
        oldest = min(child.busy_since for child in self._busy)
        return max(0.0, oldest + self.spare_after - loop.time())

    async def _wait_turn(self, loop: asyncio.AbstractEventLoop, wait: float | None) -> _Child | None:
        """The child handed to this parse in its turn; None when `wait` ran out first, or when
        the parser asks the waiting parses to look again."""
        waiter: asyncio.Future[_Child | None] = loop.create_future()
        self._waiters.append(waiter)
        try:
            async with asyncio.timeout(wait):
                return await waiter
        except TimeoutError:            # a child may have been handed over as the time ran out
            return waiter.result() if waiter.done() and not waiter.cancelled() else None
        except BaseException:           # cancelled: a child handed over goes to the next parse
            if waiter.done() and not waiter.cancelled() and (child := waiter.result()) is not None:
                self._release(child)
            raise
        finally:
            with contextlib.suppress(ValueError):
                self._waiters.remove(waiter)

    async def _start(self) -> _Child:
        """A new child, busy from now on."""
        self._starting += 1
        try:
            child = await _Child.start()
        finally:
            self._starting -= 1
        self._children = {c for c in self._children if c.process.returncode is None} | {child}
        return self._busy_now(child)

    def _busy_now(self, child: _Child) -> _Child:
        """Mark `child` as running a parse from now on."""
        child.busy_since = asyncio.get_running_loop().time()
        self._busy.add(child)
        return child

    def _release(self, child: _Child) -> None:
        """A child done with its parse: to the first waiting parse, else idle."""
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                child.busy_since = asyncio.get_running_loop().time()
                waiter.set_result(child)
                return
        self._busy.discard(child)
        self._idle.append(child)

    def _drop(self, child: _Child) -> None:
        """Kill a child that cannot be reused (timed out, dead, or its reply abandoned); the
        first waiting parse looks again (it may start a new child)."""
        child.kill()
        self._busy.discard(child)
        self._wake(1)

    def _wake(self, count: int) -> None:
        """Tell up to `count` waiting parses to look again."""
        while count and self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                count -= 1

    async def _reap(self, children: list[_Child]) -> None:
        """Wait (at most STOP_WAIT) until killed children are reaped; forget them."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(STOP_WAIT):
                await asyncio.gather(*(child.process.wait() for child in children))
        self._children = {c for c in self._children if c.process.returncode is None}
