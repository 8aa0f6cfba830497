"""Member watchlists (issue 16): the fingerprint, `watcher watchlist`, `watcher scan --watchlist`.

Real state databases in tmp_path, the real CLI (in-process through `watcher.cli.main`, one
`watcher scan` in a subprocess), random NIRs only (tests.support.nirs)."""

from __future__ import annotations

import json
import random
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.ciphers import algorithms
from cryptography.hazmat.primitives.cmac import CMAC

from tests.support.commands import BASE
from tests.support.daemon import child_env
from tests.support.nirs import nir_forms, random_nir
from watcher.analyze import Analyzer
from watcher.cli import main
from watcher.privacy import read_secret
from watcher.watchlist.arrays import fingerprints, keys_of
from watcher.watchlist.members import MemberHasher, open_watchlists, watchlist_key

CONFIG = BASE                      # a directory source on ./inbox, state in ./state


@pytest.fixture()
def site(tmp_path: Path) -> Path:
    """A configuration (its state directory not created yet)."""
    (tmp_path / "inbox").mkdir()
    config = tmp_path / "sources.toml"
    config.write_text(CONFIG)
    return config


def cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def members(rng: random.Random, count: int) -> list[str]:
    return [random_nir(rng, strict=True) for _ in range(count)]


def written(nir: str, index: int) -> str:
    """One of the written forms of `nir` a member file may hold, chosen by `index`: the
    detector's forms plus full-width digits, thin spaces and the 13 characters without key."""
    forms = list(nir_forms(nir).values())
    groups = [nir[0], nir[1:3], nir[3:5], nir[5:7], nir[7:10], nir[10:13], nir[13:]]
    forms += ["\u2009".join(groups), "\u202f".join(groups), nir.translate(str.maketrans("0123456789", "０１２３４５６７８９")),
              nir[:13], nir.lower()]
    return forms[index % len(forms)]


def imported(site: Path, capsys: pytest.CaptureFixture[str], nirs: list[str], name: str = "acme") -> str:
    """Import `nirs` (in assorted written forms) as watchlist `name`; the command's stdout."""
    path = site.parent / f"{name}.txt"
    path.write_text("".join(written(nir, i) + "\n" for i, nir in enumerate(nirs)), encoding="utf-8")
    code, out, err = cli(capsys, "watchlist", "import", name, str(path), "--config", str(site))
    assert code == 0, err
    return out


def loaded(site: Path):  # type: ignore[no-untyped-def]
    state = site.parent / "state"
    secret = read_secret(state / "secret.key")
    assert secret is not None
    return open_watchlists(state / "watcher.db", secret)[0]


@pytest.mark.parametrize("compiled", [True, False])
def test_the_member_fingerprint_is_the_first_8_bytes_of_aes_cmac_under_the_watchlist_key(
        monkeypatch: pytest.MonkeyPatch, compiled: bool) -> None:
    """Whichever way the blocks are laid out and padded (compiled `cmac_input` or Python)."""
    import watcher.watchlist.members
    from watcher.detect.compiled import speedups

    if compiled and not speedups:
        pytest.skip("the compiled helpers are not built")
    monkeypatch.setattr(watcher.watchlist.members, "_COMPILED", speedups if compiled else None)
    rng = random.Random(1)
    secret = rng.randbytes(32)
    hasher = MemberHasher.from_secret(secret)
    nirs = members(rng, 300) + ["2530772A07300443"[:0] + random_nir(rng)]   # 2A/2B, 97x, 99x among them
    got = fingerprints(hasher, nirs).tolist()
    for nir, value in zip(nirs, got, strict=True):
        mac = CMAC(algorithms.AES(watchlist_key(secret)))
        mac.update(nir.encode())
        assert value == int.from_bytes(mac.finalize()[:8], "big")
    assert len(set(got)) == len(set(nirs))
    for wrong in (["1841275123456"], [nirs[0][:14] + "\x00"], [nirs[0][:14] + "é"], [nirs[0] + "1", nirs[1][:14]],
                  [nirs[0][:7] + "\x00" + nirs[0][8:] + "1"]):
        with pytest.raises(ValueError):
            hasher.blocks(wrong)                           # callers pass normalized 15-character NIRs
    # A slice's NIRs joined by newlines (watcher.parallel): the same fingerprints, without the
    # rarer forms' marked values (16 characters) or a value holding the separator.
    assert keys_of(hasher.blocks_of_lines("\n".join(nirs))).tolist() == got
    marked = [nirs[0], "~" + nirs[1], *nirs[2:], nirs[3][:7] + "\n" + nirs[3][8:]]
    assert keys_of(hasher.blocks_of_lines("\n".join(marked))).tolist() == [got[0], *got[2:]]
    with pytest.raises(ValueError):
        hasher.blocks_of_lines("\n".join(nirs[:3]) + "é")


