"""`[alerts]` validation: defaults, env: URLs, the apprise config path, one-line errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from watcher.alerts import alert_settings
from watcher.alerts.settings import AlertSettings, TargetURL
from watcher.config import ConfigError, load_config


def settings_of(tmp_path: Path, alerts: str, environ: dict[str, str] | None = None) -> AlertSettings:
    path = tmp_path / "sources.toml"
    path.write_text(f'[watcher]\nstate_dir = "state"\n\n[alerts]\n{alerts}\n', encoding="utf-8")
    env = {} if environ is None else environ
    return alert_settings(load_config(path, environ=env), environ=env)


def test_defaults(tmp_path: Path) -> None:
    settings = settings_of(tmp_path, "")
    assert settings.min_severity == "medium"
    assert settings.urls == () and settings.config is None and not settings.has_targets
    assert settings.jsonl == tmp_path / "state" / "alerts.jsonl"
    assert (settings.max_tries, settings.health_after, settings.digest_below) == (8, 6 * 3600, None)
    assert settings.alerts_on("medium") and not settings.alerts_on("low")


def test_values_and_durations(tmp_path: Path) -> None:
    settings = settings_of(tmp_path, 'min_severity = "high"\nmax_tries = 3\nretry_after = "10s"\n'
                                     'digest_below = "high"\ndigest_every = "30m"\nhealth_after = "2h"\n'
                                     "jsonl = false")
    assert (settings.min_severity, settings.max_tries, settings.retry_after) == ("high", 3, 10)
    assert settings.digested("medium") and not settings.digested("high")
    assert (settings.digest_every, settings.health_after, settings.jsonl) == (1800, 7200, None)
    assert [settings.retry_delay(n) for n in (1, 2, 3)] == [10, 20, 40]


def test_env_urls_are_resolved_and_never_echoed(tmp_path: Path) -> None:
    secret = "json://user:s3cret@127.0.0.1:9/hook"
    urls = '["env:HOOK", "critical, Health=env:HOOK", "leak=mailto://127.0.0.1:25?to=a@example.org"]'
    settings = settings_of(tmp_path, f"urls = {urls}", {"HOOK": secret})
    assert settings.urls == (TargetURL(secret), TargetURL(secret, ("critical", "health")),
                             TargetURL("mailto://127.0.0.1:25?to=a@example.org", ("leak",)))
    with pytest.raises(ConfigError) as error:
        settings_of(tmp_path, 'urls = ["env:MISSING"]')
    assert "MISSING" in str(error.value) and "not set" in str(error.value)


def test_errors_name_file_line_and_key(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r'sources\.toml:6: \[alerts\]: key "min_severity" must be one of'):
        settings_of(tmp_path, 'urls = []\nmin_severity = "hihg"')
    with pytest.raises(ConfigError, match=r'sources\.toml:5: \[alerts\]: key "retries" is unknown'):
        settings_of(tmp_path, "retries = 3")
    with pytest.raises(ConfigError, match=r'key "health_after" must be a positive number'):
        settings_of(tmp_path, 'health_after = "soon"')
    with pytest.raises(ConfigError, match=r'key "urls" entry 1 is not an apprise URL'):
        settings_of(tmp_path, 'urls = ["hooks.example.org"]')


def test_apprise_config_is_relative_to_the_config_file(tmp_path: Path) -> None:
    (tmp_path / "apprise.yml").write_text("urls:\n  - json://127.0.0.1:9/x\n")
    assert settings_of(tmp_path, 'config = "apprise.yml"').config == tmp_path / "apprise.yml"
    with pytest.raises(ConfigError, match='key "config" names .*nope.yml'):
        settings_of(tmp_path, 'config = "nope.yml"')


def test_systemd_credential_wins_when_present(tmp_path: Path) -> None:
    credentials = tmp_path / "credentials"
    credentials.mkdir()
    (credentials / "apprise.yml").write_text("urls:\n  - json://127.0.0.1:9/x\n")
    env = {"CREDENTIALS_DIRECTORY": str(credentials)}
    assert settings_of(tmp_path, 'config = "apprise.yml"', env).config == credentials / "apprise.yml"
    (credentials / "apprise.yml").unlink()
    (tmp_path / "apprise.yml").write_text("urls:\n  - json://127.0.0.1:9/x\n")
    assert settings_of(tmp_path, 'config = "apprise.yml"', env).config == tmp_path / "apprise.yml"
