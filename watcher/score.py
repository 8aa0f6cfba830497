"""Score a detection: one severity (none..critical) and reasons a person can read."""

from __future__ import annotations

from dataclasses import dataclass

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

    critical_nirs: int = 10          # distinct valid NIRs that make a document critical
    critical_records: int = 10       # records of a tabular extract with a NIR column
    professional_records: int = 10   # records of a professionals' extract (SIRET/RPPS + contact)


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


def _plural(count: int, noun: str, plural: str | None = None) -> str:
    return f"{count:,} {noun if count == 1 else (plural or noun + 's')}"


def score(evidence: Evidence, policy: Policy = Policy()) -> tuple[str, list[str]]:
    """(severity, reasons) under `policy`; the reasons read as a short sentence each."""
    counts = evidence.counts
    nirs = counts.get("nir", 0)
    records = evidence.records or 0
    reasons: list[str] = []
    context = bool(evidence.insurers or evidence.health_headers or counts.get("health_terms", 0))
    professional = evidence.professional and records >= policy.professional_records or (
        counts.get("siret", 0) + counts.get("rpps", 0) >= policy.professional_records
        and counts.get("email", 0) + counts.get("phone", 0) >= policy.professional_records
    )

    if nirs:
        where = f" in a {evidence.tabular}" if evidence.tabular else ""
        reasons.append(f"{_plural(nirs, 'valid NIR')}{where}")
    elif evidence.tabular and (evidence.nir_column or evidence.health_headers):
        reasons.append(evidence.tabular)
    if evidence.nir_column and records >= policy.critical_records and not nirs:
        reasons.append("a NIR column")
    if evidence.insurers:
        reasons.append(("insurer " if len(evidence.insurers) == 1 else "insurers ") + ", ".join(evidence.insurers) + " named")
    if evidence.health_headers:
        reasons.append("health-data columns: " + ", ".join(evidence.health_headers[:8]))
    if professional:
        reasons.append("professionals' extract (SIRET/RPPS with e-mail/phone)")
    others = [
        _plural(counts[k], label) for k, label in
        (("iban", "IBAN"), ("siret", "SIRET"), ("rpps", "RPPS number"), ("email", "e-mail address", ),
         ("phone", "phone number"))
        if counts.get(k)
    ]
    if others:
        reasons.append(", ".join(others))

    if nirs >= policy.critical_nirs or (evidence.nir_column and records >= policy.critical_records):
        severity = "critical"
    elif (nirs and context) or professional:
        severity = "high"
    elif nirs:
        severity = "medium"
    elif evidence.insurers or evidence.rule_severities:
        severity = "low"
    else:
        severity = "none"

    for name, rule_severity in (evidence.rule_severities or {}).items():
        reasons.append(f"rule {name} matched ({rule_severity})")
        if severity_rank(rule_severity) > severity_rank(severity):
            severity = rule_severity
    return severity, reasons
