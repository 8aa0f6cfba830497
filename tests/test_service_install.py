"""docs/service.md followed to the letter in a temporary root: a by-the-docs install alerts.

The shell block of "Install on Debian 12 / The service" is read from docs/service.md and run
one command at a time, every absolute path moved under a fake root in tmp_path (`Root`). A
command the test does not know fails it, so the block and the test cannot drift apart. What
this machine cannot do is emulated, each time in the same way:

- `apt-get install`: the packages are here (this virtualenv, Python 3.11); skipped.
- `python3 -m venv` + `pip install <wheel>`: the wheel named must be the one the build backend
  makes here, read from the Tag of the installed distribution's WHEEL file (written by
  setuptools' bdist_wheel when this checkout was installed; measured: `pip wheel` gives
  leak_watcher-0.1.0-cp311-cp311-linux_x86_64.whl). The virtualenv is this test run's own, a
  symlink at /opt/leak-watcher/venv: building the wheel needs setuptools >= 77 from PyPI,
  which a test may not reach.
- `editor apprise.yml`: the shipped json:// line pointed at a receiver on 127.0.0.1.
- `systemctl enable --now`: what systemd does at start, taken from the installed unit: its
  Environment= lines, $STATE_DIRECTORY, $CACHE_DIRECTORY, $CONFIGURATION_DIRECTORY, and the
  LoadCredential= copy in $CREDENTIALS_DIRECTORY, the /etc original then removed (the
  service's transient user cannot read it); `systemd-analyze verify` of the installed unit.

Then the service's own commands run in that environment: check-config, test-alert, and, once
the drop box is enabled as docs/service.md's Configure section says, `watcher run --once` on
the demo extract, whose alert must reach the receiver; `watcher status` is then OK.
"""

from __future__ import annotations

import asyncio
import csv
import os
import re
import shlex
import shutil
import stat
import subprocess
import sys
import tomllib
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

import pytest
from tests.support.receivers import JsonReceiver
from tests.support.systemd import ANALYZE, systemd_analyze, unit_directives

import watcher
import watcher.cli
from watcher.alerts import AlertSettings, load_targets
from watcher.alerts.sink import JsonlSink

REPO = Path(watcher.__file__).resolve().parents[1]
DOCS = REPO / "docs" / "service.md"
EXAMPLES = REPO / "examples"
SERVICE = "watcher.service"
# Where an install writes: these top-level folders are moved under the fake root.
ROOT_DIRS = ("opt", "etc", "var", "srv", "tmp", "run")
# The folders of a Debian 12 system with systemd that the steps write into without creating.
DEBIAN_DIRS = ("opt", "etc/systemd/system", "var/lib", "var/cache", "srv", "tmp", "run")
SERVICE_VARIABLES = ("STATE_DIRECTORY", "CACHE_DIRECTORY", "CONFIGURATION_DIRECTORY", "CREDENTIALS_DIRECTORY",
                     "NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID", "JOURNAL_STREAM", "INVOCATION_ID")
SHIPPED_TARGET = "json://127.0.0.1:8080/"
TEST_TITLE = "[TEST] leak-watcher test alert"


# --------------------------------------------------------------------------- the fake root


@dataclass
class Root:
    """A fake `/`: absolute paths under ROOT_DIRS are moved below `path`."""

    path: Path

    def __post_init__(self) -> None:
        for folder in DEBIAN_DIRS:
            (self.path / folder).mkdir(parents=True, exist_ok=True)

    def __call__(self, value: str) -> str:
        """`value` moved under the root when it is an absolute path of an install folder."""
        return re.sub(rf"(?<![\w./-])/(?=(?:{'|'.join(ROOT_DIRS)})/)", f"{self.path}/", value)

    def file(self, value: str) -> Path:
        return Path(self(value))

    def rewrite(self, path: Path) -> None:
        """Move the absolute paths a file names (state_dir, a drop folder, ExecStart=) under the root."""
        path.write_text(self(path.read_text(encoding="utf-8")), encoding="utf-8")


def docs_block(heading: str) -> list[str]:
    """The command lines of the first ```sh block after `heading` in docs/service.md."""
    text = DOCS.read_text(encoding="utf-8")
    start = text.index(f"\n{heading}\n")
    block = text[text.index("```sh\n", start) + 6:]
    lines = block[:block.index("```")].splitlines()
    return [line for line in lines if line.strip() and not line.lstrip().startswith("#")]


def wheel_name() -> str:
    """The wheel this machine's build backend makes: name, version and the Tag it recorded
    (in the installed dist-info; a checkout's leak_watcher.egg-info has no WHEEL file)."""
    [dist] = [d for d in metadata.distributions(name="leak-watcher") if d.read_text("WHEEL")]
    [tag] = re.findall(r"^Tag: (\S+)$", dist.read_text("WHEEL") or "", re.M)
    return f"{dist.metadata['Name'].replace('-', '_')}-{dist.version}-{tag}.whl"


