"""The links of a listing or board page, through lxml and XPath when the selector allows it.

Listing and board pages are parsed at every poll that changed them. Building a BeautifulSoup
tree costs ~11 ms for a 50-link archive page (bs4 calls back into Python for every tag and
string); lxml alone builds the same tree in ~0.25 ms. So the selectors such pages use in
practice are translated to XPath with soupsieve's meaning:

    type selectors and *, .class, #id, [attr], [attr=v], [attr^=v], [attr$=v], [attr*=v]
    (on href, src, id, name, title and data-* only: soupsieve compares some other values
    case-insensitively, or as the space-joined lists bs4 makes of them), joined by
    descendant (space) or child (>) combinators, in comma-separated lists.

Anything else (pseudo-classes, other combinators, escapes, empty values) goes to bs4 +
soupsieve (`select_links`), as does a page lxml fails on. The page is decoded as bs4 decodes
it (the first encoding bs4's EncodingDetector proposes that Python knows), and the links and
their text are those `select_links` returns: the first `a[href]` of an element without href,
text without comments, scripts, styles, templates and ruby annotations, whitespace collapsed.
A page lxml reads only in part (nested past its depth limit, content after `</html>`: see
watcher.sources.markup) goes to bs4 too.

`parse_index` is what a source runs on its listing or board page (in the page-parser child
process): the links, and what the page says when it has none or is not the expected page (a
login wall, a challenge, the source's `expect` selector matching nothing).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterator
from dataclasses import dataclass

from lxml import etree

from watcher.sources.markup import html_root, http_link, select_links, soup, whole
from watcher.sources.walls import wall_reason

_IDENT = r"-?[_a-zA-Z][_a-zA-Z0-9-]*"
_TOKEN = re.compile(
    rf"""\s*(?P<combinator>[>,])\s*
    | (?P<space>\s+)
    | (?P<type>\*|{_IDENT})
    | \.(?P<cls>{_IDENT})
    | \#(?P<id>{_IDENT})
    | \[\s*(?P<attr>{_IDENT})\s*(?:(?P<op>[\^$*]?=)\s*
          (?:(?P<bare>{_IDENT})|"(?P<dq>[^"\\]*)"|'(?P<sq>[^'\\]*)')\s*)?\]""",
    re.VERBOSE,
)
# Attributes whose values soupsieve compares as given (others may be compared case-insensitively,
# or as the space-joined list bs4 splits them into): the only ones compared here.
_PLAIN_ATTRIBUTES = frozenset({"href", "src", "id", "name", "title"})
# soupsieve's value patterns (`search`ed, DOTALL: no dot here).
_VALUE_PATTERNS = {"=": r"^{}\Z", "^=": "^{}", "$=": r"{}\Z", "*=": "{}"}
_NAMESPACES = {"re": "http://exslt.org/regular-expressions"}
# bs4 types the strings in these tags apart ("string containers"), and a tag's text is made
# of the strings of its own type: those whose nearest container is of the tag's kind (none,
# for a tag that is no container). The nearest container of every element inside one is
# found once per page (`_containment`), not by an ancestor walk per string: that walk made a
# page nested 1,000 deep cost links x depth.
_CONTAINERS = ("script", "style", "template", "rt", "rp")
_CONTAINER_ELEMENTS = etree.XPath(" | ".join(f"//{c}" for c in _CONTAINERS))
_DESCENDANT_TEXT = etree.XPath("descendant::text()")
# soupsieve does not look into <template> contents: they are not part of the document.
_IN_DOCUMENT = "[not(ancestor::template)]"
_FIRST_ANCHOR = etree.XPath("descendant::a[@href][1]")


class _Unsupported(Exception):
    """The selector needs soupsieve."""


@dataclass(frozen=True)
class IndexPage:
    """A listing or board page: its item links, and why it may not be the expected page."""

    links: list[tuple[str, str]]
    wall: str | None = None          # 'it looks like a login page (...)', or None
    expect_missing: bool = False     # the source's `expect` selector matched nothing


def parse_index(selector: str, expect: str | None, base_url: str, body: bytes) -> IndexPage:
    """The links of a listing or board page (`page_links`), whether it looks like a login or
    challenge page, and whether `expect` (when set) matched nothing; one lxml parse."""
    root = html_root(body)
    links = _links(selector, base_url, body, root)
    missing = expect is not None and not _matches(expect, root, body)
    return IndexPage(links, wall_reason(root, body, bool(links)), missing)


def page_links(selector: str, base_url: str, body: bytes) -> list[tuple[str, str]]:
    """(absolute http(s) URL without fragment, link text) of the elements matching `selector`,
    as `select_links(soup(body), selector, base_url)` gives them, without bs4 when possible."""
    root = html_root(body) if compile_selector(selector) is not None else None
    return _links(selector, base_url, body, root)


