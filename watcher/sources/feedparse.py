"""RSS (0.9x/1.0/2.0) and Atom documents: their entries (pure; run in the page-parser process).

The XML parser resolves no entities, fetches nothing from the network (XXE) and recovers from
broken feeds. Before it runs, the document type declaration is cut out of the prolog with its
internal subset: entities can only be declared there, so an entity-expansion bomb (billion
laughs) is gone with it, where libxml2 would stop at the first reference and lose every entry
after it. A reference to an entity it declared reads as nothing, as before (no entity was
expanded). UTF-16 and UTF-32 documents (with a byte order mark) are read as UTF-8 for this.
The tree is built with huge_tree (2,048 levels of nesting, no size limits below the 5 MB a
page is cut at); a feed libxml2 still stops reading says so (`FeedPage.cut`).
"""

from __future__ import annotations

import codecs
import hashlib
import re
from dataclasses import dataclass
from urllib.parse import urljoin

from bs4 import BeautifulSoup
from lxml import etree

from watcher.sources.errors import SourceError
from watcher.sources.walls import page_wall

_BODY_TAGS = ("encoded", "content", "description", "summary")   # best first
_FEED_ROOTS = ("rss", "feed", "RDF", "channel")
# The prolog up to a document type declaration: BOM, white space, XML declaration, PIs, comments.
_PROLOG = re.compile(rb"(?:\xef\xbb\xbf)?(?:\s++|<\?.*?\?>|<!--.*?-->)*+(?=<!DOCTYPE)", re.DOTALL)
_QUOTED = rb"\"[^\"]*+\"|'[^']*+'"
# A declaration of the internal subset: comment, PI, markup declaration, PE reference, space.
_DECLARATION = rb"<!--.*?-->|<\?.*?\?>|<!(?:[^>\"']++|" + _QUOTED + rb")*+>|%[^;\s]*+;|\s++"
_DOCTYPE = re.compile(rb"<!DOCTYPE(?:[^\[>\"']++|" + _QUOTED + rb")*+(?:\[(?:" + _DECLARATION
                      + rb")*+\]\s*+)?>", re.DOTALL)
_SUBSET_END = re.compile(rb"\]\s*+>")
_XML_DECLARATION = re.compile(r"\A<\?xml[^>]*>")
_WIDE_BOMS = ((codecs.BOM_UTF32_LE, "utf-32"), (codecs.BOM_UTF32_BE, "utf-32"),
              (codecs.BOM_UTF16_LE, "utf-16"), (codecs.BOM_UTF16_BE, "utf-16"))


@dataclass(frozen=True)
class Entry:
    """One feed entry."""

    entry_id: str
    title: str
    link: str | None
    text: str
    published: str | None = None    # as the feed writes it (RSS pubDate, Atom published/updated)
    author: str | None = None


@dataclass(frozen=True)
class FeedPage:
    """A feed's entries; `cut` says where libxml2 stopped reading it (the entries after that
    point are missing); `expect_missing`: the source's `expect` selector matched nothing."""

    entries: list[Entry]
    cut: str | None = None
    expect_missing: bool = False


def _local(element: etree._Element) -> str:
    """Tag name without namespace ("" for comments and processing instructions)."""
    tag = element.tag
    return etree.QName(tag).localname if isinstance(tag, str) else ""


def _html_text(markup: str) -> str:
    """Visible text of an HTML fragment (plain text stays as is)."""
    if "<" not in markup:
        return markup.strip()
    return BeautifulSoup(markup, "lxml").get_text("\n", strip=True)


def _element_text(element: etree._Element) -> str:
    """Text of an entry's body element: escaped HTML, CDATA, or inline XHTML."""
    if len(element):  # Atom type="xhtml": markup as child elements
        return _html_text(etree.tostring(element, encoding="unicode", method="html"))
    return _html_text(element.text or "")


def _entry_link(entry: etree._Element, base_url: str) -> str | None:
    """RSS <link>text</link> or Atom <link rel="alternate" href=...>."""
    for child in entry:
        if _local(child) != "link":
            continue
        href = child.get("href")
        if href is not None:
            if child.get("rel", "alternate") == "alternate":
                return urljoin(base_url, str(href).strip())
        elif child.text and child.text.strip():
            return urljoin(base_url, str(child.text).strip())
    return None


