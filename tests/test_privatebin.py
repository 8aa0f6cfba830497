"""PrivateBin v2: links, decryption (published vectors and our own pastes), hostile documents,
key hygiene, and fetching through a real Fetcher from a loopback replica of the server."""

from __future__ import annotations

import base64
import json
import logging
import secrets
import time
import traceback
import zlib
from typing import Any

import pytest

from watcher.fetch import Fetcher, FetchError, FetchSettings
from watcher.privacy import Fingerprinter
from watcher.privatebin import (MAX_ITERATIONS, Paste, PasteError, PasteLink, b58decode, b58encode, decode_key,
                                decrypt, fetch_paste, find_links)

from tests.support.sources import fetcher
from tests.support.fakesites import PasteSite, serve
from tests.support.privatebin_site import PrivateBinSite, base58, data_uri, encrypt, seal

MAX = 1 << 20

# ---------------------------------------------------------------------------- published vectors

# Pastes made by a real PrivateBin server (paste.to), with their keys and plaintexts, from the
# tests of eliasblume/privatebin-decrypt (MIT): test/test_data.json,
# test/test_data_password.json and test/index.test.ts.
VECTORS = [
    ({"v": 2, "ct": "u4JLsrBcbifCvKQ3jCNSk2Xn3WckaPKXR9hyIx7ZcUi9bGKtOHLPWYI=",
      "adata": [["uanECxzwfw1iBONwVASTuQ==", "LBBuezyD2lY=", 100000, 256, 128, "aes", "gcm", "zlib"],
                "plaintext", 0, 0]},
     "C5p9j1YkFQ2uxdLxWqoo5hQ9G9bnbsLxNnFZ14MtppRy", b"", "Hello World"),
    ({"v": 2, "ct": "N8EaelpLNgMuCJsIqQMUvNIaPLJG6hVg2WRbCwuchpMemYLXu4hUBFMccuZ5r2qucLgT",
      "adata": [["NScW+8oYuoN568p8MJuzCQ==", "QqPNIWAyT2E=", 100000, 256, 128, "aes", "gcm", "zlib"],
                "plaintext", 0, 0]},
     "HQfzh1XPjqzbrcyW6KCQXyS7ABCU5U1JohYV1y2YggB4", b"test", "Password Hello World "),
]


@pytest.mark.parametrize(("document", "key", "password", "text"), VECTORS)
def test_published_vectors_decrypt(document: dict[str, Any], key: str, password: bytes, text: str) -> None:
    paste = decrypt(document, decode_key(key), password, max_bytes=MAX)
    assert paste.text == text
    assert paste.formatter == "plaintext"
    assert paste.attachments == []


def test_published_vector_refused_without_its_password() -> None:
    document, key, _password, _text = VECTORS[1]
    with pytest.raises(PasteError, match="wrong key or password"):
        decrypt(document, decode_key(key), max_bytes=MAX)


# Ravencentric/privatebin tests/test_base58.py (Bitcoin base58 test values).
@pytest.mark.parametrize(("raw", "encoded"), [(b"", ""), (b"\x00", "1"), (b"\x01", "2"),
                                              (b"\x00\x00\x00", "111"), (b"hello", "Cn8eVZg"),
                                              (b"\x00\x00hello", "11Cn8eVZg")])
def test_base58_vectors(raw: bytes, encoded: str) -> None:
    assert b58encode(raw) == encoded
    assert b58decode(encoded) == raw


def test_base58_round_trip_and_short_keys_padded() -> None:
    for _ in range(200):
        raw = secrets.token_bytes(secrets.randbelow(40))
        assert b58decode(b58encode(raw)) == raw
        assert base58(raw) == b58encode(raw)      # the test encoder is an independent one
    # a key whose base58 text lost its leading zero bytes reads as PrivateBin's client does
    assert decode_key(b58encode(b"\x07" * 30)) == b"\0\0" + b"\x07" * 30
    for bad in ("0OIl", "", "2" * 60, b58encode(b"\xff" * 33)):
        with pytest.raises(PasteError, match="base58"):
            decode_key(bad)


# ---------------------------------------------------------------------------- round trips


