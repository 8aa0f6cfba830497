"""No identifier leaves leak-watcher in clear, whatever its place (issue 10, part 3).

Identifiers of every sensitive kind (NIR, IBAN, e-mail, phone, SIRET, RPPS), in every written
form the detectors count, are planted outside document bodies: file names, zip member names,
item ids, titles, URL paths and query strings, error messages. Then:

- property tests: `redact()` of any text holding them leaves none of their written forms and
  nothing a detector still counts;
- end to end: the daemon (`watcher run --once` in a subprocess) polls a drop folder and a JSON
  API on loopback holding them, alerts a real HTTP receiver and the JSONL sink; nothing in the
  database files (WAL and SHM included), the daemon's log, the alerts, the sink or the output of
  any `watcher` command holds any written form of any of them.
"""

from __future__ import annotations

import asyncio
import gzip
import io
import json
import os
import random
import sqlite3
import sys
import zipfile
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote, unquote

import pytest
from aiohttp import web
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.support.nirs import nir_forms, random_nir
from watcher.redact import Redactor, redact

from tests.support.fakesites import FakeSite, serve
from tests.support.receivers import JsonReceiver


# --------------------------------------------------------------------------- identifiers


def _luhn_digit(body: str) -> str:
    total = 0
    for i, char in enumerate(reversed(body)):
        digit = int(char) * (2 if i % 2 == 0 else 1)
        total += digit - 9 if digit > 9 else digit
    return str((10 - total % 10) % 10)


def _iban(rng: random.Random) -> str:
    bban = "".join(rng.choice("0123456789") for _ in range(23))
    number = int("".join(str(int(c, 36)) for c in bban + "FR00"))
    return f"FR{98 - number % 97:02d}{bban}"


def _groups(text: str, size: int, sep: str) -> str:
    return sep.join(text[i:i + size] for i in range(0, len(text), size))


@dataclass
class Identifier:
    kind: str
    value: str                                   # canonical
    forms: list[str]                             # written forms planted
    needles: list[str] = field(default_factory=list)   # what must never be found


def make_identifiers(rng: random.Random) -> list[Identifier]:
    """One identifier of each kind, with every written form the detectors count."""
    nir = random_nir(rng, strict=True)
    groups = [nir[0], nir[1:3], nir[3:5], nir[5:7], nir[7:10], nir[10:13], nir[13:]]
    nir_written = [*nir_forms(nir).values(), "\u202f".join(groups), "\u2009".join(groups), f"nir{nir}",
                   f"NIR : {nir[:13]}"]
    iban = _iban(rng)
    local = f"{rng.choice(['jean', 'marie', 'luc'])}.{rng.choice(['dupont', 'martin'])}{rng.randrange(10, 99)}"
    email = f"{local}@mutuelle-{rng.randrange(100)}.fr"
    phone = "06" + "".join(rng.choice("0123456789") for _ in range(8))
    siren = "".join(rng.choice("123456789") for _ in range(8))
    siren += _luhn_digit(siren)
    siret = siren + "0001"
    siret += _luhn_digit(siret)
    rpps = "10" + "".join(rng.choice("0123456789") for _ in range(8))
    rpps += _luhn_digit(rpps)
    identifiers = [
        Identifier("nir", nir, nir_written, [*nir_forms(nir).values(), nir[:13]]),
        Identifier("iban", iban, [iban, iban.lower(), _groups(iban, 4, " "), _groups(iban, 4, "-"),
                                  _groups(iban.lower(), 4, " ")]),
        Identifier("email", email, [email, email.upper(), email.replace("@", "%40")], [local.lower()]),
        Identifier("phone", phone, [phone, _groups(phone, 2, " "), _groups(phone, 2, "."),
                                    "+33 " + _groups(phone[1:], 2, " ")[0:1] + " " + _groups(phone[2:], 2, " ")],
                   [phone[1:]]),
        Identifier("siret", siret, [siret, f"{siret[:3]} {siret[3:6]} {siret[6:9]} {siret[9:]}"]),
        Identifier("rpps", rpps, [rpps]),
    ]
    for identifier in identifiers:
        compact = [identifier.value, identifier.value.lower()]
        escaped = [quote(form, safe=safe) for form in identifier.forms for safe in ("", "/")]
        identifier.needles = sorted({*identifier.needles, *compact, *identifier.forms, *escaped} - {""})
    return identifiers


