"""systemd/watcher.service: required directives, `systemd-analyze verify` and `security`.

`verify` checks that ExecStart's program exists and is executable, and the unit's program,
/opt/leak-watcher/venv/bin/watcher, exists on an installed server only. The test copies the
unit into tmp_path and points ExecStart at an executable stub there, changing nothing else
(the substitution is asserted to happen exactly once, arguments untouched). The pristine unit
is verified too: its only allowed complaint is about that missing program.

`Wants=tor@default.service` on a machine without Tor is silent (measured on systemd 252;
`Requires=` would fail verify with "Unit tor@default.service not found").

`security --threshold=N` takes an integer in tenths of the displayed score on systemd 252
(`--threshold=1.5` is rejected: "Failed to parse threshold"), so 1.5 is `--threshold=15`.

Restarts: a start that fails is retried every RestartSec= without a start limit (the unit's
comments say why). What keeps that from busy-looping is measured here: the CPU time of a real
failing start (an unusable state directory) must stay a small share of RestartSec=.
"""

from __future__ import annotations

import os
import re
import resource
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.systemd import ANALYZE, systemd_analyze, unit_directives

UNIT = Path(__file__).resolve().parents[1] / "systemd" / "watcher.service"
DOCS = UNIT.parents[1] / "docs" / "service.md"
PROGRAM = "/opt/leak-watcher/venv/bin/watcher"
MAX_EXPOSURE = 1.5
needs_analyze = pytest.mark.skipif(ANALYZE is None, reason="systemd-analyze not installed")


@pytest.fixture(scope="module")
def unit() -> dict[str, dict[str, list[str]]]:
    return unit_directives(UNIT.read_text(encoding="utf-8"))


# --------------------------------------------------------------------------- directives


def test_unit_section_orders_after_tor_and_network(unit: dict[str, dict[str, list[str]]]) -> None:
    section = unit["Unit"]
    for key in ("Wants", "After"):
        names = " ".join(section[key]).split()
        assert "tor@default.service" in names, key
        assert "network-online.target" in names, key
        assert "tor.service" not in names, "tor.service is Debian's dummy oneshot"
    assert "Requires" not in section and "BindsTo" not in section


EXPECTED_SERVICE = {
    "Type": "notify",
    "NotifyAccess": "main",
    "WatchdogSec": "60s",
    "Restart": "on-failure",
    "RestartSec": "30s",
    "TimeoutStartSec": "90s",
    "TimeoutStopSec": "30s",
    "ExecStart": f"{PROGRAM} run --config /etc/watcher/sources.toml",
    "ExecReload": "/bin/kill -HUP $MAINPID",
    "DynamicUser": "yes",
    "StateDirectory": "watcher",
    "ConfigurationDirectory": "watcher",
    "LoadCredential": "apprise.yml:/etc/watcher/apprise.yml",
    "UMask": "0077",
    "ProtectSystem": "strict",
    "ProtectHome": "yes",
    "PrivateTmp": "yes",
    "PrivateDevices": "yes",
    "PrivateUsers": "yes",
    "PrivateMounts": "yes",
    "DevicePolicy": "closed",
    "ProtectProc": "invisible",
    "ProcSubset": "pid",
    "ProtectKernelTunables": "yes",
    "ProtectKernelModules": "yes",
    "ProtectKernelLogs": "yes",
    "ProtectControlGroups": "yes",
    "ProtectClock": "yes",
    "ProtectHostname": "yes",
    "RestrictNamespaces": "yes",
    "RestrictRealtime": "yes",
    "RestrictSUIDSGID": "yes",
    "LockPersonality": "yes",
    "MemoryDenyWriteExecute": "yes",
    "NoNewPrivileges": "yes",
    "RemoveIPC": "yes",
    "KeyringMode": "private",
    "CapabilityBoundingSet": "",
    "AmbientCapabilities": "",
    "SystemCallArchitectures": "native",
    "RestrictAddressFamilies": "AF_INET AF_INET6 AF_UNIX",
    "IPAddressAllow": "localhost",
    "IPAddressDeny": "any",
}


@pytest.mark.parametrize(("key", "value"), EXPECTED_SERVICE.items())
def test_service_directive(unit: dict[str, dict[str, list[str]]], key: str, value: str) -> None:
    assert unit["Service"].get(key) == [value]