@pytest.mark.parametrize("compression", ["zlib", "none"])
def test_round_trip(compression: str) -> None:
    text = "Liste adhérents — mutuelle\n" * 50 + "émoji \U0001f600"
    document, key = encrypt(text, compression=compression, formatter="markdown")
    paste = decrypt(document, key, max_bytes=MAX)
    assert (paste.text, paste.formatter, paste.attachments) == (text, "markdown", [])


def test_round_trip_with_attachment_and_password() -> None:
    blob = secrets.token_bytes(5000)
    document, key = encrypt("see file", ("extract.csv", blob, "text/csv"), password=b"s3cr\xc3\xa9t")
    paste = decrypt(document, key, b"s3cr\xc3\xa9t", max_bytes=MAX)
    assert paste.text == "see file"
    assert paste.attachments == [("extract.csv", blob)]
    with pytest.raises(PasteError, match="wrong key or password"):
        decrypt(document, key, b"wrong", max_bytes=MAX)
    with pytest.raises(PasteError, match="wrong key or password"):
        decrypt(document, key, max_bytes=MAX)


def test_several_attachments_and_percent_encoded_data_uri() -> None:
    """PrivateBin 2 sends lists of attachments; RFC 2397 also allows percent-encoded data."""
    key = secrets.token_bytes(32)
    message = {"paste": "", "attachment": [data_uri(b"one"), "data:text/plain,a%20b%00"],
               "attachment_name": ["1.bin", "2.txt"]}
    paste = decrypt(seal(json.dumps(message).encode(), key), key, max_bytes=MAX)
    assert paste.attachments == [("1.bin", b"one"), ("2.txt", b"a b\0")]
    message = {"paste": "x", "attachment": data_uri(b"nameless")}
    paste = decrypt(seal(json.dumps(message).encode(), key), key, max_bytes=MAX)
    assert paste.attachments == [("attachment-1", b"nameless")]


# ---------------------------------------------------------------------------- refusals


def test_wrong_key() -> None:
    document, _key = encrypt("text")
    with pytest.raises(PasteError, match="wrong key or password, or the paste was altered"):
        decrypt(document, secrets.token_bytes(32), max_bytes=MAX)


def _flip(b64: str, at: int) -> str:
    raw = bytearray(base64.b64decode(b64))
    raw[at] ^= 1
    return base64.b64encode(bytes(raw)).decode()


@pytest.mark.parametrize("tamper", ["ct", "tag", "formatter", "burn flag", "discussion", "iv", "salt"])
def test_tampered_ciphertext_or_adata(tamper: str) -> None:
    document, key = encrypt("text")
    decrypt(document, key, max_bytes=MAX)                 # intact: opens
    adata = document["adata"]
    if tamper == "ct":
        document["ct"] = _flip(document["ct"], 0)
    elif tamper == "tag":
        document["ct"] = _flip(document["ct"], -1)
    elif tamper == "formatter":
        adata[1] = "markdown"
    elif tamper == "burn flag":
        adata[3] = 1
    elif tamper == "discussion":
        adata[2] = 1
    else:
        adata[0][0 if tamper == "iv" else 1] = _flip(adata[0][0 if tamper == "iv" else 1], 0)
    with pytest.raises(PasteError, match="the paste was altered"):
        decrypt(document, key, max_bytes=MAX)


def test_decompression_bomb_refused() -> None:
    key = secrets.token_bytes(32)
    content = json.dumps({"paste": "0" * (64 * MAX)}).encode()   # 64 MiB, ~64 kB compressed
    document = seal(content, key)
    assert len(document["ct"]) < MAX // 4
    with pytest.raises(PasteError, match="inflates over max_bytes=1048576: refused .a decompression bomb"):
        decrypt(document, key, max_bytes=MAX)
    assert decrypt(document, key, max_bytes=65 * MAX).text == "0" * (64 * MAX)


def test_uncompressed_and_attachments_capped() -> None:
    """The plaintext's cap bounds the attachments it carries (decoded, they are smaller)."""
    key = secrets.token_bytes(32)
    document = seal(json.dumps({"paste": "x" * 2000}).encode(), key, compression="none")
    with pytest.raises(PasteError, match="over max_bytes=1000: refused"):
        decrypt(document, key, max_bytes=1000)
    message = {"paste": "", "attachment": [data_uri(secrets.token_bytes(1500)), data_uri(b"b" * 1500)]}
    document = seal(json.dumps(message).encode(), key)
    with pytest.raises(PasteError, match="inflates over max_bytes=3000"):
        decrypt(document, key, max_bytes=3000)
    assert [len(data) for _name, data in decrypt(document, key, max_bytes=5000).attachments] == [1500, 1500]