def leaked(identifiers: list[Identifier], blobs: dict[str, bytes | str]) -> dict[str, list[str]]:
    """{where: [kind: form, ...]} for every needle found in a blob (bytes searched as UTF-8)."""
    found: dict[str, list[str]] = {}
    for where, blob in blobs.items():
        data = blob if isinstance(blob, bytes) else blob.encode("utf-8", "surrogatepass")
        lowered = data.lower()
        hits = [f"{i.kind}: {needle!r}" for i in identifiers for needle in i.needles
                if needle.encode().lower() in lowered]
        if hits:
            found[where] = hits
    return found


# --------------------------------------------------------------------------- redact()

PLACES = [
    "{x}",
    "https://paste.example/raw/{x}",
    "https://api.example/v1/export?id=7&who={x}&page=2",
    "/srv/inbox/export_{x}.csv",
    "bulletin_{x}.pdf",
    'zip member "scans/{x}/recu.pdf" refused: too big',
    '{{"item_id": "{x}", "title": "{x}"}}',
    "Traceback (most recent call last):\n  File \"x.py\", line 3\nValueError: bad row '{x}'",
    "titre: vente base adherents ({x}) !",
]
PADDING = st.text(alphabet=" abcdefxyz,;:!?\n", max_size=20)
IDENTIFIERS = make_identifiers(random.Random(10))
FORMS = [(i, form) for i in IDENTIFIERS for form in i.forms]


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(FORMS), st.sampled_from(PLACES), PADDING, PADDING)
def test_redact_leaves_no_written_form_and_nothing_counted(planted: tuple[Identifier, str], place: str,
                                                           before: str, after: str) -> None:
    identifier, form = planted
    text = before + " " + place.format(x=form) + " " + after
    out = redact(text)
    assert not leaked([identifier], {"out": out}), (text, out)
    assert not Redactor().counted(out), (text, out)


@pytest.mark.parametrize("identifier", IDENTIFIERS, ids=lambda i: i.kind)
def test_every_form_of_every_kind_is_counted_then_masked(identifier: Identifier) -> None:
    """The forms planted are forms the detectors count (else the property above proves little)."""
    redactor = Redactor()
    for form in identifier.forms:
        assert redact(f"x {form} y") in (f"x [{identifier.kind.upper()}] y", "x NIR : [NIR] y", "x nir[NIR] y"), form
        if identifier.kind == "iban" and (form != form.upper() or "-" in form):
            continue        # lower-case or dashed IBANs: not counted in documents, masked by their key
        assert redactor.counted(f"x {form} y").get(identifier.kind), form


def test_ordinary_operational_text_is_untouched() -> None:
    lines = ["ts=2026-12-06T23:08:36.123Z level=info msg=\"poll done\" items=3 took_ms=12",
             "alert 12 sent, Alert ID 0123456789abcdef0123456789abcdef, sha256 "
             "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
             "https://paste.example/raw/Xy7Q2abc?page=2", "1732800000123 ms", "socks5://127.0.0.1:9050"]
    for line in lines:
        assert redact(line) == line


def test_a_form_the_locator_misses_is_blanked_not_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    """The last resort: when masking the located values leaves something counted (here: a
    locator that finds nothing), every token with a digit or an @ goes."""
    import watcher.redact as module

    monkeypatch.setattr(module, "_locate", lambda text, found: [])
    rpps = IDENTIFIERS[-1]
    out = Redactor()(f"see {rpps.value} in poll 12")           # no shape for an RPPS
    assert out == "see [redacted] in poll [redacted]"
    assert not Redactor().counted(out)


# --------------------------------------------------------------------------- end to end


class LeakApi(FakeSite):
    """A JSON API whose records carry identifiers in their ids, titles and URLs, and the
    documents those URLs name (any path and query)."""

    def __init__(self, records: list[dict[str, str]], documents: dict[str, bytes]) -> None:
        self.records = records
        self.documents = documents              # raw path and query -> body
        super().__init__()

    def routes(self, router: web.UrlDispatcher) -> None:
        router.add_get("/api/records", self.listing)
        router.add_get("/{tail:.*}", self.document)

    async def listing(self, request: web.Request) -> web.Response:
        base = f"http://{request.host}"
        return web.json_response([{**r, "url": base + r["path"]} for r in self.records])

    async def document(self, request: web.Request) -> web.Response:
        body = self.documents.get(unquote(request.rel_url.raw_path_qs))
        if body is None:
            raise web.HTTPNotFound(text=f"no document at {request.rel_url.raw_path_qs}")
        return web.Response(body=body, content_type="text/plain")


