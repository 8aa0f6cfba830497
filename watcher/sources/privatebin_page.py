"""A page that lists PrivateBin links, read for the `privatebin` source kind (pure; run in the
page-parser process: watcher.sources.privatebin_index says why it is a module of its own).

What is kept is what the PrivateBin links can be in: the `href` of the selected elements (an
element without one gives its first `a[href]`), made absolute with their `#fragment` (the key:
`http_link` drops it, so the listing's link reader cannot serve), and the page's visible text
(scripts, styles and templates left out). The links themselves are found by the caller
(`watcher.privatebin.find_links`, which this process does not import: it brings the HTTP
client). Read with bs4 (lxml's tree builder), whose tree has no depth limit.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urljoin, urlsplit

from bs4 import Tag

from watcher.sources.markup import html_root, soup
from watcher.sources.walls import wall_reason

MAX_HREFS = 20_000          # selected links kept per page: a hostile page does not make millions
_HIDDEN = ("script", "style", "template", "noscript")


@dataclass(frozen=True)
class LinkPage:
    """The parts of a page PrivateBin links are looked for in, and its health."""

    hrefs: tuple[str, ...]          # absolute http(s) URLs of the selected links, fragments kept
    text: str                       # the visible text, one text node per line
    wall: str | None = None         # 'it looks like a login page (...)', or None
    expect_missing: bool = False    # the source's `expect` selector matched nothing


def parse_link_page(selector: str, expect: str | None, base_url: str, body: bytes) -> LinkPage:
    """The selected links (fragments kept) and the visible text of `body`, whether it looks
    like a login or challenge page, and whether `expect` (when set) matched nothing."""
    page = soup(body)
    hrefs: dict[str, None] = {}
    for element in page.select(selector):
        anchor = element if element.get("href") else element.find("a", href=True)
        url = _absolute(base_url, anchor.get("href")) if isinstance(anchor, Tag) else None
        if url is not None:
            hrefs.setdefault(url, None)
            if len(hrefs) >= MAX_HREFS:
                break
    missing = expect is not None and page.select_one(expect) is None
    for hidden in page(list(_HIDDEN)):
        hidden.decompose()
    text = page.get_text("\n")
    return LinkPage(tuple(hrefs), text, wall_reason(html_root(body), body, False), missing)


def _absolute(base_url: str, href: object) -> str | None:
    """`href` made absolute against `base_url`, its fragment kept; None unless http(s)."""
    if not isinstance(href, str) or not href.strip():
        return None
    try:
        url = urljoin(base_url, href.strip())
        scheme = urlsplit(url).scheme
    except ValueError:              # e.g. an unclosed IPv6 bracket in a hostile href
        return None
    return url if scheme in ("http", "https") else None
