"""Score a detection: one severity (none..critical) and reasons a person can read.

Counts of checked identifiers (NIR key, SIRET/RPPS Luhn) raise the severity only when they
are unlikely to be chance. Random digits pass a NIR key 1 time in 97, so among 6,097
NIR-shaped numbers about 63 pass: 13 valid NIRs there are noise, 12 valid of 12 are a leak.
`by_chance` is a one-sided binomial test of the valid count against that rate; a count it
explains is still reported, but gives at most `low`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from .wording import counted, members_of, plural
from .options import option

SEVERITIES = ("none", "low", "medium", "high", "critical")


def severity_rank(severity: str) -> int:
    """Position of `severity` in SEVERITIES; ValueError names the accepted values."""
    try:
        return SEVERITIES.index(severity)
    except ValueError:
        raise ValueError(f"unknown severity {severity!r}; expected one of {', '.join(SEVERITIES)}") from None


@dataclass(frozen=True)
class Policy:
    """Thresholds of the default policy (configurable under `[scoring]`)."""

    critical_nirs: int = option("integer", 10, doc="distinct valid NIRs that make a document critical")
    critical_records: int = option("integer", 10, doc="records of a tabular extract with a NIR column")
    professional_records: int = option("integer", 10,
                                       doc="records of a professionals' extract (SIRET/RPPS + contact)")


#: How often a number with the structure of the identifier passes its check by accident: a
#: NIR key has 97 values; a SIREN's Luhn 1 in 10 (a SIRET passes two: 1 in 100, the SIREN's
#: rate is kept as the cautious one); RPPS 1 in 10.
CHANCE = {"nir": 1 / 97, "siret": 1 / 10, "rpps": 1 / 10}
#: Below this many shaped numbers the test cannot tell (1 valid of 1 is p = 1%) and chance
#: cannot make a document critical either: 10 valid among fewer than 20 has p < 1e-15.
MIN_SHAPED = 20
#: A valid count is "not chance" when random digits would reach it with probability <= ALPHA.
ALPHA = 1e-3


def binomial_tail(k: int, n: int, p: float) -> float:
    """P(X >= k) for X ~ Binomial(n, p), summed in log space (n may be millions)."""
    if k <= 0:
        return 1.0
    if k <= n * p:
        return 1.0                      # at the mean or below: about one half or more
    log_p, log_q, log_n = math.log(p), math.log1p(-p), math.lgamma(n + 1)
    total = 0.0
    for i in range(k, n + 1):
        term = math.exp(log_n - math.lgamma(i + 1) - math.lgamma(n - i + 1) + i * log_p + (n - i) * log_q)
        total += term
        if term <= total * 1e-12:       # past the mean the terms fall fast
            break
    return min(total, 1.0)


def by_chance(passed: int, failed: int, kind: str) -> bool:
    """Whether `passed` valid of `passed + failed` shaped numbers is what random digits give."""
    shaped = passed + failed
    if passed == 0 or shaped < MIN_SHAPED:
        return False
    return binomial_tail(passed, shaped, CHANCE[kind]) > ALPHA


@dataclass(frozen=True)
class Chance:
    """A count of `kind` the plausibility test explains by chance: `passed` of `shaped`."""

    kind: str
    passed: int
    shaped: int

    def reason(self) -> str:
        noun = {"nir": "NIR-shaped numbers", "siret": "SIRET/SIREN-shaped numbers", "rpps": "RPPS-shaped numbers"}
        check = "the key" if self.kind == "nir" else "the Luhn check"
        return (f"{self.passed:,} of {self.shaped:,} {noun[self.kind]} pass {check}: "
                "consistent with random digits")


@dataclass(frozen=True)
class Evidence:
    """What scoring looks at, distilled from a detection (no identifier in it)."""

    counts: dict[str, int]
    insurers: list[str]
    tabular: str | None = None            # description of the largest tabular part
    records: int | None = None
    nir_column: bool = False
    health_headers: tuple[str, ...] = ()
    professional: bool = False            # SIRET/RPPS + e-mail/phone columns
    rule_severities: dict[str, str] | None = None
    chance: tuple[Chance, ...] = ()       # counts consistent with random digits
    rarer_nirs: int = 0                   # NIRs of the rarer forms among counts["nir"]
    watchlist_hits: dict[str, int] | None = None   # watchlist -> distinct NIRs of its members




DEFAULT_POLICY = Policy()


def score(evidence: Evidence, policy: Policy = DEFAULT_POLICY) -> tuple[str, list[str]]:
    """(severity, reasons) under `policy`; the reasons read as a short sentence each."""
    chance = {c.kind for c in evidence.chance}
    counts = {k: 0 if k in chance else v for k, v in evidence.counts.items()}
    nirs = counts.get("nir", 0)
    records = evidence.records or 0
    context = bool(evidence.insurers or evidence.health_headers or counts.get("health_terms", 0))
    professional = evidence.professional and records >= policy.professional_records or (
        counts.get("siret", 0) + counts.get("rpps", 0) >= policy.professional_records
        and counts.get("email", 0) + counts.get("phone", 0) >= policy.professional_records
    )
    reasons = [c.reason() for c in evidence.chance] + _found(evidence, counts, policy, professional)
    strict_nirs = nirs - evidence.rarer_nirs if not evidence.nir_column else nirs
    if evidence.rarer_nirs and nirs >= policy.critical_nirs > strict_nirs:
        reasons.append(f"{plural(evidence.rarer_nirs, 'NIR')} of the rarer forms (sex 3/4, unusual months): "
                       "not critical without a NIR column or label")
    if strict_nirs >= policy.critical_nirs or (evidence.nir_column and records >= policy.critical_records):
        severity = "critical"
    elif (nirs and context) or professional:
        severity = "high"
    elif nirs:
        severity = "medium"
    elif evidence.insurers or evidence.rule_severities or evidence.chance:
        severity = "low"
    else:
        severity = "none"

    for name, rule_severity in (evidence.rule_severities or {}).items():
        reasons.append(f"rule {name} matched ({rule_severity})")
        if severity_rank(rule_severity) > severity_rank(severity):
            severity = rule_severity
    for name, members in sorted((evidence.watchlist_hits or {}).items()):
        reasons.append(members_of(name, members))       # our own members: at least high
        if severity_rank(severity) < severity_rank("high"):
            severity = "high"
    return severity, reasons


def _found(evidence: Evidence, counts: dict[str, int], policy: Policy, professional: bool) -> list[str]:
    """The reasons that say what the document holds (NIRs, columns, insurers, others)."""
    nirs, records = counts.get("nir", 0), evidence.records or 0
    reasons: list[str] = []
    if nirs:
        where = f" in a {evidence.tabular}" if evidence.tabular else ""
        reasons.append(f"{plural(nirs, 'valid NIR')}{where}")
    elif evidence.tabular and (evidence.nir_column or evidence.health_headers):
        reasons.append(evidence.tabular)
    if evidence.nir_column and records >= policy.critical_records and not nirs:
        reasons.append("a NIR column")
    if evidence.insurers:
        noun = "insurer " if len(evidence.insurers) == 1 else "insurers "
        reasons.append(noun + ", ".join(evidence.insurers) + " named")
    if evidence.health_headers:
        reasons.append("health-data columns: " + ", ".join(evidence.health_headers[:8]))
    if professional:
        reasons.append("professionals' extract (SIRET/RPPS with e-mail/phone)")
    others = [counted(counts[k], k) for k in ("iban", "siret", "rpps", "email", "phone") if counts.get(k)]
    if others:
        reasons.append(", ".join(others))
    return reasons
