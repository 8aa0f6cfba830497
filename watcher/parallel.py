"""Both cores for `watcher scan`: a big file cut into slices, a directory spread over a pool.

The pool is forked after the `Scanner` is built (the `fork` start method): every process
shares the compiled patterns, nothing is compiled or loaded again. Small files are analysed
whole, one per task. A big file (`split_at` bytes and more) of plain UTF-8 text or CSV
(`extract.plain_text`: not compressed, no archive, database, workbook or mail, no PDF, HTML or
JSON, no fixed-width NIR field: their parts or records do not follow lines) is cut at
newlines into slices of about `slice_size` bytes, scanned in order by the pool while this
process computes the SHA-256 of the whole; the slices' results are merged into one
`Detection` and scored once, so the report is the one `--jobs 1` gives:

- each slice is scanned with the OVERLAP bytes before it as context and the GUARD bytes after
  it as look-ahead, and accepts the matches that end inside it (what `ChunkWindow` does at a
  chunk boundary);
- the head's shape (format, delimiter, NIR and key columns) is sniffed once, here, on the same
  first chunk the first slice reads; the other slices count their records with it
  (`ShapeReader.resume`) and `SliceCount.merge` adds them up. Records are lines, so a cut
  inside a quoted field counts as a chunk boundary there does in one process;
- a cut is never made between two lines that could continue a base64 block, and a slice in
  which the base64 trigger fires sends the whole file back to one process (blocks are
  extracted after the text, in order, against one budget);
- values come back as one string per detector (values joined by newlines: pickling a set
  of 400,000 strings costs ~0.1 s), merged into sets here; samples are the first values in
  slice order (each slice sends its first FIRSTS distinct values per detector: a slice whose
  first FIRSTS values were all seen before may give other samples than one process).

One small document is analysed here, without starting a pool; stdin too (it cannot be cut).
"""

from __future__ import annotations

import hashlib
import itertools
import multiprocessing
import os
import re
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from multiprocessing.pool import AsyncResult, Pool
from pathlib import Path
from typing import IO, TYPE_CHECKING

from .analyze import Analyzer
from .detect import SAMPLES_PER_DETECTOR, Detection, KeyTally, PartScan
from .detect.base import CHECKED
from .detect.compiled import speedups
from .detect.engine import GUARD, OVERLAP, ChunkWindow
from .detect.shape import Shape, ShapeReader, SliceCount, Sniffed
from .extract import CHUNK, HEAD, plain_text
from .extract.blobs import triggered_py
from .extract.decode import plain_spaces_and_digits, to_utf8
from .report import Report

if TYPE_CHECKING:
    from .watchlist.members import Watchlists

MiB = 1 << 20
SPLIT_AT = 32 * MiB          # a file this big is cut into slices
SLICE = 16 * MiB             # about this long each (more slices than processes: balanced)
SEARCH = MiB                 # how far past a slice's nominal end a cut is looked for
FIRSTS = 32                  # first distinct values per detector a slice sends (samples)
TRIGGER_BACK = 256           # bytes of the previous chunk the base64 trigger looks at again
_CONTINUATION = bytes(range(0x80, 0xC0))
_NON_ASCII = bytes(range(0x80, 0x100))
# Two lines a cut must not separate: the base64 trigger's two wrapped lines.
_B64_LINE_END = re.compile(rb"[A-Za-z0-9+/]{56}\r?\Z")
_B64_LINE_START = re.compile(rb"[ \t]*[A-Za-z0-9+/]{56}")

Document = Path | str
Outcome = Report | Exception


