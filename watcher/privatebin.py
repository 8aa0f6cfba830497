"""PrivateBin pastes: links found in text, fetched as JSON, decrypted here (format v2).

A PrivateBin link is `https://host/path/?<id>#<key>`: the server stores only ciphertext, and
the key travels in the URL fragment, which is never sent to the server. The steps follow the
format's own description (github.com/PrivateBin/PrivateBin wiki "Encryption format") and its
client (`js/privatebin.js`: `Model.getPasteId`, `Model.getPasteKey`, `CryptTool.decipher`):

- the id is 16 lower-case hex digits (the server's `Paste::isValidId`), the key the base58
  text of 32 random bytes; a fragment starting with `-` marks burn-after-reading, and what
  follows the key after a `&` (tracking parameters) is not part of it;
- `GET https://host/path/?<id>` with `X-Requested-With: JSONHttpRequest` answers JSON
  `{"status": 0, "v": 2, "adata": [...], "ct": ...}` (HTML without the header;
  `{"status": 1, "message": ...}` for an unknown or expired id);
- `adata[0]` = [iv, salt (base64), iterations, key size, tag size, "aes", "gcm",
  "zlib" | "none"], then the formatter, the discussion flag and the burn flag;
- the AES key is PBKDF2-HMAC-SHA256(key bytes + password, salt, iterations); AES-GCM
  authenticates the adata as it was serialized (`JSON.stringify`: no spaces);
- the plaintext is raw deflate ("zlib") or not compressed, and holds the JSON
  `{"paste", "attachment", "attachment_name"}`: attachments are data URIs, one or a list.

Why it is careful:

- The key is a secret (whoever has it reads the paste). `PasteLink` keeps it out of `repr`
  and `str`, errors never include it nor any plaintext, and what may be logged or stored is
  its keyed fingerprint (`PasteLink.key_fingerprint`).
- A burn-after-reading paste is destroyed by reading it: its link is reported, never opened
  (`fetch_paste` refuses it before any request).
- The document is hostile: the iteration count is capped (a CPU bomb otherwise), the
  decompressed size is capped while inflating (`max_bytes`: a deflate bomb stops there; the
  attachments it holds decode to fewer bytes than their text), and every failure is a
  `PasteError` with a one-line message.
- `find_links` runs in linear time on hostile text: every quantifier of its pattern is
  bounded, and a match can only start at `http`.

v1 pastes (SJCL, before PrivateBin 1.3, base64 keys) are refused, not decrypted. Comments,
encrypted with the same key, are not decrypted.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote_to_bytes

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.pbkdf2 import PBKDF2HMAC

from watcher.fetch import Fetcher

__all__ = ["JSON_HEADERS", "MAX_ITERATIONS", "Paste", "PasteError", "PasteLink", "b58decode",
           "b58encode", "decode_key", "decrypt", "fetch_paste", "find_links"]

BASE58_ALPHABET = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
_B58_VALUES = {char: value for value, char in enumerate(BASE58_ALPHABET)}
KEY_BYTES = 32
MAX_KEY_CHARS = 50                 # 32 bytes are 43 or 44 base58 digits, leading zeros '1's
MAX_ITERATIONS = 1_000_000         # PrivateBin uses 100,000; more is a CPU bomb, not a paste
KEY_SIZES = {128: 16, 192: 24, 256: 32}
TAG_SIZE = 128
MAX_MESSAGE = 200                  # characters of a server's error message kept
JSON_HEADERS = {"X-Requested-With": "JSONHttpRequest", "Accept": "application/json"}

# https?://host[:port][/path]?[pasteid=]<id>[&...]#[-]<key>, every run bounded: a match starts
# only at `http` and reads at most ~1,000 characters, so hostile text costs linear time.
_LINK = re.compile(
    r"(?<![A-Za-z0-9+.-])(?P<scheme>[Hh][Tt][Tt][Pp][Ss]?)://"
    r"(?P<host>[A-Za-z0-9.-]{1,253}|\[[0-9A-Fa-f:.]{2,45}\])(?P<port>:[0-9]{1,5})?"
    r"(?P<path>/[A-Za-z0-9._~!$()*+,;=:@%/-]{0,256})?"
    r"\?(?:pasteid=)?(?P<id>[a-f0-9]{16})(?![A-Za-z0-9])(?:&[^\s#\"'<>]{0,256})?"
    r"#(?P<burn>-?)(?P<key>[1-9A-HJ-NP-Za-km-z]{32,50})(?![A-Za-z0-9+/=])"
)


class PasteError(Exception):
    """A paste could not be opened; `str()` is one line, never the key nor any plaintext."""


@dataclass(frozen=True)
class PasteLink:
    """A PrivateBin link found in text.

    `url` is what is fetched: the link without its fragment, in the canonical form
    `scheme://host[:port]/path?<id>`. `key` is the fragment's base58 text (without the burn
    `-`): a secret, out of `repr` and `str` (not out of `dataclasses.asdict` nor pickling);
    log or store `key_fingerprint(...)` instead.
    """

    url: str
    paste_id: str
    burn: bool
    key: str = field(repr=False)

    def __str__(self) -> str:
        return self.url + ("#-…" if self.burn else "#…")

    def key_bytes(self) -> bytes:
        """The 32 key bytes (`PasteError` if the text is not a base58 key)."""
        return decode_key(self.key)

    def key_fingerprint(self, fingerprinter: Callable[[str, str], str]) -> str:
        """16 hex digits of the key's keyed fingerprint (`privacy.Fingerprinter`): the same
        key gives the same value across restarts, and the value never gives the key back."""
        return fingerprinter("privatebin-key", self.key)[:16]


@dataclass(frozen=True)
class Paste:
    """A decrypted paste: its text, its attachments (name, bytes) and its formatter
    ("plaintext", "syntaxhighlighting", "markdown"). Attachment names are the paste's own:
    never a path. `repr` gives sizes only: the content is a possible leak."""

    text: str
    attachments: list[tuple[str, bytes]] = field(default_factory=list)
    formatter: str = "plaintext"

    def __repr__(self) -> str:
        sizes = [len(data) for _name, data in self.attachments]
        return f"Paste(formatter={self.formatter!r}, text={len(self.text)} chars, attachments={sizes} bytes)"


# --------------------------------------------------------------------------- links


def find_links(text: str) -> list[PasteLink]:
    """The PrivateBin links in `text`, in order, each once (same URL and key). A link whose
    key is not the base58 text of at most 32 bytes is not one (it may be a v1 link, whose
    key is base64, or a mangled one)."""
    links: list[PasteLink] = []
    seen: set[tuple[str, str]] = set()
    for match in _LINK.finditer(text):
        key = match["key"]
        if _decoded_key(key) is None:
            continue
        url = (f"{match['scheme'].lower()}://{match['host']}{match['port'] or ''}"
               f"{match['path'] or '/'}?{match['id']}")
        if (url, key) in seen:
            continue
        seen.add((url, key))
        links.append(PasteLink(url=url, paste_id=match["id"], burn=bool(match["burn"]), key=key))
    return links


# --------------------------------------------------------------------------- base58


def b58encode(data: bytes) -> str:
    """Base58 (Bitcoin alphabet, as PrivateBin's base-x): each leading zero byte is a '1'."""
    zeros = len(data) - len(data.lstrip(b"\0"))
    number = int.from_bytes(data, "big")
    digits = []
    while number:
        number, digit = divmod(number, 58)
        digits.append(BASE58_ALPHABET[digit])
    return "1" * zeros + "".join(reversed(digits))


def b58decode(text: str) -> bytes:
    """The bytes of base58 `text`; ValueError on a character outside the alphabet (the
    message does not quote it: the text may be a key)."""
    number = 0
    for char in text:
        value = _B58_VALUES.get(char)
        if value is None:
            raise ValueError("not base58")
        number = number * 58 + value
    zeros = len(text) - len(text.lstrip("1"))
    body = number.to_bytes((number.bit_length() + 7) // 8, "big") if number else b""
    return b"\0" * zeros + body


def _decoded_key(text: str) -> bytes | None:
    """32 key bytes from base58 `text`, left-padded with zeros like PrivateBin's client
    (`padStart(32, '\\0')`), or None."""
    if not text or len(text) > MAX_KEY_CHARS:
        return None
    try:
        raw = b58decode(text)
    except ValueError:
        return None
    return raw.rjust(KEY_BYTES, b"\0") if len(raw) <= KEY_BYTES else None


def decode_key(text: str) -> bytes:
    """32 key bytes from a link's base58 fragment (without `-`); PasteError otherwise."""
    key = _decoded_key(text)
    if key is None:
        raise PasteError("the key is not the base58 text of a 32-byte key")
    return key


# --------------------------------------------------------------------------- decryption


@dataclass(frozen=True)
class _Spec:
    """The cipher parameters of `adata[0]`, checked."""

    iv: bytes
    salt: bytes
    iterations: int
    key_length: int
    compression: str


def decrypt(document: Mapping[str, Any], key: bytes, password: bytes = b"", *,
            max_bytes: int) -> Paste:
    """Decrypt a v2 paste `document` (the server's JSON) with the 32 `key` bytes and the
    paste's `password` (b"" when it has none).

    `max_bytes` caps the decompressed plaintext, hence the text and the attachments it holds
    (decoding a data URI never gives more bytes than its text).
    Raises `PasteError` (one line, never the key nor plaintext) on anything else than a
    well-formed paste this key opens: v1 or unknown format, bad parameters, over
    `MAX_ITERATIONS`, wrong key or password, altered ciphertext or adata, a decompression
    bomb, content that is not the paste JSON.
    """
    if not isinstance(document, Mapping):
        raise PasteError("not a paste: the answer is not a JSON object")
    version = document.get("v")
    if version is None and "data" in document:
        raise PasteError("v1 (SJCL) paste: format v1 not supported, only v2")
    if version != 2 or isinstance(version, bool):
        shown = "v1 (SJCL)" if version == 1 else f"version {str(version)[:20]!r}"
        raise PasteError(f"{shown} paste: format not supported, only v2")
    adata = document.get("adata")
    if not isinstance(adata, list) or not adata:
        raise PasteError("not a v2 paste: no adata")
    paste_adata = isinstance(adata[0], list)
    spec = _spec(adata[0] if paste_adata else adata)
    ciphertext = _b64(document.get("ct"), "ct")
    plaintext = _open(spec, key + password, ciphertext, _aad(adata), with_password=bool(password))
    content = _inflate(plaintext, spec.compression, max_bytes)
    formatter = adata[1] if paste_adata and len(adata) > 1 and isinstance(adata[1], str) else "plaintext"
    return _paste(content, formatter[:40])


def _spec(spec: Any) -> _Spec:
    """The checked cipher parameters, or PasteError naming what is wrong."""
    if not isinstance(spec, list) or len(spec) < 8:
        raise PasteError("not a v2 paste: adata has no cipher parameters")
    iv_text, salt_text, iterations, key_size, tag_size, algorithm, mode, compression = spec[:8]
    if not _is_int(iterations) or iterations < 1:
        raise PasteError("invalid iteration count")
    if iterations > MAX_ITERATIONS:
        raise PasteError(f"{iterations} key-derivation iterations: over {MAX_ITERATIONS}, refused")
    if not _is_int(key_size) or key_size not in KEY_SIZES:
        raise PasteError("unsupported key size")
    if tag_size != TAG_SIZE or isinstance(tag_size, bool):
        raise PasteError("unsupported tag size (128 bits only)")
    if algorithm != "aes" or mode != "gcm":
        raise PasteError("unsupported cipher (aes/gcm only)")
    if compression not in ("zlib", "none"):
        raise PasteError("unsupported compression (zlib or none only)")
    iv = _b64(iv_text, "iv")
    if not 8 <= len(iv) <= 128:
        raise PasteError("invalid iv length")
    return _Spec(iv=iv, salt=_b64(salt_text, "salt"), iterations=iterations,
                 key_length=KEY_SIZES[key_size], compression=compression)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _b64(value: Any, name: str) -> bytes:
    """Standard base64 `value`; PasteError naming the field otherwise."""
    decoded = None
    if isinstance(value, str):
        try:
            decoded = base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            decoded = None
    if decoded is None:
        raise PasteError(f"invalid base64 in {name}")
    return decoded


def _aad(adata: list[Any]) -> bytes:
    """The adata as the client authenticated it: `JSON.stringify(adata)`, UTF-8."""
    return json.dumps(adata, separators=(",", ":"), ensure_ascii=False).encode("utf-8", "surrogatepass")


def _open(spec: _Spec, secret: bytes, ciphertext: bytes, aad: bytes, *, with_password: bool) -> bytes:
    """PBKDF2 then AES-GCM; PasteError when the tag does not match (which says so, when no
    password was given, that the paste may need one: the format does not tell)."""
    derived = PBKDF2HMAC(algorithm=hashes.SHA256(), length=spec.key_length, salt=spec.salt,
                         iterations=spec.iterations).derive(secret)
    plaintext = None
    try:
        plaintext = AESGCM(derived).decrypt(spec.iv, ciphertext, aad)
    except (InvalidTag, ValueError):
        plaintext = None
    if plaintext is None:
        raise PasteError("decryption failed: wrong key or password, or the paste was altered"
                         + ("" if with_password else " (a paste protected by a password: none is given)"))
    return plaintext


def _inflate(data: bytes, compression: str, max_bytes: int) -> bytes:
    """The plaintext decompressed (raw deflate) with at most `max_bytes` of output."""
    if compression == "none":
        if len(data) > max_bytes:
            raise PasteError(f"paste over max_bytes={max_bytes}: refused")
        return data
    inflater = zlib.decompressobj(-zlib.MAX_WBITS)
    result: bytes | None = None
    try:
        result = inflater.decompress(data, max_bytes + 1)
    except zlib.error:
        result = None
    if result is None:
        raise PasteError("invalid compressed data")
    if len(result) > max_bytes or inflater.unconsumed_tail:
        raise PasteError(f"paste inflates over max_bytes={max_bytes}: refused (a decompression bomb or too big)")
    if not inflater.eof:
        raise PasteError("compressed data is truncated")
    return result


def _paste(content: bytes, formatter: str) -> Paste:
    """The paste JSON read into a Paste, attachments decoded."""
    message = _json_object(content)
    if message is None or not isinstance(message.get("paste", ""), str):
        raise PasteError("decrypted content is not a paste (not the expected JSON)")
    text = message.get("paste", "")
    datas = message.get("attachment", [])
    names = message.get("attachment_name", [])
    datas = [datas] if isinstance(datas, str) else datas
    names = [names] if isinstance(names, str) else names
    if not isinstance(datas, list) or not isinstance(names, list):
        raise PasteError("decrypted content is not a paste (attachments malformed)")
    attachments: list[tuple[str, bytes]] = []
    for index, data_uri in enumerate(datas):
        name = names[index] if index < len(names) and isinstance(names[index], str) else f"attachment-{index + 1}"
        attachments.append((name, _data_uri(data_uri)))
    return Paste(text=text, attachments=attachments, formatter=formatter)


def _json_object(content: bytes) -> dict[str, Any] | None:
    """`content` as a JSON object, or None (the decoder's error quotes the text: dropped)."""
    value = None
    try:
        value = json.loads(content.decode("utf-8"))
    except ValueError:          # UnicodeDecodeError and JSONDecodeError both
        value = None
    return value if isinstance(value, dict) else None


def _data_uri(value: Any) -> bytes:
    """The bytes of an RFC 2397 data URI (base64 or percent-encoded). Never more bytes than
    its text: the plaintext's cap bounds the attachments too."""
    if not isinstance(value, str) or not value.startswith("data:") or "," not in value:
        raise PasteError("attachment is not a data URI")
    header, _, payload = value.partition(",")
    data = None
    try:
        data = base64.b64decode(payload, validate=True) if header.endswith(";base64") else unquote_to_bytes(payload)
    except (binascii.Error, ValueError):
        data = None
    if data is None:
        raise PasteError("attachment: invalid base64 in its data URI")
    return data


# --------------------------------------------------------------------------- fetching


async def fetch_paste(fetcher: Fetcher, link: PasteLink, *, max_bytes: int, password: bytes = b"") -> Paste:
    """Fetch `link` with `fetcher` and decrypt it.

    A burn-after-reading link is never requested (PasteError "burn-after-reading: not
    opened"). The request is `GET link.url` (no fragment: the key stays here) with the JSON
    API's headers (`JSON_HEADERS`, this request's own), so the address rules, redirect rules,
    Tor use, body cap and fetch limiter are the source's, and its configured headers go only
    where they always go (its own hosts). `max_bytes` caps the decrypted paste (`decrypt`).
    Raises `FetchError`/`RetryLater` as `Fetcher.get` does, PasteError for everything else.
    """
    if link.burn:
        raise PasteError("burn-after-reading: not opened")
    key = link.key_bytes()
    response = await fetcher.get(link.url, headers=JSON_HEADERS)
    if response.truncated:
        raise PasteError(f"paste answer cut at max_bytes={fetcher.settings.max_bytes}")
    document = _json_object(response.body)
    if document is None:
        raise PasteError("not a PrivateBin JSON answer")
    if document.get("status", 0) != 0:
        message = " ".join(str(document.get("message", "")).split())[:MAX_MESSAGE]
        raise PasteError(f"server error: {message or 'no message'}")
    return decrypt(document, key, password, max_bytes=max_bytes)
