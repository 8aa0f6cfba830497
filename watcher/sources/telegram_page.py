"""A Telegram channel's public preview page, `https://t.me/s/<channel>` (pure; run in the
page-parser process).

The page lists the newest messages, oldest first (20 on t.me), each a
`div.tgme_widget_message[data-post="<channel>/<id>"]`: its text in the outermost
`.tgme_widget_message_text` that is not a quoted reply (`.tgme_widget_message_reply`; an album
caption nests a second text div in the first), its date in `time[datetime]` (the one in
`a.tgme_widget_message_date` first), attached documents as `.tgme_widget_message_document_title`
(with `.tgme_widget_message_document_extra`, the size, beside it). Older messages are on
`?before=<id>`, the id in `a.tme_messages_more[data-before]` (a `data-after` link goes the other
way). A channel without a public preview redirects away from `/s/` (the caller checks that).

Read through lxml (XPath on a tree built in C); a page lxml reads only in part (nested past its
depth limit, content after `</html>`: watcher.sources.markup) through bs4, whose tree builder
has no depth limit, with the same meaning. At most MAX_MESSAGES messages are kept per page (the
newest); a page with more says so (`ChannelPage.cut`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

from bs4 import BeautifulSoup, NavigableString, Tag
from lxml import etree

from watcher.sources.markup import html_root, http_link, soup, whole
from watcher.sources.walls import wall_reason

MAX_MESSAGES = 500        # per page (t.me shows 20): a hostile page does not make 100,000 items
TELEGRAM_HOSTS = frozenset({"t.me", "telegram.me", "telegram.org", "telesco.pe"})
# A link to one of these hosts, or whose last path segment ends with one of these extensions,
# names a file (recorded, never downloaded).
FILE_HOSTS = frozenset({
    "mega.nz", "mega.io", "gofile.io", "pixeldrain.com", "mediafire.com", "anonfiles.com",
    "bayfiles.com", "files.fm", "krakenfiles.com", "1fichier.com", "uploadnow.io", "sendspace.com",
    "catbox.moe", "transfer.sh", "wetransfer.com", "we.tl", "dropbox.com", "drive.google.com",
    "limewire.com", "temp.sh", "qu.ax", "buzzheavier.com",
})
FILE_EXTENSIONS = frozenset({
    "zip", "rar", "7z", "tar", "gz", "tgz", "bz2", "xz", "zst", "csv", "tsv", "txt", "json", "jsonl",
    "xml", "sql", "db", "sqlite", "mdb", "accdb", "dump", "bak", "xls", "xlsx", "ods", "doc", "docx",
    "odt", "pdf", "rtf", "vcf", "eml", "pst", "mbox", "parquet", "log",
})
_SKIPPED_TEXT = ("script", "style", "template")


def _class(name: str) -> str:
    """XPath test: the element's class attribute holds the token `name`."""
    return f"contains(concat(' ', normalize-space(@class), ' '), ' {name} ')"


_MESSAGES = etree.XPath(f"//div[{_class('tgme_widget_message')}][@data-post]")
_TEXTS = etree.XPath(f"descendant::div[{_class('tgme_widget_message_text')}]"
                     f"[not(ancestor::*[{_class('tgme_widget_message_reply')}])]"
                     f"[not(ancestor::div[{_class('tgme_widget_message_text')}])]")
_LINK_DATES = etree.XPath(f"descendant::a[{_class('tgme_widget_message_date')}]/descendant::time/@datetime")
_DATES = etree.XPath("descendant::time/@datetime")
_DOCUMENT_TITLES = etree.XPath(f"descendant::*[{_class('tgme_widget_message_document_title')}]")
_DOCUMENT_EXTRA = etree.XPath(f"string(following-sibling::*[{_class('tgme_widget_message_document_extra')}][1])")
_LINKS = etree.XPath("descendant::a/@href")
_BEFORE = etree.XPath(f"//a[{_class('tme_messages_more')}]/@data-before")
_HISTORY = etree.XPath(f"boolean(//*[{_class('tgme_channel_history')}])")
_POST = re.compile(r"([A-Za-z0-9_]{1,64})/([0-9]{1,19})")