def test_huge_iterations_refused_before_deriving() -> None:
    document, key = encrypt("text")
    document["adata"][0][2] = 2_000_000_000               # ~20 min of PBKDF2 if attempted
    with pytest.raises(PasteError, match=f"over {MAX_ITERATIONS}, refused"):
        decrypt(document, key, max_bytes=MAX)


@pytest.mark.parametrize("document", [
    {"iv": "x", "v": 1, "adata": [], "ct": "{}"},
    {"data": '{"iv":"aaaa","v":1,"iter":10000,"ks":256,"ts":128,"mode":"gcm","adata":"","cipher":"aes",'
             '"salt":"bbbb","ct":"cccc"}', "meta": {"postdate": 1}},
])
def test_v1_refused(document: dict[str, Any]) -> None:
    with pytest.raises(PasteError, match=r"v1 \(SJCL\) paste: format.*not supported"):
        decrypt(document, secrets.token_bytes(32), max_bytes=MAX)


def _mutated(change: str) -> tuple[Any, bytes]:
    document, key = encrypt("text")
    spec = document["adata"][0]
    if change == "not a mapping":
        return ["v", 2], key
    if change == "version 3":
        document["v"] = 3
    elif change == "no adata":
        del document["adata"]
    elif change == "short spec":
        document["adata"][0] = spec[:5]
    elif change == "bool iterations":
        spec[2] = True
    elif change == "zero iterations":
        spec[2] = 0
    elif change == "key size":
        spec[3] = 512
    elif change == "tag size":
        spec[4] = 96
    elif change == "cipher":
        spec[6] = "cbc"
    elif change == "compression":
        spec[7] = "rawdeflate"
    elif change == "ct not base64":
        document["ct"] = "not base64!"
    elif change == "iv short":
        spec[0] = base64.b64encode(b"1234").decode()
    return document, key


@pytest.mark.parametrize(("change", "message"), [
    ("not a mapping", "not a JSON object"), ("version 3", "version '3' paste"), ("no adata", "no adata"),
    ("short spec", "no cipher parameters"), ("bool iterations", "invalid iteration count"),
    ("zero iterations", "invalid iteration count"), ("key size", "unsupported key size"),
    ("tag size", "unsupported tag size"), ("cipher", "unsupported cipher"),
    ("compression", "unsupported compression"), ("ct not base64", "invalid base64 in ct"),
    ("iv short", "invalid iv length"),
])
def test_malformed_documents(change: str, message: str) -> None:
    document, key = _mutated(change)
    with pytest.raises(PasteError, match=message):
        decrypt(document, key, max_bytes=MAX)


@pytest.mark.parametrize(("content", "compression", "message"), [
    (b"\x00garbage deflate\xff" * 4, "zlib", "invalid compressed data"),
    (zlib.compress(b'{"paste": "zlib header, not raw"}'), "zlib", "invalid compressed data"),
    (b'{"paste": "cut', "none", "not a paste"),
    (b"\xff\xfe not utf-8", "none", "not a paste"),
    (b'["a list"]', "none", "not a paste"),
    (b'{"paste": 12}', "none", "not a paste"),
    (b'{"paste": "", "attachment": "http://x/"}', "none", "not a data URI"),
    (b'{"paste": "", "attachment": "data:;base64,@@@"}', "none", "invalid base64"),
    (b'{"paste": "", "attachment": {"a": 1}}', "none", "attachments malformed"),
])
def test_bad_plaintext(content: bytes, compression: str, message: str) -> None:
    key = secrets.token_bytes(32)
    with pytest.raises(PasteError, match=message):
        decrypt(seal(content, key, compression=compression, raw=True), key, max_bytes=MAX)


