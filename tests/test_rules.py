"""Operator rules: keywords, regular expressions, severities, refused patterns, no backtracking."""

from __future__ import annotations

import time

import pytest

from tests.support.nirs import random_nir
from watcher.analyze import Analyzer
from watcher.detect import Rule, Scanner
from watcher.detect.rules import rule_error

RULES = [
    Rule("fuite", keywords=("fuite de données", "base clients")),
    Rule("dump", regex=r"dump-[0-9]{4}", severity="high"),
    Rule("ticket", regex=r"TCK-[A-Z]{3}", case_sensitive=True, severity="medium"),
    Rule("catastrophe", regex=r"(a+)+$"),
    Rule("alerte", keywords=("opération Almérys",), severity="critical"),
]


@pytest.fixture(scope="module")
def rules_analyzer() -> Analyzer:
    return Analyzer(Scanner(RULES))


def analyze(analyzer: Analyzer, text: str | bytes):
    return analyzer.analyze_bytes(text.encode() if isinstance(text, str) else text, "doc")


@pytest.mark.parametrize("text", ["Une FUITE DE DONNÉES massive", "fuite de donnees", "Fuite  de   données",
                                  "la fuite-de-données", "BASE CLIENTS"])
def test_keyword_rule_accent_and_case_insensitive(rules_analyzer, text):
    report = analyze(rules_analyzer, text)
    assert report.counts["rule:fuite"] == 1
    assert report.rules == {"fuite": "low"}
    assert report.severity == "low"
    assert "rule fuite matched (low)" in report.reasons


@pytest.mark.parametrize("text", ["fuites de données? non: fuite de donnéesX", "basecliente", "la fuite des données"])
def test_keyword_rule_word_boundaries(rules_analyzer, text):
    assert analyze(rules_analyzer, text).counts["rule:fuite"] == 0


def test_keyword_with_accent_in_the_rule(rules_analyzer):
    assert analyze(rules_analyzer, "OPERATION ALMERYS lancée").severity == "critical"


def test_regex_rule(rules_analyzer):
    report = analyze(rules_analyzer, "voir dump-2024 et DUMP-2023 et dump-99")
    assert report.counts["rule:dump"] == 2
    assert report.severity == "high"
    assert "rule dump matched (high)" in report.reasons
    assert report.rules == {"dump": "high"}
    # what a regex matches may be personal data: it is masked in samples
    assert all("2024" not in s for s in report.samples)
    assert any(s.startswith("rule:dump") for s in report.samples)


def test_case_sensitive_regex(rules_analyzer):
    assert analyze(rules_analyzer, "TCK-ABC").counts["rule:ticket"] == 1
    assert analyze(rules_analyzer, "tck-abc").counts["rule:ticket"] == 0


def test_rule_raises_severity_over_the_policy(rules_analyzer):
    nir = random_nir(__import__("random").Random(5), strict=True)
    plain = analyze(rules_analyzer, f"ref {nir}")
    assert plain.severity == "medium"
    raised = analyze(rules_analyzer, f"ref {nir} dump-2024")
    assert raised.severity == "high"


def test_rule_does_not_lower_severity(rules_analyzer):
    text = "\n".join(f"ref {random_nir(__import__('random').Random(i), strict=True)}" for i in range(12)) + "\nbase clients"
    report = analyze(rules_analyzer, text)
    assert report.severity == "critical"
    assert "rule fuite matched (low)" in report.reasons


def test_no_rule_no_match(rules_analyzer):
    report = analyze(rules_analyzer, "Bonjour, rien de spécial.")
    assert report.severity == "none"
    assert report.rules == {}


@pytest.mark.parametrize(("pattern", "reason"), [
    (r"(a)\1", "Back-references are unsupported"),
    (r"(?<=x)y", "Zero-width assertions are not supported"),
    (r"(?=a)b", "not supported"),
    (r"(\w+)\s\1", "Back-references are unsupported"),
    ("(abc", "Missing close parenthesis"),              # invalid, not only unsupported
    ("[z-a]", "Range out of order"),
    ("a*", "matches empty buffer"),                      # would match everywhere
])
def test_rule_error_refuses_what_hyperscan_cannot_compile(pattern, reason):
    error = rule_error(Rule("bad", regex=pattern))
    assert error is not None
    assert error.startswith("is not a pattern Hyperscan can compile: ") and reason in error, error
    assert "\n" not in error


@pytest.mark.parametrize("pattern", [r"(a+)+$", r"dump-[0-9]{4}", r"(?:x|y)*z", r"\bnss\b"])
def test_rule_error_accepts_supported_patterns(pattern):
    assert rule_error(Rule("ok", regex=pattern)) is None


def test_keyword_rules_always_compile():
    assert rule_error(Rule("kw", keywords=("a.b(c", "[x]", "l'assuré"))) is None


def test_catastrophic_pattern_cannot_hang(rules_analyzer):
    evil = b"a" * 100_000 + b"!"
    started = time.monotonic()
    report = rules_analyzer.analyze_bytes(evil, "evil")
    elapsed = time.monotonic() - started
    assert report.counts["rule:catastrophe"] == 0          # '$' cannot follow '!'
    assert elapsed < 5                                       # a backtracking engine would never finish
    matching = rules_analyzer.analyze_bytes(b"a" * 100_000, "evil2")
    assert matching.counts["rule:catastrophe"] >= 1
