"""Sources: where documents come from. `build_source(config)` makes the right kind.

The names below are imported on first use (PEP 562): the page-parser child process
(watcher.sources.pagechild) imports only this package's parsing modules, and would otherwise
load the HTTP client and the detection pipeline that the source classes bring in (~20 MB
per child).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from watcher.sources.base import Item, PollContext, Source
    from watcher.sources.errors import SourceError
    from watcher.sources.registry import SOURCE_CLASSES, build_source

_HOMES = {"SOURCE_CLASSES": "registry", "build_source": "registry", "Item": "base",
          "PollContext": "base", "Source": "base", "SourceError": "errors"}


def __getattr__(name: str) -> Any:
    """The exported name, from the module that defines it."""
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{home}"), name)


__all__ = ["SOURCE_CLASSES", "Item", "PollContext", "Source", "SourceError", "build_source"]
