"""Insurer and tiers-payant operator names from the shipped watch list.

`data/insurers.txt`: one insurer a line, `canonical|variant|...`; a `~` marks a name that is
ambiguous alone (a first name, a common word, a short acronym) and counts only near
health-insurance words. Matching is case- and accent-insensitive on Unicode word boundaries;
a name inside a longer name matched at the same place (`Mutuelle Générale` inside `Mutuelle
Générale de la Police`) is not counted twice.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Iterator

from .base import Pattern, Span
from .text import folded_pattern, has_health_context, on_word_boundaries


@dataclass(frozen=True)
class Name:
    text: str
    canonical: str
    ambiguous: bool


def parse_watch_list(text: str) -> list[Name]:
    """Parse the `canonical|variant|~ambiguous` format (comments start with '#')."""
    names: list[Name] = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        variants = [v.strip() for v in line.split("|") if v.strip()]
        canonical = variants[0].lstrip("~")
        seen: set[str] = set()
        for variant in variants:
            ambiguous = variant.startswith("~")
            text_ = variant.lstrip("~")
            if text_.casefold() in seen:
                continue
            seen.add(text_.casefold())
            names.append(Name(text_, canonical, ambiguous))
    return names


def load_watch_list(path: Path | None = None) -> list[Name]:
    """The shipped list, or an operator's own file in the same format."""
    if path is None:
        text = resources.files("watcher.data").joinpath("insurers.txt").read_text("utf-8")
    else:
        text = Path(path).read_text("utf-8")
    return parse_watch_list(text)


class InsurerDetector:
    name = "insurer"
    sensitive = False

    def __init__(self, names: list[Name] | None = None) -> None:
        self.names = names if names is not None else load_watch_list()

    def patterns(self) -> list[Pattern]:
        return [Pattern(folded_pattern(n.text)) for n in self.names]

    def find(self, buf: bytes, spans: list[Span]) -> Iterator[str]:
        accepted = sorted(
            ((start, end, self.names[tag]) for start, end, tag in spans if on_word_boundaries(buf, start, end)),
            key=lambda span: (span[0], -span[1]),
        )
        cover_end = -1          # furthest end of the spans seen so far (sorted by start)
        cover = (-1, -1)
        for start, end, name in accepted:
            if end <= cover_end and (start, end) != cover:
                continue  # part of a longer name found at the same place
            if end > cover_end:
                cover_end, cover = end, (start, end)
            if name.ambiguous and not has_health_context(buf, start, end):
                continue
            yield name.canonical

    def mask(self, value: str) -> str:
        return value
