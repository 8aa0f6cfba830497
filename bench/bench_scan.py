#!/usr/bin/env python3
"""Throughput and memory of `watcher scan` on a synthetic, seeded ~200 MB corpus.

    python bench/bench_scan.py [--size-mb 200] [--keep] [--seed 1] [--jobs N] [--no-pin]
                               [--stdin] [--dir [FILES]] [--huge [GB]] [--no-yara]

Half the corpus is a semicolon CSV member extract (nom;prenom;date_naissance;...;nir;cle;...)
whose NIR column holds valid NIRs in every written form (compact, spaced, dotted, dashed,
no-break spaces, key apart in the cell, 13 characters with the key in the `cle` column),
with insurer names from watcher/data/insurers.txt; the other half is ordinary text and logs
with phone numbers, IBANs, SIRETs, 13-digit timestamps, random 15-digit numbers (never a
valid key) and a few labelled NIRs. The generator records every NIR it writes, so the
expected distinct count is exact.

`watcher scan --format json [--jobs N]` then runs in a subprocess on each half and on the
whole (both halves in one file; `--stdin`: also piped to stdin as one document; `--dir`: cut
into 200 files in one folder; `--huge`: the whole repeated to 5 GB in one file, the same
distinct NIRs); `--jobs 1` pins it to one CPU (unless `--no-pin`). The bench prints wall
time, MB/s (1 MB = 10**6 bytes), the CPU time of the scanner and its pool, distinct NIRs
found vs expected and the peak RSS of the largest process; then yara-python (when installed)
on the whole file with a comparable rule set, and the ratio of the two rates in that run.
On a count mismatch it re-runs the analyzer in-process with `reveal=True` and names the
written forms of the NIRs that were missed.

The corpus lives in bench/corpus/ (gitignored). It is deleted after the run unless `--keep`;
a kept corpus with the same size and seed is reused instead of being generated again.
Exit status: 0 when every count matches, 1 otherwise.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CORPUS = ROOT / "bench" / "corpus"
MB = 1_000_000
BATCH = 5_000
GENERATOR_VERSION = 3          # bump when the corpus layout changes (invalidates kept corpora)

FORMS = ("compact", "spaced", "dotted", "dashed", "nbsp", "key_apart", "body13_cle")
CSV_HEADER = ("nom;prenom;date_naissance;rang_naissance;nir;cle;mutuelle;num_adherent;num_contrat;garanties;"
              "date_debut_droits\n")

LAST = ["MARTIN", "BERNARD", "THOMAS", "PETIT", "ROBERT", "RICHARD", "DURAND", "DUBOIS", "MOREAU", "LAURENT", "SIMON", "MICHEL", "LEFEBVRE", "LEROY", "ROUX", "DAVID", "BERTRAND", "MOREL", "FOURNIER", "GIRARD", "BONNET", "DUPONT", "LAMBERT", "FONTAINE", "ROUSSEAU", "VINCENT", "MULLER", "LEFEVRE", "FAURE", "ANDRE", "MERCIER", "BLANC", "GUERIN", "BOYER", "GARNIER", "CHEVALIER", "FRANCOIS", "LEGRAND", "GAUTHIER", "GARCIA", "PERRIN", "ROBIN", "CLEMENT", "MORIN", "NICOLAS", "HENRY", "ROUSSEL", "MATHIEU", "GAUTIER", "MASSON", "MARCHAND", "DUVAL", "DENIS", "DUMONT", "MARIE", "LEMAIRE", "NOEL", "MEYER", "DUFOUR", "MEUNIER", "BRUN", "BLANCHARD", "GIRAUD", "JOLY", "RIVIERE", "LUCAS", "BRUNET", "GAILLARD", "BARBIER", "ARNAUD", "MARTINEZ", "GÉRARD", "ROCHE", "RENARD", "SCHMITT", "ROY", "LEROUX", "COLIN", "VIDAL", "CARON", "PICARD", "ROGER", "FABRE", "AUBERT", "LEMOINE", "RENAUD", "DUMAS", "LACROIX", "OLIVIER", "PHILIPPE", "BOURGEOIS", "PIERRE", "BENOIT", "REY", "LECLERC", "PAYET", "ROLLAND", "LECLERCQ", "GUILLAUME", "LECOMTE", "LOPEZ", "JEAN", "DUPUY", "GUILLOT", "HUBERT", "BERGER", "CARPENTIER", "SANCHEZ", "DUPUIS", "MOULIN", "LOUIS", "DESCHAMPS", "HUET", "VASSEUR", "PEREZ", "BOUCHER", "FLEURY", "ROYER", "KLEIN", "JACQUET", "ADAM", "PARIS", "POIRIER", "MARTY", "AUBRY", "GUYOT", "CARRÉ", "CHARLES", "RENAULT"]
FIRST = ["Jean", "Marie", "Pierre", "Sophie", "Michel", "Nathalie", "Philippe", "Isabelle", "Alain", "Catherine", "Nicolas", "Sylvie", "Christophe", "Françoise", "Patrick", "Monique", "Daniel", "Martine", "Laurent", "Christine", "Thomas", "Valérie", "Julien", "Sandrine", "Stéphane", "Céline", "Frédéric", "Véronique", "David", "Chantal", "Éric", "Hélène", "Olivier", "Émilie", "Sébastien", "Léa", "Jérôme", "Chloé", "Hugo", "Manon", "Lucas", "Camille", "Louis", "Inès", "Gabriel", "Zoé", "Raphaël", "Jade", "Arthur", "Louise", "Théo", "Anaïs"]
GARANTIES = ("ESSENTIEL", "CONFORT", "CONFORT+", "PREMIUM", "SENIOR", "JEUNE", "FAMILLE", "RESPONSABLE N2", "ECO")
WORDS = ["le", "la", "les", "un", "une", "des", "et", "ou", "mais", "donc", "avec", "sans", "pour", "dans", "sur", "sous", "entre", "vers", "chez", "depuis", "pendant", "service", "client", "rapport", "réunion", "projet", "équipe", "semaine", "mois", "année", "budget", "livraison", "commande", "facture", "produit", "serveur", "réseau", "sauvegarde", "mise", "à", "jour", "version", "correctif", "incident", "ticket", "utilisateur", "compte", "accès", "journal", "erreur", "avertissement", "délai", "planning", "document", "archive", "export", "import", "fichier", "dossier", "nouveau", "ancien", "premier", "dernier", "grand", "petit", "rapide", "lent", "simple", "complexe", "urgent", "normal", "prévu", "réalisé", "Paris", "Lyon", "Marseille", "Toulouse", "Nantes", "Lille", "Bordeaux", "Rennes", "Strasbourg", "Nice", "vendredi", "lundi", "mardi"]
SERVICES = ("api", "worker-1", "worker-2", "auth", "billing", "sync", "cron", "gateway")
LABELS = ("N° de sécurité sociale : ", "NIR : ", "n° SS ", "Numéro de sécurité sociale ", "matricule ")


# -- NIR helpers (independent of the code under test) ---------------------------------------------

def nir_key(body: str) -> int:
    return 97 - int(body.replace("2A", "19").replace("2B", "18")) % 97


def random_body(rng: random.Random, year: int, month: int) -> str:
    sex = "1" if rng.random() < 0.5 else "2"
    kind = rng.random()
    if kind < 0.86:
        dept = rng.randrange(1, 96)
        while dept == 20:
            dept = rng.randrange(1, 96)
        place = f"{dept:02d}{rng.randrange(1, 991):03d}"
    elif kind < 0.92:
        place = ("2A" if rng.random() < 0.5 else "2B") + f"{rng.randrange(1, 991):03d}"
    elif kind < 0.96:
        place = f"{rng.choice((971, 972, 973, 974, 976))}{rng.randrange(1, 100):02d}"
    else:
        place = f"99{rng.randrange(100, 500):03d}"
    return f"{sex}{year % 100:02d}{month:02d}{place}{rng.randrange(1, 1000):03d}"


def written(nir: str, form: str) -> str:
    groups = (nir[0], nir[1:3], nir[3:5], nir[5:7], nir[7:10], nir[10:13], nir[13:15])
    if form == "compact":
        return nir
    if form == "spaced":
        return " ".join(groups)
    if form == "dotted":
        return ".".join(groups)
    if form == "dashed":
        return "-".join(groups)
    if form == "nbsp":
        return "\u00a0".join(groups)
    if form == "key_apart":
        return f"{nir[:13]} {nir[13:]}"
    return nir[:13]                                  # body13_cle: the key is in the `cle` column


def insurer_names() -> list[str]:
    names = []
    for line in (ROOT / "watcher" / "data" / "insurers.txt").read_text("utf-8").splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            names.extend(v.strip().lstrip("~") for v in line.split("|") if v.strip())
    return names


# -- generation ----------------------------------------------------------------------------------------

class Expected:
    """Every NIR written, with the forms it was written in."""

    def __init__(self) -> None:
        self.forms: dict[str, set[str]] = {}

    def add(self, nir: str, form: str) -> None:
        self.forms.setdefault(nir, set()).add(form)

    def save(self, path: Path) -> None:
        with open(path, "w", encoding="ascii") as out:
            for nir, forms in self.forms.items():
                out.write(f"{nir} {','.join(sorted(forms))}\n")

    @staticmethod
    def load(path: Path) -> dict[str, set[str]]:
        forms = {}
        with open(path, encoding="ascii") as handle:
            for line in handle:
                nir, _, names = line.strip().partition(" ")
                forms[nir] = set(names.split(","))
        return forms


def generate_extract(path: Path, target: int, rng: random.Random, expected: Expected) -> None:
    insurers = insurer_names()
    people: list[str] = []
    size = 0
    with open(path, "w", encoding="utf-8", newline="") as out:
        out.write(CSV_HEADER)
        size += len(CSV_HEADER.encode())
        row_number = 0
        while size < target:
            rows = []
            for _ in range(BATCH):
                row_number += 1
                year, month, day = rng.randrange(1930, 2024), rng.randrange(1, 13), rng.randrange(1, 29)
                if people and rng.random() < 0.03:
                    nir, rang = rng.choice(people), "2"    # a child on a parent's NIR: same NIR, other row
                else:
                    body = random_body(rng, year, month)
                    nir, rang = f"{body}{nir_key(body):02d}", "1"
                    if len(people) < 5000:
                        people.append(nir)
                    elif rng.random() < 0.01:
                        people[rng.randrange(5000)] = nir
                form = FORMS[row_number % len(FORMS)]
                expected.add(nir, form)
                rows.append(
                    f"{rng.choice(LAST)};{rng.choice(FIRST)};{year}-{month:02d}-{day:02d};{rang};{written(nir, form)};"
                    f"{nir[13:]};{rng.choice(insurers)};A{rng.randrange(10**7):07d};C-{year}-{rng.randrange(10**6):06d};"
                    f"{rng.choice(GARANTIES)};2024-01-01\n"
                )
            chunk = "".join(rows)
            out.write(chunk)
            size += len(chunk.encode())


def _luhn_digit(partial: str) -> str:
    total = 0
    for index, char in enumerate(reversed(partial)):
        digit = int(char)
        if index % 2 == 0:
            digit *= 2
            if digit > 9:
                digit -= 9
        total += digit
    return str((10 - total % 10) % 10)


def _iban_fr(rng: random.Random) -> str:
    bban = f"{rng.randrange(10**5):05d}{rng.randrange(10**5):05d}{rng.randrange(10**11):011d}{rng.randrange(100):02d}"
    iban = f"FR{98 - int(bban + '152700') % 97:02d}{bban}"
    return " ".join(iban[i:i + 4] for i in range(0, len(iban), 4))


def _not_a_nir(rng: random.Random) -> str:
    number = f"{rng.randrange(10**14, 10**15)}"
    if nir_key(number[:13]) == int(number[13:]):
        number = number[:13] + f"{(int(number[13:]) + 1) % 100:02d}"
    return number


def generate_text(path: Path, target: int, rng: random.Random, expected: Expected) -> None:
    insurers = [n for n in insurer_names() if len(n) > 4]
    size = 0
    with open(path, "w", encoding="utf-8", newline="") as out:
        out.write("Journal d'exploitation et notes diverses (mutuelle, tiers payant, prestataires)\n")
        while size < target:
            lines = []
            for _ in range(BATCH):
                pick = rng.random()
                if pick < 0.45:
                    lines.append(
                        f"2024-{rng.randrange(1, 13):02d}-{rng.randrange(1, 29):02d}T{rng.randrange(24):02d}:"
                        f"{rng.randrange(60):02d}:{rng.randrange(60):02d}.{rng.randrange(1000):03d}Z "
                        f"{rng.choice(('INFO', 'INFO', 'WARN', 'DEBUG', 'ERROR'))} [{rng.choice(SERVICES)}] "
                        f"req={rng.getrandbits(32):08x}-{rng.getrandbits(16):04x}-{rng.getrandbits(16):04x} "
                        f"status={rng.choice((200, 200, 201, 404, 500))} took={rng.randrange(1, 900)}ms "
                        f"ts={rng.randrange(1_600_000_000_000, 1_800_000_000_000)}\n")
                elif pick < 0.80:
                    words = " ".join(rng.choice(WORDS) for _ in range(rng.randrange(6, 18)))
                    lines.append(words[0].upper() + words[1:] + ".\n")
                elif pick < 0.85:
                    phone = f"0{rng.choice('67')}{rng.randrange(10**8):08d}"
                    style = rng.randrange(3)
                    shown = (" ".join(phone[i:i + 2] for i in range(0, 10, 2)) if style == 0
                             else phone if style == 1 else "+33 " + phone[1])
                    if style == 2:
                        shown += " " + " ".join(phone[i:i + 2] for i in range(2, 10, 2))
                    lines.append(f"Rappeler le client au {shown} avant vendredi.\n")
                elif pick < 0.89:
                    lines.append(f"Virement reçu, IBAN {_iban_fr(rng)} (BIC BNPAFRPP).\n")
                elif pick < 0.93:
                    siren = f"{rng.randrange(10**7, 10**8)}"
                    partial = f"{siren}{_luhn_digit(siren)}{rng.randrange(10**4):04d}"      # 13 digits
                    lines.append(f"Fournisseur SIRET {partial + _luhn_digit(partial)} enregistré.\n")
                elif pick < 0.98:
                    lines.append(f"ref commande {_not_a_nir(rng)} expédiée le {rng.randrange(1, 29)}/02.\n")
                elif pick < 0.995:
                    lines.append(f"Dossier transmis à {rng.choice(insurers)} pour validation.\n")
                else:
                    year, month = rng.randrange(1930, 2024), rng.randrange(1, 13)
                    body = random_body(rng, year, month)
                    nir = f"{body}{nir_key(body):02d}"
                    style = rng.randrange(4)
                    if style == 0:
                        expected.add(nir, "text_label13")
                        lines.append(f"Assuré {rng.choice(LAST)}, {rng.choice(LABELS)}{body}, à rappeler.\n")
                    elif style == 1:
                        expected.add(nir, "text_spaced")
                        lines.append(f"Carte vitale {written(nir, 'spaced')} transmise.\n")
                    elif style == 2:
                        expected.add(nir, "text_compact")
                        lines.append(f"secu={nir};statut=ok\n")
                    else:
                        expected.add(nir, "text_label_key")
                        lines.append(f"{rng.choice(LABELS)}{body} clé {nir[13:]}\n")
            chunk = "".join(lines)
            out.write(chunk)
            size += len(chunk.encode())


def corpus(size_mb: int, seed: int) -> dict:
    """Generate (or reuse) the corpus; returns the manifest."""
    CORPUS.mkdir(parents=True, exist_ok=True)
    stem = f"v{GENERATOR_VERSION}-{size_mb}mb-seed{seed}"
    manifest_path = CORPUS / f"{stem}.json"
    if manifest_path.exists():
        manifest = json.loads(manifest_path.read_text())
        if all(Path(p).exists() and Path(p).stat().st_size == s for p, s in manifest["sizes"].items()):
            print(f"corpus: reusing {CORPUS.relative_to(ROOT)}/{stem}.*")
            return manifest
    half = size_mb * MB // 2
    started = time.perf_counter()
    paths = {"extract": CORPUS / f"{stem}-extract.csv", "text": CORPUS / f"{stem}-text.log"}
    expected = {"extract": Expected(), "text": Expected()}
    generate_extract(paths["extract"], half, random.Random(f"extract-{seed}"), expected["extract"])
    generate_text(paths["text"], half, random.Random(f"text-{seed}"), expected["text"])
    for name in paths:
        expected[name].save(CORPUS / f"{stem}-{name}.expected")
    union = set(expected["extract"].forms) | set(expected["text"].forms)
    manifest = {
        "paths": {k: str(v) for k, v in paths.items()},
        "sizes": {str(v): v.stat().st_size for v in paths.values()},
        "expected": {"extract": len(expected["extract"].forms), "text": len(expected["text"].forms), "whole": len(union)},
        "forms": {k: dict(Counter(f for fs in e.forms.values() for f in fs)) for k, e in expected.items()},
        "expected_files": {k: str(CORPUS / f"{stem}-{k}.expected") for k in paths},
        "generated_in_s": round(time.perf_counter() - started, 1),
    }
    manifest_path.write_text(json.dumps(manifest, indent=2))
    print(f"corpus: generated {size_mb} MB in {manifest['generated_in_s']} s under {CORPUS.relative_to(ROOT)}/")
    return manifest


# -- measuring -----------------------------------------------------------------------------------------

def _size(path: Path) -> int:
    return sum(f.stat().st_size for f in path.iterdir()) if path.is_dir() else path.stat().st_size


def run_scan(paths: list[str], pin: int | None, jobs: int | None = None) -> dict:
    """`watcher scan --format json` on `paths` (several paths: piped to stdin as ONE document).
    Peak RSS: the largest of the scanner and its pool processes (wait4 rusage)."""
    argv = [sys.executable, "-m", "watcher", "scan", "--format", "json"]
    if jobs is not None:
        argv += ["--jobs", str(jobs)]
    preexec = (lambda: os.sched_setaffinity(0, {pin})) if pin is not None else None
    feeder = None
    started = time.perf_counter()
    if len(paths) == 1:
        proc = subprocess.Popen(argv + paths, cwd=ROOT, stdout=subprocess.PIPE, preexec_fn=preexec)
    else:
        feeder = subprocess.Popen(["cat", *paths], stdout=subprocess.PIPE)
        proc = subprocess.Popen(argv + ["-"], cwd=ROOT, stdin=feeder.stdout, stdout=subprocess.PIPE, preexec_fn=preexec)
        feeder.stdout.close()
    output = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)          # this child's rusage (and its reaped children's)
    elapsed = time.perf_counter() - started
    proc.returncode = os.waitstatus_to_exitcode(status)
    proc.stdout.close()
    if feeder:
        feeder.wait()
    reports = [json.loads(line) for line in output.decode().splitlines() if line.strip()]
    return {"seconds": elapsed, "rss_mb": usage.ru_maxrss / 1024, "reports": reports, "status": proc.returncode,
            "cpu": usage.ru_utime + usage.ru_stime}


def startup_seconds(pin: int | None, jobs: int | None) -> float:
    empty = CORPUS / "empty.txt"
    empty.write_bytes(b"")
    return min(run_scan([str(empty)], pin, jobs)["seconds"] for _ in range(2))


YARA_SCRIPT = r"""
import re, sys, time, yara
names = sys.argv[2].split("\x1f")
strings = "\n".join(f'$n{i} = "{n}" nocase' for i, n in enumerate(names))
source = ("rule nir { strings: $compact = /[1-4][0-9]{2}[0-9]{2}(2[AB]|[0-9]{2})[0-9]{6}[0-9]{2}/ "
          "$spaced = /[1-4] [0-9]{2} [0-9]{2} (2[AB]|[0-9]{2}) [0-9]{3} [0-9]{3} [0-9]{2}/ condition: any of them }\n"
          "rule insurer { strings: " + strings + " condition: any of them }")