def shell_env() -> dict[str, str]:
    """A root shell's environment: nothing a service manager would set."""
    return {key: value for key, value in os.environ.items() if key not in SERVICE_VARIABLES}


async def execute(argv: list[str], env: dict[str, str], cwd: Path = REPO) -> tuple[int, str]:
    """Run a command (umask 022, as the docs say) without blocking the receiver's loop."""
    process = await asyncio.create_subprocess_exec(
        *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, env=env, cwd=cwd,
        preexec_fn=lambda: os.umask(0o022))
    out, _ = await asyncio.wait_for(process.communicate(), 120)
    assert process.returncode is not None
    return process.returncode, out.decode()


# --------------------------------------------------------------------------- following the docs


@dataclass
class Install:
    """What following the install block left behind."""

    root: Root
    receiver: JsonReceiver
    watcher: Path | None = None
    unit: Path | None = None
    config: Path | None = None
    enabled: bool = False
    done: list[str] = field(default_factory=list)

    async def follow(self, line: str) -> None:
        argv = [self.root(arg) for arg in shlex.split(line, comments=True)]
        program = argv[0]
        if program in ("apt-get", "umask") or argv[:2] == ["systemctl", "daemon-reload"]:
            return                                       # packages are here; execute() sets the umask
        if argv == ["systemctl", "enable", "--now", SERVICE]:
            self.enabled = True
        elif argv[:3] == ["python3", "-m", "venv"]:
            venv = Path(argv[3])
            venv.parent.mkdir(parents=True, exist_ok=True)
            venv.symlink_to(sys.prefix, target_is_directory=True)
        elif program.endswith("/bin/pip") and argv[1] == "install":
            assert Path(argv[2]).name == wheel_name(), "docs/service.md names another wheel than the build makes"
        elif program.endswith("/bin/watcher"):
            await self.run_watcher(argv)
        elif program == "install":
            status, out = await execute(argv, shell_env())
            assert status == 0, f"{line}: {out}"
            self.record_installed(Path(argv[-1]))
        elif program == "editor":
            self.edit_targets(Path(argv[1]))
        else:
            pytest.fail(f"docs/service.md: this test does not know how to follow `{line}`")
        self.done.append(program.rsplit("/", 1)[-1] + " " + " ".join(argv[1:2]))

    def record_installed(self, path: Path) -> None:
        """Files whose absolute paths must follow the root, and what later steps need."""
        if path.name == SERVICE:
            self.unit = path
        if path.name == "sources.toml":
            self.config = path
            self.root.rewrite(path)

    def edit_targets(self, path: Path) -> None:
        """The operator's edit: the shipped json:// target pointed at the SOC's collector."""
        text = path.read_text(encoding="utf-8")
        assert text.count(SHIPPED_TARGET) == 1, "examples/apprise.yml: one active json:// line expected"
        path.write_text(text.replace(SHIPPED_TARGET, self.receiver.url("")), encoding="utf-8")

    async def run_watcher(self, argv: list[str]) -> None:
        """A `watcher` command of the docs, from a root shell (no service environment)."""
        self.watcher = Path(argv[0])
        sent = len(self.receiver.posts)
        status, out = await execute(argv, shell_env())
        assert status == 0, f"{' '.join(argv)}: {out}"
        if argv[1] == "--version":
            assert out == f"watcher {metadata.version('leak-watcher')}\n"
        elif argv[1] == "test-alert":
            assert "1 of 1 target accepted" in out and out.startswith("ok ")
            assert [post.title for post in self.receiver.posts[sent:]] == [TEST_TITLE]


@dataclass
class Service:
    """The environment systemd gives the unit's processes, built from the installed unit."""

    env: dict[str, str]
    exec_start: list[str]
    state_dir: Path
    cache_dir: Path

    def command(self, *args: str) -> list[str]:
        """ExecStart's program and --config with another sub-command."""
        program, _run, *options = self.exec_start
        return [program, *args, *options]


