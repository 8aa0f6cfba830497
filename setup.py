"""Build of the optional compiled detector helpers (everything else is in pyproject.toml).

`watcher/detect/_speedups.c` is the hot path of dense extracts (NIR scanning and checksums);
without a C compiler the install still succeeds and the pure-Python equivalents run, slower.
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "watcher.detect._speedups",
            sources=["watcher/detect/_speedups.c"],
            extra_compile_args=["-O2"],
            optional=True,
        )
    ]
)
