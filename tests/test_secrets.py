"""Secrets from files: `file:PATH` and `cred:NAME` wherever `env:NAME` is accepted (source
headers, apprise URLs in [alerts] urls), resolved from real files, never echoed.

Before: a header or an apprise URL could only come from the environment, which systemd's
`Environment=` shows to any local user (`systemctl show`). Errors are one line naming the file,
line and key; none contains the secret.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from watcher.alerts import alert_settings
from watcher.alerts.settings import TargetURL
from watcher.config import ConfigError, load_config
from watcher.credentials import MAX_SECRET_BYTES

from tests.support.fakesites import ForumSite
from tests.support.commands import BASE, refused, watcher
from tests.support.configs import HEAD, LISTING, assert_error, line_of, write

SECRET = "sid=s3cr3t-9f2a"
HOOK = "json://user:hunter2@127.0.0.1:9/hook"


def credentials(tmp_path: Path, **files: str) -> dict[str, str]:
    """A $CREDENTIALS_DIRECTORY holding `files` (as systemd's LoadCredential= leaves them)."""
    folder = tmp_path / "credentials"
    folder.mkdir(exist_ok=True)
    for name, text in files.items():
        (folder / name).write_text(text, encoding="utf-8")
    return {"CREDENTIALS_DIRECTORY": str(folder)}


def header_source(reference: str, enabled: bool = True) -> str:
    return HEAD + LISTING + ("" if enabled else "enabled = false\n") + f'headers = {{ Cookie = "{reference}" }}\n'


# --------------------------------------------------------------------------- headers


def test_file_header_is_relative_to_the_config_and_loses_its_line_break(tmp_path: Path) -> None:
    (tmp_path / "secrets").mkdir()
    (tmp_path / "secrets" / "cookie").write_text(SECRET + "\n", encoding="utf-8")
    config = load_config(write(tmp_path, header_source("file:secrets/cookie")), environ={})
    assert config.sources[1].headers == {"Cookie": SECRET}


def test_cred_header_reads_the_credentials_directory(tmp_path: Path) -> None:
    env = credentials(tmp_path, cookie=SECRET + "\r\n")
    config = load_config(write(tmp_path, header_source("cred:cookie")), environ=env)
    assert config.sources[1].headers == {"Cookie": SECRET}


@pytest.mark.parametrize(("reference", "env", "expected"), [
    ("cred:cookie", {}, "Cookie reads credential cookie, but $CREDENTIALS_DIRECTORY is not set"),
    ("cred:cookie", None, "Cookie reads credential cookie ({dir}/cookie), which does not exist"),
    ("file:nope", {}, "Cookie reads file {tmp}/nope, which does not exist"),
    ("cred:../etc/passwd", {}, 'Cookie: "cred:" must be followed by a credential name'),
    ("file:", {}, 'Cookie: "file:" must be followed by a path'),
])
def test_a_missing_secret_is_one_line_naming_file_line_and_key(
        tmp_path: Path, reference: str, env: dict[str, str] | None, expected: str) -> None:
    env = credentials(tmp_path) if env is None else env
    text = header_source(reference)
    expected = expected.format(tmp=tmp_path, dir=env.get("CREDENTIALS_DIRECTORY"))
    assert_error(tmp_path, text, line_of(text, "headers ="), f'source "some-paste": key "headers": {expected}',
                 env=env)


@pytest.mark.parametrize(("content", "expected"), [
    (SECRET + "\nsecond line\n", "which contains a line break"),
    ("\n", "which is empty"),
    (SECRET * (MAX_SECRET_BYTES // len(SECRET) + 1), f"which is larger than {MAX_SECRET_BYTES} bytes"),
])
def test_a_bad_secret_file_is_refused_without_its_content(tmp_path: Path, content: str, expected: str) -> None:
    env = credentials(tmp_path, cookie=content)
    text = header_source("cred:cookie")
    message = assert_error(tmp_path, text, line_of(text, "headers ="), expected, env=env)
    assert "s3cr3t" not in message and "second" not in message


def test_a_disabled_source_may_lack_its_credential(tmp_path: Path) -> None:
    source = load_config(write(tmp_path, header_source("cred:cookie", enabled=False)), environ={}).sources[1]
    assert not source.enabled and source.headers == {}


# --------------------------------------------------------------------------- apprise URLs


def settings_with(tmp_path: Path, urls: str, env: dict[str, str]) -> tuple[TargetURL, ...]:
    path = write(tmp_path, f'[watcher]\nstate_dir = "state"\n\n[alerts]\nurls = {urls}\n')
    return alert_settings(load_config(path, environ=env), environ=env).urls


def test_apprise_urls_from_a_credential_and_a_file(tmp_path: Path) -> None:
    env = credentials(tmp_path, hook=HOOK + "\n")
    (tmp_path / "mail.url").write_text("mailto://127.0.0.1:25?to=a@example.org\n", encoding="utf-8")
    urls = settings_with(tmp_path, '["critical, health=cred:hook", "file:mail.url"]', env)
    assert urls == (TargetURL(HOOK, ("critical", "health")), TargetURL("mailto://127.0.0.1:25?to=a@example.org"))


def test_a_missing_apprise_credential_names_the_key_and_never_the_url(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as error:
        settings_with(tmp_path, '["cred:hook"]', {})
    assert str(error.value) == (f'{tmp_path / "sources.toml"}:5: [alerts]: key "urls" entry 1 reads credential '
                                "hook, but $CREDENTIALS_DIRECTORY is not set (run under systemd with "
                                "LoadCredential=hook:/path/to/file)")
    env = credentials(tmp_path, hook=HOOK + "\nsecond line")
    with pytest.raises(ConfigError) as error:
        settings_with(tmp_path, '["cred:hook"]', env)
    assert "contains a line break" in str(error.value) and "hunter2" not in str(error.value)


# --------------------------------------------------------------------------- real processes


def test_check_config_and_run_refuse_a_missing_credential_alike(tmp_path: Path) -> None:
    config = write(tmp_path, BASE + '\n[alerts]\nurls = ["cred:hook"]\n')
    (tmp_path / "inbox").mkdir()
    line = 1 + BASE.count("\n") + 2                     # BASE, a blank line, [alerts], urls
    refused(config, f'{config}:{line}: [alerts]: key "urls" entry 1 reads credential hook, but '
                    "$CREDENTIALS_DIRECTORY is not set", commands=(("check-config",), ("run", "--once")))


async def test_the_daemon_sends_a_credential_header_and_logs_nothing_of_it(
        tmp_path: Path, forum_site: ForumSite) -> None:
    forum_site.add_thread("1", "a thread", [(None, "nothing to see")])
    config = write(tmp_path, f'[watcher]\nstate_dir = "./state"\n\n[[sources]]\nname = "forum"\nkind = "forum"\n'
                             f'url = "{forum_site.url("/f/databases")}"\nthread_links = "a.thread"\n'
                             'post = "div.post"\nallow_private = true\nheaders = { Cookie = "cred:forum" }\n')
    env = credentials(tmp_path, forum=forum_site.cookie + "\n")
    [done] = await asyncio.to_thread(watcher, config, ("run", "--once", "--workers", "1"), env=env)
    assert done.rc == 0, done.err
    assert {r.path for r in forum_site.requests} >= {"/f/databases", "/t/1"}
    assert all(r.headers.get("Cookie") == forum_site.cookie for r in forum_site.requests)
    state = b"".join(p.read_bytes() for p in (tmp_path / "state").iterdir() if p.is_file())
    for output in (done.out, done.err, state.decode("latin-1")):
        assert forum_site.cookie_value not in output
