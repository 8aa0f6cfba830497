"""The page-parser child process: `python -m watcher.sources.pagechild PARENT_PID`.

Started by watcher.sources.pages.PageParser. It reads requests on stdin and writes replies on
stdout until stdin closes, in watcher.childproc's frames (a length, then a pickle). An empty
frame first says the child is ready (the parsing modules imported: the first parse is not
slowed by them). A request is `(fn, body)`; the reply is `("ok", fn(body))` or `("error",
exception)`. The child imports nothing else (no HTTP client, no pipeline), to stay small.

It dies with its parent and ignores SIGINT and SIGTERM (watcher.childproc.serve_stdio).
"""

from __future__ import annotations

import importlib
import logging
import pickle
import sys
import traceback

from watcher.childproc import frame, read_frame, serve_stdio
from watcher.sources.errors import SourceError

PARSING_MODULES = ("watcher.sources.links", "watcher.sources.threads", "watcher.sources.feedparse",
                   "watcher.sources.telegram_page")

log = logging.getLogger(__name__)


def answer(request: bytes) -> bytes:
    """The pickled reply to one pickled `(fn, body)` request."""
    try:
        fn, body = pickle.loads(request)
        outcome: tuple[str, object] = ("ok", fn(body))
    except Exception as exc:     # a hostile page or a bug: the caller gets the exception
        if not isinstance(exc, SourceError):
            exc.add_note(f"in the page parser process:\n{traceback.format_exc()}")
        outcome = ("error", exc)
    try:
        return pickle.dumps(outcome, protocol=pickle.HIGHEST_PROTOCOL)
    except Exception as exc:     # an outcome pickle cannot carry
        failure = SourceError(f"page parser: cannot send back {type(outcome[1]).__name__}: {exc}")
        return pickle.dumps(("error", failure), protocol=pickle.HIGHEST_PROTOCOL)


def main(argv: list[str]) -> int:
    """Serve requests from the parent whose pid is argv[1] until it closes stdin."""
    requests, replies = serve_stdio(int(argv[1]))
    for module in PARSING_MODULES:
        importlib.import_module(module)
    replies.write(frame(b""))
    replies.flush()
    while (request := read_frame(requests)) is not None:
        replies.write(frame(answer(request)))
        replies.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