def test_failed_starts_are_retried_without_a_start_limit(unit: dict[str, dict[str, list[str]]]) -> None:
    """No limit that would leave the watcher dead after a few failed starts, and exit status 2
    retried too (it also means a full disk): see the comments in the unit."""
    assert unit["Unit"].get("StartLimitIntervalSec") == ["0"]
    assert "StartLimitBurst" not in unit["Unit"]
    assert "RestartPreventExitStatus" not in unit["Service"]


def test_a_failing_start_is_cheap_next_to_restart_sec(
    unit: dict[str, dict[str, list[str]]], tmp_path: Path
) -> None:
    """A real failing start exits non-zero (so Restart=on-failure applies) after CPU well under
    a tenth of RestartSec= (about 0.5 s against 30 s, measured): retrying forever does not
    busy-loop. (What it prints, one line and status 2, is watcher.preflight's to test.)"""
    (tmp_path / "blocker").write_text("a file where the state directory should be\n")
    config = tmp_path / "sources.toml"
    config.write_text('[watcher]\nstate_dir = "blocker/state"\n', encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if k not in ("STATE_DIRECTORY", "NOTIFY_SOCKET")}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    result = subprocess.run([sys.executable, "-m", "watcher", "run", "--config", str(config)],
                            capture_output=True, text=True, env=env, timeout=60, check=False)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    assert result.returncode != 0 and "blocker" in result.stderr, result.stderr
    [restart_sec] = unit["Service"]["RestartSec"]
    assert cpu < float(restart_sec.removesuffix("s")) / 10


def test_docs_describe_the_unit_as_it_is(unit: dict[str, dict[str, list[str]]]) -> None:
    """docs/service.md's table quotes these settings: it must quote the unit's values."""
    docs = DOCS.read_text(encoding="utf-8")
    for section, key in (("Service", "Restart"), ("Service", "RestartSec"), ("Unit", "StartLimitIntervalSec"),
                         ("Service", "TimeoutStartSec"), ("Service", "WatchdogSec"), ("Service", "LoadCredential"),
                         ("Service", "StateDirectory"), ("Service", "CacheDirectory")):
        [value] = unit[section][key]
        assert f"`{key}={value}`" in docs, f"docs/service.md does not say {key}={value}"


def test_system_call_filter_and_environment(unit: dict[str, dict[str, list[str]]]) -> None:
    service = unit["Service"]
    assert service["SystemCallFilter"] == ["@system-service", "~@privileged @resources"]
    assert "PYTHONUNBUFFERED=1" in service["Environment"]
    assert unit["Install"]["WantedBy"] == ["multi-user.target"]


# --------------------------------------------------------------------------- systemd-analyze


@needs_analyze
def test_verify_prints_nothing(tmp_path: Path) -> None:
    stub = tmp_path / "watcher"
    stub.write_text("#!/bin/sh\nexit 0\n", encoding="utf-8")
    stub.chmod(0o755)
    text = UNIT.read_text(encoding="utf-8")
    assert text.count(f"ExecStart={PROGRAM} ") == 1
    copy = tmp_path / UNIT.name  # verify derives the unit name from the file name
    copy.write_text(text.replace(f"ExecStart={PROGRAM} ", f"ExecStart={stub} "), encoding="utf-8")

    result = systemd_analyze("verify", str(copy))
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")


@needs_analyze
def test_verify_pristine_unit_only_misses_the_installed_program() -> None:
    result = systemd_analyze("verify", str(UNIT))
    if os.access(PROGRAM, os.X_OK):  # an installed server: nothing may be printed
        assert (result.returncode, result.stdout, result.stderr) == (0, "", "")
        return
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert lines, "verify should report the missing program"
    assert all(PROGRAM in line for line in lines), result.stderr


@needs_analyze
def test_security_exposure_is_at_most_the_target() -> None:
    threshold = str(round(MAX_EXPOSURE * 10))  # tenths, see the module docstring
    result = systemd_analyze("security", "--offline=true", f"--threshold={threshold}", str(UNIT))
    match = re.search(r"Overall exposure level for watcher\.service: (\d+\.\d+)", result.stdout)
    assert match, result.stdout + result.stderr
    exposure = float(match.group(1))
    assert result.stderr == ""
    assert exposure <= MAX_EXPOSURE
    assert result.returncode == 0, f"exposure {exposure}: {result.stderr}"


@needs_analyze
def test_security_threshold_is_enforced_by_systemd_analyze() -> None:
    """Guard the tenths interpretation: a 0.0 threshold must make the same unit fail."""
    result = systemd_analyze("security", "--offline=true", "--threshold=0", str(UNIT))
    assert result.returncode != 0