started = time.perf_counter()
rules = yara.compile(source=source)
rules.match(sys.argv[1], timeout=600, warnings_callback=lambda *a: yara.CALLBACK_CONTINUE)
print(time.perf_counter() - started)
"""


def run_yara(path: str) -> float | None:
    """Wall seconds of yara-python (compile + match) on `path` with a comparable rule set: the
    NIR compact and spaced forms as regular expressions and the insurer names as strings;
    None when yara-python is not installed (`pip install yara-python`)."""
    names = sorted({n.replace('"', "").replace("\\", "") for n in insurer_names() if len(n) > 3})
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", YARA_SCRIPT, path, "\x1f".join(names)], cwd=ROOT,
                          capture_output=True, text=True)
    if done.returncode != 0:
        print(f"yara-python: not measured ({done.stderr.strip().splitlines()[-1] if done.stderr.strip() else 'failed'})")
        return None
    return time.perf_counter() - started


def whole_file(paths: dict[str, str]) -> str:
    """Both halves as one file (the headline figure: one 200 MB file, as a user scans it)."""
    whole = Path(paths["extract"]).with_name(Path(paths["extract"]).stem.removesuffix("-extract") + "-whole.txt")
    size = sum(Path(p).stat().st_size for p in (paths["extract"], paths["text"]))
    if not whole.exists() or whole.stat().st_size != size:
        with open(whole, "wb") as out:
            for part in (paths["extract"], paths["text"]):
                with open(part, "rb") as handle:
                    shutil.copyfileobj(handle, out, 16 << 20)
    return str(whole)


def huge_file(whole: str, gigabytes: float) -> str:
    """The whole corpus repeated up to `gigabytes` (10**9 bytes): the same distinct NIRs."""
    size = Path(whole).stat().st_size
    copies = max(1, round(gigabytes * 1000 * MB / size))
    huge = Path(whole).with_name(f"huge-{copies}x.txt")
    if not huge.exists() or huge.stat().st_size != copies * size:
        started = time.perf_counter()
        with open(huge, "wb") as out:
            for _ in range(copies):
                with open(whole, "rb") as handle:
                    shutil.copyfileobj(handle, out, 16 << 20)
        print(f"huge file: {copies} copies of the whole corpus, {copies * size / MB / 1000:.1f} GB written in "
              f"{time.perf_counter() - started:.0f} s")
    return str(huge)


def diagnose(paths: list[str], expected_files: list[str]) -> None:
    """Which written forms of the expected NIRs were missed (in-process, reveal=True)."""
    sys.path.insert(0, str(ROOT))
    from watcher.analyze import Analyzer
    from watcher.extract import file_chunks

    expected: dict[str, set[str]] = {}
    for name in expected_files:
        for nir, forms in Expected.load(Path(name)).items():
            expected.setdefault(nir, set()).update(forms)

    def chunks():
        for path in paths:
            yield from file_chunks(Path(path))

    report = Analyzer().analyze_chunks(chunks(), "diagnosis", reveal=True)
    found = set((report.revealed or {}).get("nir", []))
    missed = {nir: forms for nir, forms in expected.items() if nir not in found}
    extra = found - set(expected)
    by_form = Counter(",".join(sorted(forms)) for forms in missed.values())
    print(f"    diagnosis: {len(missed):,} expected NIRs missed, {len(extra):,} unexpected NIRs found")
    for forms, count in by_form.most_common(10):
        sample = next(n for n, f in missed.items() if ",".join(sorted(f)) == forms)
        print(f"      missed, written only as {forms}: {count:,} (e.g. {sample[:5]}...)")
    for nir in list(extra)[:3]:
        print(f"      unexpected: {nir[:5]}...")


def split_dir(whole: str, files: int) -> str:
    """The whole corpus cut at newlines into `files` files of about equal size, in a folder."""
    size = Path(whole).stat().st_size
    folder = Path(whole).with_name(f"dir-{files}")
    if folder.exists() and sum(f.stat().st_size for f in folder.iterdir()) == size:
        return str(folder)
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir()
    with open(whole, "rb") as handle:
        for index in range(files):
            data = handle.read(size // files) + (handle.readline() if index < files - 1 else handle.read())
            (folder / f"part-{index:04d}.txt").write_bytes(data)
    return str(folder)


def load() -> str:
    return "load " + " ".join(f"{v:.2f}" for v in os.getloadavg())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size-mb", type=int, default=200, help="corpus size in MB (10**6 bytes), default 200")
    parser.add_argument("--keep", action="store_true", help="keep the corpus under bench/corpus/ for the next run")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--jobs", type=int, help="`watcher scan --jobs N` (default: watcher's, every CPU available)")
    parser.add_argument("--no-pin", action="store_true", help="with --jobs 1: do not pin the scanner to one CPU")
    parser.add_argument("--stdin", action="store_true", help="also scan both halves piped to stdin as one document")
    parser.add_argument("--no-yara", action="store_true", help="skip the yara-python baseline")
    parser.add_argument("--dir", type=int, metavar="FILES", nargs="?", const=200,
                        help="also scan the whole corpus cut into FILES files (default 200) in one folder")
    parser.add_argument("--huge", type=float, metavar="GB", nargs="?", const=5.0,
                        help="also scan the whole corpus repeated to GB gigabytes (default 5) as one file")
    args = parser.parse_args(argv)

    manifest = corpus(args.size_mb, args.seed)
    pin = sorted(os.sched_getaffinity(0))[-1] if args.jobs == 1 and not args.no_pin else None
    paths = manifest["paths"]
    sizes = {p: s for p, s in manifest["sizes"].items()}
    whole = whole_file(paths)
    sizes[whole] = Path(whole).stat().st_size
    print(f"forms written: extract {manifest['forms']['extract']}")
    print(f"               text    {manifest['forms']['text']}")
    startup = startup_seconds(pin, args.jobs)
    print(f"startup (empty file): {startup:.2f} s; --jobs {args.jobs or 'default'}; "
          f"scanner pinned to CPU {pin if pin is not None else '-'}; {load()}")
    print(f"{'part':<8} {'MB':>7} {'wall s':>7} {'MB/s':>7} {'MB/s*':>7} {'CPU s':>6} {'NIRs found':>11} {'expected':>9} "
          f"{'RSS MB':>7}  severity")
    runs = [("extract", [paths["extract"]], "extract"), ("text", [paths["text"]], "text"), ("whole", [whole], "whole")]
    if args.stdin:
        runs.append(("stdin", [paths["extract"], paths["text"]], "whole"))
    if args.dir:
        runs.append(("dir", [split_dir(whole, args.dir)], ""))
    if args.huge:
        runs.append(("huge", [huge_file(whole, args.huge)], "whole"))
    all_ok = True
    figures = {}
    for name, files, expected_name in runs:
        size = sum(sizes.get(f) or _size(Path(f)) for f in files)
        result = run_scan(files, pin, args.jobs)
        if name == "dir":           # one report per file: their NIRs, not the distinct ones of the whole
            report = {"counts": {"nir": sum(r["counts"]["nir"] for r in result["reports"])},
                      "severity": f"{len(result['reports'])} reports"}
            found = expected = report["counts"]["nir"]
        else:
            [report] = result["reports"] or [{"counts": {"nir": -1}, "severity": "?", "errors": ["no report"]}]
            found, expected = report["counts"]["nir"], manifest["expected"][expected_name]
        ok = found == expected and result["status"] == 0
        all_ok &= ok
        figures[name] = size / MB / result["seconds"]
        scan_only = max(result["seconds"] - startup, 1e-9)
        print(f"{name:<8} {size / MB:>7.1f} {result['seconds']:>7.2f} {figures[name]:>7.1f} "
              f"{size / MB / scan_only:>7.1f} {result['cpu']:>6.2f} {found:>11,} {expected:>9,} {result['rss_mb']:>7.0f}  "
              f"{report['severity']}{'' if ok else '  <-- MISMATCH'}")
        if report.get("errors"):
            print(f"    errors: {report['errors']}")
        if not ok and name in ("extract", "text"):
            diagnose(files, [manifest["expected_files"][name]])
    if not args.no_yara:
        seconds = run_yara(whole)
        if seconds:
            yara_rate = sizes[whole] / MB / seconds
            print(f"yara-python on the whole file: {seconds:.2f} s = {yara_rate:.1f} MB/s; watcher/yara = "
                  f"{figures['whole'] / yara_rate:.2f}x ({load()})")
    print("MB/s* = excluding the startup time (imports + pattern compilation); CPU s = scanner and its pool")
    print("targets: whole >= 150 MB/s on 2 cores (>= 3.5x yara-python), exact counts, peak RSS < 200 MB; "
          "5 GB under 60 s")
    print("counts: " + ("all exact" if all_ok else "MISMATCH (see the diagnosis above)"))
    if not args.keep:
        shutil.rmtree(CORPUS, ignore_errors=True)
    return 0 if all_ok else 1


if __name__ == "__main__":
    sys.exit(main())
