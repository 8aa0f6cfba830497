"""HTML to text that keeps the lines of the page.

Samples are posted in `<pre>`/`<code>`/`<textarea>` blocks and tables: their line structure is
kept (table cells become tab-separated, rows become lines) so the tabular detector still sees
records. lxml's HTML parser (libxml2, lenient) streams its events to a target that writes the
text as it goes: no tree is built (a tree from libxml2 stops at 256 levels, or 2,048 with
huge_tree, dropping the rest of the page). libxml2 looks for each end tag through the open
elements, so a page nested deeper than `MAX_DEPTH` (only hostile pages are) is not parsed:
its tags are stripped by regular expressions, as for a page over `max_parse` bytes. Either
way the time is linear and the text is kept.
"""

from __future__ import annotations

import html as html_lib
import re

from lxml import etree

_BLOCKS = frozenset([
    "p", "div", "li", "tr", "pre", "table", "section", "article", "blockquote", "h1", "h2", "h3", "h4",
    "h5", "h6", "header", "footer", "dd", "dt", "form", "textarea", "title", "ul", "ol",
])
_CELLS = frozenset(["td", "th"])
_PRESERVE = frozenset(["pre", "textarea"])
_ASCII_SPACES = " \n\t\x0c\r"
_DROP = frozenset(["script", "style", "noscript", "template", "svg", "head"])
_SNIFF = re.compile(rb"<(?:!doctype\s+html|html|head|body|div|pre|table|p|span|br|a\s)[\s>/]", re.IGNORECASE)
# Tags of a page too big to parse. `[^<>]` with a possessive bound: a run of `<` costs each
# one a step, not 2,000 (a tag holds no `<`).
_TAG = re.compile(r"<br\s*/?>|</(?:p|div|li|tr|pre|h\d)\s*>|<[^<>]{0,2000}+>", re.I)
# What a page holds out of sight, read after its text: form values and tooltips, data
# attributes, comments and inline scripts (where web apps keep their data as JSON).
_HIDDEN_ATTRIBUTES = frozenset(["value", "title", "alt", "content", "placeholder"])
MAX_HIDDEN = 1024 * 1024        # characters of it a page gives at most
_SCRIPT_OPEN = re.compile(r"<(script|style)\b", re.I)
_SCRIPT_CLOSE = {"script": re.compile(r"</script\s*>", re.I), "style": re.compile(r"</style\s*>", re.I)}


def looks_like_html(head: bytes, content_type: str | None = None) -> bool:
    """True for an HTML page (by Content-Type, or a tag among the first bytes)."""
    if content_type and "html" in content_type.lower():
        return True
    start = head[:2048].lstrip(b"\xef\xbb\xbf \t\r\n")
    if start.startswith(b"<?xml") and b"<html" not in start.lower():
        return False
    return start[:1] == b"<" and _SNIFF.search(start) is not None


MAX_DEPTH = 512     # open elements; 5 MiB of unmatched end tags under them parse in 0.6 s


class _TooDeep(Exception):
    """Raised by the target: libxml2 stops parsing at once."""


def html_to_text(markup: str, max_parse: int = 5 * 1024 * 1024) -> str:
    """The visible text of a page, one line per block, cells tab-separated; then what it holds
    out of sight (`_HIDDEN_ATTRIBUTES`, data attributes, comments, inline scripts, the head's
    title)."""
    if len(markup) > max_parse:
        return _strip_tags(markup)
    parser = etree.HTMLParser(target=_TextTarget(), encoding="utf-8", recover=True, no_network=True)
    try:
        parser.feed(markup.encode("utf-8", "replace"))
        return _tidy(parser.close())
    except _TooDeep:
        return _strip_tags(markup)


