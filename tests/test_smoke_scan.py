"""End-to-end smoke test of `watcher scan` on the shipped demo extract."""

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_demo_extract_is_critical_and_masked():
    out = subprocess.run(
        [sys.executable, "-m", "watcher", "scan", "--format", "json", str(ROOT / "examples/demo-extract.csv")],
        capture_output=True, text=True, check=True,
    ).stdout
    report = json.loads(out)
    assert report["severity"] == "critical"
    assert report["counts"]["nir"] == 12
    assert report["records"] == 12
    clear = {line.split(";")[3].replace(" ", "") for line in (ROOT / "examples/demo-extract.csv").read_text().splitlines()[1:]}
    assert not any(nir in out.replace(" ", "") for nir in clear)
