"""The sealed evidence vault (watcher.evidence): real age keys generated here, real files, a real
kill -9 of a writing process, a real pty, and the `age` command when it is installed."""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tomllib
from pathlib import Path

import pyrage
import pytest

from tests.support.nirs import nir_forms, random_nir
from watcher.config import ConfigError, Validator
from watcher.evidence import (
    TEMP_PREFIX,
    EvidenceError,
    EvidenceSettings,
    EvidenceVault,
    evidence_settings,
    export,
    open_sealed,
    parse_identities,
    seal,
)

REPO = Path(__file__).resolve().parent.parent
FETCHED = "2026-03-01T10:00:00Z"
DAY = 86400.0


@pytest.fixture
def identity() -> pyrage.x25519.Identity:
    return pyrage.x25519.Identity.generate()


@pytest.fixture
def recipient(identity: pyrage.x25519.Identity) -> str:
    return str(identity.to_public())


def key_text(identity: pyrage.x25519.Identity) -> str:
    """An identity as age-keygen writes its key file."""
    return f"# created: 2026-03-01T10:00:00Z\n# public key: {identity.to_public()}\n{identity}\n"


def write(vault: EvidenceVault, raw: bytes, piece_id: str = "p1", **extra: object):
    fields = {"source": "paste", "url": "https://paste.example/raw/abc", "fetched_at": FETCHED, "tor": False,
              "finding_id": 7, "incident_id": 3, **extra}
    return vault.write(piece_id, raw, **fields)


def folder_bytes(folder: Path) -> bytes:
    """Every byte of every file in `folder`, and the names."""
    chunks = []
    for path in sorted(folder.rglob("*")):
        chunks.append(path.name.encode())
        if path.is_file():
            chunks.append(path.read_bytes())
    return b"\n".join(chunks)


# --------------------------------------------------------------------------- sealing


def test_round_trip_and_custody_record(tmp_path: Path, identity, recipient) -> None:
    vault = EvidenceVault(tmp_path / "vault", [recipient])
    raw = b"nom;prenom;mutuelle\n" * 500 + os.urandom(1000)
    record = write(vault, raw, tor=True)
    assert record.status == "sealed" and record.kept and not record.truncated
    assert record.sha256 == record.kept_sha256 == hashlib.sha256(raw).hexdigest()
    assert (record.size, record.kept_bytes, record.recipients) == (len(raw), len(raw), (recipient,))
    assert (record.finding_id, record.incident_id, record.tor, record.fetched_at) == (7, 3, True, FETCHED)
    path = vault.path(record.file_name)
    assert record.file_name.startswith(record.sha256) and record.sealed_size == path.stat().st_size
    assert record.file_sha256 == hashlib.sha256(path.read_bytes()).hexdigest() and vault.verify(record)
    assert raw not in path.read_bytes() and path.stat().st_mode & 0o777 == 0o600
    assert (tmp_path / "vault").stat().st_mode & 0o777 == 0o700
    assert open_sealed(path, key_text(identity)) == raw
    assert vault.pieces()[0].name == record.file_name and vault.total_bytes() == record.sealed_size
    assert json.loads(json.dumps(record.to_dict()))["recipients"] == [recipient]


def test_several_recipients_each_open_it(tmp_path: Path) -> None:
    analysts = [pyrage.x25519.Identity.generate() for _ in range(2)]
    vault = EvidenceVault(tmp_path, [str(a.to_public()) for a in analysts])
    record = write(vault, b"leak")
    assert [open_sealed(vault.path(record.file_name), str(a)) for a in analysts] == [b"leak", b"leak"]


def test_a_wrong_identity_fails_clearly(tmp_path: Path, recipient) -> None:
    vault = EvidenceVault(tmp_path, [recipient])
    path = vault.path(write(vault, b"leak").file_name)
    stranger = pyrage.x25519.Identity.generate()
    with pytest.raises(EvidenceError, match="was not sealed to this identity") as caught:
        open_sealed(path, key_text(stranger))
    assert str(stranger) not in str(caught.value)
    with pytest.raises(EvidenceError, match="not an AGE-SECRET-KEY-1"):
        open_sealed(path, "age1notakey\n")
    with pytest.raises(EvidenceError, match="no AGE-SECRET-KEY-1"):
        open_sealed(path, "# only a comment\n")


