"""HTML to text that keeps the lines of the page.

Samples are posted in `<pre>`/`<code>`/`<textarea>` blocks and tables: their line structure is
kept (table cells become tab-separated, rows become lines) so the tabular detector still sees
records. The parser (beautifulsoup4 with lxml) gets at most `max_parse` bytes; a bigger page
has its tags stripped by a regular expression instead (linear, no tree in memory).
"""

from __future__ import annotations

import html as html_lib
import re
import warnings

_BLOCKS = [
    "p", "div", "li", "tr", "pre", "table", "section", "article", "blockquote", "h1", "h2", "h3", "h4",
    "h5", "h6", "header", "footer", "dd", "dt", "form", "textarea", "title", "ul", "ol",
]
_DROP = ["script", "style", "noscript", "template", "svg", "head"]
_SNIFF = re.compile(rb"<(?:!doctype\s+html|html|head|body|div|pre|table|p|span|br|a\s)[\s>/]", re.IGNORECASE)
_TAG = re.compile(r"<(script|style)\b.*?</\1\s*>|<br\s*/?>|</(?:p|div|li|tr|pre|h\d)\s*>|<[^>]{0,2000}>", re.I | re.S)


def looks_like_html(head: bytes, content_type: str | None = None) -> bool:
    """True for an HTML page (by Content-Type, or a tag among the first bytes)."""
    if content_type and "html" in content_type.lower():
        return True
    start = head[:2048].lstrip(b"\xef\xbb\xbf \t\r\n")
    if start.startswith(b"<?xml") and b"<html" not in start.lower():
        return False
    return start[:1] == b"<" and _SNIFF.search(start) is not None


def html_to_text(markup: str, max_parse: int = 5 * 1024 * 1024) -> str:
    """The visible text of a page, one line per block, cells tab-separated."""
    if len(markup) > max_parse:
        return _strip_tags(markup)
    # Imported here: bs4 (with soupsieve) is a tenth of a second of start-up that `watcher
    # scan` on CSV files and logs never needs.
    from bs4 import BeautifulSoup, MarkupResemblesLocatorWarning, XMLParsedAsHTMLWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", MarkupResemblesLocatorWarning)
        warnings.simplefilter("ignore", XMLParsedAsHTMLWarning)
        soup = BeautifulSoup(markup, "lxml")
    for tag in soup(_DROP):
        tag.decompose()
    for br in soup.find_all("br"):
        br.replace_with("\n")
    for cell in soup.find_all(["td", "th"]):
        cell.append("\t")
    for block in soup.find_all(_BLOCKS):
        block.append("\n")
    return _tidy(soup.get_text())


def _tidy(text: str) -> str:
    """No blank or whitespace-only lines (they are not records), no trailing cell tabs."""
    return "\n".join(stripped for line in text.splitlines() if (stripped := line.rstrip()).strip()) + "\n"


def _strip_tags(markup: str) -> str:
    def replace(match: re.Match[str]) -> str:
        text = match.group(0)
        return "" if match.group(1) else ("\n" if text[1:3].lower() == "br" or text[1] == "/" else " ")

    return _tidy(html_lib.unescape(_TAG.sub(replace, markup)))