def _critical_csv(rng: random.Random, rows: int = 12) -> str:
    lines = ["nom;prenom;nir;mutuelle"] + [f"N{i};P{i};{random_nir(rng, strict=True)};MGEN" for i in range(rows)]
    return "\n".join(lines) + "\n"


def _zip(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buffer.getvalue()


@pytest.fixture
async def planted(tmp_path: Path) -> AsyncIterator[tuple[list[Identifier], LeakApi, Path]]:
    rng = random.Random(20)
    ids = make_identifiers(rng)
    nir, iban, email, phone, siret, rpps = ids
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    # file names and zip member names
    (inbox / f"{nir.forms[0]}.csv").write_text(_critical_csv(rng))
    (inbox / f"export_{email.forms[0]}.csv").write_text(_critical_csv(rng))
    (inbox / f"rib {iban.forms[2]}.txt").write_text(f"Mutuelle MGEN, NIR {random_nir(rng, strict=True)}\n")
    (inbox / f"bulletins_{phone.forms[1]}.zip").write_bytes(_zip({
        f"bulletin_{nir.forms[4]}.csv": _critical_csv(rng).encode(),
        f"siret {siret.forms[1]}/rpps_{rpps.forms[0]}.txt": _critical_csv(rng).encode(),
    }))
    (inbox / f"broken_{nir.forms[6]}.csv.gz").write_bytes(gzip.compress(_critical_csv(rng).encode())[:60])
    # an API naming its records by identifiers
    records = [
        {"id": nir.forms[0], "title": f"base adherents {email.forms[2]} {iban.forms[1]}",
         "path": f"/raw/{nir.forms[0]}?email={email.forms[2]}&iban={iban.forms[1]}"},
        {"id": f"p-{phone.forms[0]}", "title": f"NIR : {nir.value[:13]} vente",
         "path": f"/doc/{siret.forms[0]}/{nir.forms[7]}"},
        {"id": f"gone-{rpps.forms[0]}", "title": f"missing {nir.forms[5]}",
         "path": f"/missing/{nir.forms[0]}"},
    ]
    documents = {unquote(r["path"]): _critical_csv(rng).encode() for r in records[:2]}
    for path in inbox.iterdir():         # settled files: the drop folder takes them at once
        os.utime(path, (1_700_000_000, 1_700_000_000))
    async with serve(LeakApi(records, documents)) as site:
        yield ids, site, inbox


async def _watcher(cwd: Path, *args: str, timeout: float = 90) -> tuple[int, str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("STATE_DIRECTORY", "NOTIFY_SOCKET", "JOURNAL_STREAM",
                                                           "CREDENTIALS_DIRECTORY")}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "watcher", *args, cwd=cwd, env=env, stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), timeout)
    return proc.returncode or 0, out.decode("utf-8", "replace"), err.decode("utf-8", "replace")