def available_cpus() -> int:
    """The CPUs this process may use: its affinity, capped by its cgroup's CPU quota."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cpus = os.cpu_count() or 1
    quota = _cgroup_quota()
    return max(1, min(cpus, quota) if quota else cpus)


def _cgroup_quota() -> int | None:
    """ceil(quota / period) of the cgroup v2 `cpu.max` of this process, None when unlimited."""
    try:
        lines = Path("/proc/self/cgroup").read_text().splitlines()
    except OSError:
        lines = []
    groups = [line.split(":", 2)[2] for line in lines if line.startswith("0::")]
    for group in [*groups, "/"]:
        try:
            quota, period = (Path("/sys/fs/cgroup") / group.lstrip("/") / "cpu.max").read_text().split()[:2]
        except (OSError, ValueError):
            continue
        return None if quota == "max" else max(1, -(-int(quota) // int(period)))
    return None


# -- in the pool's processes ---------------------------------------------------------------------

_inherited: list[Analyzer] = []      # the analyzer a pool process was forked with (one, set once)


def _adopt(analyzer: Analyzer) -> None:
    _inherited.append(analyzer)


def _analyze_file(path: str, reveal: bool) -> Report:
    return _inherited[0].analyze_path(Path(path), reveal=reveal)


@dataclass(frozen=True)
class _Task:
    path: str
    start: int
    end: int
    last: bool
    sniffed: Sniffed | None          # None for the first slice: its reader sniffs the head itself


@dataclass
class _SliceResult:
    fallback: bool = False           # the base64 trigger fired: one process for this file
    values: dict[str, str | set[str]] = field(default_factory=dict)
    firsts: dict[str, list[str]] = field(default_factory=dict)
    tallies: dict[str, tuple[int, int]] = field(default_factory=dict)
    count: SliceCount | None = None
    loose_nirs: bool = False


class _SliceReader(ShapeReader):
    """A shape reader that stops reading where the slice ends (the look-ahead is not its)."""

    reading = True
    count: SliceCount | None = None

    def feed(self, chunk: bytes) -> None:
        if self.reading:
            super().feed(chunk)

    def finish(self) -> Shape:
        self.count = self.finish_slice()
        return self.shape


class _SliceWindow(ChunkWindow):
    """`ChunkWindow` resumed after `prefix` (context, not accepted), accepting nothing past
    `stop` (set once the slice's own text is fed: its length)."""

    def __init__(self, prefix: bytes) -> None:
        super().__init__()
        self._tail = prefix
        self._accept_from = len(prefix)
        self._origin = -len(prefix)          # where the next buffer starts, from the slice's start
        self.stop: int | None = None

    def next(self, chunk: bytes, final: bool) -> tuple[bytes, int, int]:
        origin = self._origin
        buf, accept_from, accept_to = super().next(chunk, final)
        self._origin = origin + len(buf) - len(self._tail)
        if self.stop is not None:
            accept_to = min(accept_to, self.stop - origin)
        return buf, accept_from, accept_to


class _SlicePart(PartScan):
    """One slice of a part: windowed as above, noting the first distinct values it finds.

    NIRs are kept in lists, not a set: the parent builds the one set of the document (a
    set here too cost the pool ~0.25 s of CPU per 900,000 NIRs; a slice repeats few)."""

    def __init__(self, detection: Detection, prefix: bytes, sniffed: Sniffed | None) -> None:
        super().__init__(detection)
        self.firsts: dict[str, list[str]] = {name: [] for name in detection.values}
        self.nirs: list[list[str]] = []
        self.window = _SliceWindow(prefix)
        add = self._shape_nir
        self.reader = _SliceReader(add) if sniffed is None else _SliceReader.resume(add, sniffed)
        self._window = self.window
        self._shape = self.reader

    def _shape_nir(self, value: str) -> None:
        self._note("nir", [value])
        self._detection.add("nir", value)

    def _accept(self, name: str, accepted: Iterable[str]) -> None:
        if name == "nir" or len(self.firsts[name]) < FIRSTS:
            accepted = accepted if isinstance(accepted, list) else list(accepted)
            if len(self.firsts[name]) < FIRSTS:
                self._note(name, accepted)
            if name == "nir":
                self.nirs.append(accepted)
                return
        super()._accept(name, accepted)

    def values(self) -> dict[str, str | set[str]]:
        """Each detector's values, packed for the pipe (`_pack`)."""
        values = self._detection.values
        packed = {name: _pack(found) for name, found in values.items() if name != "nir"}
        packed["nir"] = _pack([*itertools.chain.from_iterable(self.nirs), *values["nir"]])
        return packed

    def _note(self, name: str, values: list[str]) -> None:
        firsts, seen = self.firsts[name], self._detection.values[name]
        for value in values:
            if len(firsts) >= FIRSTS:
                return
            if value not in seen and value not in firsts:
                firsts.append(value)


def _text(raw: bytes) -> bytes:
    """What extraction makes of whole UTF-8 lines (validated, composed, plain spaces)."""
    return plain_spaces_and_digits(b"".join(to_utf8(iter([raw]), "utf-8")))


def _raw(handle: IO[bytes], start: int, end: int) -> Iterator[bytes]:
    handle.seek(start)
    while start < end and (chunk := handle.read(min(CHUNK, end - start))):
        start += len(chunk)
        yield chunk


def _read_at(handle: IO[bytes], start: int, end: int) -> bytes:
    handle.seek(start)
    return handle.read(end - start)


def _triggered(data: bytes) -> bool:
    return bool(speedups.base64_run(data)) if speedups else triggered_py(data)


def _scan_slice(task: _Task) -> _SliceResult:
    detection = _inherited[0].scanner.start()
    with open(task.path, "rb") as handle:
        prefix = _read_at(handle, max(0, task.start - OVERLAP), task.start).lstrip(_CONTINUATION)
        part = _SlicePart(detection, _text(prefix), task.sniffed)
        tail, length = b"", 0
        for chunk in to_utf8(_raw(handle, task.start, task.end), "utf-8"):
            chunk = plain_spaces_and_digits(chunk)
            if _triggered(tail + chunk):
                return _SliceResult(fallback=True)
            tail = chunk[-TRIGGER_BACK:]
            length += len(chunk)
            part.feed(chunk)
        part.reader.reading = False
        part.window.stop = length
        if not task.last:
            suffix = _read_at(handle, task.end, task.end + GUARD)
            part.feed(_text(suffix[:len(suffix.rstrip(_NON_ASCII))]))
        part.close()
    return _SliceResult(
        values=part.values(),
        firsts=part.firsts,
        tallies={kind: (t.passed, t.failed) for kind, t in detection.tallies.items()},
        count=part.reader.count,
        loose_nirs=detection.loose_nirs,
    )


def _pack(values: set[str] | list[str]) -> str | set[str]:
    """One string for the pipe (the values joined by newlines), unless a value holds one."""
    if not values:
        return set()
    joined = "\n".join(values)
    return joined if joined.count("\n") == len(values) - 1 else set(values)


# -- in the parent -------------------------------------------------------------------------------

def _splittable(path: Path, size: int, split_at: int) -> bool:
    """Plain UTF-8 text (`extract.plain_text`), big enough."""
    if size < split_at:
        return False
    with open(path, "rb") as handle:
        head = handle.read(HEAD)
    return plain_text(head)


def _cuts(handle: IO[bytes], size: int, slice_size: int) -> list[int]:
    """Slice bounds: after a newline about every `slice_size` bytes (the first slice at least
    one read long, so its head is the one extraction sniffs), never between two lines that
    could be one base64 block."""
    cuts = [0]
    nominal = max(slice_size, CHUNK)
    while nominal < size - slice_size // 2:
        cut = _cut_near(handle, nominal)
        if cut is None:
            break
        cuts.append(cut)
        nominal = cut + slice_size
    cuts.append(size)
    return cuts


def _cut_near(handle: IO[bytes], nominal: int) -> int | None:
    before = max(0, nominal - 4096)
    block = _read_at(handle, before, nominal + SEARCH)
    newline = block.find(b"\n", nominal - before)
    while newline >= 0:
        line_start = block.rfind(b"\n", 0, newline) + 1
        after_end = block.find(b"\n", newline + 1)
        after = block[newline + 1:after_end if after_end >= 0 else len(block)]
        if not (_B64_LINE_END.search(block, line_start, newline) and _B64_LINE_START.match(after)):
            return before + newline + 1
        newline = after_end
    return None


def _sha256(path: Path, out: list[str]) -> None:
    with open(path, "rb") as handle:
        out.append(hashlib.file_digest(handle, "sha256").hexdigest())


class _Merge:
    """The slices' results, in order, into one Detection; with watchlists, the AES blocks of
    each slice's NIRs too (`MemberHasher.blocks_of_lines`), made from their packed string as
    it arrives (this process mostly waits for the pool meanwhile) instead of from the
    document's set once the pool is done (0.1 s of 908,528 NIRs, all of it added to the wall
    time)."""

    def __init__(self, detection: Detection, watchlists: Watchlists | None) -> None:
        self.detection = detection
        self.tallies = {kind: KeyTally() for kind in CHECKED}
        self.counts: list[SliceCount] = []
        self.hasher = watchlists.hasher if watchlists else None
        self.member_blocks: list[bytes] = []

    def add(self, result: _SliceResult) -> None:
        detection = self.detection
        for name, packed in result.values.items():
            seen, samples = detection.values[name], detection.samples[name]
            for value in result.firsts.get(name, ()):
                if len(samples) >= SAMPLES_PER_DETECTOR:
                    break
                if value not in seen:
                    samples.append(value)
            seen.update(packed.split("\n") if isinstance(packed, str) else packed)
        for kind, (passed, failed) in result.tallies.items():
            self.tallies[kind].add(KeyTally(passed, failed))
        if result.count is not None:
            self.counts.append(result.count)
        detection.loose_nirs = detection.loose_nirs or result.loose_nirs
        nirs = result.values.get("nir")
        if self.hasher and nirs:
            self.member_blocks.append(self.hasher.blocks_of_lines(nirs if isinstance(nirs, str) else "\n".join(nirs)))

    def finish(self, sniffed: Sniffed) -> Detection:
        detection = self.detection
        detection.shapes.append(SliceCount.merge(sniffed, self.counts))
        detection.part_tallies.append(self.tallies)
        for kind, tally in self.tallies.items():
            detection.tallies[kind].add(tally)
        return detection


class ScanPool:
    """An analyzer, and a pool forked from it when first needed (`jobs` > 1)."""

    def __init__(self, analyzer: Analyzer, jobs: int, split_at: int = SPLIT_AT, slice_size: int = SLICE) -> None:
        self.analyzer = analyzer
        self.jobs = max(1, jobs)
        self.split_at = split_at
        self.slice_size = max(slice_size, 2 * HEAD)
        self._pool: Pool | None = None

    def __enter__(self) -> ScanPool:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._pool is not None:
            self._pool.terminate()
            self._pool.join()
            self._pool = None

    @property
    def pool(self) -> Pool:
        if self._pool is None:
            context = multiprocessing.get_context("fork")
            self._pool = context.Pool(self.jobs, initializer=_adopt, initargs=(self.analyzer,))
        return self._pool

    def reports(self, documents: Iterable[Document], whole: Callable[[Document], Report],
                reveal: bool = False) -> Iterator[tuple[Document, Outcome]]:
        """(document, its report or the exception that stopped it), in the documents' order.
        `whole` analyses one document in this process (stdin, `--jobs 1`)."""
        documents = iter(documents)
        first = list(itertools.islice(documents, 2))
        if self.jobs == 1 or (len(first) == 1 and not self._big(first[0])):    # no pool to start
            for document in itertools.chain(first, documents):
                yield document, _outcome(whole, document)
            return
        pending: deque[tuple[Document, AsyncResult | None]] = deque()
        for document in itertools.chain(first, documents):
            if document == "-" or self._big(document):
                yield from _drain(pending, 0)
                yield document, _outcome(self._big_or_whole, document, whole, reveal)
                continue
            pending.append((document, self.pool.apply_async(_analyze_file, (str(document), reveal))))
            yield from _drain(pending, 2 * self.jobs)
        yield from _drain(pending, 0)

    def _big(self, document: Document) -> bool:
        return isinstance(document, Path) and _size(document) >= self.split_at

    def _big_or_whole(self, document: Document, whole: Callable[[Document], Report], reveal: bool) -> Report:
        if isinstance(document, Path):
            report = self.analyze_split(document, reveal)
            if report is not None:
                return report
        return whole(document)

    def analyze_split(self, path: Path, reveal: bool = False) -> Report | None:
        """The report of a big text file scanned by slices, or None when it cannot be cut
        (see the module's docstring): the caller analyses it whole."""
        size = _size(path)
        if not _splittable(path, size, self.split_at):
            return None
        with open(path, "rb") as handle:
            cuts = _cuts(handle, size, self.slice_size)
            head = _read_at(handle, 0, min(CHUNK, cuts[1]))
        reader = ShapeReader(lambda _: None)
        reader.feed(plain_spaces_and_digits(next(to_utf8(iter([head]), "utf-8"), b"")))
        sniffed = reader.sniffed() if len(cuts) > 2 else None
        if sniffed is None:
            return None
        digest: list[str] = []
        hashing = threading.Thread(target=_sha256, args=(path, digest), name="sha256")
        hashing.start()
        try:
            merged = self._scan_slices(path, cuts, sniffed)
        finally:
            hashing.join()
        if merged is None:
            return None
        return self.analyzer.report(merged.finish(sniffed), str(path), digest[0], size, [], reveal,
                                    merged.member_blocks if self.analyzer.watchlists else None)

    def _scan_slices(self, path: Path, cuts: list[int], sniffed: Sniffed) -> _Merge | None:
        merge = _Merge(self.analyzer.scanner.start(), self.analyzer.watchlists)
        pending: deque[AsyncResult] = deque()
        fallback = False
        for index in range(len(cuts) - 1):
            task = _Task(str(path), cuts[index], cuts[index + 1], index == len(cuts) - 2, sniffed if index else None)
            pending.append(self.pool.apply_async(_scan_slice, (task,)))
            while len(pending) > 2 * self.jobs and not fallback:
                fallback = _merged(merge, pending.popleft().get())
            if fallback:
                break
        while pending:
            result = pending.popleft().get()
            fallback = fallback or _merged(merge, result)
        return None if fallback else merge


def _merged(merge: _Merge, result: _SliceResult) -> bool:
    """Merge a slice; True when it sends the file back to one process."""
    if result.fallback:
        return True
    merge.add(result)
    return False


def _size(path: Path) -> int:
    try:
        return path.stat().st_size if path.is_file() else 0
    except OSError:
        return 0


def _outcome(work: Callable[..., Report], *args: object) -> Outcome:
    try:
        return work(*args)
    except Exception as exc:          # a bug or a hostile file: this document only
        return exc


def _drain(pending: deque, keep: int) -> Iterator[tuple[Document, Outcome]]:
    while len(pending) > keep:
        document, result = pending.popleft()
        yield document, _outcome(result.get)


__all__ = ["SLICE", "SPLIT_AT", "ScanPool", "available_cpus"]
