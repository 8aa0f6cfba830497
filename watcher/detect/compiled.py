"""The optional C helpers of `_speedups.c`, or None when they were not built.

`setup.py` builds them when a C compiler is there (`make` does on Debian); each has a
pure-Python equivalent that the detectors use otherwise, and the tests compare the two.
`WATCHER_PURE_PYTHON=1` in the environment leaves them out (to test or debug the Python paths).
"""

from __future__ import annotations

import os

DISABLED = os.environ.get("WATCHER_PURE_PYTHON") == "1"
# Imported first, so a type checker reads `speedups` as the module (its stub, _speedups.pyi)
# and checks every call; the Nones are what the callers' `if speedups` tests for.
if not DISABLED:
    try:
        from . import _speedups as speedups
    except ImportError:      # installed without a C compiler: the Python paths, about 3x slower
        speedups = None  # type: ignore[assignment]
else:
    speedups = None  # type: ignore[assignment]

__all__ = ["DISABLED", "speedups"]