def start_like_systemd(install: Install) -> Service:
    """Directories, credentials and environment as `systemctl start` would make them."""
    root = install.root
    assert install.unit is not None
    service = unit_directives(root(install.unit.read_text(encoding="utf-8")))["Service"]
    env = {key: value for key, value in shell_env().items() if key != "WATCHER_CACHE_DIR"}
    env.update(entry.split("=", 1) for entry in service.get("Environment", []))
    folders = {"StateDirectory": ("STATE_DIRECTORY", "/var/lib/"), "CacheDirectory": ("CACHE_DIRECTORY", "/var/cache/"),
               "ConfigurationDirectory": ("CONFIGURATION_DIRECTORY", "/etc/")}
    for key, (variable, parent) in folders.items():
        [name] = service[key]
        folder = root.file(parent + name)
        folder.mkdir(parents=True, exist_ok=True)
        mode = service.get(f"{key}Mode", ["0755"])[0]
        folder.chmod(int(mode, 8))
        env[variable] = str(folder)
    credentials = root.file(f"/run/credentials/{SERVICE}")
    credentials.mkdir(parents=True)
    for entry in service["LoadCredential"]:
        name, source = entry.split(":", 1)
        copy = credentials / name
        shutil.copyfile(source, copy)
        copy.chmod(0o400)
        Path(source).unlink()             # 0600 root: the transient user reads the copy only
    env["CREDENTIALS_DIRECTORY"] = str(credentials)
    [exec_start] = service["ExecStart"]
    return Service(env, shlex.split(exec_start), Path(env["STATE_DIRECTORY"]), Path(env["CACHE_DIRECTORY"]))


def enable_drop_box(config: Path, root: Root) -> Path:
    """docs/service.md, Configure: `enabled = true` on the shipped drop box, its folder created."""
    text = config.read_text(encoding="utf-8")
    head, tail = text.split('name = "inbox"\n', 1)
    assert tail.count("enabled = false") >= 1
    config.write_text(head + 'name = "inbox"\n' + tail.replace("enabled = false", "enabled = true", 1),
                      encoding="utf-8")
    inbox = root.file("/srv/leak-watcher/inbox")
    subprocess.run(["install", "-d", "-m", "0755", str(inbox)], check=True)
    extract = inbox / "demo-extract.csv"
    shutil.copy2(EXAMPLES / "demo-extract.csv", extract)   # an old mtime: settled, polled at once
    extract.chmod(0o644)
    return extract


def demo_nirs() -> list[str]:
    with (EXAMPLES / "demo-extract.csv").open(encoding="utf-8") as handle:
        return [re.sub(r"[ .-]", "", row["nir"]) for row in csv.DictReader(handle, delimiter=";")]


@pytest.fixture
def analyze() -> str:
    """systemd-analyze, which the Debian package `systemd` provides; required in CI."""
    if ANALYZE is None:
        message = "systemd-analyze not found: apt-get install systemd (it provides it, PID 1 or not)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return ANALYZE


async def test_a_by_the_docs_install_alerts(tmp_path: Path, json_receiver: JsonReceiver, analyze: str) -> None:
    root = Root(tmp_path / "root")
    install = Install(root, json_receiver)
    for line in docs_block("### The service"):
        await install.follow(line)
    assert install.enabled and install.config is not None and install.watcher is not None
    assert install.done.count("watcher check-config") == 1 and install.done.count("watcher test-alert") == 1
    etc = root.file("/etc/watcher")
    assert stat.S_IMODE((etc / "sources.toml").stat().st_mode) == 0o644
    assert stat.S_IMODE((etc / "apprise.yml").stat().st_mode) == 0o600

    # The installed unit, its paths under the root, verifies cleanly (ExecStart= exists there).
    assert install.unit is not None
    checked = tmp_path / "verify" / SERVICE
    checked.parent.mkdir()
    checked.write_text(root(install.unit.read_text(encoding="utf-8")), encoding="utf-8")
    result = systemd_analyze("verify", str(checked))
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")

    # The service's view: state, cache and credentials from systemd, apprise.yml only as a credential.
    service = start_like_systemd(install)
    assert service.command()[0] == str(install.watcher) and service.exec_start[-1] == str(install.config)
    status, out = await execute(service.command("check-config"), service.env)
    assert status == 0 and f"state in {service.state_dir}" in out and "0 enabled sources of 2" in out, out
    status, out = await execute(service.command("test-alert"), service.env)
    assert status == 0 and out.startswith("ok "), out
    assert [post.title for post in json_receiver.posts] == [TEST_TITLE, TEST_TITLE]

    # Configure: the drop box enabled; one pass finds the demo extract and alerts.
    enable_drop_box(install.config, root)
    status, log = await execute(service.command("run", "--once"), service.env)
    assert status == 0, log
    alerts = json_receiver.posts[2:]
    assert [post.title.split(" ", 1)[0] for post in alerts] == ["[CRITICAL]"], log
    assert "12 NIRs" in alerts[0].title and "inbox" in alerts[0].title
    status, out = await execute(service.command("status"), service.env)
    assert status == 0 and out.startswith("watcher: OK"), out

    sink = service.state_dir / "alerts.jsonl"
    assert stat.S_IMODE(sink.stat().st_mode) == 0o600 and len(sink.read_text().splitlines()) == 1
    assert any(service.cache_dir.iterdir()), "the pattern databases belong in $CACHE_DIRECTORY"
    texts = log + sink.read_text() + "".join(post.message for post in alerts)
    assert not [nir for nir in demo_nirs() if nir in re.sub(r"[ .-]", "", texts)], "a NIR in clear"