@dataclass(frozen=True)
class LinkedFile:
    """A file a message names: an attached document (its title, its size as the page shows
    it) or a link to a file (its name, its URL)."""

    name: str
    url: str | None = None
    size: str | None = None

    def __str__(self) -> str:
        extras = [part for part in (self.size, self.url) if part]
        return f"{self.name} ({', '.join(extras)})" if extras else self.name


@dataclass(frozen=True)
class Message:
    """One channel message: `post` is its `data-post` ("chan/123"), `posted_at` the ISO date of
    its `time[datetime]` ("" when it has none), `text` its text (a <br> is a newline)."""

    post: str
    post_id: int
    posted_at: str
    text: str
    files: tuple[LinkedFile, ...] = ()

    @property
    def channel(self) -> str:
        """The channel of `post`."""
        return self.post.rsplit("/", 1)[0]

    @property
    def link(self) -> str:
        """The message's public link."""
        return f"https://t.me/{self.post}"


@dataclass(frozen=True)
class ChannelPage:
    """The messages of one preview page (oldest first), the `before` id of the older page
    (None: none), whether the page looks like a channel preview at all (`preview`: messages or
    the message history section), `wall` (it looks like a login or challenge page) and `cut`
    (why messages were left out)."""

    messages: list[Message]
    before: int | None
    preview: bool
    wall: str | None = None
    cut: str | None = None


def parse_channel_page(body: bytes) -> ChannelPage:
    """The messages and the older page's id of a t.me/s page (see the module docstring)."""
    root = html_root(body)
    tree = whole(root, body)
    if tree is not None:
        messages, before, history = _lxml_page(tree)
    else:
        messages, before, history = _soup_page(soup(body))
    cut = None
    if len(messages) > MAX_MESSAGES:
        cut = f"{len(messages)} messages on one page: only the newest {MAX_MESSAGES} were read"
        messages = messages[-MAX_MESSAGES:]
    return ChannelPage(messages, before, bool(messages) or history,
                       wall_reason(root, body, bool(messages)), cut)


# -- lxml ------------------------------------------------------------------------------------------

def _lxml_page(root: etree._Element) -> tuple[list[Message], int | None, bool]:
    """(messages, before id, has a message history section) through lxml."""
    messages = []
    for element in _MESSAGES(root):
        post = _post(element.get("data-post"))
        if post is None:
            continue
        texts = _TEXTS(element)
        text = _clean(_lxml_text(texts[0])) if texts else ""
        dates = _LINK_DATES(element) or _DATES(element)
        documents = [(_clean(_lxml_text(t)), _clean(_DOCUMENT_EXTRA(t)))
                     for t in _DOCUMENT_TITLES(element)]
        messages.append(_message(post, str(dates[0]) if dates else "", text, documents,
                                 (str(href) for href in _LINKS(element))))
    return messages, _before(str(value) for value in _BEFORE(root)), bool(_HISTORY(root))


def _lxml_text(element: etree._Element) -> str:
    """An element's text, <br> as a newline, without comments, scripts and styles."""
    parts: list[str] = []
    walk = etree.iterwalk(element, events=("start", "end"))
    for event, node in walk:
        if event == "end":
            if node is not element and node.tail:
                parts.append(node.tail)
            continue
        if not isinstance(node.tag, str) or node.tag in _SKIPPED_TEXT:
            walk.skip_subtree()
            continue
        if node.tag == "br":
            parts.append("\n")
        if node.text:
            parts.append(node.text)
    return "".join(parts)


# -- bs4 (a page lxml reads only in part) ----------------------------------------------------------

