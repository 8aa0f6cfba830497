"""HTML parsing for the sources: pure functions, no I/O, safe on hostile markup.

The page-parser child process (watcher.sources.pagechild) runs them, so this module imports
neither the HTTP client nor the pipeline.

Two hazards of hostile pages, and what is done about them:

- Nesting. libxml2 stops building a tree at 256 levels (2,048 with `huge_tree`) and silently
  drops the rest of the page: every link and post after a deep point. `html_root` parses with
  `huge_tree`, and `cut_at_depth` tells a tree that reached the limit: its callers then use bs4,
  whose lxml tree builder (a parser target) has no depth limit.
- Content after `</html>`. libxml2's tree builder drops it (bs4 keeps it: a link there is a
  link); `whole` sends such a page to bs4 too.
- Attributes. lxml's HTML tree builder appends each attribute by walking the element's list:
  one tag with 100,000 attributes costs 8 s, a 5 MB page of them minutes. bs4 is linear there;
  the lxml path is bounded by the page parser's time budget (watcher.sources.pages).
"""

from __future__ import annotations

import re
from urllib.parse import urldefrag, urljoin, urlsplit

from bs4 import BeautifulSoup, Tag
from bs4.dammit import EncodingDetector
from lxml import etree

# libxml2's deepest tree with XML_PARSE_HUGE (lxml's huge_tree): a tree this deep was cut.
LXML_MAX_DEPTH = 2048
_PREFORMATTED = ("pre", "code", "textarea", "plaintext", "xmp")
_LAST_ELEMENT_DEPTH = etree.XPath("count(/descendant::*[last()]/ancestor-or-self::*)")
_HTML_END = re.compile(rb"</html(?=[\s/>])", re.IGNORECASE)
_BLANK_TAIL = re.compile(rb"[^>]*+>(?:\s++|<!--.*?-->)*+\Z", re.DOTALL)


def html_root(body: bytes) -> etree._Element | None:
    """The page's root element through lxml, decoded as bs4 decodes it (the first encoding
    bs4's EncodingDetector proposes that Python knows); None when lxml fails on the page.
    The tree may be cut at LXML_MAX_DEPTH: see `cut_at_depth`."""
    detector = EncodingDetector(body, is_html=True)
    for encoding in detector.encodings:
        try:
            parser = etree.HTMLParser(recover=True, encoding=encoding, huge_tree=True)
        except LookupError:          # a declared charset Python does not know: bs4 skips it too
            continue
        try:
            parser.feed(detector.markup)
            return parser.close()
        except Exception:           # lxml gives up on the page: the caller uses bs4
            return None
    return None


def cut_at_depth(root: etree._Element) -> bool:
    """True when libxml2 stopped building this tree at its depth limit (and dropped the rest
    of the page): the last element then is the deepest still open, at the limit. (One XPath:
    a Python walk down the tree costs depth^2, lxml's proxies checking their ancestors.)"""
    return _LAST_ELEMENT_DEPTH(root) >= LXML_MAX_DEPTH


def whole(root: etree._Element | None, body: bytes) -> etree._Element | None:
    """`root` (the page's `html_root`), or None when lxml left part of the page out of it
    (cut at the depth limit, or content after `</html>`): bs4 must read the page instead.
    A `</html>` in a script string counts too: that page merely goes to bs4."""
    if root is None or cut_at_depth(root):
        return None
    end = _HTML_END.search(body)
    if end is not None and not _BLANK_TAIL.match(body, end.end()):
        return None
    return root


def soup(body: bytes) -> BeautifulSoup:
    """An lxml-backed BeautifulSoup of an HTML page (bytes: bs4 detects the charset)."""
    return BeautifulSoup(body, "lxml")


def select_links(page: BeautifulSoup, selector: str, base_url: str) -> list[tuple[str, str]]:
    """(absolute http(s) URL without fragment, link text) of the elements matching `selector`.

    An element without href contributes its first descendant `a[href]`. Duplicates are dropped,
    page order is kept.
    """
    links: dict[str, str] = {}
    for element in page.select(selector):
        anchor = element if element.get("href") else element.find("a", href=True)
        if not isinstance(anchor, Tag):
            continue
        url = http_link(base_url, anchor.get("href"))
        if url is not None and url not in links:
            links[url] = " ".join(anchor.get_text(" ").split())
    return list(links.items())


def http_link(base_url: str, href: object) -> str | None:
    """The absolute http(s) URL, without fragment, of an `href` value; None for anything else."""
    if not isinstance(href, str) or not href.strip():
        return None
    url = urldefrag(urljoin(base_url, href.strip())).url
    return url if urlsplit(url).scheme in ("http", "https") else None


def text_of(element: Tag) -> str:
    """The visible text of an element, one text node per line."""
    return element.get_text("\n", strip=True)


def element_text(element: Tag) -> str:
    """Exact text of preformatted elements (syntax highlighters split them in spans); text
    nodes on separate lines for the others (so table cells do not run together)."""
    if element.name in _PREFORMATTED:
        return element.get_text()
    return element.get_text("\n")


def parse_content(selector: str, body: bytes) -> str | None:
    """Text of the elements matching `selector` (an item page's `content`), joined by
    newlines; None if none match."""
    elements = soup(body).select(selector)
    if not elements:
        return None
    return "\n".join(element_text(e) for e in elements)
