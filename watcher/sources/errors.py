"""The error of a source whose main page is unusable.

Apart from base.py so that the parsing modules, which raise it, import neither the HTTP client
nor the rest of the pipeline: the page-parser child process (watcher.sources.pagechild) loads
only them.
"""

from __future__ import annotations


class SourceError(Exception):
    """A source's main page (listing, board, feed, API, folder) is unusable: the poll failed."""