class _TextTarget:
    """Parser target: the text of the page as its events stream past.

    A `<br>` is a newline, a cell ends with a tab and a block with a newline; what is inside
    script, style and the like (`_DROP`) is skipped, the text after it kept. Comments,
    scripts and some attributes' values are kept apart, for after the text (`hidden`), up to
    MAX_HIDDEN characters; styles and processing instructions are not text. As beautifulsoup
    did before, a string of ASCII
    whitespace alone between two tags becomes one space (one newline if it holds one),
    except inside `<pre>` and `<textarea>`.
    """

    def __init__(self) -> None:
        self._out: list[str] = []
        self._pending: list[str] = []   # text since the last tag, comment or instruction
        self._dropped = 0               # depth inside a dropped element (0: outside)
        self._preserved = 0             # depth inside pre/textarea
        self._depth = 0
        self._script = False            # inside a script, or a title in the dropped head:
        self._title = False             # their text is hidden text
        self._hidden: list[str] = []
        self._hidden_size = 0

    def start(self, tag: str, attrib: object) -> None:
        self._depth += 1
        if self._depth > MAX_DEPTH:
            raise _TooDeep
        self._flush()
        if attrib:                      # lxml's target gets a dict, empty for most elements
            for name, value in attrib.items():  # type: ignore[attr-defined]
                if name in _HIDDEN_ATTRIBUTES or name[:5] == "data-":
                    self._hide(value)
        if self._dropped or tag in _DROP:
            self._dropped += 1
            self._script = self._script or tag == "script"
            self._title = self._title or tag == "title"
            return
        if tag in _PRESERVE:
            self._preserved += 1
        elif tag == "br":
            self._out.append("\n")

    def end(self, tag: str) -> None:
        self._depth -= 1
        self._flush()
        if self._dropped:
            self._dropped -= 1
            if tag == "script":
                self._script = False
            elif tag == "title":
                self._title = False
            return
        if tag in _PRESERVE:
            self._preserved -= 1
        if tag in _CELLS:
            self._out.append("\t")
        elif tag in _BLOCKS:
            self._out.append("\n")

    def data(self, text: str) -> None:
        if not self._dropped:
            self._pending.append(text)
        elif self._script or self._title:
            self._hide(text)

    def comment(self, text: str) -> None:
        self._flush()
        self._hide(text)

    def _hide(self, text: str) -> None:
        if text and self._hidden_size < MAX_HIDDEN:
            self._hidden.append(text[:MAX_HIDDEN - self._hidden_size])
            self._hidden_size += len(self._hidden[-1])

    def pi(self, target: str, data: str | None = None) -> None:
        self._flush()

    def doctype(self, *_: object) -> None:
        self._flush()

    def close(self) -> str:
        self._flush()
        hidden = "\n".join(self._hidden)
        return "".join(self._out) + (f"\n{hidden}\n" if hidden else "")

    def _flush(self) -> None:
        if not self._pending:
            return
        text = "".join(self._pending) if len(self._pending) > 1 else self._pending[0]
        self._pending.clear()
        if not self._preserved and not text.strip(_ASCII_SPACES):
            text = "\n" if "\n" in text else " "
        self._out.append(text)


def _tidy(text: str) -> str:
    """No blank or whitespace-only lines (they are not records), no trailing cell tabs."""
    return "\n".join(stripped for line in text.splitlines() if (stripped := line.rstrip()).strip()) + "\n"


def _strip_tags(markup: str) -> str:
    def replace(match: re.Match[str]) -> str:
        text = match.group(0)
        return "\n" if text[1:3].lower() == "br" or text[1] == "/" else " "

    return _tidy(html_lib.unescape(_TAG.sub(replace, _without_scripts(markup))))


def _without_scripts(markup: str) -> str:
    """The markup without its script and style blocks. A block never closed stays (its tags
    are stripped as any other); once a closing tag is missing after some point, it is missing
    after any later one too, so no opening tag rescans the rest of the page (linear)."""
    pieces: list[str] = []
    position = searched = 0
    unclosed: set[str] = set()
    while opening := _SCRIPT_OPEN.search(markup, searched):
        name = opening.group(1).lower()
        closing = None if name in unclosed else _SCRIPT_CLOSE[name].search(markup, opening.end())
        searched = opening.end()
        if closing is None:
            unclosed.add(name)
            continue
        pieces.append(markup[position:opening.start()])
        position = searched = closing.end()
    pieces.append(markup[position:])
    return "".join(pieces)
