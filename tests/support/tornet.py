"""A private Tor network on 127.0.0.1 for end-to-end tests (real `tor` processes, no internet).

Layout (the one of chutney's `hs-v3-min`, trimmed): 5 directory authorities that are also the
only relays and HSDirs, 1 v3 onion service forwarding port 80 to a local HTTP port, 1 client
with a SocksPort. No public authority is configured, so no tor ever contacts the outside.

    keys = generate_authorities(root / "keys")          # once per test run (CPU-bound, seconds)
    network = TorNetwork(root / "run", keys)
    network.start()                                      # consensus, then onion service + client
    network.onion, network.socks_port, network.http_port
    network.stop()

Readiness goes in this order because each step was needed: (1) every authority's consensus
lists every relay with the HSDir flag; (2) only then the onion service and the client start
(earlier, they take a one-relay consensus and stall a voting interval, or publish the descriptor
to the wrong HSDirs); (3) the client logs `Bootstrapped 100%` and the service's rend log
`HS descriptor stored successfully` (an earlier fetch gets a 404 and is then rate limited).

Every tor runs in the foreground with `__OwningControllerProcess <this pid>` (it exits when the
test run dies, even killed) and is stopped by its PID; `MALLOC_ARENA_MAX=1` and no GeoIP files
keep each one small. Every node has its own DataDirectory and ports below the ephemeral range,
so a system tor (Debian's tor.service on 9050) does not interfere.

The pytest fixtures at the bottom start one network per test run; tests/conftest.py registers
this module as a plugin, so a test asks for `tor_network` by name.
"""

from __future__ import annotations

import os
import random
import re
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import pytest
from aiohttp.test_utils import TestServer

from tests.support.fakesites import FakeSite

Site = TypeVar("Site", bound=FakeSite)

AUTHORITIES = 5
KEYGEN_TIMEOUT = 120.0       # tor-gencert makes a 3072-bit RSA key each: CPU-bound, 2-16 s
START_TIMEOUT = 90.0         # consensus ~10-15 s, then bootstrap + descriptor upload ~5 s
STOP_TIMEOUT = 5.0
LOWEST_PORT = 10000
PASSPHRASE = b"leak-watcher test network\n"   # of the offline authority identity keys

# Every node. TestingTorNetwork shortens every schedule; the TestingDirAuthVote* lines give every
# relay the Exit/HSDir/Guard flags at once (no uptime needed).
COMMON_TORRC = """\
TestingTorNetwork 1
AssumeReachable 1
PathsNeededToBuildCircuits 0.67
TestingDirAuthVoteExit *
TestingDirAuthVoteHSDir *
TestingDirAuthVoteGuard *
TestingMinExitFlagThreshold 0
V3AuthNIntervalsValid 2
Address 127.0.0.1
ClientUseIPv6 0
GeoIPFile ""
GeoIPv6File ""
RunAsDaemon 0
ShutdownWaitLength 0
Log notice stdout
"""

AUTHORITY_TORRC = """\
SocksPort 0
AuthoritativeDirectory 1
V3AuthoritativeDirectory 1
ExitRelay 0
ExitPolicy reject *:*
TestingV3AuthInitialVotingInterval 5
TestingV3AuthInitialVoteDelay 2
TestingV3AuthInitialDistDelay 2
V3AuthVotingInterval 10
V3AuthVoteDelay 2
V3AuthDistDelay 2
TestingServerDownloadInitialDelay 0
TestingServerConsensusDownloadInitialDelay 0
"""

BOOTSTRAPPED = "Bootstrapped 100%"
DESCRIPTOR_STORED = "HS descriptor stored successfully"


class TorNetworkError(RuntimeError):
    """The network did not come up; the message names the step and quotes the tor's log."""


def tor_binaries() -> tuple[str, str] | None:
    """(tor, tor-gencert) paths, or None when Debian's `tor` package is not installed."""
    tor, gencert = shutil.which("tor"), shutil.which("tor-gencert")
    return (tor, gencert) if tor and gencert else None


def require_tor() -> tuple[str, str]:
    """The tor binaries; a missing tor fails the test in CI (`$CI` set) or as root (where
    `make setup` installs it), and skips it elsewhere."""
    binaries = tor_binaries()
    if binaries is not None:
        return binaries
    reason = "tor and tor-gencert are not installed (Debian: apt-get install tor)"
    if os.environ.get("CI") or os.geteuid() == 0:
        pytest.fail(f"{reason}; `make setup` installs it when run as root", pytrace=False)
    pytest.skip(f"{reason}; the real Tor end-to-end test needs them")


