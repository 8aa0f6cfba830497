"""E-mail: a message (`.eml`) or a mailbox (`mbox`) read part by part, each body and attachment
decoded from its transfer encoding, so a forwarded extract reads as the CSV it was.

Scanned raw, a message shows its base64 attachments to the blob finder, but a
quoted-printable body is cut every 76 characters by soft line breaks (`=` at a line's end:
a NIR split in two, a CSV row counted twice) and an HTML body keeps its markup. Each message
here gives its header block, then each leaf part (bodies, attachments, attached messages'
parts) as a member of its own, named by its file name or its type, which extraction reads
as any document (a zip, a workbook, HTML...).

At most MAX_MAILBOX bytes are held; parts count against the document's `max_members`.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

from .blobs import MiB, Budget, Refused

MAX_MAILBOX = 64 * MiB
# A header block: an mbox "From " line or not, then at least two `Name: value` header lines
# (folded lines allowed) among which a MIME one (plain text mail needs no decoding), then the
# empty line that ends it (a message's header block read back as a part is not a message).
_HEADER_LINE = rb"[A-Za-z][A-Za-z0-9-]{0,60}:[^\r\n]*\r?\n(?:[ \t][^\r\n]*\r?\n)*"
_HEAD = re.compile(rb"(?:From [^\r\n]*\r?\n)?(?:" + _HEADER_LINE + rb"){2,}\r?\n")
_MIME = re.compile(rb"^(?:MIME-Version|Content-Type|Content-Transfer-Encoding):", re.IGNORECASE | re.MULTILINE)
_MBOX_FROM = re.compile(rb"^From [^\r\n]*\r?\n", re.MULTILINE)
_HEADERS_END = re.compile(rb"\r?\n\r?\n")
_ENCODED_WORD = re.compile(rb"=\?[^?\s]{1,40}\?[bBqQ]\?[^?\s]{0,1000}\?=")


def looks_like_mail(head: bytes) -> bool:
    """A message or mailbox: it opens with a header block that has a MIME header."""
    block = _HEAD.match(head)
    return block is not None and _MIME.search(head, 0, block.end()) is not None


def mail_parts(data: bytes, budget: Budget, what: str) -> Iterator[tuple[str, Iterator[bytes]]]:
    """(name, decoded bytes) of each message's headers and leaf parts, messages in order.
    The email package is imported here (5 ms): `watcher scan` of anything else does not pay
    for it."""
    import email.parser
    import email.policy

    messages = _messages(data)
    try:
        for number, message in enumerate(messages, 1):
            prefix = f"message {number}: " if len(messages) > 1 else ""
            parsed = email.parser.BytesParser(policy=email.policy.compat32).parsebytes(message)
            leaves = [part for part in parsed.walk() if not part.is_multipart()]
            budget.spend_members(len(leaves) + 1, what)
            yield f"{prefix}headers", iter([_headers(message)])
            for index, part in enumerate(leaves, 1):
                payload = part.get_payload(decode=True)
                if isinstance(payload, bytes) and payload:
                    name = part.get_filename() or f"part {index} ({part.get_content_type()})"
                    yield f"{prefix}{name}", iter([payload])
    except Refused as exc:
        budget.note(str(exc))


def _messages(data: bytes) -> list[bytes]:
    """A mailbox's messages (each after its `From ` line), or the one message."""
    if not data.startswith(b"From "):
        return [data]
    lines = [match.span() for match in _MBOX_FROM.finditer(data)]
    ends = [start for start, _ in lines[1:]] + [len(data)]
    return [data[end_of_line:end] for (_, end_of_line), end in zip(lines, ends, strict=True)]


def _headers(message: bytes) -> bytes:
    """The message's header block as it was written (a subject or a sender naming an insurer,
    in any encoding), then the text of its encoded words (`=?utf-8?q?Alm=C3=A9rys?=`)."""
    import email.errors
    import email.header

    end = _HEADERS_END.search(message)
    block = message[:end.start() if end else len(message)]
    decoded = []
    for word in _ENCODED_WORD.findall(block):
        try:
            decoded.append(str(email.header.make_header(email.header.decode_header(word.decode("ascii")))))
        except (ValueError, LookupError, UnicodeError, email.errors.HeaderParseError):
            continue
    return block + (("\n" + " ".join(decoded)).encode("utf-8", "replace") if decoded else b"")