def parse_entry(entry: etree._Element, base_url: str) -> Entry:
    """Title, link, id and text of an <item> or <entry>."""
    children: dict[str, etree._Element] = {}
    for child in entry:
        children.setdefault(_local(child), child)
    title = _html_text(children["title"].text or "") if "title" in children else ""
    body = next((_element_text(children[t]) for t in _BODY_TAGS if t in children), "")
    link = _entry_link(entry, base_url)
    text = "\n".join(part for part in (title, body) if part)
    guid = children.get("guid") if "guid" in children else children.get("id")
    entry_id = (guid.text or "").strip() if guid is not None else ""
    if not entry_id:
        entry_id = link or hashlib.sha256(text.encode("utf-8")).hexdigest()
    return Entry(entry_id=entry_id, title=title, link=link, text=text,
                 published=_first_text(children, ("pubDate", "published", "date", "updated")),
                 author=_first_text(children, ("author", "creator")))


def _first_text(children: dict[str, etree._Element], names: tuple[str, ...]) -> str | None:
    """The text of the first of `names` among an entry's children (an Atom <author> by its
    <name>), on one line of at most 200 characters."""
    for name in names:
        element = children.get(name)
        if element is None:
            continue
        text = element.text or ""
        if not text.strip() and len(element):
            text = " ".join(t for t in element.itertext() if t.strip())
        text = " ".join(text.split())[:200]
        if text:
            return text
    return None


def without_doctype(body: bytes) -> bytes:
    """The document without its document type declaration (and internal subset), if its
    prolog has one. A subset the tokenizer cannot follow is cut at its first "]>": whatever
    stays is read as content, where no entity can be declared."""
    body = _as_utf8(body)
    prolog = _PROLOG.match(body)
    if prolog is None:
        return body
    start = prolog.end()
    declaration = _DOCTYPE.match(body, start)
    if declaration is not None:
        return body[:start] + body[declaration.end():]
    end = _SUBSET_END.search(body, start)
    return body if end is None else body[:start] + body[end.end():]


def _as_utf8(body: bytes) -> bytes:
    """A UTF-16 or UTF-32 document (byte order mark) in UTF-8, its XML declaration dropped
    (it names the old encoding); any other document as it is."""
    for bom, codec in _WIDE_BOMS:
        if body.startswith(bom):
            text = body.decode(codec, errors="replace")
            return _XML_DECLARATION.sub("", text, count=1).encode("utf-8")
    return body


def parse_feed(base_url: str, body: bytes, expect: str | None = None) -> FeedPage:
    """Entries of an RSS or Atom document (SourceError if it is neither, saying when it looks
    like a login or challenge page); `expect`: a CSS selector the document must match."""
    body = without_doctype(body)
    parser = etree.XMLParser(resolve_entities=False, no_network=True, recover=True,
                             huge_tree=True, remove_comments=True)
    try:
        root = etree.fromstring(body, parser=parser)
    except etree.XMLSyntaxError as exc:
        raise SourceError(f"not an RSS or Atom feed: {exc}") from None
    if root is None or _local(root) not in _FEED_ROOTS:
        wall = page_wall(body)
        raise SourceError("not an RSS or Atom feed" + (f": {wall}" if wall else ""))
    entries = [parse_entry(e, base_url) for e in root.iter() if _local(e) in ("item", "entry")]
    missing = expect is not None and BeautifulSoup(body, "xml").select_one(expect) is None
    return FeedPage(entries, _cut(parser), missing)


def _cut(parser: etree.XMLParser) -> str | None:
    """Where libxml2 gave up on the document (a resource limit: nesting too deep), if it did."""
    error = next(iter(parser.error_log.filter_types([etree.ErrorTypes.ERR_RESOURCE_LIMIT])), None)
    if error is None:
        return None
    return (f"the feed could not be read past line {error.line} ({error.message.split(',')[0].strip()}): "
            "the entries after that point were not read")