# --------------------------------------------------------------------------- ports

def ephemeral_low() -> int:
    """The first port of the kernel's ephemeral range (32768 by default): ours stay below it,
    so no outgoing connection can take a port between choosing it and tor binding it."""
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def port_is_free(port: int) -> bool:
    """True when a TCP listener could bind 127.0.0.1:`port` right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_ports(count: int, rng: random.Random, taken: set[int] | None = None) -> list[int]:
    """`count` distinct free loopback ports in [LOWEST_PORT, ephemeral range); not in `taken`."""
    taken = set(taken or ())
    high = max(ephemeral_low(), LOWEST_PORT + 1000)
    ports: list[int] = []
    for _ in range(100 * count):
        port = rng.randrange(LOWEST_PORT, high)
        if port not in taken and port_is_free(port):
            taken.add(port)
            ports.append(port)
            if len(ports) == count:
                return ports
    raise TorNetworkError(f"no {count} free ports in {LOWEST_PORT}-{high - 1} on 127.0.0.1")


# --------------------------------------------------------------------------- authority keys

@dataclass(frozen=True)
class Authority:
    """A directory authority (also a relay and an HSDir) and where its keys are kept."""

    nickname: str
    or_port: int
    dir_port: int
    v3ident: str          # fingerprint of its authority certificate
    fingerprint: str      # its relay identity fingerprint
    keys_dir: Path        # authority_certificate, authority_signing_key, relay keys

    def dir_authority_line(self) -> str:
        """The DirAuthority line every node of the network carries for this authority."""
        return (f"DirAuthority {self.nickname} orport={self.or_port} no-v2 v3ident={self.v3ident} "
                f"127.0.0.1:{self.dir_port} {self.fingerprint}")


def _run_all(commands: list[tuple[list[str], Path]], stdin: bytes) -> None:
    """Run the commands in parallel (each in its folder, `stdin` fed to each); raise on failure."""
    running = [(subprocess.Popen(cmd, cwd=cwd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                 stderr=subprocess.STDOUT), cmd) for cmd, cwd in commands]
    failures = []
    try:
        for proc, cmd in running:
            output, _ = proc.communicate(stdin, timeout=KEYGEN_TIMEOUT)
            if proc.returncode:
                failures.append(f"{' '.join(cmd)} exited {proc.returncode}: {output.decode(errors='replace')[-500:]}")
    finally:
        for proc, _ in running:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    if failures:
        raise TorNetworkError("key generation failed: " + "; ".join(failures))


def generate_authorities(root: Path, count: int = AUTHORITIES, rng: random.Random | None = None) -> list[Authority]:
    """Keys and ports of `count` authorities under `root` (tor-gencert, tor --list-fingerprint).

    The ports are chosen here because the authority certificate names the DirPort.
    """
    tor, gencert = require_tor()
    rng = rng or random.Random()
    ports = free_ports(2 * count, rng)
    names = [f"auth{n}" for n in range(count)]
    folders = [root / name for name in names]
    for folder in folders:
        (folder / "keys").mkdir(mode=0o700, parents=True)
        (folder / "torrc").write_text("")        # tor refuses `-f /dev/null`
    _run_all([([gencert, "--create-identity-key", "--passphrase-fd", "0", "-m", "12",
                "-a", f"127.0.0.1:{ports[2 * n + 1]}"], folder / "keys")
              for n, folder in enumerate(folders)], PASSPHRASE)
    _run_all([([tor, "--list-fingerprint", "--orport", "1", "--datadirectory", str(folder),
                "-f", str(folder / "torrc"), "--defaults-torrc", str(folder / "torrc")], folder)
              for folder in folders], b"")
    return [Authority(nickname=name, or_port=ports[2 * n], dir_port=ports[2 * n + 1],
                      v3ident=_certificate_fingerprint(folder / "keys" / "authority_certificate"),
                      fingerprint=(folder / "fingerprint").read_text().split()[1],
                      keys_dir=folder / "keys")
            for n, (name, folder) in enumerate(zip(names, folders, strict=False))]


def _certificate_fingerprint(certificate: Path) -> str:
    match = re.search(r"^fingerprint ([0-9A-F]{40})$", certificate.read_text(), re.MULTILINE)
    if match is None:
        raise TorNetworkError(f"{certificate}: no fingerprint line")
    return match.group(1)


# --------------------------------------------------------------------------- processes

def _read(path: Path) -> str:
    """The text of a log file, "" while the tor has not created it."""
    try:
        return path.read_text(errors="replace")
    except FileNotFoundError:
        return ""


@dataclass
class TorProcess:
    """One running tor: its name, DataDirectory and process (stdout+stderr in `log`)."""

    name: str
    data_dir: Path
    process: subprocess.Popen[bytes]

    @property
    def log(self) -> Path:
        return self.data_dir / "tor.log"

    def log_text(self) -> str:
        return _read(self.log)

    def tail(self, lines: int = 15) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])

    def rss_bytes(self) -> int:
        """Resident set size now (VmRSS), 0 once the process is gone."""
        try:
            status = Path(f"/proc/{self.process.pid}/status").read_text()
        except OSError:
            return 0
        match = re.search(r"^VmRSS:\s+(\d+) kB", status, re.MULTILINE)
        return int(match.group(1)) * 1024 if match else 0

    def stop(self) -> None:
        """SIGTERM (tor exits at once), SIGKILL if it lingers; always reaped."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


