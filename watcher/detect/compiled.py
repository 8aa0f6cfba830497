"""The optional C helpers of `_speedups.c`, or None when they were not built.

`setup.py` builds them when a C compiler is there (`make` does on Debian); each has a
pure-Python equivalent that the detectors use otherwise, and the tests compare the two.
"""

from __future__ import annotations

try:
    from . import _speedups as speedups
except ImportError:      # installed without a C compiler: the Python paths, about 3x slower
    speedups = None

__all__ = ["speedups"]
