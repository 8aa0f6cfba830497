"""`watcher scan` starts without what only the daemon and the other commands need (issue 15).

Every `watcher` command builds the whole parser, so each command module must register its
sub-commands without importing the configuration, the store, asyncio or the network and export
libraries: those are imported by the command that runs. The tests run `watcher scan` on a tiny
file, and `watcher --help`, in a new interpreter (this one has imported everything already) and
read the modules it imported. How long the start-up takes is measured by
bench/bench_startup.py (bench/README.md, "Start-up"), not here.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

#: What a scan of a document does not need: the event loop, the state database, HTTP and
#: alerting, the MISP and STIX exports, the configuration (without --config).
UNNEEDED = ("asyncio", "sqlite3", "aiohttp", "apprise", "pymisp", "stix2", "watcher.config", "watcher.store",
            "watcher.daemon", "watcher.logs")
MARK = "modules:"
#: Runs `watcher.cli.main` with the arguments given, as the `watcher` script does; at exit
#: (`--help` exits from the parser) prints the modules imported. `sys.modules`, not
#: `-X importtime`, which misses what `importlib.import_module` imports (the command modules).
RUN = ("import atexit, sys\n"
       f"atexit.register(lambda: print({MARK!r}, *sorted(sys.modules), file=sys.stderr))\n"
       "from watcher.cli import main\n"
       "sys.exit(main(sys.argv[1:]))\n")


def imported_modules(argv: list[str]) -> tuple[subprocess.CompletedProcess[str], set[str]]:
    """Run `watcher` with `argv` in a new interpreter: the finished process and the modules
    it imported."""
    done = subprocess.run([sys.executable, "-c", RUN, *argv], capture_output=True, text=True, cwd=ROOT,
                          timeout=120)
    lines = [line for line in done.stderr.splitlines() if line.startswith(MARK)]
    return done, set(lines[-1].split()[1:]) if lines else set()


@pytest.fixture(scope="module")
def scan_imports(tmp_path_factory: pytest.TempPathFactory) -> set[str]:
    """The modules `watcher scan` imported to scan a 1 KB document without findings."""
    document = tmp_path_factory.mktemp("startup") / "note.txt"
    document.write_text("Compte rendu de la réunion du comité, rien à signaler.\n" * 18)
    done, modules = imported_modules(["scan", "--format", "json", str(document)])
    assert done.returncode == 0, done.stderr[-2000:]
    assert '"severity": "none"' in done.stdout
    assert {"watcher.cli.scan", "watcher.analyze", "watcher.detect"} <= modules     # the parse worked
    return modules


@pytest.mark.parametrize("module", UNNEEDED)
def test_scan_does_not_import(scan_imports: set[str], module: str) -> None:
    assert module not in scan_imports


def test_scan_does_not_import_cryptography(scan_imports: set[str]) -> None:
    assert "cryptography" not in scan_imports


def test_every_command_registers_without_heavy_imports() -> None:
    """`watcher --help` builds the parser with every sub-command and imports none of the
    modules above (the commands import them when they run)."""
    done, modules = imported_modules(["--help"])
    assert done.returncode == 0, done.stderr[-2000:]
    assert "check-config" in done.stdout and "status" in done.stdout
    assert {"watcher.cli.daemon", "watcher.cli.alerts", "watcher.cli.service", "watcher.cli.evidence"} <= modules
    assert sorted(modules & set(UNNEEDED)) == []


def test_scan_with_a_configuration_reads_its_rules_without_the_sources(tmp_path: Path) -> None:
    """`watcher scan --config` takes the rules, the scoring and the state directory: the
    sources are left unread, so no source kind and no HTTP library is imported (0.48 -> 0.16 s),
    and a source the scan does not use cannot stop it; `check-config` still reads them."""
    config = tmp_path / "sources.toml"
    config.write_text('[[rules]]\nname = "contracts"\nregex = "CTR-[0-9]{8}"\nseverity = "high"\n\n'
                      '[[sources]]\nname = "paste"\nkind = "listing"\nurl = "https://paste.example/archive"\n'
                      'item_url = "https://paste.example/raw/{id}"\nno_such_key = 1\n', encoding="utf-8")
    document = tmp_path / "note.txt"
    document.write_text("Référence du contrat CTR-12345678, rien d'autre.\n")
    done, modules = imported_modules(["scan", "--format", "json", "--config", str(config), str(document)])
    assert done.returncode == 0, done.stderr[-2000:]
    assert '"severity": "high"' in done.stdout and "contracts" in done.stdout     # the rule was read
    assert not {"aiohttp", "watcher.sources.registry", "asyncio"} & modules
    checked, _ = imported_modules(["check-config", "--config", str(config)])
    assert checked.returncode == 2 and 'key "no_such_key"' in checked.stderr