# --------------------------------------------------------------------------- the shipped examples


EXAMPLE_LINE = re.compile(r"^  # (- \S+://\S*|    \w+: .*)$", re.M)


def test_every_apprise_example_loads_in_apprise(tmp_path: Path) -> None:
    """As shipped: one target, the loopback json:// line. Uncommented: every example parses,
    with the tags its comment promises (apprise drops a bad entry with a log line only; the
    loader turns that into an error, see watcher.alerts.targets)."""
    shipped = EXAMPLES / "apprise.yml"
    [target] = load_targets(AlertSettings(config=shipped))
    assert target.name.startswith(SHIPPED_TARGET) and not target.tags

    uncommented = tmp_path / "apprise.yml"
    uncommented.write_text(EXAMPLE_LINE.sub(r"  \1", shipped.read_text(encoding="utf-8")), encoding="utf-8")
    loaded = {target.name.split("://", 1)[0]: target.tags for target in load_targets(AlertSettings(config=uncommented))}
    assert loaded == {
        "mailto": {"critical", "high", "health"},
        "mailtos": {"critical", "high"},
        "slack": {"leak"},
        "workflow": {"leak", "health"},
        "matrixs": {"critical", "high"},
        "json": set(),
    }


def test_the_etc_sources_toml_enables_nothing_and_reads_apprise_yml() -> None:
    data = tomllib.loads((EXAMPLES / "sources.toml").read_text(encoding="utf-8"))
    assert data["watcher"]["state_dir"] == "/var/lib/watcher"
    assert data["alerts"]["config"] == "apprise.yml"
    assert [source.get("enabled", True) for source in data["sources"]] == [False] * len(data["sources"])
    assert all(source.get("tor") for source in data["sources"] if source["kind"] != "directory"), \
        "the unit allows localhost only: network sources go through Tor"


# --------------------------------------------------------------------------- alerts.jsonl rotation


def logrotate_snippet() -> str:
    text = DOCS.read_text(encoding="utf-8")
    start = text.index("/etc/logrotate.d/leak-watcher")
    block = text[text.index("```\n", start) + 4:]
    return block[:block.index("```")]


@pytest.mark.skipif(shutil.which("logrotate") is None, reason="logrotate not installed")
def test_the_documented_rotation_loses_no_alert_line(tmp_path: Path) -> None:
    """docs/service.md's logrotate snippet, forced, between two appends of the daemon's sink."""
    state = tmp_path / "var" / "lib" / "watcher"
    state.mkdir(parents=True, mode=0o700)
    config = tmp_path / "leak-watcher.logrotate"
    config.write_text(Root(tmp_path)(logrotate_snippet()), encoding="utf-8")
    assert "copytruncate" not in config.read_text() and "nocreate" in config.read_text()
    sink = JsonlSink(state / "alerts.jsonl")

    sink.append([{"alert_id": "a1"}])
    rotate = ["logrotate", "--force", "--state", str(tmp_path / "logrotate.state"), str(config)]
    result = subprocess.run(rotate, capture_output=True, text=True, timeout=30, check=False)
    assert (result.returncode, result.stderr) == (0, ""), result.stderr
    assert not sink.path.exists()                                  # nocreate: the daemon makes the next one
    sink.append([{"alert_id": "a2"}])

    assert (state / "alerts.jsonl.1").read_text() == '{"alert_id":"a1"}\n'
    assert sink.path.read_text() == '{"alert_id":"a2"}\n'
    assert stat.S_IMODE(sink.path.stat().st_mode) == 0o600
    assert sink.written_ids(["a2"]) == {"a2"}


# --------------------------------------------------------------------------- --version


def test_version_is_the_distribution_s(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        watcher.cli.main(["--version"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out == f"watcher {metadata.version('leak-watcher')}\n"
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
    assert watcher.__version__ == pyproject["project"]["version"], "watcher.__version__ lags pyproject.toml"


def test_version_without_distribution_metadata_falls_back_to_the_package(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Run from a source tree (PYTHONPATH, nothing installed), metadata has no leak-watcher."""
    def not_installed(name: str) -> str:
        raise metadata.PackageNotFoundError(name)

    monkeypatch.setattr(metadata, "version", not_installed)
    monkeypatch.setattr(watcher, "__version__", "9.8.7")
    with pytest.raises(SystemExit):
        watcher.cli.main(["--version"])
    assert capsys.readouterr().out == "watcher 9.8.7\n"