async def test_no_identifier_outside_bodies_reaches_any_exit(
        tmp_path: Path, planted: tuple[list[Identifier], LeakApi, Path], json_receiver: JsonReceiver) -> None:
    ids, site, inbox = planted
    config = tmp_path / "sources.toml"
    config.write_text(f"""
[watcher]
state_dir = "./state"

[alerts]
min_severity = "low"
urls = ["json://127.0.0.1:{json_receiver.port}/hook"]

[[sources]]
name = "inbox"
kind = "directory"
path = "{inbox}"

[[sources]]
name = "api"
kind = "json"
endpoint = "{site.url('/api/records')}"
items = ""
id = "id"
url = "url"
title = "title"
allow_private = true
""", encoding="utf-8")
    outputs: dict[str, bytes | str] = {}
    rc, out, err = await _watcher(tmp_path, "run", "--once", "--workers", "1", "--log-level", "DEBUG", "--config", str(config))
    outputs["run stdout"], outputs["run log"] = out, err
    assert "finding" in err, err[-3000:]
    assert len(json_receiver.posts) >= 3, err[-3000:]
    for command in (["findings"], ["findings", "--format", "json"], ["sources"], ["sources", "--format", "json"],
                    ["items", "--failed"], ["alerts", "list"], ["alerts", "list", "--format", "json"],
                    ["alerts", "show", "1"], ["incidents"], ["status"], ["check-config"],
                    ["scan", str(inbox)], ["scan", "--format", "json", str(inbox)]):
        rc, out, err = await _watcher(tmp_path, *command, "--config", str(config)) if command[0] != "scan" else \
            await _watcher(tmp_path, *command)
        outputs[" ".join(command[:3])] = out
        outputs[" ".join(command[:3]) + " (stderr)"] = err
    assert "critical" in outputs["findings --format json"].lower()
    assert "[NIR]" in outputs["findings --format json"]             # the titles were there, masked
    assert "[NIR]" in outputs["scan --format json"]                 # so were the paths
    outputs.update({f"receiver {i}": f"{p.title}\n{p.message}" for i, p in enumerate(json_receiver.posts)})
    state = tmp_path / "state"
    outputs.update({f"state/{p.name}": p.read_bytes() for p in state.iterdir() if p.is_file()})
    assert "state/alerts.jsonl" in outputs and "state/watcher.db" in outputs, sorted(outputs)
    assert not leaked(ids, outputs)


# --------------------------------------------------------------------------- the store


def test_keyed_ids_stay_distinct_stable_and_masked() -> None:
    from watcher.privacy import Fingerprinter
    from watcher.redact import keyed_id

    nirs = [random_nir(random.Random(seed), strict=True) for seed in (1, 2)]
    key = Fingerprinter(b"k" * 32)
    first, second = (keyed_id(f"paste/{n}.txt", key) for n in nirs)
    assert first != second and first.startswith("paste/[NIR].txt #") and second.startswith("paste/[NIR].txt #")
    assert keyed_id(f"paste/{nirs[0]}.txt", key) == first                       # stable
    assert keyed_id(f"paste/{nirs[0]}.txt", Fingerprinter(b"o" * 32)) != first  # keyed
    assert keyed_id("paste/Xy7Q2", key) == "paste/Xy7Q2"                        # ordinary ids unchanged
    assert redact(first) == first                                              # and stored as given


def test_a_url_holding_an_identifier_gets_no_validators(tmp_path: Path) -> None:
    from watcher.store import StateDB

    nir = IDENTIFIERS[0].value
    with StateDB(tmp_path / "w.db") as state:
        state.upsert_source("api", "json")
        state.save_validators("api", {f"https://x.example/u/{nir}": ('"e1"', None), "https://x.example/list": ('"e2"', None)})
        state.set_validators("api", f"https://x.example/v/{nir}", '"e3"', None)
        assert state.source_validators("api") == {"https://x.example/list": ('"e2"', None)}
    assert not leaked(IDENTIFIERS, {p.name: p.read_bytes() for p in tmp_path.iterdir()})