def test_a_damaged_piece_is_reported(tmp_path: Path, identity, recipient) -> None:
    vault = EvidenceVault(tmp_path, [recipient])
    record = write(vault, os.urandom(5000))
    path = vault.path(record.file_name)
    data = bytearray(path.read_bytes())
    data[-100] ^= 0xFF
    path.write_bytes(bytes(data))
    assert not vault.verify(record)
    with pytest.raises(EvidenceError, match="not a readable age file"):
        open_sealed(path, str(identity))


def test_seal_refuses_no_recipient_and_a_bad_one() -> None:
    with pytest.raises(EvidenceError, match="no recipients"):
        seal(b"x", [])
    with pytest.raises(EvidenceError, match="not a valid age X25519 recipient"):
        seal(b"x", ["age1" + "q" * 58])


# --------------------------------------------------------------------------- the vault's rules


def test_a_large_document_is_sealed_truncated(tmp_path: Path, identity, recipient) -> None:
    vault = EvidenceVault(tmp_path, [recipient], max_bytes=1000)
    raw = os.urandom(2500)
    record = write(vault, raw)
    assert record.truncated and (record.size, record.kept_bytes) == (2500, 1000)
    assert record.sha256 == hashlib.sha256(raw).hexdigest()
    assert record.kept_sha256 == hashlib.sha256(raw[:1000]).hexdigest() and "truncated" in record.note
    assert open_sealed(vault.path(record.file_name), str(identity)) == raw[:1000]


def test_the_same_document_is_stored_once_and_its_clock_restarts(tmp_path: Path, recipient) -> None:
    vault = EvidenceVault(tmp_path, [recipient])
    first = write(vault, b"same bytes", now=1_000_000.0)
    again = write(vault, b"same bytes", piece_id="p2", now=1_000_000.0 + 50 * DAY)
    assert (first.status, again.status, again.file_name) == ("sealed", "reused", first.file_name)
    assert len(vault.pieces()) == 1 and again.file_sha256 == first.file_sha256
    assert vault.expire(90, now=1_000_000.0 + 100 * DAY) == []
    other_keys = EvidenceVault(tmp_path, [str(pyrage.x25519.Identity.generate().to_public())])
    assert write(other_keys, b"same bytes").file_name != first.file_name   # sealed anew to the new keys


def test_a_full_vault_refuses_new_pieces_and_keeps_the_first(tmp_path: Path, recipient) -> None:
    vault = EvidenceVault(tmp_path, [recipient], max_bytes=4000, max_total_bytes=6000)
    first = write(vault, os.urandom(3000))
    refused = write(vault, os.urandom(3000), piece_id="p2")
    assert first.status == "sealed" and refused.status == "refused"
    assert refused.file_name is None and not refused.kept and "full" in refused.note
    assert [p.name for p in vault.pieces()] == [first.file_name] and vault.verify(first)


def test_expire_deletes_old_pieces_only(tmp_path: Path, recipient) -> None:
    vault = EvidenceVault(tmp_path, [recipient])
    now = 2_000_000_000.0
    old = write(vault, b"old", now=now - 91 * DAY)
    young = write(vault, b"young", now=now - 89 * DAY)
    assert vault.expire(90, now=now) == [old.file_name]
    assert [p.name for p in vault.pieces()] == [young.file_name]


def test_dry_mode_and_names(tmp_path: Path, recipient) -> None:
    vault = EvidenceVault(tmp_path)
    with pytest.raises(EvidenceError, match="dry mode"):
        write(vault, b"x")
    for name in ("../etc/passwd", "x.age", "a" * 64 + "-0000000g.age"):
        with pytest.raises(EvidenceError, match="not the name of a piece"):
            vault.path(name)
    (tmp_path / "notes.txt").write_text("the operator's own file")
    assert vault.pieces() == [] and vault.total_bytes() == 0


def test_no_cleartext_identifier_outside_the_sealed_files(tmp_path: Path, identity, recipient) -> None:
    nir = random_nir(random.Random(14), strict=True)
    forms = nir_forms(nir)
    raw = ("patient;nir;caisse\n" + "".join(f"X;{form};CPAM\n" for form in forms.values())).encode()
    folder = tmp_path / "vault"
    vault = EvidenceVault(folder, [recipient], max_total_bytes=10**6, max_bytes=10**6)
    record = write(vault, raw, url=f"https://paste.example/raw?nir={nir}&q={forms['dotted']}",
                   source="paste", piece_id="piece-1")
    write(EvidenceVault(folder, [recipient], max_total_bytes=1, max_bytes=1), raw, piece_id="piece-2")
    everything = folder_bytes(folder) + json.dumps(record.to_dict()).encode()
    digits = "".join(c for c in nir if c.isdigit())
    for needle in {nir, digits, nir[:13], *forms.values()}:
        assert needle.encode() not in everything, needle
    assert open_sealed(vault.path(record.file_name), str(identity)) == raw   # it is all there, sealed


