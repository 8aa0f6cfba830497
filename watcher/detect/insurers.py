"""Insurer and tiers-payant operator names from the shipped watch list.

`data/insurers.txt`: one insurer a line, `canonical|variant|...`; a `~` marks a name that is
ambiguous alone (a first name, a common word, a short acronym) and counts only near French
health-insurance words or health-data column names (`text.HEALTH_CONTEXT`). Matching is case-
and accent-insensitive on Unicode word boundaries; a name inside a longer name of another
insurer at the same place (`Mutuelle Générale` inside `Mutuelle Générale de la Police`) counts
only as the longer one.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from collections.abc import Iterator

from .base import Hits, Pattern, Window
from .text import HealthContext, Vocabulary, fold_key


@dataclass(frozen=True)
class Name:
    text: str
    canonical: str
    ambiguous: bool


def parse_watch_list(text: str) -> list[Name]:
    """Parse the `canonical|variant|~ambiguous` format (comments start with '#').

    Variants differing only in case are kept once; accented and plain spellings both stay
    (`Viamedis`, `Viamédis`: the scan looks for each as written).
    """
    names: list[Name] = []
    seen: set[str] = set()
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        variants = [v.strip() for v in line.split("|") if v.strip()]
        canonical = variants[0].lstrip("~")
        for variant in variants:
            key = variant.lstrip("~").casefold()
            if key in seen:
                continue
            seen.add(key)
            names.append(Name(variant.lstrip("~"), canonical, variant.startswith("~")))
    return names


def load_watch_list(path: Path | None = None) -> list[Name]:
    """The shipped list, or an operator's own file in the same format."""
    if path is None:
        text = resources.files("watcher.data").joinpath("insurers.txt").read_text("utf-8")
    else:
        text = Path(path).read_text("utf-8")
    return parse_watch_list(text)


def _longer_names(names: list[Name]) -> list[list[int]]:
    """For each name, the other insurers' names that contain it as whole words."""
    keys = [f" {fold_key(n.text)} " for n in names]
    return [
        [j for j, other in enumerate(keys) if j != i and key in other and names[j].canonical != names[i].canonical]
        for i, key in enumerate(keys)
    ]


class InsurerDetector:
    name = "insurer"
    sensitive = False

    def __init__(self, names: list[Name] | None = None) -> None:
        self.names = names if names is not None else load_watch_list()
        ambiguous = frozenset(i for i, n in enumerate(self.names) if n.ambiguous)
        self.vocabulary = Vocabulary([n.text for n in self.names], located=ambiguous, group="names")
        self._longer = _longer_names(self.names)

    def patterns(self) -> list[Pattern]:
        return self.vocabulary.patterns()

    def find(self, buf: bytes, hits: Hits, window: Window, found: set[str]) -> Iterator[str]:
        located: dict[int, list[int]] | None = None       # every occurrence of the ambiguous names
        context = HealthContext(buf)                      # searched only where an ambiguous name asks
        for entry, ends in self.vocabulary.entries(hits).items():
            name = self.names[entry]
            if name.canonical in found:
                continue
            if self._qualifies(buf, entry, window, ends, context):
                yield name.canonical
            elif name.ambiguous:                          # its first occurrence had no context
                if located is None:
                    located = self.vocabulary.located_ends(buf, window)
                if self._qualifies(buf, entry, window, located.get(entry, []), context):
                    yield name.canonical

    def _qualifies(self, buf: bytes, entry: int, window: Window, ends: list[int], context: HealthContext) -> bool:
        """An occurrence of `entry` not inside a longer name, and near health context if the
        name is ambiguous."""
        for start, end in self.vocabulary.occurrences(buf, entry, window, ends):
            if any(self.vocabulary.covers(buf, other, start, end) for other in self._longer[entry]):
                continue
            if self.names[entry].ambiguous and not context.near(start, end):
                continue
            return True
        return False

    def mask(self, value: str) -> str:
        return value
