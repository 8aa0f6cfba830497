"""The machine's own benign text (locale data, the Python standard library and installed
packages) raises no alert: zero documents at `medium` or above (issue 11). The full set,
documentation and man pages included, is `make benign`."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "bench" / "benign_corpus.py"


@pytest.mark.slow           # ~20 s: 37,000 documents, 320 MB
def test_no_benign_document_reaches_medium() -> None:
    done = subprocess.run([sys.executable, str(SCRIPT), "--quick", "--json"], capture_output=True, text=True,
                          timeout=600)
    result = json.loads(done.stdout)
    print(f"benign corpus: {result['documents']:,} documents, {result['megabytes']} MB, "
          f"severities {result['severities']}, low by reason {result['low_reasons']}")
    assert result["documents"] > 1000 and result["megabytes"] > 20, result       # the corpus is there
    assert "/usr/share/i18n/locales" in result["roots"], "Debian's `locales` package is missing (make test-tools)"
    assert result["alerts"] == [], result["alerts"]
    assert done.returncode == 0