# --------------------------------------------------------------------------- kill -9


def test_a_kill_during_writing_leaves_no_piece_and_the_next_open_cleans_up(tmp_path: Path, recipient) -> None:
    folder = tmp_path / "vault"
    writer = subprocess.Popen(
        [sys.executable, "-m", "tests.support.evidence_writer", str(folder), recipient, str(4 * 1024 * 1024)],
        cwd=REPO, stdout=subprocess.PIPE, text=True,
    )
    try:
        assert writer.stdout.readline().strip() == "writing"
        partials = [p for p in folder.iterdir() if p.name.startswith(TEMP_PREFIX)]
        assert len(partials) == 1 and 0 < partials[0].stat().st_size < 4 * 1024 * 1024
        writer.send_signal(signal.SIGKILL)
        assert writer.wait(timeout=10) == -signal.SIGKILL
    finally:
        writer.kill()
        writer.wait()
    assert partials[0].exists()                       # what the kill left
    vault = EvidenceVault(folder, [recipient])
    assert vault.cleaned == [partials[0].name] and not partials[0].exists()
    assert vault.pieces() == [] and vault.total_bytes() == 0
    assert list(folder.iterdir()) == []


def test_the_partial_file_of_a_live_writer_is_left_alone(tmp_path: Path, recipient) -> None:
    (tmp_path / f"{TEMP_PREFIX}{os.getpid()}-00ff").write_bytes(b"being written")
    (tmp_path / f"{TEMP_PREFIX}999999999-00ff").write_bytes(b"its writer is gone")
    vault = EvidenceVault(tmp_path, [recipient])
    assert vault.cleaned == [f"{TEMP_PREFIX}999999999-00ff"]
    assert (tmp_path / f"{TEMP_PREFIX}{os.getpid()}-00ff").exists() and vault.total_bytes() == 0


# --------------------------------------------------------------------------- export


@pytest.fixture
def piece(tmp_path: Path, recipient):
    vault = EvidenceVault(tmp_path / "vault", [recipient])
    raw = b"nir;nom\n" + os.urandom(3000)
    record = write(vault, raw)
    return vault.path(record.file_name), record, raw


def test_export_verifies_and_writes_atomically(tmp_path: Path, identity, piece) -> None:
    path, record, raw = piece
    out = tmp_path / "out" / "document.csv"
    out.parent.mkdir()
    assert export(path, key_text(identity), record.kept_sha256, out) == len(raw)
    assert out.read_bytes() == raw and out.stat().st_mode & 0o777 == 0o600
    assert [p.name for p in out.parent.iterdir()] == ["document.csv"]
    with pytest.raises(EvidenceError, match="exists"):
        export(path, str(identity), record.kept_sha256, out)
    out.write_bytes(b"older")
    export(path, str(identity), record.kept_sha256, out, overwrite=True)
    assert out.read_bytes() == raw


def test_export_refuses_a_sha256_mismatch(tmp_path: Path, identity, piece) -> None:
    path, _, _ = piece
    out = tmp_path / "document.csv"
    with pytest.raises(EvidenceError, match="sha256 mismatch"):
        export(path, str(identity), hashlib.sha256(b"another document").hexdigest(), out)
    assert not out.exists() and [p.name for p in tmp_path.iterdir()] == ["vault"]


def test_export_refuses_a_terminal(tmp_path: Path, identity, piece) -> None:
    path, record, _ = piece
    controller, terminal = os.openpty()
    try:
        with pytest.raises(EvidenceError, match="terminal"):
            export(path, str(identity), record.kept_sha256, os.ttyname(terminal))
        with open(terminal, "wb", closefd=False) as stream, pytest.raises(EvidenceError, match="terminal"):
            export(path, str(identity), record.kept_sha256, "-", stdout=stream)
        os.set_blocking(controller, False)
        with pytest.raises(BlockingIOError):
            os.read(controller, 1)            # nothing reached the terminal
    finally:
        os.close(controller)
        os.close(terminal)