def test_version_4_databases_are_scrubbed_and_vacuumed(tmp_path: Path) -> None:
    """A database written before the redaction held identifiers in item ids, URLs, titles,
    errors and alert payloads: opening it masks them all and rewrites the file."""
    from watcher.store import MIGRATIONS, StateDB, is_seen_query

    nir, iban, email = IDENTIFIERS[0].value, IDENTIFIERS[1].value, IDENTIFIERS[2].value
    path = tmp_path / "watcher.db"
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE schema_version (version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TEXT NOT NULL)")
    for migration in MIGRATIONS[:4]:
        migration.apply(db)
        db.execute("INSERT INTO schema_version VALUES (?, ?, '2026-01-01T00:00:00Z')", (migration.version, migration.name))
    t = "2026-01-02T00:00:00Z"
    url = f"https://x.example/raw/{nir}?email={email}"
    db.execute("INSERT INTO sources (name, kind, created_at, last_error) VALUES ('api', 'json', ?, ?)", (t, f"404 on {url}"))
    db.execute("INSERT INTO findings (id, sha256, size, severity, reasons, samples, errors, first_seen, last_seen) "
               "VALUES (1, 'aa', 1, 'high', '[]', '[]', ?, ?, ?)", (json.dumps([f"member {nir}.pdf refused"]), t, t))
    for item_id in (nir, f"{nir}-bis", "plain"):
        db.execute("INSERT INTO items (source, item_id, version, url, title, sha256, size, first_seen, last_seen, "
                   "finding_id) VALUES ('api', ?, ?, ?, ?, 'aa', 1, ?, ?, 1)", (item_id, iban, url, f"dump {email}", t, t))
        db.execute("INSERT INTO item_findings VALUES (1, 'api', ?, ?, ?, ?, ?)", (item_id, iban, url, f"dump {email}", t))
    db.execute("INSERT INTO failed_items (source, item_id, version, url, title, error, first_failed, last_failed) "
               "VALUES ('api', ?, '1', ?, 'x', ?, ?, ?)", (f"f{nir}", url, f"bad row {iban}", t, t))
    db.execute("INSERT INTO validators VALUES ('api', ?, '\"e\"', NULL, ?)", (url, t))
    db.execute("INSERT INTO alerts (alert_id, kind, severity, title, payload, next_try, created_at) "
               "VALUES ('a1', 'new', 'high', ?, ?, ?, ?)", (f"[HIGH] api: {nir}", json.dumps({"url": url}), t, t))
    db.commit()
    db.close()
    assert leaked(IDENTIFIERS, {"before": path.read_bytes()})

    with StateDB(path) as state:
        ids = sorted(row[0] for row in state.db.execute("SELECT item_id FROM items"))
        assert ids == ["[NIR] #m1", "[NIR]-bis #m2", "plain"]
        assert is_seen_query(state.db, "api", "plain", iban)
        assert state.db.execute("SELECT count(*) FROM item_findings").fetchone()[0] == 3
        assert state.db.execute("SELECT count(*) FROM validators").fetchone()[0] == 0
        assert json.loads(state.db.execute("SELECT payload FROM alerts").fetchone()[0]) == \
            {"url": "https://x.example/raw/[NIR]?email=[EMAIL]"}
    files = {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.is_file()}
    assert not leaked(IDENTIFIERS, files), sorted(files)


def test_warnings_of_child_processes_are_redacted_too(tmp_path: Path) -> None:
    """Analysis workers and page parsers log to the daemon's stderr (the journal): a warning
    naming a document (`<NIR>.csv: extraction stopped by ...`) is masked there as well."""
    import subprocess

    nir = IDENTIFIERS[0].forms[1]
    code = ("import logging, os\nfrom watcher.childproc import serve_stdio\nserve_stdio(os.getppid())\n"
            f"logging.getLogger('watcher.extract').warning('%s: extraction stopped by %s', 'inbox/{nir}.csv', 'E')\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                          env={k: v for k, v in os.environ.items() if k != "JOURNAL_STREAM"})
    assert "inbox/[NIR].csv: extraction stopped by E" in done.stderr, done.stderr
    assert not leaked([IDENTIFIERS[0]], {"stderr": done.stderr})


def test_our_digests_and_alert_ids_are_never_masked() -> None:
    """Random hex holds an IBAN shape whose key holds (1 in 97) or a NIR-shaped run often
    enough: an Alert ID or a sha256 mangled in an alert would send the analyst nowhere."""
    rng = random.Random(13)
    tokens = ["fd7156972fd0462aa8bc31a5eb3125e3", "ec06cc375b2f4ffa95109cc62750fb26"]   # IBAN-shaped, key holds
    tokens += [f"{rng.getrandbits(bits):0{bits // 4}x}" for _ in range(5000) for bits in (128, 256)]
    for token in tokens:
        line = f"Alert ID {token}, sha256 {token}."
        assert redact(line) == line, line


@pytest.mark.parametrize("shape", ["#a{}", "f{}" + "e" * 24, "ab{}" + "c" * 47])
def test_a_nir_dressed_as_one_of_our_digests_is_masked(shape: str) -> None:
    """`#` + 16 hex digits is a keyed id's suffix and 40/64 hex digits a digest: left whole,
    unless the run holds a valid NIR (a title `#a1841275...` would otherwise pass in clear)."""
    rng = random.Random(5)
    nir = next(n for n in iter(lambda: random_nir(rng, strict=True), None) if n.isdigit())
    text = f"dump {shape.format(nir)} here"
    assert nir not in redact(text).replace(" ", "")
