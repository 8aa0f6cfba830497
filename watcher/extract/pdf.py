"""PDF documents to text (attestations, member cards and exports dropped by analysts).

pypdf (pure Python, maintained, with its own output limits on every decompression filter)
extracts each page's text; leak-watcher adds its own limits on top: documents over
`MAX_PDF` bytes and pages past `MAX_PAGES` are not parsed (a note says so), and a PDF pypdf
cannot read costs that document a note, never the scan. Scanned images hold no text: OCR is
not attempted.
"""

from __future__ import annotations

import io
import logging
from typing import Iterator

from .blobs import MiB, Budget

MAX_PDF = 32 * MiB
MAX_PAGES = 500

log = logging.getLogger(__name__)


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
        for index in range(min(len(pages), MAX_PAGES)):
            text = pages[index].extract_text() or ""
            budget.spend(len(text), label)
            yield text.encode("utf-8", "replace") + b"\n"
    except Exception as exc:   # pypdf raises many kinds on hostile or broken files
        budget.note(f"{label}: PDF unreadable ({exc.__class__.__name__}: {str(exc)[:120]})")
