"""The README's option tables, written from the dataclasses that declare the options.

`python tools/readme_tables.py` prints, for every source kind and for the keys every source
shares, a markdown table `key | default | what` (from `watcher.options.options_doc`) to paste
into README.md's "Sources" section, where the "what" column may then say more.
`tests/test_readme_sources.py` checks the README's tables against the same declarations,
with `toml_default` for the default column.
"""

from __future__ import annotations

import ast
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from watcher.config import SourceConfig  # noqa: E402
from watcher.options import options_doc  # noqa: E402
from watcher.sources.registry import SOURCE_CLASSES  # noqa: E402

UNSET = "unset"   # the default column of an option without a default value (None)


def toml_default(shown: str) -> str:
    """An `options_doc` default ("required", "None", "300.0", "'low'", "()") as TOML
    writes it: required, unset, 300, "low", []."""
    if shown in ("required", "-"):
        return shown
    value = ast.literal_eval(shown)
    if value is None:
        return UNSET
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, (tuple, list)):
        return json.dumps(list(value))
    if isinstance(value, dict) and not value:
        return "{}"
    return json.dumps(value)


def default_cell(shown: str) -> str:
    """The default column's text: `value` in code, or required / unset as words."""
    value = toml_default(shown)
    return value if value in ("required", UNSET, "-") else f"`{value}`"


def markdown_table(cls: type, first: tuple[tuple[str, str, str], ...] = ()) -> str:
    """`key | default | what` rows of `cls`'s options, after the `first` rows (key, default
    as options_doc gives it, what): a kind's page URL key."""
    lines = ["| key | default | what |", "| --- | --- | --- |"]
    for key, default, doc in (*first, *options_doc(cls)):
        lines.append(f"| `{key}` | {default_cell(default)} | {doc} |")
    return "\n".join(lines)


def main() -> None:
    for kind, source_class in SOURCE_CLASSES.items():
        options = source_class.Options
        url_key = options.url_key
        first = ((url_key, "required", "the page polled"),) if url_key else ()
        print(f"#### {kind}\n\n{markdown_table(options, first)}\n")
    print(f"#### every source\n\n{markdown_table(SourceConfig)}")


if __name__ == "__main__":
    main()