def _soup_page(page: BeautifulSoup) -> tuple[list[Message], int | None, bool]:
    """(messages, before id, has a message history section) through bs4."""
    messages = []
    for element in page.select("div.tgme_widget_message[data-post]"):
        post = _post(element.get("data-post"))
        if post is None:
            continue
        texts = [t for t in element.select("div.tgme_widget_message_text")
                 if not _inside(t, element, "tgme_widget_message_reply", "tgme_widget_message_text")]
        text = _clean(_soup_text(texts[0])) if texts else ""
        dates = [t.get("datetime") for t in element.select("a.tgme_widget_message_date time[datetime]")
                 + element.select("time[datetime]")]
        documents = []
        for title in element.select(".tgme_widget_message_document_title"):
            extra = title.find_next_sibling(class_="tgme_widget_message_document_extra")
            documents.append((_clean(title.get_text()), _clean(extra.get_text()) if extra else ""))
        hrefs = (a.get("href") for a in element.find_all("a", href=True))
        messages.append(_message(post, str(dates[0]) if dates else "", text, documents,
                                 (h for h in hrefs if isinstance(h, str))))
    befores = (a.get("data-before") for a in page.select("a.tme_messages_more[data-before]"))
    history = page.select_one(".tgme_channel_history") is not None
    return messages, _before(b for b in befores if isinstance(b, str)), history


def _inside(tag: Tag, stop: Tag, *classes: str) -> bool:
    """True when an ancestor of `tag` below `stop` has one of `classes` (a walk up to the
    message only: a hostile page nested deep costs its own depth, not the page's)."""
    for parent in tag.parents:
        if parent is stop:
            return False
        if any(c in (parent.get("class") or ()) for c in classes):
            return True
    return False


def _soup_text(element: Tag) -> str:
    """An element's text, <br> as a newline, without comments, scripts and styles."""
    parts: list[str] = []
    for node in element.descendants:
        if isinstance(node, Tag):
            if node.name == "br":
                parts.append("\n")
        elif type(node) is NavigableString:     # not a comment, nor a script's or style's string
            parts.append(str(node))
    return "".join(parts)


# -- shared ----------------------------------------------------------------------------------------

def _post(value: object) -> tuple[str, int] | None:
    """("chan/123", 123) of a `data-post` value; None for anything else."""
    if not isinstance(value, str):
        return None
    match = _POST.fullmatch(value.strip())
    return (match[0], int(match[2])) if match else None


def _message(post: tuple[str, int], posted_at: str, text: str, documents: list[tuple[str, str]],
             hrefs: Iterable[str]) -> Message:
    """A Message, its files: the documents (title, size) and the links naming a file."""
    files = [LinkedFile(title, size=size or None) for title, size in documents if title]
    seen: set[str] = set()
    for href in hrefs:
        url = http_link("https://t.me/", href)
        if url is None or url in seen:
            continue
        seen.add(url)
        named = file_link(url)
        if named is not None:
            files.append(named)
    return Message(post[0], post[1], posted_at.strip(), text, tuple(files))


def file_link(url: str) -> LinkedFile | None:
    """The file a link names: a file-sharing host, or a last path segment with a file
    extension (not on Telegram's own hosts); None for any other link."""
    parts = urlsplit(url)
    host = (parts.hostname or "").removeprefix("www.")
    if host in TELEGRAM_HOSTS or host.endswith(".telesco.pe") or host.endswith(".t.me"):
        return None
    segment = unquote(parts.path.rstrip("/").rsplit("/", 1)[-1])
    extension = segment.rsplit(".", 1)[-1].lower() if "." in segment else ""
    if extension in FILE_EXTENSIONS:
        return LinkedFile(segment, url)
    if host in FILE_HOSTS:
        return LinkedFile(segment or host, url)
    return None


def _before(values: Iterable[str]) -> int | None:
    """The first `data-before` value that is an id."""
    for value in values:
        value = value.strip()
        if value.isascii() and value.isdigit() and len(value) <= 19:
            return int(value)
    return None


def _clean(text: str) -> str:
    """Text with no-break spaces as spaces, each line's trailing blanks and the whole's
    leading and trailing blank lines removed."""
    lines = text.replace("\xa0", " ").replace("\r\n", "\n").replace("\r", "\n").split("\n")
    return "\n".join(line.rstrip() for line in lines).strip()
