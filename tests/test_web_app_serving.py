"""Who serves the console: the daemon (`watcher run` with a [web] table) and `watcher web` alone,
each a real process on 127.0.0.1, reached with aiohttp's client; an analyst added with
`watcher web adduser` signs in and acknowledges an incident the daemon found."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import aiohttp
from tests.support.daemon import READY_TIMEOUT, DaemonProcess, child_env, db_rows, drop_csv, make_nirs, write_config
from tests.support.web import PASSWORD, USER, csrf_of, free_port, sign_in


def add_user(config: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "watcher", "web", "adduser", USER, "--config", str(config)],
                          input=f"{PASSWORD}\n", capture_output=True, text=True, env=child_env(), timeout=30)
    assert done.returncode == 0 and done.stdout == f"user {USER} added\n", done.stderr


async def wait_for_console(url: str, timeout: float = READY_TIMEOUT) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    async with aiohttp.ClientSession() as client:
        while True:
            try:
                async with client.get(f"{url}/login") as answer:
                    if answer.status == 200:
                        return
            except aiohttp.ClientConnectionError:
                pass
            assert asyncio.get_running_loop().time() < deadline, f"no console on {url}"
            await asyncio.sleep(0.1)


async def ack_first_incident(url: str) -> int:
    """Sign in, acknowledge incident 1 with a note; the answer's status."""
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as client:
        assert (await sign_in(client, url)).status == 303
        async with client.get(f"{url}/incidents/1") as page:
            csrf = csrf_of(await page.text())
        async with client.post(f"{url}/incidents/1/triage", data={"csrf": csrf, "action": "ack", "note": "seen"},
                               allow_redirects=False) as answer:
            return answer.status


async def test_the_daemon_serves_the_console(tmp_path: Path, start_daemon: Callable[[Path], DaemonProcess]) -> None:
    (tmp_path / "inbox").mkdir()
    port = free_port()
    config = tmp_path / "sources.toml"
    write_config(config, {"inbox": "./inbox"}, f'[web]\nlisten = "127.0.0.1:{port}"\n')
    drop_csv(tmp_path / "inbox", "extract.csv", make_nirs(17))
    add_user(config)
    daemon = start_daemon(config)
    daemon.notify.wait_for("READY", "1", timeout=READY_TIMEOUT)
    url = f"http://127.0.0.1:{port}"
    await wait_for_console(url)
    for _ in range(100):
        if db_rows(tmp_path / "state", "SELECT id FROM incidents"):
            break
        await asyncio.sleep(0.1)
    assert await ack_first_incident(url) == 303
    assert db_rows(tmp_path / "state", "SELECT action, who, note FROM triage") == [("ack", USER, "seen")]
    assert daemon.stop() == 0
    assert "web console listening" in daemon.log


async def test_watcher_web_serves_alone_and_stops_on_sigterm(tmp_path: Path) -> None:
    (tmp_path / "inbox").mkdir()
    port = free_port()
    config = tmp_path / "sources.toml"
    write_config(config, {"inbox": "./inbox"}, f'[web]\nlisten = "127.0.0.1:{port}"\n')
    drop_csv(tmp_path / "inbox", "extract.csv", make_nirs(18))
    once = subprocess.run([sys.executable, "-m", "watcher", "run", "--once", "--config", str(config)],
                          capture_output=True, env=child_env(), cwd=tmp_path, timeout=60)
    assert once.returncode == 0, once.stderr
    add_user(config)
    web = subprocess.Popen([sys.executable, "-m", "watcher", "web", "--config", str(config)], env=child_env(),
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path)
    try:
        await wait_for_console(f"http://127.0.0.1:{port}")
        assert await ack_first_incident(f"http://127.0.0.1:{port}") == 303
        web.send_signal(signal.SIGTERM)
        _, err = web.communicate(timeout=10)
    finally:
        if web.poll() is None:
            web.kill()
    assert web.returncode == 0, err
    assert f"web console on http://127.0.0.1:{port}/" in err
    assert db_rows(tmp_path / "state", "SELECT action, who FROM triage") == [("ack", USER)]
