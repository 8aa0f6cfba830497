"""README.md's "Sources" guide kept true (issue 12): every source kind has its subsection, whose
option table lists exactly the keys its `Options` declares (plus the page URL key) with their
defaults, the table of the keys every source shares lists exactly `SourceConfig`'s options (plus
`name` and `kind`), and each kind's TOML example loads. A key the code dropped or added, or a
default changed, fails here until the README says so (`tools/readme_tables.py` prints the
tables from the code).

The README is read by its headings: the `### Sources` section (up to the next heading of level
3 or less), its `#### \\`kind\\`...` subsections and its `#### Keys every source takes`.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest

from tools.readme_tables import default_cell
from watcher.config import SourceConfig, load_config
from watcher.options import option_keys, options_doc
from watcher.sources.registry import SOURCE_CLASSES

REPO = Path(__file__).resolve().parent.parent
README = REPO / "README.md"
SECTION = "Sources"
SHARED = "Keys every source takes"
_HEADING = re.compile(r"(#{1,6}) +(.+?) *$")
_KEY_CELL = re.compile(r"`([^`]+)`$")
_TOML_BLOCK = re.compile(r"^```toml\n(.*?)^```$", re.S | re.M)


def headed(text: str) -> list[tuple[int, str, str]]:
    """(level, title, body) of every heading of a markdown text, in order; `#` lines inside
    fenced code blocks (TOML comments) are not headings."""
    sections: list[tuple[int, str, list[str]]] = [(0, "", [])]
    fenced = False
    for line in text.splitlines():
        if line.startswith("```"):
            fenced = not fenced
        match = None if fenced else _HEADING.fullmatch(line)
        if match:
            sections.append((len(match.group(1)), match.group(2), []))
        else:
            sections[-1][2].append(line)
    return [(level, title, "\n".join(body)) for level, title, body in sections]


def subsections(text: str, section: str = SECTION) -> dict[str, str]:
    """The level-4 subsections of the level-3 `section`, by title; KeyError without it."""
    found: dict[str, str] = {}
    inside = False
    for level, title, body in headed(text):
        if level == 3 and title == section:
            inside = True
        elif inside and level <= 3:
            break
        elif inside and level == 4:
            found[title] = body
    if not inside:
        raise KeyError(f'README.md has no "### {section}" section')
    return found


def kind_section(parts: dict[str, str], kind: str) -> str | None:
    """The body of the subsection titled "`kind`..." (None when there is none)."""
    return next((body for title, body in parts.items() if title.startswith(f"`{kind}`")), None)


def table(body: str) -> dict[str, str]:
    """key -> default cell of the `| key | default | what |` rows of a subsection."""
    rows: dict[str, str] = {}
    for line in body.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if not line.startswith("|") or len(cells) < 3:
            continue
        key = _KEY_CELL.match(cells[0])
        if key:
            rows[key.group(1)] = cells[1]
    return rows


def expected_rows(cls: type, first: tuple[str, ...] = ()) -> dict[str, str]:
    """key -> the default cell the README must start with, from the code's declarations;
    `first`: keys that are required beside the options (a kind's URL key, name, kind)."""
    rows = {key: default_cell("required") for key in first}
    rows.update((key, default_cell(default)) for key, default, _ in options_doc(cls))
    return rows


def kind_rows(kind: str) -> dict[str, str]:
    """What a kind's table must hold: its URL key (`url`, `endpoint`) and its options."""
    options = SOURCE_CLASSES[kind].Options
    return expected_rows(options, (options.url_key,) if options.url_key else ())


def table_problems(where: str, found: dict[str, str], wanted: dict[str, str]) -> list[str]:
    """What is wrong with a README table: keys missing, keys the code does not have, defaults
    that differ (a default cell starts with the code's default, and may say more)."""
    problems = [f"{where}: no row for key {key!r}" for key in wanted if key not in found]
    problems += [f"{where}: key {key!r} is not an option in the code" for key in found if key not in wanted]
    problems += [f"{where}: key {key!r} has default {found[key]!r}, the code says {wanted[key]!r}"
                 for key in wanted if key in found and not found[key].startswith(wanted[key])]
    return problems


def readme_problems(text: str) -> list[str]:
    """Every mismatch between README's Sources guide and the code."""
    parts = subsections(text)
    problems: list[str] = []
    for kind in SOURCE_CLASSES:
        body = kind_section(parts, kind)
        if body is None:
            problems.append(f'no "#### `{kind}`" subsection under "### {SECTION}"')
            continue
        problems += table_problems(f"`{kind}` table", table(body), kind_rows(kind))
    for title in parts:
        kind = re.match(r"`([^`]+)`", title)
        if kind and kind.group(1) not in SOURCE_CLASSES:
            problems.append(f'subsection "{title}": {kind.group(1)!r} is not a source kind')
    if SHARED not in parts:
        problems.append(f'no "#### {SHARED}" subsection under "### {SECTION}"')
    else:
        problems += table_problems("shared keys table", table(parts[SHARED]),
                                   expected_rows(SourceConfig, ("name", "kind")))
    return problems


def test_readme_sources_match_the_code() -> None:
    assert readme_problems(README.read_text(encoding="utf-8")) == []


def test_tables_hold_every_declared_key() -> None:
    """The tables name every key the validator accepts (so the comparison above is not empty)."""
    parts = subsections(README.read_text(encoding="utf-8"))
    for kind, source_class in SOURCE_CLASSES.items():
        required, optional = option_keys(source_class.Options)
        body = kind_section(parts, kind)
        assert body is not None
        assert set(required + optional) <= set(table(body)), kind
    assert set(option_keys(SourceConfig)[1]) | {"name", "kind"} == set(table(parts[SHARED]))


def test_a_removed_row_an_unknown_key_and_a_wrong_default_are_noticed() -> None:
    text = README.read_text(encoding="utf-8")
    rows = {
        "`max_pages` | `5` |": ("`max_pages` | `5` |", "`max_pagez` | `5` |"),
        "`backfill` | unset |": ("`backfill` | unset |", "`backfill` | `\"30d\"` |"),
    }
    for needle, (old, new) in rows.items():
        assert needle in text
        problems = readme_problems(text.replace(old, new))
        assert problems, f"{old} -> {new} went unnoticed"
    row = next(line for line in text.splitlines() if line.startswith("| `follow` |"))
    assert readme_problems(text.replace(row + "\n", "")) == ["`feed` table: no row for key 'follow'"]
    assert "no \"#### `telegram`\" subsection" in readme_problems(
        text.replace("#### `telegram`", "#### Telegram"))[0]


@pytest.mark.parametrize("kind", list(SOURCE_CLASSES))
def test_each_kinds_example_loads(kind: str, tmp_path: Path) -> None:
    """The TOML example of a kind's subsection is a valid configuration of that kind."""
    body = kind_section(subsections(README.read_text(encoding="utf-8")), kind)
    assert body is not None
    examples = _TOML_BLOCK.findall(body)
    assert examples, f"the `{kind}` subsection has no ```toml example"
    for example in examples:
        (tmp_path / "sources.toml").write_text('[tor]\nsocks = "127.0.0.1:9050"\n\n' + example, encoding="utf-8")
        config = load_config(tmp_path / "sources.toml", environ={"FORUM_COOKIE": "x"})
        assert [s.kind for s in config.sources] == [kind] * len(tomllib.loads(example)["sources"])
