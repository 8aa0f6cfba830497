"""systemd's own view of a unit, for the unit and install tests (tests/test_systemd_unit.py,
tests/test_service_install.py): a unit file's directives, and systemd-analyze when installed."""

from __future__ import annotations

import os
import shutil
import subprocess

ANALYZE = shutil.which("systemd-analyze") or (
    "/usr/bin/systemd-analyze" if os.access("/usr/bin/systemd-analyze", os.X_OK) else None
)


def unit_directives(text: str) -> dict[str, dict[str, list[str]]]:
    """Parse a unit file: section -> key -> values in order (keys may repeat)."""
    sections: dict[str, dict[str, list[str]]] = {}
    current: dict[str, list[str]] = {}
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], {})
            continue
        key, _, value = line.partition("=")
        current.setdefault(key.strip(), []).append(value.strip())
    return sections


def systemd_analyze(*args: str) -> subprocess.CompletedProcess[str]:
    """Run systemd-analyze without pager, colours or emoji-dependent locale surprises."""
    assert ANALYZE is not None
    env = {**os.environ, "SYSTEMD_PAGER": "cat", "SYSTEMD_COLORS": "0", "LC_ALL": "C.UTF-8"}
    return subprocess.run(
        [ANALYZE, *args], capture_output=True, text=True, env=env, timeout=60, check=False
    )