def test_export_to_a_pipe(tmp_path: Path, identity, piece) -> None:
    path, record, raw = piece
    reader, writer = os.pipe()
    with open(writer, "wb") as stream:
        export(path, str(identity), record.kept_sha256, "-", stdout=stream)
    with open(reader, "rb") as stream:
        assert stream.read() == raw


# --------------------------------------------------------------------------- settings


def settings_of(tmp_path: Path, table: str) -> EvidenceSettings:
    path = tmp_path / "sources.toml"
    text = f'[watcher]\nstate_dir = "state"\n\n[evidence]\n{table}\n'
    path.write_text(text, encoding="utf-8")
    return evidence_settings(Validator(path, text, {}), tomllib.loads(text)["evidence"])


def test_settings_defaults_and_dry_mode(tmp_path: Path, recipient) -> None:
    dry = settings_of(tmp_path, "")
    assert dry == EvidenceSettings() and not dry.enabled and not dry.keeps("critical")
    assert "off" in dry.notice()
    assert (dry.min_severity, dry.max_bytes, dry.max_total_bytes, dry.evidence_days) == (
        "medium", 50 * 2**20, 5 * 2**30, 90)
    on = settings_of(tmp_path, f'recipients = ["{recipient}", "{recipient}"]\nmin_severity = "high"\n'
                               "max_bytes = 1000\nmax_total_bytes = 5000\nevidence_days = 30")
    assert on.recipients == (recipient,) and on.keeps("critical") and not on.keeps("medium")
    assert (on.max_bytes, on.max_total_bytes, on.evidence_days) == (1000, 5000, 30)
    assert on.notice().startswith("evidence: documents from high up are sealed to 1 recipient,")
    vault = EvidenceVault.from_settings(tmp_path / "vault", on)
    assert (vault.recipients, vault.max_bytes, vault.max_total_bytes) == ((recipient,), 1000, 5000)
    assert evidence_settings(Validator(tmp_path / "x.toml", "", {}), None) == EvidenceSettings()


@pytest.mark.parametrize(("table", "message"), [
    ('recipients = ["age1nope"]', 'sources.toml:5: [evidence]: key "recipients" entry 1 is not an age X25519'),
    ("recipients = 3", 'key "recipients" must be a list of age recipients'),
    ('min_severity = "urgent"', 'key "min_severity" must be one of'),
    ("max_bytes = 2000\nmax_total_bytes = 1000", 'key "max_total_bytes" must be at least max_bytes'),
    ("max_bytes = 2147483648", 'key "max_bytes" must be at most'),
    ("evidence_days = 0", 'key "evidence_days" must be a positive integer'),
    ("recipent = []", 'key "recipent" is unknown'),
])
def test_settings_errors(tmp_path: Path, table: str, message: str) -> None:
    with pytest.raises(ConfigError, match="^.*" + message.replace("[", r"\[").replace("]", r"\]")):
        settings_of(tmp_path, table)


def test_an_identity_among_the_recipients_is_refused_unechoed(tmp_path: Path, identity) -> None:
    with pytest.raises(ConfigError, match="is an age identity, a secret key") as caught:
        settings_of(tmp_path, f'recipients = ["{identity}"]')
    assert str(identity) not in str(caught.value) and str(identity)[16:30] not in str(caught.value)


# --------------------------------------------------------------------------- the age command


@pytest.mark.skipif(shutil.which("age") is None or shutil.which("age-keygen") is None,
                    reason="the age command is not installed (Debian: apt-get install age)")
def test_the_age_command_reads_and_writes_the_same_format(tmp_path: Path) -> None:
    key = tmp_path / "key.txt"
    subprocess.run(["age-keygen", "-o", str(key)], check=True, capture_output=True)
    public = subprocess.run(["age-keygen", "-y", str(key)], check=True, capture_output=True,
                            text=True).stdout.strip()
    vault = EvidenceVault(tmp_path / "vault", [public])
    raw = b"nir;nom\n" + os.urandom(2000)
    path = vault.path(write(vault, raw).file_name)
    opened = subprocess.run(["age", "-d", "-i", str(key), str(path)], check=True, capture_output=True).stdout
    assert gzip.decompress(opened) == raw                            # age -d ... | gunzip
    made_by_age = tmp_path / "by-age.age"
    subprocess.run(["age", "-r", public, "-o", str(made_by_age)], input=gzip.compress(raw), check=True)
    assert open_sealed(made_by_age, key.read_text()) == raw           # and an age-keygen key file is read
    assert len(parse_identities(key.read_text())) == 1