@dataclass
class TorNetwork:
    """The running network under `root`: authorities, an onion service in front of
    127.0.0.1:`http_port`, a client on 127.0.0.1:`socks_port`. `start()` / `stop()`."""

    root: Path
    authorities: list[Authority]
    rng: random.Random = field(default_factory=random.Random)
    http_port: int = 0
    socks_port: int = 0
    onion: str = ""                          # xxx.onion, known once the service has started
    processes: list[TorProcess] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)   # step -> seconds since start()

    def start(self, timeout: float = START_TIMEOUT) -> None:
        """Start every tor and wait until the onion service can be fetched through the client.

        Each step waits on what the next one needs (see the module docstring); on failure the
        whole network is stopped and TorNetworkError says which step and quotes the logs. The
        nodes' DataDirectories are created under `root`: one start per root.
        """
        tor, _ = require_tor()
        taken = {port for a in self.authorities for port in (a.or_port, a.dir_port)}
        self.http_port, self.socks_port = free_ports(2, self.rng, taken)
        started = time.monotonic()
        deadline = started + timeout
        try:
            auths = [self._launch(tor, a.nickname, self._authority_torrc(a), a.keys_dir) for a in self.authorities]
            self._wait(deadline, "a consensus listing every relay as HSDir", auths, self._consensus_ready)
            self.timings["consensus"] = time.monotonic() - started
            service = self._launch(tor, "service", self._service_torrc)
            client = self._launch(tor, "client", lambda d: f"SocksPort 127.0.0.1:{self.socks_port}\n")
            self._wait(deadline, f"'{BOOTSTRAPPED}' from the client", [client],
                       lambda: BOOTSTRAPPED in client.log_text())
            self._wait(deadline, f"'{DESCRIPTOR_STORED}' in the service's rend log", [service],
                       lambda: descriptor_published(_read(service.data_dir / "rend.log")))
            self.onion = (service.data_dir / "hs" / "hostname").read_text().strip()
            self.timings["ready"] = time.monotonic() - started
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        """Stop every tor of the network by its PID."""
        for node in self.processes:
            node.stop()
        self.processes.clear()

    def rss_bytes(self) -> dict[str, int]:
        """RSS of each running tor, by node name."""
        return {node.name: node.rss_bytes() for node in self.processes}

    def _node_torrc(self, name: str, data_dir: Path) -> str:
        authorities = "".join(a.dir_authority_line() + "\n" for a in self.authorities)
        return (COMMON_TORRC + f"DataDirectory {data_dir}\nNickname {name}\n"
                f"__OwningControllerProcess {os.getpid()}\n" + authorities)

    @staticmethod
    def _authority_torrc(authority: Authority) -> Callable[[Path], str]:
        return lambda data_dir: (AUTHORITY_TORRC + f"ORPort 127.0.0.1:{authority.or_port}\n"
                                 f"DirPort 127.0.0.1:{authority.dir_port}\n")

    def _service_torrc(self, data_dir: Path) -> str:
        return (f"SocksPort 0\nHiddenServiceDir {data_dir / 'hs'}\n"
                f"HiddenServicePort 80 127.0.0.1:{self.http_port}\n"
                f"Log [rend]info file {data_dir / 'rend.log'}\n")

    def _launch(self, tor: str, name: str, role: Callable[[Path], str], keys: Path | None = None) -> TorProcess:
        """Write `name`'s torrc (common lines + `role(data_dir)`) and start tor on it."""
        data_dir = self.root / name
        data_dir.mkdir(mode=0o700, parents=True)
        if keys is not None:
            shutil.copytree(keys, data_dir / "keys")
        torrc = data_dir / "torrc"
        torrc.write_text(self._node_torrc(name, data_dir) + role(data_dir))
        (data_dir / "torrc-defaults").write_text("")     # not /etc/tor/torrc-defaults
        env = {**os.environ, "MALLOC_ARENA_MAX": "1"}
        with open(data_dir / "tor.log", "wb") as log:
            process = subprocess.Popen([tor, "-f", str(torrc), "--defaults-torrc", str(data_dir / "torrc-defaults")],
                                       cwd=data_dir, env=env, stdin=subprocess.DEVNULL,
                                       stdout=log, stderr=subprocess.STDOUT)
        node = TorProcess(name, data_dir, process)
        self.processes.append(node)
        return node

    def _consensus_ready(self) -> bool:
        """True when every authority serves a consensus listing every relay with HSDir."""
        nicknames = {a.nickname for a in self.authorities}
        return all(hsdirs_in_consensus(a.dir_port) >= nicknames for a in self.authorities)

    def _wait(self, deadline: float, what: str, nodes: list[TorProcess], ready: Callable[[], bool]) -> None:
        """Poll `ready` until it holds; a node exiting or the deadline raises TorNetworkError."""
        while not ready():
            dead = [n for n in self.processes if n.process.poll() is not None]
            if dead or time.monotonic() > deadline:
                culprits = dead or nodes
                why = f"{', '.join(n.name for n in dead)} exited" if dead else "timed out"
                logs = "\n".join(f"--- {n.name} ({n.log}):\n{n.tail()}" for n in culprits)
                raise TorNetworkError(f"waiting for {what}: {why}\n{logs}")
            time.sleep(0.2)


