"""Health-insurance vocabulary: the context that makes a few NIRs or an ambiguous name matter."""

from __future__ import annotations

from typing import Iterator

from .base import Pattern, Span
from .text import fold_key, folded_pattern, on_word_boundaries

TERMS = (
    "mutuelle", "mutuelles", "tiers payant", "tiers-payant", "complémentaire santé", "sécurité sociale",
    "carte vitale", "attestation de droits", "ayant droit", "ayants droit", "garanties", "adhérent",
    "adhérents", "organisme complémentaire", "assurance maladie", "prévoyance", "remboursements",
    "numéro AMC", "code AMC", "contrat santé", "date de naissance", "rang de naissance", "CPAM",
    "régime obligatoire", "bénéficiaires", "assuré social", "n° de sécurité sociale", "NIR",
)


class HealthTermsDetector:
    name = "health_terms"
    sensitive = False

    def __init__(self, terms: tuple[str, ...] = TERMS) -> None:
        self.terms = terms

    def patterns(self) -> list[Pattern]:
        return [Pattern(folded_pattern(t)) for t in self.terms]

    def find(self, buf: bytes, spans: list[Span]) -> Iterator[str]:
        for start, end, tag in spans:
            if on_word_boundaries(buf, start, end):
                yield fold_key(self.terms[tag])

    def mask(self, value: str) -> str:
        return value
