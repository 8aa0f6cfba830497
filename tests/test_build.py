"""The optional C extension is built wherever it can be (a broken build must not go unseen)."""

from __future__ import annotations

import os
import shutil
import sysconfig

import pytest

from watcher.detect.compiled import DISABLED, speedups


def _can_build() -> bool:
    compiler = (sysconfig.get_config_var("CC") or "cc").split()[0]
    return bool(shutil.which(compiler)) and os.path.exists(os.path.join(sysconfig.get_paths()["include"], "Python.h"))


def test_the_extension_is_built():
    """Where a C compiler and Python's headers are, a missing extension is a broken build."""
    if speedups is None and not _can_build():
        pytest.skip("no C compiler or Python headers here: the pure-Python paths run (about 3x slower)")
    if DISABLED:
        pytest.skip("WATCHER_PURE_PYTHON=1: the pure-Python paths are under test")
    assert speedups is not None, "watcher.detect._speedups missing although a compiler and Python.h are here: see setup.py"
