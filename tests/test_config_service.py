"""watcher.config: the optional `[retention]` and `[metrics]` tables (defaults, values, errors)."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from tests.support.commands import BASE
from watcher.config import Address, ConfigError, MetricsSettings, RetentionSettings, load_config

HEAD = BASE


def load(tmp_path: Path, extra: str):
    path = tmp_path / "sources.toml"
    path.write_text(HEAD + textwrap.dedent(extra), encoding="utf-8")
    return load_config(path, environ={})


def error(tmp_path: Path, extra: str) -> str:
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, extra)
    message = str(caught.value)
    assert "\n" not in message
    return message


def line_of(extra: str, needle: str) -> int:
    """1-based line of `needle` in the whole file (HEAD + extra)."""
    lines = (HEAD + textwrap.dedent(extra)).splitlines()
    return next(number for number, line in enumerate(lines, 1) if needle in line)


# -- [retention] -----------------------------------------------------------------------------------

def test_without_tables_the_defaults_apply(tmp_path: Path) -> None:
    config = load(tmp_path, "")
    assert config.retention == RetentionSettings(items_days=90, findings_days=365, fingerprints_days=365,
                                                 vacuum_every=7 * 86400.0)
    assert config.metrics is None


def test_retention_values(tmp_path: Path) -> None:
    config = load(tmp_path, """
    [retention]
    items_days = 30
    findings_days = 180
    fingerprints_days = 730
    vacuum_every = "1d"
    """)
    assert config.retention == RetentionSettings(30, 180, 730, 86400.0)


def test_fingerprints_follow_findings_by_default(tmp_path: Path) -> None:
    config = load(tmp_path, "[retention]\nfindings_days = 200\n")
    assert config.retention.fingerprints_days == 200
    assert config.retention.items_days == 90


@pytest.mark.parametrize(("extra", "needle", "fragments"), [
    ("[retention]\nitem_days = 3\n", "item_days", ['[retention]: key "item_days" is unknown',
                                                   "expected one of: items_days, findings_days"]),
    ("[retention]\nitems_days = 0\n", "items_days", ['key "items_days" must be a positive integer, not 0']),
    ("[retention]\nfindings_days = 1.5\n", "findings_days", ["must be a positive integer, not 1.5"]),
    ('[retention]\nitems_days = "90d"\n', "items_days", ["must be a positive integer"]),
    ("[retention]\nfindings_days = 100\nfingerprints_days = 50\n", "fingerprints_days",
     ['key "fingerprints_days" must be at least findings_days (100)']),
    ('[retention]\nvacuum_every = "weekly"\n', "vacuum_every",
     ['key "vacuum_every" must be a positive number of seconds']),
    ("[retention]\nvacuum_every = -1\n", "vacuum_every", ["vacuum_every"]),
])
def test_retention_errors_name_the_line_and_key(tmp_path: Path, extra: str, needle: str, fragments: list[str]) -> None:
    message = error(tmp_path, extra)
    assert message.startswith(f"{tmp_path / 'sources.toml'}:{line_of(extra, needle)}: [retention]: "), message
    for fragment in fragments:
        assert fragment in message, message


def test_retention_must_be_a_table(tmp_path: Path) -> None:
    path = tmp_path / "sources.toml"
    path.write_text("retention = 5\n" + HEAD, encoding="utf-8")
    with pytest.raises(ConfigError, match=r"sources.toml:1: \[retention\]: must be a table, not an integer"):
        load_config(path, environ={})


# -- [metrics] -------------------------------------------------------------------------------------

def test_metrics_table_listens_on_the_default_port(tmp_path: Path) -> None:
    config = load(tmp_path, "[metrics]\n")
    assert config.metrics == MetricsSettings(Address("127.0.0.1", 9464))
    assert config.metrics.listen == "127.0.0.1:9464"


@pytest.mark.parametrize(("listen", "host", "port", "shown"), [
    ("127.0.0.1:9100", "127.0.0.1", 9100, "127.0.0.1:9100"),
    ("127.0.0.53:9100", "127.0.0.53", 9100, "127.0.0.53:9100"),
    ("[::1]:9464", "::1", 9464, "[::1]:9464"),
    ("localhost:9464", "127.0.0.1", 9464, "127.0.0.1:9464"),
])
def test_loopback_addresses_are_accepted(tmp_path: Path, listen: str, host: str, port: int, shown: str) -> None:
    config = load(tmp_path, f'[metrics]\nlisten = "{listen}"\n')
    assert config.metrics == MetricsSettings(Address(host, port))
    assert config.metrics.listen == shown


@pytest.mark.parametrize("listen", ["0.0.0.0:9464", "192.0.2.10:9464", "[::]:9464", "example.org:9464",
                                    "[::ffff:127.0.0.1]:9464"])
def test_non_loopback_addresses_are_refused(tmp_path: Path, listen: str) -> None:
    extra = f'[metrics]\nlisten = "{listen}"\n'
    message = error(tmp_path, extra)
    assert message.startswith(f"{tmp_path / 'sources.toml'}:{line_of(extra, 'listen')}: [metrics]: "), message
    assert 'key "listen" must be a loopback address' in message and "no authentication" in message


@pytest.mark.parametrize(("listen", "fragment"), [
    ("9464", "must be \"host:port\""),
    ("127.0.0.1:0", "port out of range"),
    ("127.0.0.1:70000", "port out of range"),
    ("", "non-empty one-line string"),
])
def test_malformed_listen_values(tmp_path: Path, listen: str, fragment: str) -> None:
    message = error(tmp_path, f'[metrics]\nlisten = "{listen}"\n')
    assert "[metrics]" in message and fragment in message, message


def test_unknown_metrics_key(tmp_path: Path) -> None:
    extra = "[metrics]\nport = 9464\n"
    message = error(tmp_path, extra)
    assert message == (f"{tmp_path / 'sources.toml'}:{line_of(extra, 'port')}: [metrics]: "
                       'key "port" is unknown (expected one of: listen)')


def test_the_shipped_config_still_loads() -> None:
    repo = Path(__file__).resolve().parent.parent
    config = load_config(repo / "sources.toml", environ={})
    assert config.retention == RetentionSettings() and config.metrics is None