@pytest.mark.skipif(shutil.which("openssl") is None, reason="no openssl command")
def test_openssl_gives_the_same_fingerprint_as_the_readme_says(tmp_path: Path) -> None:
    rng = random.Random(10)
    key = rng.randbytes(32)
    nir = random_nir(rng)
    done = subprocess.run(["openssl", "mac", "-cipher", "AES-256-CBC", "-macopt", f"hexkey:{key.hex()}", "CMAC"],
                          input=nir.encode(), capture_output=True, check=False)
    if done.returncode != 0:
        pytest.skip("this openssl has no `mac` command (OpenSSL 3 has)")
    assert int(done.stdout.decode()[:16], 16) == fingerprints(MemberHasher(key), [nir])[0]


def test_members_are_found_in_every_written_form_and_non_members_never(
        site: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rng = random.Random(2)
    ours = members(rng, 60)
    others = [n for n in members(rng, 200) if n not in ours]
    out = imported(site, capsys, ours)
    assert "60 members imported" in out and "0 invalid" in out
    analyzer = Analyzer(watchlists=loaded(site))
    for form in nir_forms(ours[0]):
        text = "mutuelle: export\n" + "\n".join(f"adherent {nir_forms(n)[form]} ok" for n in ours[:25] + others[:40])
        report = analyzer.analyze_bytes(text.encode(), f"{form}.txt")
        assert report.counts["nir"] == 65, form
        assert report.watchlist_hits == {"acme": 25}, form
        assert "25 of our members (watchlist acme)" in report.reasons
    labelled = "\n".join(f"NIR : {n[:13]}" for n in ours[:7])          # 13 characters after a label
    assert analyzer.analyze_bytes(labelled.encode(), "l.txt").watchlist_hits == {"acme": 7}
    table = "nom;nir;cle\n" + "".join(f"X;{n[:13]};{n[13:]}\n" for n in ours[30:42] + others[:5])
    assert analyzer.analyze_bytes(table.encode(), "t.csv").watchlist_hits == {"acme": 12}
    strangers = "mutuelle\n" + "\n".join(nir_forms(n)["spaced"] for n in others)
    report = analyzer.analyze_bytes(strangers.encode(), "s.txt")
    assert report.counts["nir"] == len(others) and report.watchlist_hits == {} and report.watchlist_members == {}


def test_a_member_raises_a_document_to_high_with_a_readable_reason(
        site: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rng = random.Random(3)
    ours = members(rng, 5)
    imported(site, capsys, ours)
    text = f"just a number {ours[0]} in a note".encode()
    assert Analyzer().analyze_bytes(text, "n.txt").severity == "medium"
    report = Analyzer(watchlists=loaded(site)).analyze_bytes(text, "n.txt")
    assert report.severity == "high" and report.reasons[-1] == "1 of our members (watchlist acme)"
    assert report.to_json()["watchlist_hits"] == {"acme": 1}


def test_invalid_lines_are_reported_by_number_without_their_value(
        site: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rng = random.Random(4)
    ours = members(rng, 6)
    bad_key = ours[1][:13] + f"{(int(ours[1][13:]) % 97) + 1:02d}"
    lines = [ours[0], "", "hello", bad_key, ours[2], "12345", ours[0], nir_forms(ours[3])["dotted"], "0" * 15]
    path = site.parent / "list.txt"
    path.write_text("\n".join(lines) + "\n")
    code, out, err = cli(capsys, "watchlist", "import", "acme", str(path), "--config", str(site))
    assert code == 0
    assert "3 members imported" in out and "4 valid, 4 invalid, 1 duplicates" in out
    assert "line 3: not a NIR (5 characters)" in err
    assert "line 4: not a NIR (the key does not match)" in err
    assert "line 6: not a NIR (5 characters)" in err and "line 9: not a NIR (structure)" in err
    for value in ("hello", bad_key, bad_key[:13], "12345", "0" * 15):
        assert value not in out + err


def test_a_csv_column_is_found_by_its_header_by_its_values_or_by_column(
        site: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rng = random.Random(5)
    ours = members(rng, 8)
    state = site.parent
    (state / "named.csv").write_text("nom;prenom;num_secu;cle\n" + "".join(f"A;B;{n[:13]};{n[13:]}\n" for n in ours))
    (state / "bare.csv").write_text("".join(f"{i},{nir_forms(n)['spaced']},x\n" for i, n in enumerate(ours)))
    (state / "two.csv").write_text("id|nir_assure|nir_ouvrant_droit\n" + "".join(f"{i}|{n}|{ours[0]}\n"
                                                                               for i, n in enumerate(ours)))
    for args, column in ((["named.csv"], "num_secu"), (["bare.csv"], "2"),
                         (["two.csv", "--column", "nir_assure"], "nir_assure"), (["two.csv", "--column", "2"], "nir_assure"),
                         (["two.csv"], "nir_assure")):
        code, out, err = cli(capsys, "watchlist", "import", "acme", str(state / args[0]), *args[1:],
                             "--config", str(site))
        assert code == 0, err
        assert f"8 members imported (column {column})" in out, out
    code, out, err = cli(capsys, "watchlist", "import", "acme", str(state / "two.csv"), "--column", "nope",
                         "--config", str(site))
    assert code == 2 and "no such header" in err


def test_spreadsheet_exports_are_read_as_spreadsheets_write_them(
        site: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Excel on a French Windows: Windows-1252, CRLF, a `N° Sécurité Sociale` header, a key
    column stored as a number (7 for 07), `="..."` and `'` text cells, a float's `.0`, and a
    column lost to scientific notation (reported so); Excel's "Unicode text": UTF-16, tabs."""
    rng = random.Random(6)
    ours = members(rng, 40)
    small_key = next(n for n in members(rng, 400) if n[13] == "0")
    rows = ['"Nom";"Prénom";"N° Sécurité Sociale";"Clé"']
    rows += [f'"A{i}";"Zoé";"{n[:13]}";"{n[13:]}"' for i, n in enumerate(ours[:10])]
    rows += [f'"B";"C";"{small_key[:13]}";"{int(small_key[13:])}"']
    rows += [f'"B";"C";"=""{n}""";""' for n in ours[10:13]] + [f"\"B\";\"C\";'{ours[13]};" + '""']
    rows += [f'"B";"C";{ours[14]}.0;""', '"B";"C";"1,84127E+14";""']
    path = site.parent / "excel.csv"
    path.write_bytes(("\r\n".join(rows) + "\r\n").encode("cp1252"))
    code, out, err = cli(capsys, "watchlist", "import", "acme", str(path), "--config", str(site))
    assert code == 0, err
    assert "16 members imported (column N° Sécurité Sociale)" in out and "16 valid, 1 invalid" in out
    assert "line 18: a number in scientific notation" in err
    unicode = site.parent / "unicode.txt"
    unicode.write_bytes(("nom\tnir\r\n" + "".join(f"Zoé\t{nir_forms(n)['spaced']}\r\n" for n in ours[20:40]))
                        .encode("utf-16"))
    code, out, err = cli(capsys, "watchlist", "import", "beta", str(unicode), "--config", str(site))
    assert code == 0, err
    assert "20 members imported (column nir)" in out and "0 invalid" in out
    found = loaded(site)
    assert sorted(found.members_among(ours + [small_key])) == sorted(ours[:15] + [small_key] + ours[20:40])


def test_the_database_holds_no_cleartext_nir_after_import(site: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rng = random.Random(6)
    ours = members(rng, 500)
    imported(site, capsys, ours)
    files = sorted((site.parent / "state").glob("watcher.db*"))
    data = b"".join(path.read_bytes() for path in files)
    assert data
    for nir in ours:
        for form in (nir, nir[:13], nir_forms(nir)["spaced"], nir_forms(nir)["dotted"], nir.lower()):
            assert form.encode() not in data and form.encode("utf-16-le") not in data, "a NIR in the database"


def test_an_organisation_fingerprints_its_list_offline_and_hands_over_only_fingerprints(
        site: Path, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    rng = random.Random(7)
    ours = members(rng, 40)
    imported(site, capsys, ours, name="direct")
    key = tmp_path / "watchlist.key"
    assert cli(capsys, "watchlist", "key", "--out", str(key), "--config", str(site))[0] == 0
    assert key.stat().st_mode & 0o777 == 0o600
    code, _, err = cli(capsys, "watchlist", "key", "--out", str(key), "--config", str(site))
    assert code == 2 and "exists" in err                  # never overwritten
    source = tmp_path / "members.csv"
    source.write_text("nir\n" + "".join(f"{nir_forms(n)['dashed']}\n" for n in ours))
    handed = tmp_path / "handed.txt"
    code, _, err = cli(capsys, "watchlist", "fingerprint", str(source), "--key", str(key), "--out", str(handed))
    assert code == 0, err
    text = handed.read_text()
    assert text.startswith("# leak-watcher-watchlist/1 key-check=") and len(text.splitlines()) == 41
    assert not any(n in text or n[:13] in text for n in ours)
    code, out, err = cli(capsys, "watchlist", "import-fingerprints", "handed", str(handed), "--config", str(site))
    assert code == 0 and "40 members imported from fingerprints" in out, err
    exported = tmp_path / "exported.txt"
    assert cli(capsys, "watchlist", "export-fingerprints", "direct", "--out", str(exported), "--config", str(site))[0] == 0
    assert exported.read_text() == text
    lists = loaded(site).lists
    assert lists["direct"][:] == lists["handed"][:]
    # the installation's secret.key works as the key file too
    again = tmp_path / "again.txt"
    secret = site.parent / "state" / "secret.key"
    assert cli(capsys, "watchlist", "fingerprint", str(source), "--key", str(secret), "--out", str(again))[0] == 0
    assert again.read_text() == text
    # a file made with another installation's key is refused
    other = tmp_path / "other.key"
    other.write_text("leak-watcher-watchlist-key/1 " + rng.randbytes(32).hex() + "\n")
    foreign = tmp_path / "foreign.txt"
    assert cli(capsys, "watchlist", "fingerprint", str(source), "--key", str(other), "--out", str(foreign))[0] == 0
    code, _, err = cli(capsys, "watchlist", "import-fingerprints", "foreign", str(foreign), "--config", str(site))
    assert code == 2 and "made with another key" in err


def test_list_and_remove(site: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rng = random.Random(8)
    imported(site, capsys, members(rng, 12), name="alpha")
    imported(site, capsys, members(rng, 3), name="beta")
    code, out, _ = cli(capsys, "watchlist", "list", "--format", "json", "--config", str(site))
    assert code == 0
    assert [(row["name"], row["members"], row["origin"]) for row in map(json.loads, out.splitlines())] == [
        ("alpha", 12, "nirs"), ("beta", 3, "nirs")]
    assert cli(capsys, "watchlist", "remove", "alpha", "--config", str(site))[0] == 0
    assert set(loaded(site).lists) == {"beta"}
    code, _, err = cli(capsys, "watchlist", "remove", "alpha", "--config", str(site))
    assert code == 2 and "no watchlist alpha" in err
    code, _, err = cli(capsys, "watchlist", "import", "../x", str(site), "--config", str(site))
    assert code == 2 and "watchlist name" in err


def test_scan_watchlist_counts_members_offline(site: Path, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    rng = random.Random(9)
    ours = members(rng, 30)
    imported(site, capsys, ours)
    folder = tmp_path / "docs"
    folder.mkdir()
    for i in range(4):                  # a folder: spread over the forked pool with --jobs 2
        chosen = ours[i * 5:i * 5 + 2 + i] + members(rng, 10)
        (folder / f"doc{i}.txt").write_text("\n".join(nir_forms(n)["spaced"] for n in chosen))
    command = [sys.executable, "-m", "watcher", "scan", "--format", "json", "--jobs", "2",
               "--watchlist", "acme", "--config", str(site), str(folder)]
    done = subprocess.run(command, capture_output=True, text=True, env=child_env(), timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    assert [line["watchlist_hits"] for line in lines] == [{"acme": 2}, {"acme": 3}, {"acme": 4}, {"acme": 5}]
    assert all(line["severity"] in ("high", "critical") for line in lines)
    command[command.index("acme")] = "nope"
    done = subprocess.run(command, capture_output=True, text=True, env=child_env(), timeout=120, check=False)
    assert done.returncode == 2 and "no watchlist nope (stored: acme)" in done.stderr


@pytest.mark.parametrize("context", [True, False])
def test_a_big_file_cut_into_slices_finds_the_members_one_process_finds(
        site: Path, capsys: pytest.CaptureFixture[str], tmp_path: Path, context: bool) -> None:
    """`watcher scan --jobs N` finds the members one process finds. The rarer forms (sex 3/4,
    months 30-99) count only with health context, or when they are members (a member's own
    NIR is context enough), whichever way the file is read."""
    from watcher.parallel import ScanPool

    rng = random.Random(11 + context)
    common = [random_nir(rng, strict=True) for _ in range(300)]
    rarer = [random_nir(rng, sex=rng.choice("34")) for _ in range(60)]
    imported(site, capsys, common[:150] + rarer[:30])
    lines = ["mutuelle adhérents" if context else "exporté le 3 décembre"]   # UTF-8: the file can be cut
    for i in range(30000):
        nir = (common + rarer)[i % 360]
        lines.append(f"ligne {i} {nir_forms(nir)[['compact', 'spaced', 'dotted'][i % 3]]} " + "dossier suivi " * rng.randrange(2, 15))
    path = tmp_path / "big.txt"
    path.write_text("\n".join(lines) + "\n")
    analyzer = Analyzer(watchlists=loaded(site))
    slice_size = 128 * 1024
    with ScanPool(analyzer, 2, split_at=slice_size, slice_size=slice_size) as pool:
        split = pool.analyze_split(path)
    whole = analyzer.analyze_path(path)
    assert split is not None, "the file was not cut"
    assert split.watchlist_hits == whole.watchlist_hits == {"acme": 180}
    assert split.counts["nir"] == whole.counts["nir"] == (360 if context else 330)
    assert sorted(split.watchlist_members["acme"]) == sorted(whole.watchlist_members["acme"])
    assert split.to_json() == whole.to_json()


def test_lists_are_mapped_from_flat_files_written_once(site: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A list's members go to a flat file beside the database (0600, written whole) on its
    first load; later loads map it (the workers share its pages); a file of the wrong size
    is written again; the files of replaced lists go; a folder that cannot be written costs
    nothing but the mapping."""
    import mmap
    import stat

    rng = random.Random(16)
    nirs = members(rng, 500)
    imported(site, capsys, nirs)
    folder = site.parent / "state" / "watchlists"
    first = loaded(site).lists["acme"]
    (file,) = folder.glob("*.u64")
    assert stat.S_IMODE(file.stat().st_mode) == 0o600 and file.stat().st_size == 8 * 500
    assert isinstance(first, bytes)
    again = loaded(site)
    assert isinstance(again.lists["acme"], mmap.mmap)
    assert again.lists["acme"][:] == first == file.read_bytes()
    assert sorted(again.members_among(nirs[:3] + members(rng, 3))) == sorted(nirs[:3])
    file.write_bytes(file.read_bytes()[:-8])                     # cut: read from the database again
    assert loaded(site).lists["acme"] == first and file.stat().st_size == 8 * 500
    imported(site, capsys, nirs[:100])                           # replaced: a new id, its old file gone
    assert not list(folder.glob("*.u64"))
    assert len(loaded(site).lists["acme"]) == 8 * 100
    assert [path.stat().st_size for path in folder.glob("*.u64")] == [800]
    imported(site, capsys, nirs[:10], name="other")
    assert len(loaded(site).lists) == 2 and len(list(folder.glob("*.u64"))) == 2
    assert cli(capsys, "watchlist", "remove", "other", "--config", str(site))[0] == 0
    assert [path.stat().st_size for path in folder.glob("*.u64")] == [800]    # removed with its list
    shutil.rmtree(folder)
    folder.write_bytes(b"")                 # no folder can be made there (root ignores modes)
    assert len(loaded(site).lists["acme"]) == 8 * 100 and folder.read_bytes() == b""


@pytest.mark.parametrize("compiled", [True, False])
def test_look_ups_find_what_numpy_finds(monkeypatch: pytest.MonkeyPatch, compiled: bool) -> None:
    """The look-up, compiled (`_speedups.block_keys` and `sorted_hits`, galloping through the
    list) or with numpy (a big document's sorted fingerprints split by their top bits): the
    members `np.intersect1d` finds, at the buckets' edges, the ends of the range, for repeated
    fingerprints and for a small document too."""
    import numpy as np

    import watcher.watchlist.members
    from watcher.detect.compiled import speedups
    from watcher.watchlist.arrays import BUCKET_BITS, BUCKETED_FROM, to_blob
    from watcher.watchlist.members import hits, sorted_keys

    if compiled and not speedups:
        pytest.skip("the compiled helpers are not built")
    monkeypatch.setattr(watcher.watchlist.members, "_COMPILED", speedups if compiled else None)

    def blocks(keys: np.ndarray) -> bytes:
        """AES-like blocks whose first 8 bytes are `keys`, the rest noise."""
        out = np.frombuffer(rng.bytes(16 * len(keys)), np.uint8).reshape(-1, 16).copy()
        out[:, :8] = np.frombuffer(keys.astype(">u8").tobytes(), np.uint8).reshape(-1, 8)
        return out.tobytes()

    rng = np.random.default_rng(3)
    top = np.uint64(64 - BUCKET_BITS)
    edges = np.arange(1 << BUCKET_BITS, dtype=np.uint64) << top
    members = np.unique(np.concatenate([rng.integers(0, 2**64 - 1, 300_000, dtype=np.uint64), edges[::3],
                                        edges[1::7] - np.uint64(1), np.array([0, 2**64 - 1], dtype=np.uint64)]))
    members = members[(members >> top) % np.uint64(5) != 0]           # some buckets of the list empty
    queries = np.concatenate([rng.choice(members, 40_000), rng.integers(0, 2**64 - 1, BUCKETED_FROM, dtype=np.uint64),
                              edges, edges - np.uint64(1), np.array([2**64 - 1], np.uint64)])
    keys = sorted_keys(blocks(queries))
    assert keys == to_blob(np.unique(queries)) and len(keys) // 8 >= BUCKETED_FROM
    expected = to_blob(np.intersect1d(queries, members))
    listed = to_blob(members)
    assert hits(listed, keys) == expected and len(expected) // 8 > 40_000 * 0.9
    few = queries[:50]                                                  # a paste's handful, repeated
    assert hits(listed, sorted_keys(blocks(np.concatenate([few, few])))) == to_blob(np.intersect1d(few, members))
    assert hits(b"", keys) == b"" and hits(listed, b"") == b"" and sorted_keys(b"") == b""
