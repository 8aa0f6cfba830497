"""Health-insurance vocabulary: the context that makes a few NIRs or an ambiguous name matter."""

from __future__ import annotations

from collections.abc import Iterator

from .base import Hits, Pattern, Window
from .text import Vocabulary, fold_key

TERMS = (
    "mutuelle", "mutuelles", "tiers payant", "complémentaire santé", "sécurité sociale",
    "carte vitale", "attestation de droits", "ayant droit", "ayants droit", "garanties", "adhérent",
    "adhérents", "organisme complémentaire", "assurance maladie", "prévoyance", "remboursements",
    "numéro AMC", "code AMC", "contrat santé", "date de naissance", "rang de naissance", "CPAM",
    "régime obligatoire", "bénéficiaires", "assuré social", "n° de sécurité sociale", "NIR",
)


class HealthTermsDetector:
    name = "health_terms"
    sensitive = False

    def __init__(self, terms: tuple[str, ...] = TERMS) -> None:
        self.vocabulary = Vocabulary(list(terms))

    def patterns(self) -> list[Pattern]:
        return self.vocabulary.patterns()

    def find(self, buf: bytes, hits: Hits, window: Window, found: set[str]) -> Iterator[str]:
        for entry, ends in self.vocabulary.entries(hits).items():
            term = fold_key(self.vocabulary.texts[entry])
            if term not in found and next(self.vocabulary.occurrences(buf, entry, window, ends), None):
                yield term

    def mask(self, value: str) -> str:
        return value
