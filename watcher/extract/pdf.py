"""PDF documents to text (attestations, member cards and exports dropped by analysts).

pypdf (pure Python, maintained, with its own output limits on every decompression filter)
extracts each page's text, then the values typed into its form fields (a filled-in form
keeps them apart from its pages' text); leak-watcher adds its own limits on top: documents over
`MAX_PDF` bytes and pages past `MAX_PAGES` are not parsed (a note says so), and a PDF pypdf
cannot read costs that document a note, never the scan. Scanned images hold no text: OCR is
not attempted.

A few KB of PDF can make pypdf parse gigabytes: pages that all draw the same content stream,
a form drawn thousands of times (pypdf parses it again each time, at about a MB a second).
Reading a document's pages is given `MAX_SECONDS`, checked between pages and as pypdf reads
operators (through its callback); past them the remaining pages are not read and a note says so. The
callback turns pypdf's own shortcut off (content that shows no text is not parsed), so a
page whose content has no text operator and draws no form is skipped here instead.
"""

from __future__ import annotations

import io
import itertools
import logging
import re
import time
from typing import TYPE_CHECKING
from collections.abc import Callable, Iterator

from .blobs import MiB, Budget

if TYPE_CHECKING:                    # pypdf is imported when a PDF comes
    from pypdf import PageObject, PdfReader

MAX_PDF = 32 * MiB
MAX_PAGES = 500
MAX_FIELDS = 10_000              # form fields read
MAX_FIELD_TEXT = MiB             # characters of their values
MAX_SECONDS = 20.0               # reading one document's pages
_SHOWS_TEXT = re.compile(rb"T[jJ]|Do|['\"]")     # a text operator, or a form that may hold some

log = logging.getLogger(__name__)


class _TooLong(BaseException):
    """The document's time is spent (raised between pages or from pypdf's callback). Not an
    Exception: pypdf catches those around each form it draws, and would draw the next one."""


def looks_like_pdf(head: bytes) -> bool:
    return head.lstrip(b"\xef\xbb\xbf\r\n\t ")[:5] == b"%PDF-"


def pdf_text(data: bytes, budget: Budget, label: str) -> Iterator[bytes]:
    """The text of each page as UTF-8, a page at a time."""
    if len(data) > MAX_PDF:
        budget.note(f"{label}: PDF over {MAX_PDF // MiB} MiB, not parsed")
        return
    from pypdf import PdfReader          # imported here: only documents that are PDFs need it

    logging.getLogger("pypdf").setLevel(logging.ERROR)     # its warnings would be one per odd object
    try:
        reader = PdfReader(io.BytesIO(data), strict=False)
        if reader.is_encrypted and not reader.decrypt(""):
            budget.note(f"{label}: PDF is password-protected, not scanned")
            return
        pages = reader.pages
        if len(pages) > MAX_PAGES:
            budget.note(f"{label}: PDF has {len(pages)} pages, only the first {MAX_PAGES} read")
        deadline = time.monotonic() + MAX_SECONDS
        check = _deadline_check(deadline)
        for index in range(min(len(pages), MAX_PAGES)):
            if time.monotonic() > deadline:
                raise _TooLong
            text = _page_text(pages[index], check)
            budget.spend(len(text), label)
            yield text.encode("utf-8", "replace") + b"\n"
        fields = _form_values(reader)
        budget.spend(len(fields), label)
        yield fields.encode("utf-8", "replace")
    except _TooLong:
        budget.note(f"{label}: PDF text extraction over {MAX_SECONDS:g} s (the same content drawn again and "
                    f"again?), pages from {index + 1} not read")
    except Exception as exc:   # pypdf raises many kinds on hostile or broken files
        budget.note(f"{label}: PDF unreadable ({exc.__class__.__name__}: {str(exc)[:120]})")


def _form_values(reader: PdfReader) -> str:
    """What was typed into the document's form fields, `name: value` a line (a filled-in form's
    NIR is in its fields, not in its pages' text; the name labels a bare 13-character one)."""
    fields = reader.get_form_text_fields() or {}
    lines = [f"{name}: {value}" for name, value in itertools.islice(fields.items(), MAX_FIELDS)
             if isinstance(value, str) and value]
    return ("\n".join(lines) + "\n")[:MAX_FIELD_TEXT] if lines else ""


def _page_text(page: PageObject, check: Callable[..., None]) -> str:
    contents = page.get_contents()
    if contents is None or not _SHOWS_TEXT.search(contents.get_data()):
        return ""
    return page.extract_text(visitor_operand_before=check) or ""


def _deadline_check(deadline: float) -> Callable[..., None]:
    """A callback (pypdf's `visitor_operand_before`) that raises _TooLong once past
    `deadline`, looking at the clock every 256 operators."""
    calls = 0

    def check(*_: object) -> None:
        nonlocal calls
        calls += 1
        if not calls & 255 and time.monotonic() > deadline:
            raise _TooLong

    return check