def descriptor_published(rend_log: str) -> bool:
    """True once an HSDir stored the descriptor and no upload is still in flight (a client
    asking an HSDir that has not got it yet gets a 404, then waits before asking again)."""
    launched = rend_log.count("initiated upload request")
    finished = rend_log.count("Uploading hidden service descriptor: finished")
    return DESCRIPTOR_STORED in rend_log and finished >= launched


def hsdirs_in_consensus(dir_port: int) -> set[str]:
    """Nicknames flagged HSDir in the microdescriptor consensus served on `dir_port` (empty
    while there is none yet)."""
    url = f"http://127.0.0.1:{dir_port}/tor/status-vote/current/consensus-microdesc"
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            text = response.read().decode("ascii", "replace")
    except (urllib.error.URLError, OSError):
        return set()
    found, nickname = set(), ""
    for line in text.splitlines():
        if line.startswith("r "):
            nickname = line.split()[1]
        elif line.startswith("s ") and "HSDir" in line.split():
            found.add(nickname)
    return found


@asynccontextmanager
async def serve_onion(site: Site, network: TorNetwork) -> AsyncIterator[Site]:
    """Serve a fake site (tests/support/fakesites.py) as the onion service's backend, on
    127.0.0.1:`network.http_port`, for the block; its `url()` is then the onion's."""
    server = TestServer(site.app, host="127.0.0.1", port=network.http_port)
    await server.start_server()
    site.base_url = f"http://{network.onion}"
    try:
        yield site
    finally:
        await server.close()


# --------------------------------------------------------------------------- pytest fixtures

@pytest.fixture(scope="session")
def tor_authorities(tmp_path_factory: pytest.TempPathFactory) -> list[Authority]:
    """Authority keys (and ports) generated once per test run, kept in a session temp dir."""
    return generate_authorities(tmp_path_factory.mktemp("tor-keys"))


@pytest.fixture(scope="session")
def tor_network(tmp_path_factory: pytest.TempPathFactory, tor_authorities: list[Authority]) -> Iterator[TorNetwork]:
    """The private Tor network, started once per test run and stopped at its end."""
    network = TorNetwork(tmp_path_factory.mktemp("tor-net"), tor_authorities)
    network.start()
    yield network
    network.stop()
