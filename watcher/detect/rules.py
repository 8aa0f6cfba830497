"""Operator rules from configuration: named keyword sets and regular expressions.

Rules are compiled into the same Hyperscan database as the built-in detectors. Hyperscan is an
automaton engine: no backtracking, so no rule can hang the scanner. A pattern it cannot
compile (a back-reference, a look-behind) is refused when the configuration is loaded.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from collections.abc import Iterator

import hyperscan

from ..options import option
from ..privacy import mask_digits
from .base import Hits, Pattern, Window
from .engine import compile_database
from .text import Vocabulary, fold_key


def longest_per_start(spans: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Hyperscan reports every end a pattern can stop at: keep the longest from each start."""
    best: dict[int, int] = {}
    for start, end in spans:
        if best.get(start, -1) < end:
            best[start] = end
    return list(best.items())


@dataclass(frozen=True)
class Rule:
    """One operator rule. Exactly one of `keywords` or `regex` is set.

    Keywords match case- and accent-insensitively on word boundaries, like insurer names.
    A regex is a Hyperscan (PCRE subset) pattern on UTF-8 text, case-insensitive unless
    `case_sensitive`; what it matches may be personal data, so it is fingerprinted and masked
    like an identifier. `severity` is the least severity a matching document gets.
    """

    name: str = option("string", required=True, doc="the rule's name, shown in reasons (unique)")
    severity: str = option("severity", "low", doc="the least severity of a matching document")
    keywords: tuple[str, ...] = option("keywords", (), doc="words or phrases (case- and accent-insensitive)")
    regex: str | None = option("string", None, doc="a Hyperscan (PCRE subset) pattern, instead of keywords")
    case_sensitive: bool = option("boolean", False, doc="regex only: match case")


def rule_error(rule: Rule) -> str | None:
    """Why `rule` cannot be compiled, or None. Called when the configuration is loaded
    (`watcher.config`): compiled with the flags the scanner uses, so a rule that passes here
    compiles in every worker (a millisecond or less per rule)."""
    try:
        compile_database(RuleDetector(rule).patterns())
    except hyperscan.error as exc:
        reason = str(exc).strip().rstrip(".")
        return (f"is not a pattern Hyperscan can compile: {reason} (no back-references, no look-arounds, "
                "nothing that matches the empty string)")
    return None


class RuleDetector:
    """Counts distinct matches of one operator rule, under the name `rule:<name>`."""

    def __init__(self, rule: Rule) -> None:
        self.rule = rule
        self.name = f"rule:{rule.name}"
        self.sensitive = rule.regex is not None
        self.vocabulary = Vocabulary(list(rule.keywords))

    def patterns(self) -> list[Pattern]:
        if self.rule.regex is not None:
            return [Pattern(self.rule.regex.encode("utf-8"), caseless=not self.rule.case_sensitive, som=True)]
        return self.vocabulary.patterns()

    def find(self, buf: bytes, hits: Hits, window: Window, found: set[str]) -> Iterator[str]:
        if self.rule.regex is not None:
            for _, spans in hits:
                for start, end in longest_per_start(spans):
                    yield buf[start:end].decode("utf-8", "replace")
            return
        for entry, ends in self.vocabulary.entries(hits).items():
            keyword = fold_key(self.vocabulary.texts[entry])
            if keyword not in found and next(self.vocabulary.occurrences(buf, entry, window, ends), None):
                yield keyword

    def mask(self, value: str) -> str:
        if not self.sensitive:
            return value
        return mask_digits(re.sub(r"\s+", " ", value)[:40], 2, 1)
