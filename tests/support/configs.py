"""sources.toml texts and the one-line errors load_config gives for them, for the
configuration tests (tests/test_config.py, tests/test_secrets.py): `HEAD` (state, Tor and a
drop folder), `LISTING` (an onion paste listing), and `assert_error`, which checks the file,
the line and the words of the message."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from watcher.config import ConfigError, load_config

HEAD = """\
[watcher]
state_dir = "./state"

[tor]
socks = "127.0.0.1:9050"

[[sources]]
name = "inbox"
kind = "directory"
path = "./inbox"
interval = 10
"""


LISTING = """
[[sources]]
name = "some-paste"
kind = "listing"
url = "http://examplepaste.onion/archive"
tor = true
interval = "5m"
item_links = "table.archive a"
item_url = "http://examplepaste.onion/raw/{id}"
content = "pre"
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "sources.toml"
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def line_of(text: str, needle: str, occurrence: int = 1) -> int:
    """1-based line number of the `occurrence`-th line containing `needle`."""
    hits = [n for n, line in enumerate(textwrap.dedent(text).splitlines(), 1) if needle in line]
    return hits[occurrence - 1]


def load_error(tmp_path: Path, text: str, env: dict[str, str] | None = None) -> str:
    with pytest.raises(ConfigError) as caught:
        load_config(write(tmp_path, text), environ=env or {})
    message = str(caught.value)
    assert "\n" not in message
    return message


def assert_error(tmp_path: Path, text: str, line: int, *fragments: str,
                 env: dict[str, str] | None = None) -> str:
    message = load_error(tmp_path, text, env)
    assert message.startswith(f"{tmp_path / 'sources.toml'}:{line}: "), message
    for fragment in fragments:
        assert fragment in message, message
    return message