def test_truncated_deflate_refused() -> None:
    key = secrets.token_bytes(32)
    deflater = zlib.compressobj(9, zlib.DEFLATED, -15)
    stream = deflater.compress(json.dumps({"paste": secrets.token_hex(2000)}).encode()) + deflater.flush()
    assert decrypt(seal(stream, key, raw=True), key, max_bytes=MAX).text   # whole: opens
    with pytest.raises(PasteError, match="compressed data is truncated"):
        decrypt(seal(stream[: len(stream) // 2], key, raw=True), key, max_bytes=MAX)


# ---------------------------------------------------------------------------- links

KEY = b58encode(bytes(range(1, 33)))
PID = "0123456789abcdef"


@pytest.mark.parametrize(("text", "url", "burn"), [
    (f"see https://bin.example/?{PID}#{KEY} now", f"https://bin.example/?{PID}", False),
    (f"https://bin.example/?{PID}#-{KEY}", f"https://bin.example/?{PID}", True),
    (f"[x](https://paste.example.org/privatebin/?{PID}#{KEY})", f"https://paste.example.org/privatebin/?{PID}",
     False),
    (f"<a href=\"http://abcdefghijklmnopqrstuvwxyz234567abcdefghijklmnopqrstuvw.onion/?{PID}#{KEY}\">",
     f"http://abcdefghijklmnopqrstuvwxyz234567abcdefghijklmnopqrstuvw.onion/?{PID}", False),
    (f"HTTPS://bin.example:8443/p?pasteid={PID}#{KEY}&utm_source=x", f"https://bin.example:8443/p?{PID}", False),
    (f"https://bin.example?{PID}#{KEY}", f"https://bin.example/?{PID}", False),
    (f"https://[2001:db8::1]/?{PID}&foo=bar#{KEY}.", f"https://[2001:db8::1]/?{PID}", False),
])
def test_find_links(text: str, url: str, burn: bool) -> None:
    [link] = find_links(text)
    assert (link.url, link.paste_id, link.burn, link.key) == (url, PID, burn, KEY)
    assert link.key_bytes() == bytes(range(1, 33))
    assert "#" not in link.url


@pytest.mark.parametrize("text", [
    f"https://bin.example/?{PID[:15]}#{KEY}",                 # id too short
    f"https://bin.example/?{PID}0#{KEY}",                     # id too long
    f"https://bin.example/?{PID.upper()}#{KEY}",              # ids are lower-case hex
    f"https://bin.example/?{PID}#{KEY}0",                     # 0 is no base58 digit
    f"https://bin.example/?{PID}#{base64.b64encode(bytes(32)).decode()}",   # a v1 (base64) key
    f"https://bin.example/?{PID}#{b58encode(bytes(range(1, 40)))}",        # over 32 bytes
    f"https://bin.example/?{PID}",                            # no key
    f"ftp://bin.example/?{PID}#{KEY}",
    f"xhttps://bin.example/?{PID}#{KEY}",
])
def test_not_links(text: str) -> None:
    assert find_links(text) == []


def test_find_links_order_and_duplicates() -> None:
    other = b58encode(b"\x01" * 32)
    text = (f"a https://x.example/?{PID}#{KEY} b https://x.example/?{PID}#{KEY} "
            f"c https://x.example/?{PID}#-{other} d https://y.example/?{PID}#{KEY}")
    links = find_links(text)
    assert [(link.url, link.burn) for link in links] == [
        (f"https://x.example/?{PID}", False), (f"https://x.example/?{PID}", True), (f"https://y.example/?{PID}", False)]


def _junk_megabyte() -> list[str]:
    """1 MiB texts built to make a careless pattern backtrack: link prefixes without an end."""
    size = 1 << 20
    pieces = [
        "https://" * (size // 8),
        "http://a/" * (size // 9),                        # each path runs into the next link
        "http://a/" + "b/" * (size // 2),
        ("https://h.example/p/?" + PID + "#") * (size // 40),
        ("https://h.example/?" + PID + "&" + "x" * 300) * (size // 330),
        "h" + "a" * size,
        ("http://a.b/" + "1" * 300 + "?" + "f" * 15 + "#") * (size // 330),
        ("?" + PID + "#" + KEY[:31]) * (size // 50),
        "".join(chr(secrets.randbelow(0x3000) + 32) for _ in range(size // 8)) * 8,
    ]
    return pieces


def test_find_links_linear_on_hostile_text() -> None:
    """Each junk megabyte takes well under a second (quadratic backtracking takes minutes);
    a real link after the junk is still found."""
    link = f"https://bin.example/?{PID}#{KEY}"
    for junk in _junk_megabyte():
        started = time.monotonic()
        found = find_links(junk + " " + link)
        took = time.monotonic() - started
        assert [item.url for item in found][-1:] == [f"https://bin.example/?{PID}"]
        assert took < 5, f"{took:.1f} s on {junk[:30]!r}"


# ---------------------------------------------------------------------------- key hygiene


def _key_forms(link: PasteLink) -> list[str]:
    raw = link.key_bytes()
    return [link.key, raw.hex(), repr(raw), base64.b64encode(raw).decode()]


def test_key_out_of_repr_and_str() -> None:
    [link] = find_links(f"https://bin.example/?{PID}#-{KEY}")
    shown = [repr(link), str(link), f"{link}", repr([link]), str({"link": link})]
    for text in shown:
        for form in _key_forms(link):
            assert form not in text
    assert str(link) == f"https://bin.example/?{PID}#-…"
    assert link.url in repr(link)


def test_key_fingerprint() -> None:
    [link] = find_links(f"https://bin.example/?{PID}#{KEY}")
    one, two = Fingerprinter(b"k" * 32), Fingerprinter(b"j" * 32)
    assert link.key_fingerprint(one) == link.key_fingerprint(one)
    assert link.key_fingerprint(one) != link.key_fingerprint(two)
    assert len(link.key_fingerprint(one)) == 16 and link.key not in link.key_fingerprint(one)
    other_key = b58encode(b"\x02" * 32)
    [other] = find_links(f"https://bin.example/?{PID}#{other_key}")
    assert other.key_fingerprint(one) != link.key_fingerprint(one)


def test_paste_repr_holds_no_content() -> None:
    marker = secrets.token_hex(8)
    paste = Paste(text=f"row {marker}", attachments=[("a.csv", b"secret,row")], formatter="plaintext")
    assert marker not in repr(paste) and "secret" not in repr(paste) and "a.csv" not in repr(paste)
    assert repr(paste) == "Paste(formatter='plaintext', text=20 chars, attachments=[10] bytes)"


def test_exceptions_hold_neither_key_nor_plaintext() -> None:
    marker = "PLAINTEXT-MARKER-" + secrets.token_hex(8)
    key = secrets.token_bytes(32)
    cases: list[dict[str, Any]] = [
        seal(b"{not json " + marker.encode(), key, compression="none"),
        seal(json.dumps({"paste": marker * 100}).encode(), key),
        seal(json.dumps({"paste": "", "attachment": "data:;base64," + marker}).encode(), key),
        seal(b"\xff" + marker.encode(), key, compression="none"),
        encrypt(marker)[0],                                            # another key
    ]
    forms = [b58encode(key), key.hex(), repr(key), base64.b64encode(key).decode(), marker]
    for document in cases:
        with pytest.raises(PasteError) as caught:
            decrypt(document, key, max_bytes=500)
        rendered = "".join(traceback.format_exception(caught.value)) + repr(caught.value)
        assert "\n" not in str(caught.value)
        chained = caught.value.__context__ or caught.value.__cause__
        assert chained is None, f"{type(chained).__name__} carried along: it may hold the plaintext"
        for form in forms:
            assert form not in rendered


# ---------------------------------------------------------------------------- fetching


def _assert_key_never_sent(site: PrivateBinSite, link: PasteLink) -> None:
    for request in site.requests:
        seen = request.path + json.dumps(request.headers)
        for form in _key_forms(link):
            assert form not in seen


async def test_fetch_through_fetcher_from_replica(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    blob = secrets.token_bytes(3000)
    async with serve(PrivateBinSite(base="/bin/")) as site:
        url = site.add_paste("hello from the replica", attachment=("dump.sql", blob, "application/sql"),
                             formatter="syntaxhighlighting")
        [link] = find_links(f"posted: {url} (mirror)")
        async with fetcher(name="forum") as source_fetcher:
            paste = await fetch_paste(source_fetcher, link, max_bytes=MAX)
        assert paste.text == "hello from the replica"
        assert paste.attachments == [("dump.sql", blob)]
        assert paste.formatter == "syntaxhighlighting"
        [request] = site.requests
        assert request.path == f"/bin/?{link.paste_id}"
        assert request.headers["X-Requested-With"] == "JSONHttpRequest"
        _assert_key_never_sent(site, link)
    for form in _key_forms(link):
        assert form not in caplog.text


async def test_replica_answers_html_without_the_header() -> None:
    """The replica is faithful: the same URL without the JSON header is the HTML page, so
    the test above proves the header was sent."""
    async with serve(PrivateBinSite()) as site:
        [link] = find_links(site.add_paste("x"))
        async with fetcher() as plain:
            response = await plain.get(link.url)
        assert response.content_type == "text/html" and b"PrivateBin" in response.body
        async with fetcher() as plain:
            with pytest.raises(FetchError, match="HTTP 404"):
                await plain.get(site.url("/elsewhere"))


async def test_burn_links_never_requested(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    async with serve(PrivateBinSite()) as site:
        url = site.add_paste("read me once", burn=True)
        [link] = find_links(url)
        assert link.burn
        async with fetcher() as source_fetcher:
            with pytest.raises(PasteError, match="burn-after-reading: not opened"):
                await fetch_paste(source_fetcher, link, max_bytes=MAX)
        assert site.requests == []
        assert link.paste_id in site.pastes              # still there for its reader
    for form in _key_forms(link):
        assert form not in caplog.text


async def test_pasteid_form_and_password() -> None:
    async with serve(PrivateBinSite()) as site:
        url = site.add_paste("protected", password=b"pw")
        paste_id, key = url.split("?")[1].split("#")
        [link] = find_links(site.url(f"/?pasteid={paste_id}#{key}"))
        async with fetcher() as source_fetcher:
            with pytest.raises(PasteError, match="wrong key or password"):
                await fetch_paste(source_fetcher, link, max_bytes=MAX)
            assert (await fetch_paste(source_fetcher, link, max_bytes=MAX, password=b"pw")).text == "protected"
        assert site.paths() == [f"/?{paste_id}", f"/?{paste_id}"]


async def test_unknown_id_and_not_privatebin() -> None:
    async with serve(PrivateBinSite()) as site, serve(PasteSite()) as other:
        [missing] = find_links(site.url(f"/?{PID}#{KEY}"))
        [html] = find_links(other.url(f"/archive?{PID}#{KEY}"))
        [gone] = find_links(site.url(f"/nothing/?{PID}#{KEY}"))
        async with fetcher() as source_fetcher:
            with pytest.raises(PasteError, match="server error: Document does not exist"):
                await fetch_paste(source_fetcher, missing, max_bytes=MAX)
            with pytest.raises(PasteError, match="not a PrivateBin JSON answer"):
                await fetch_paste(source_fetcher, html, max_bytes=MAX)
            with pytest.raises(FetchError, match="HTTP 404"):
                await fetch_paste(source_fetcher, gone, max_bytes=MAX)


async def test_fetch_keeps_the_source_policy() -> None:
    """Address rules, the body cap, and the source's own headers stay the source's: sent to
    its own hosts only (the per-host rule of every fetch), never to another paste host."""
    async with serve(PrivateBinSite()) as site:
        [link] = find_links(site.add_paste(secrets.token_hex(500)))
        async with Fetcher(FetchSettings(name="public")) as guarded:
            with pytest.raises(FetchError, match="loopback address"):
                await fetch_paste(guarded, link, max_bytes=MAX)
        async with fetcher(max_bytes=300) as capped:
            with pytest.raises(PasteError, match="cut at max_bytes=300"):
                await fetch_paste(capped, link, max_bytes=MAX)
        site.clear_log()
        async with fetcher(headers={"Cookie": "session=forum-secret"},
                           header_hosts=frozenset({"localhost"})) as with_cookie:
            await fetch_paste(with_cookie, link, max_bytes=MAX)
            [home_link] = find_links(link.url.replace("127.0.0.1", "localhost") + "#" + link.key)
            await fetch_paste(with_cookie, home_link, max_bytes=MAX)
        foreign, home = site.requests
        assert "Cookie" not in foreign.headers and "forum-secret" not in json.dumps(foreign.headers)
        assert foreign.headers["X-Requested-With"] == "JSONHttpRequest"
        assert home.headers["Cookie"] == "session=forum-secret" and home.headers["X-Requested-With"] == "JSONHttpRequest"
