"""Counts as people read them: one noun per detector, in the CLI, the console and the reasons."""

from __future__ import annotations

import shlex

from watcher.cli import build_parser
from watcher.wording import COUNT_NOUNS, counts_text, plural


def test_counts_text_names_each_detector_as_a_noun() -> None:
    counts = {"nir": 25, "health_terms": 3, "email": 1, "phone": 0, "my_rule": 2}
    assert counts_text(counts.items()) == "25 NIRs, 3 health terms, 2 my_rules, 1 e-mail address"
    assert counts_text({"email": 48, "phone": 1}.items()) == "48 e-mail addresses, 1 phone number"


def test_every_detector_has_a_noun() -> None:
    from watcher.detect import Scanner

    names = {detector.name for detector in Scanner(insurers=[]).detectors}
    assert names <= set(COUNT_NOUNS), names - set(COUNT_NOUNS)


def test_plural() -> None:
    assert (plural(1, "NIR"), plural(1200, "NIR"), plural(2, "entry", "entries")) == ("1 NIR", "1,200 NIRs", "2 entries")


def test_the_consoles_export_commands_parse_and_name_one_extension() -> None:
    from watcher.web.views import export_commands

    parser = build_parser()
    outs = []
    for line in export_commands(7):
        words = shlex.split(line)
        assert words[0] == "watcher"
        args = parser.parse_args(words[1:])
        assert (args.action, args.id) == ("export", "7")
        outs.append(str(args.out))
    assert outs == ["incident-7.misp.json", "incident-7.stix.json", "incident-7.json"]