def _links(selector: str, base_url: str, body: bytes,
           root: etree._Element | None) -> list[tuple[str, str]]:
    """`page_links` given the page's `html_root` (None: lxml failed on the page)."""
    xpath = compile_selector(selector)
    root = whole(root, body)
    if xpath is None or root is None:
        return select_links(soup(body), selector, base_url)
    links: dict[str, str] = {}
    nearest: dict[etree._Element, str] | None = None
    for element in xpath(root):
        anchor = element if element.get("href") else next(iter(_FIRST_ANCHOR(element)), None)
        url = http_link(base_url, anchor.get("href") if anchor is not None else None)
        if url is not None and url not in links:
            nearest = _containment(root) if nearest is None else nearest
            links[url] = _anchor_text(anchor, nearest)
    return list(links.items())


def _containment(root: etree._Element) -> dict[etree._Element, str]:
    """The tag of the nearest string container (ancestor-or-self) of every element inside
    one. Linear: each container's subtree is walked without the containers nested in it,
    which are walked in their turn."""
    nearest: dict[etree._Element, str] = {}
    for container in _CONTAINER_ELEMENTS(root):
        walk = etree.iterwalk(container, events=("start",))
        for _, element in walk:
            if element is not container and element.tag in _CONTAINERS:
                walk.skip_subtree()
            else:
                nearest[element] = container.tag
    return nearest


def _anchor_text(anchor: etree._Element, nearest: dict[etree._Element, str]) -> str:
    """The text bs4 gives a link: its strings of its own type, whitespace collapsed."""
    kind = anchor.tag if anchor.tag in _CONTAINERS else ""
    strings = []
    for text in _DESCENDANT_TEXT(anchor):
        parent = text.getparent()
        if text.is_tail:
            parent = parent.getparent()
        if nearest.get(parent, "") == kind:
            strings.append(text)
    return " ".join(" ".join(strings).split())


def _matches(selector: str, root: etree._Element | None, body: bytes) -> bool:
    """True when `selector` matches an element of the page (`root`: its `html_root`)."""
    xpath = compile_selector(selector)
    root = whole(root, body)
    if xpath is None or root is None:
        return soup(body).select_one(selector) is not None
    return bool(xpath(root))


@functools.lru_cache(maxsize=256)
def compile_selector(selector: str) -> etree.XPath | None:
    """The XPath equivalent of a CSS `selector`, or None when soupsieve must run it."""
    try:
        return etree.XPath(" | ".join(_translate(selector.strip())), namespaces=_NAMESPACES)
    except (_Unsupported, etree.XPathSyntaxError):
        return None


def _translate(selector: str) -> Iterator[str]:
    """One XPath expression per selector of the comma-separated list."""
    path, axis, step, position = "", "descendant-or-self::", None, 0
    while position < len(selector):
        token = _TOKEN.match(selector, position)
        if token is None:
            raise _Unsupported(selector)
        position = token.end()
        combinator = token["combinator"] or (" " if token["space"] else None)
        if combinator is None:
            step = _extend(step, token)
            continue
        if step is None:
            raise _Unsupported(selector)
        path, step = path + axis + step, None
        if combinator == ",":
            yield path + _IN_DOCUMENT
            path, axis = "", "descendant-or-self::"
        else:
            axis = "/" if combinator == ">" else "/descendant::"
    if step is None:
        raise _Unsupported(selector)
    yield path + axis + step + _IN_DOCUMENT


def _extend(step: str | None, token: re.Match[str]) -> str:
    """The XPath step of a compound selector, with this token's test added."""
    if token["type"]:
        if step is not None:
            raise _Unsupported(token[0])
        return token["type"].lower()
    step = step or "*"
    if token["cls"]:
        return step + rf"[re:test(@class, '(^|\s){token['cls']}(\s|$)')]"
    if token["id"]:
        return step + f"[@id = '{token['id']}']"
    name, op = token["attr"].lower(), token["op"]
    if op is None:
        return step + f"[@{name}]"
    value = next(v for v in (token["bare"], token["dq"], token["sq"]) if v is not None)
    if not value or not (name in _PLAIN_ATTRIBUTES or name.startswith("data-")):
        raise _Unsupported(token[0])
    pattern = _VALUE_PATTERNS[op].format(re.escape(value))
    if "'" in pattern and '"' in pattern:
        raise _Unsupported(token[0])
    literal = f'"{pattern}"' if "'" in pattern else f"'{pattern}'"
    return step + f"[re:test(@{name}, {literal})]"
