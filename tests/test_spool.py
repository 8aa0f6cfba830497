"""The scratch spool: seekable like a file, never the content in clear on disk."""

from __future__ import annotations

import io
import os
import random
import zipfile
from pathlib import Path

import pytest

from tests.support.nirs import nir_forms, random_nir
from watcher.analyze import Analyzer
from watcher.extract.spool import SealedFile, spool


def disk_bytes(sealed: SealedFile) -> bytes:
    """What the sealed file holds on disk (read through its descriptor, as anyone could)."""
    fd = sealed._file.fileno()
    return os.pread(fd, os.fstat(fd).st_size, 0)


def test_reads_back_at_any_offset_and_holds_only_ciphertext() -> None:
    rng = random.Random(7)
    nirs = [nir_forms(random_nir(rng, strict=True))["compact"] for _ in range(200)]
    data = ("\n".join(f"nom;{nir}" for nir in nirs) * 50).encode()
    sealed = SealedFile()
    for start in range(0, len(data), 4093):                  # odd pieces: offsets off the AES blocks
        sealed.write(data[start:start + 4093])
    on_disk = disk_bytes(sealed)
    assert len(on_disk) == len(data)
    assert not any(nir.encode() in on_disk for nir in nirs)
    for _ in range(200):
        offset, size = rng.randrange(len(data)), rng.randrange(1, 9000)
        sealed.seek(offset)
        assert sealed.read(size) == data[offset:offset + size]
    sealed.seek(-10, io.SEEK_END)
    assert sealed.read() == data[-10:] and sealed.tell() == len(data)
    sealed.close()


def test_a_spool_stays_in_memory_then_seals_and_zipfile_reads_it(tmp_path: Path) -> None:
    rng = random.Random(8)
    nirs = [nir_forms(random_nir(rng, strict=True))["compact"] for _ in range(12)]
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_STORED) as out:
        out.writestr("padding.bin", rng.randbytes(200_000))
        out.writestr("extract.csv", "nom;nir\n" + "".join(f"X;{nir}\n" for nir in nirs))
    small, big = spool(1 << 20), spool(64 * 1024)
    for target in (small, big):
        target.write(archive.getvalue())
        target.seek(0)
        with zipfile.ZipFile(target) as inside:
            assert inside.read("extract.csv").decode().count("\n") == 13
    assert not small.sealed and big.sealed                    # type: ignore[attr-defined]


def test_a_nested_zip_over_the_memory_limit_is_scanned_whole(monkeypatch: pytest.MonkeyPatch) -> None:
    """The analyzer goes through the sealed spool for a zip inside a zip: its NIRs are all found."""
    import watcher.extract as extract

    monkeypatch.setattr(extract, "SPOOL_IN_MEMORY", 4096)
    rng = random.Random(9)
    nirs = [nir_forms(random_nir(rng, strict=True))["compact"] for _ in range(15)]
    inner = io.BytesIO()
    with zipfile.ZipFile(inner, "w", zipfile.ZIP_STORED) as out:
        out.writestr("noise.txt", "rien\n" * 5000)
        out.writestr("beneficiaires.csv", "nom;nir\n" + "".join(f"X;{nir}\n" for nir in nirs))
    outer = io.BytesIO()
    with zipfile.ZipFile(outer, "w", zipfile.ZIP_STORED) as out:
        out.writestr("inner.zip", inner.getvalue())
    report = Analyzer().analyze_bytes(outer.getvalue(), "outer.zip")
    assert report.counts["nir"] == 15 and report.severity == "critical"
