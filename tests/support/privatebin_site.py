"""Test-only PrivateBin: an encryptor of v2 pastes and a loopback replica of the server.

    document, key = encrypt("text", attachment=("a.csv", b"...", "text/csv"))
    async with serve(PrivateBinSite()) as site:
        link = site.add_paste("text")          # http://127.0.0.1:PORT/?<id>#<base58 key>
        site.paths()                           # ["/?<id>", ...]: what the server was asked

The encryptor follows the format as PrivateBin's client writes it (`CryptTool.cipher`):
random 16-byte iv and 8-byte salt, PBKDF2-HMAC-SHA256 over key + password, AES-256-GCM with
`JSON.stringify(adata)` as associated data, raw deflate. It is independent of the module under
test (its own base58 encoder and serialization), so a round trip checks both sides.

The replica answers like PrivateBin's `Controller::_read`: `GET <base>?<id>` (or
`?pasteid=<id>`) with `X-Requested-With: JSONHttpRequest` gets the paste JSON; without it,
the HTML page (the real one loads the JSON from JavaScript); an unknown id gets
`{"status": 1, "message": ...}` (HTTP 200, as the real server answers); any other path is a
404. A burn-after-reading paste is deleted when its JSON is read.

`site.set_page(path, html)` serves a page at `path` (with an ETag, 304 when it matches): an
index of paste links, as some instances or forks offer one (the `privatebin` source kind).
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import zlib
from typing import Any

from aiohttp import web
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.pbkdf2 import PBKDF2HMAC

from tests.support.fakesites import FakeSite, conditional

_ALPHABET = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
GENERIC_ERROR = "Document does not exist, has expired or has been deleted."
HTML_PAGE = ("<!DOCTYPE html><html><head><title>PrivateBin</title></head><body>"
             "<noscript>This website needs JavaScript</noscript></body></html>")


def base58(data: bytes) -> str:
    """Base58 (Bitcoin alphabet), written apart from watcher.privatebin's on purpose."""
    number, out = int.from_bytes(data, "big"), ""
    while number:
        number, digit = divmod(number, 58)
        out = _ALPHABET[digit] + out
    return "1" * (len(data) - len(data.lstrip(b"\0"))) + out


def data_uri(data: bytes, mime: str = "application/octet-stream") -> str:
    """An RFC 2397 base64 data URI, as PrivateBin's client makes attachments."""
    return f"data:{mime};base64,{base64.b64encode(data).decode()}"


def seal(content: bytes, key: bytes, password: bytes = b"", *, compression: str = "zlib",
         iterations: int = 100_000, formatter: str = "plaintext", burn: bool = False,
         discussion: bool = False, raw: bool = False) -> dict[str, Any]:
    """A v2 paste document holding `content` (the paste JSON, or any bytes for hostile
    tests), encrypted under `key` + `password`; with `raw`, `content` is encrypted as is
    (not compressed, whatever `compression` says)."""
    iv, salt = os.urandom(16), os.urandom(8)
    spec = [base64.b64encode(iv).decode(), base64.b64encode(salt).decode(), iterations, 256, 128,
            "aes", "gcm", compression]
    adata = [spec, formatter, int(discussion), int(burn)]
    if compression == "zlib" and not raw:
        deflater = zlib.compressobj(9, zlib.DEFLATED, -15)
        content = deflater.compress(content) + deflater.flush()
    derived = PBKDF2HMAC(algorithm=hashes.SHA256(), length=32, salt=salt,
                         iterations=iterations).derive(key + password)
    aad = json.dumps(adata, separators=(",", ":")).encode()
    ciphertext = AESGCM(derived).encrypt(iv, content, aad)
    return {"v": 2, "adata": adata, "ct": base64.b64encode(ciphertext).decode(),
            "meta": {"expire": "1week"}}


def encrypt(text: str, attachment: tuple[str, bytes, str] | None = None, password: bytes = b"",
            compression: str = "zlib", **options: Any) -> tuple[dict[str, Any], bytes]:
    """(document, key): a v2 paste of `text` with an optional (name, data, mime) attachment,
    under a fresh random 32-byte key; `options` go to `seal` (formatter, burn, iterations)."""
    key = secrets.token_bytes(32)
    message: dict[str, Any] = {"paste": text}
    if attachment is not None:
        name, data, mime = attachment
        message["attachment"] = data_uri(data, mime)
        message["attachment_name"] = name
    content = json.dumps(message, ensure_ascii=False).encode()
    return seal(content, key, password, compression=compression, **options), key


class PrivateBinSite(FakeSite):
    """A PrivateBin instance at `base` ("/" or e.g. "/bin/"); `requests` logs what it saw."""

    def __init__(self, base: str = "/") -> None:
        self.base = base
        self.pastes: dict[str, dict[str, Any]] = {}
        self.pages: dict[str, str] = {}
        super().__init__()

    def routes(self, router: web.UrlDispatcher) -> None:
        router.add_get("/{tail:.*}", self.handle)

    def add_document(self, document: dict[str, Any], paste_id: str | None = None) -> str:
        """Store a paste document; its id (16 hex digits)."""
        paste_id = paste_id or secrets.token_hex(8)
        self.pastes[paste_id] = document
        return paste_id

    def add_paste(self, text: str, *, burn: bool = False, password: bytes = b"",
                  attachment: tuple[str, bytes, str] | None = None, **options: Any) -> str:
        """Encrypt and store a paste; its link as PrivateBin shows it (`#-` for burn)."""
        document, key = encrypt(text, attachment, password, burn=burn, **options)
        paste_id = self.add_document(document)
        return f"{self.url(self.base)}?{paste_id}{'#-' if burn else '#'}{base58(key)}"

    def set_page(self, path: str, html: str) -> str:
        """Serve `html` at `path` (an index of links); its URL."""
        self.pages[path] = html
        return self.url(path)

    async def handle(self, request: web.Request) -> web.Response:
        if request.path in self.pages:
            return conditional(request, self.pages[request.path], "text/html")
        if request.path != self.base:
            return web.Response(status=404, text="not found")
        paste_id = self._paste_id(request)
        if request.headers.get("X-Requested-With") != "JSONHttpRequest":
            return web.Response(text=HTML_PAGE, content_type="text/html")
        document = self.pastes.get(paste_id or "")
        if document is None:
            return web.json_response({"status": 1, "message": GENERIC_ERROR})
        if document["adata"][3]:                    # burn after reading: gone once read
            del self.pastes[paste_id or ""]
        body = {"status": 0, "id": paste_id, "url": f"{self.base}?{paste_id}", **document,
                "comments": [], "comment_count": 0, "comment_offset": 0, "@context": "?jsonld=paste"}
        return web.json_response(body)

    @staticmethod
    def _paste_id(request: web.Request) -> str | None:
        """The id of `?<id>` (a key with an empty value) or of `?pasteid=<id>`."""
        if "pasteid" in request.query:
            return request.query["pasteid"]
        for name, value in request.query.items():
            if not value and len(name) == 16:
                return name
        return None
