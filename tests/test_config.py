"""watcher.config: the shipped file loads; every error names file:line, the section and the key."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from watcher import config as config_module
from watcher.config import ConfigError, find_config, load_config, parse_duration
from watcher.detect.rules import Rule
from watcher.score import Policy

from tests.support.configs import HEAD, LISTING, assert_error, line_of, load_error, write

REPO = Path(__file__).resolve().parent.parent


# -- the shipped file ------------------------------------------------------------------------------

def test_shipped_config_loads_with_only_the_inbox_enabled() -> None:
    config = load_config(REPO / "sources.toml", environ={})
    assert [s.name for s in config.enabled_sources] == ["inbox"]
    inbox = config.enabled_sources[0]
    assert inbox.kind == "directory" and inbox.options.path == REPO / "inbox" and inbox.interval == 10
    assert config.watcher.state_dir == REPO / "state"
    assert config.tor is not None and config.tor.socks == "127.0.0.1:9050"
    assert isinstance(config.alerts, dict) and config.policy == Policy()
    assert "github-gists" not in {s.name for s in config.sources}     # in sources.d/gists.toml, off until included
    pastebin = next(s for s in config.sources if s.name == "pastebin")
    assert (pastebin.options.id_field, pastebin.options.url_field) == ("key", "scrape_url")


def test_state_directory_from_systemd_wins() -> None:
    config = load_config(REPO / "sources.toml", environ={"STATE_DIRECTORY": "/var/lib/watcher"})
    assert config.watcher.state_dir == Path("/var/lib/watcher")


def test_relative_paths_are_relative_to_the_config_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write(tmp_path, HEAD)
    monkeypatch.chdir("/")
    config = load_config(path, environ={})
    assert config.watcher.state_dir == tmp_path / "state"
    assert config.sources[0].options.path == tmp_path / "inbox"


def test_full_example_of_the_spec_loads(tmp_path: Path) -> None:
    text = HEAD + LISTING + """
    [scoring]
    critical_nirs = 5

    [[rules]]
    name = "contract-numbers"
    regex = "CTR-[0-9]{8}"
    severity = "medium"

    [[rules]]
    name = "insurers"
    keywords = ["Mutuelle X", "Caisse Y"]

    [[sources]]
    name = "some-forum"
    kind = "forum"
    url = "http://exampleforum.onion/f/databases"
    tor = true
    thread_links = "a.thread"
    post = "div.post"
    next_page = "a.next"
    max_pages = 5
    headers = { Cookie = "env:FORUM_COOKIE" }

    [[sources]]
    name = "feed"
    kind = "feed"
    url = "https://example.org/feed.xml"
    follow = true
    interval = "1h30m"
    """
    config = load_config(write(tmp_path, text), environ={"FORUM_COOKIE": "sid=42"})
    listing, forum, feed = config.sources[1:]
    assert listing.tor and listing.onion and listing.interval == 300 and listing.options.content == "pre"
    assert forum.headers == {"Cookie": "sid=42"} and forum.options.max_pages == 5
    assert feed.options.follow and feed.interval == 5400 and not feed.tor
    assert config.policy == Policy(critical_nirs=5)
    assert config.rules == (Rule("contract-numbers", "medium", (), "CTR-[0-9]{8}"),
                            Rule("insurers", "low", ("Mutuelle X", "Caisse Y")))


# -- errors: file:line, section, key ----------------------------------------------------------------

def test_unknown_source_key_names_its_line(tmp_path: Path) -> None:
    text = HEAD + LISTING.replace('interval = "5m"', 'intervall = "5m"')
    message = assert_error(tmp_path, text, line_of(text, "intervall"),
                           'source "some-paste": key "intervall" is unknown (expected one of: ')
    assert "interval" in message.split("expected one of:")[1]


@pytest.mark.parametrize("value", ['"5 minutes"', "0", "-3", '"m5"', "true", '""'])
def test_invalid_interval(tmp_path: Path, value: str) -> None:
    text = HEAD + LISTING.replace('interval = "5m"', f"interval = {value}")
    assert_error(tmp_path, text, line_of(text, "interval =", 2), 'key "interval"', '"5m"')


def test_duplicate_source_names(tmp_path: Path) -> None:
    text = HEAD + LISTING.replace('"some-paste"', '"inbox"')
    assert_error(tmp_path, text, line_of(text, 'name = "inbox"', 2), 'source "inbox": key "name" duplicates')


def test_missing_required_key_points_at_the_block(tmp_path: Path) -> None:
    text = HEAD + LISTING.replace('item_links = "table.archive a"\n', "")
    assert_error(tmp_path, text, line_of(text, "[[sources]]", 2),
                 'source "some-paste": key "item_links" is missing', "listing source needs: url, item_links")


def test_invalid_css_selector(tmp_path: Path) -> None:
    text = HEAD + LISTING.replace('content = "pre"', 'content = "pre["')
    assert_error(tmp_path, text, line_of(text, "content ="), 'key "content" is not a valid CSS selector')


@pytest.mark.parametrize("url", ["ftp://examplepaste.onion/x", "examplepaste.onion/archive", "http:///nohost"])
def test_invalid_url(tmp_path: Path, url: str) -> None:
    text = HEAD + LISTING.replace("http://examplepaste.onion/archive", url)
    assert_error(tmp_path, text, line_of(text, "url = "), 'key "url" must be an http:// or https:// URL')


def test_tor_requires_a_socks_port(tmp_path: Path) -> None:
    text = (HEAD + LISTING).replace('[tor]\nsocks = "127.0.0.1:9050"\n', "")
    assert_error(tmp_path, text, line_of(text, "tor = true"), 'key "tor" is true but there is no [tor] socks')


def test_onion_url_requires_tor(tmp_path: Path) -> None:
    text = HEAD + LISTING.replace("tor = true\n", "")
    assert_error(tmp_path, text, line_of(text, "url = "), 'key "url" is a .onion URL: set tor = true')


def test_clearnet_through_tor_is_allowed(tmp_path: Path) -> None:
    text = HEAD + LISTING.replace("examplepaste.onion", "paste.example.org")
    source = load_config(write(tmp_path, text), environ={}).sources[1]
    assert source.tor and not source.onion


def test_env_header_is_resolved_and_unset_variable_named(tmp_path: Path) -> None:
    text = HEAD + LISTING + 'headers = { Cookie = "env:PASTE_COOKIE", "X-Static" = "1" }\n'
    config = load_config(write(tmp_path, text), environ={"PASTE_COOKIE": "sid=1"})
    assert config.sources[1].headers == {"Cookie": "sid=1", "X-Static": "1"}
    message = assert_error(tmp_path, text, line_of(text, "headers ="),
                           'key "headers": Cookie reads environment variable PASTE_COOKIE, which is not set')
    assert "sid=1" not in message


def test_env_of_a_disabled_source_may_be_unset(tmp_path: Path) -> None:
    text = HEAD + LISTING + 'enabled = false\nheaders = { Cookie = "env:PASTE_COOKIE" }\n'
    source = load_config(write(tmp_path, text), environ={}).sources[1]
    assert not source.enabled and source.headers == {}


def test_headers_sub_table_line(tmp_path: Path) -> None:
    text = HEAD + LISTING + '[sources.headers]\nCookie = "env:NOPE"\n'
    assert_error(tmp_path, text, line_of(text, "[sources.headers]"), "variable NOPE, which is not set")


def test_toml_syntax_error_keeps_line_and_column(tmp_path: Path) -> None:
    text = HEAD + 'name "oops"\n'
    message = load_error(tmp_path, text)
    assert re.match(rf"{re.escape(str(tmp_path / 'sources.toml'))}:12:\d+: invalid TOML: ", message), message


@pytest.mark.parametrize(("rule", "fragment"), [
    ('name = "r"\nkeywords = ["a"]\nregex = "b"', "exactly one of"),
    ('name = "r"', "exactly one of"),
    ('name = "r"\nregex = "b"\nseverity = "urgent"', 'key "severity" must be one of: low, medium, high, critical'),
    ('name = "r"\nkeywords = []', 'key "keywords" must be a non-empty list'),
    ('name = "r"\nregex = "b"\nflags = "i"', 'key "flags" is unknown'),
])
def test_invalid_rules(tmp_path: Path, rule: str, fragment: str) -> None:
    text = HEAD + "\n[[rules]]\n" + rule + "\n"
    message = load_error(tmp_path, text)
    assert 'rule "r"' in message and fragment in message, message
    assert re.match(r".*sources\.toml:\d+: ", message)


def test_rule_error_line(tmp_path: Path) -> None:
    text = HEAD + '\n[[rules]]\nname = "a"\nregex = "x"\n\n[[rules]]\nname = "b"\nregex = "y"\nseverity = "bad"\n'
    assert_error(tmp_path, text, line_of(text, 'severity = "bad"'), 'rule "b": key "severity"')


def test_a_regex_hyperscan_cannot_compile_is_refused_at_its_line(tmp_path: Path) -> None:
    """Before: accepted, then every worker died compiling it and every item failed."""
    text = HEAD + '\n[[rules]]\nname = "ok"\nregex = "x+"\n\n[[rules]]\nname = "broken"\nregex = "(abc"\n'
    assert_error(tmp_path, text, line_of(text, 'regex = "(abc"'),
                 'rule "broken": key "regex" is not a pattern Hyperscan can compile: Missing close parenthesis')


@pytest.mark.parametrize(("value", "shown"), [("0.001", "0.001"), ('"0.5s"', "'0.5s'"), ("0.999", "0.999")])
def test_interval_below_a_second_is_refused(tmp_path: Path, value: str, shown: str) -> None:
    """Before: 0.001 was accepted (4,884 polls in 11 s)."""
    text = HEAD.replace("interval = 10", f"interval = {value}")
    assert_error(tmp_path, text, line_of(text, "interval ="),
                 f'source "inbox": key "interval" must be at least 1 s, not {shown}')


def test_one_second_directory_interval_is_fine_and_quiet(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, HEAD.replace("interval = 10", "interval = 1")), environ={})
    assert config.sources[0].interval == 1 and config.warnings == ()


@pytest.mark.parametrize(("interval", "enabled", "warned"), [
    ('"10s"', True, True), ("29", True, True), ('"30s"', True, False), ('"5m"', True, False),
    ("5", False, False),            # a disabled source polls nothing
])
def test_a_network_source_polled_faster_than_30_s_is_a_warning(
        tmp_path: Path, interval: str, enabled: bool, warned: bool) -> None:
    listing = LISTING.replace('interval = "5m"', f"interval = {interval}") + ("" if enabled else "enabled = false\n")
    text = HEAD + listing
    config = load_config(write(tmp_path, text), environ={})
    assert config.sources[1].interval == parse_duration(interval.strip('"'))
    if not warned:
        assert config.warnings == ()
        return
    (warning,) = config.warnings
    assert warning.startswith(f"{tmp_path / 'sources.toml'}:{line_of(text, 'interval =', 2)}: "
                              'source "some-paste": key "interval" is '), warning
    assert "more often than every 30 s" in warning and "\n" not in warning


def test_max_bytes_is_at_most_one_gib(tmp_path: Path) -> None:
    text = HEAD + "max_bytes = 1073741824\n"
    assert load_config(write(tmp_path, text), environ={}).sources[0].max_bytes == 1 << 30
    text = HEAD + "max_bytes = 1073741825\n"
    assert_error(tmp_path, text, line_of(text, "max_bytes"),
                 'source "inbox": key "max_bytes" must be at most 1073741824 (1 GiB', "not 1073741825")


@pytest.mark.parametrize(("line", "fragment"), [
    ("document_timeout = 0.5", 'key "document_timeout" must be at least 1 s'),
    ('document_timeout = "0s"', 'key "document_timeout" must be a positive number of seconds'),
    ("item_tries = 0", 'key "item_tries" must be a positive integer, not 0'),
])
def test_document_timeout_and_item_tries_bounds(tmp_path: Path, line: str, fragment: str) -> None:
    text = HEAD.replace('state_dir = "./state"', f'state_dir = "./state"\n{line}')
    assert_error(tmp_path, text, 3, f"[watcher]: {fragment}")


def test_document_timeout_and_item_tries_values(tmp_path: Path) -> None:
    text = HEAD.replace('state_dir = "./state"', 'state_dir = "./state"\ndocument_timeout = "1s"\nitem_tries = 1')
    settings = load_config(write(tmp_path, text), environ={}).watcher
    assert (settings.document_timeout, settings.item_tries) == (1.0, 1)
    defaults = load_config(write(tmp_path, HEAD), environ={}).watcher
    assert (defaults.document_timeout, defaults.item_tries) == (60.0, 3)


@pytest.mark.parametrize(("section", "where", "fragment"), [
    ("[scoring]\ncritical_nirs = 0", "critical_nirs", '[scoring]: key "critical_nirs" must be a positive integer'),
    ("[scoring]\ncritical_nir = 3", "critical_nir", '[scoring]: key "critical_nir" is unknown'),
    ("[watcher2]\nx = 1", "[watcher2]", '"watcher2" is unknown'),
    ("[alerts]\n[alerts.x]\ny = 1\n[tor2]", "[tor2]", '"tor2" is unknown'),
])
def test_invalid_top_level_sections(tmp_path: Path, section: str, where: str, fragment: str) -> None:
    text = HEAD + "\n" + section + "\n"
    assert_error(tmp_path, text, line_of(text, where), fragment)


def test_watcher_and_tor_keys_are_checked(tmp_path: Path) -> None:
    text = HEAD.replace('state_dir = "./state"', 'state_dir = "./state"\nconcurency = 3')
    assert_error(tmp_path, text, 3, '[watcher]: key "concurency" is unknown')
    text = HEAD.replace('"127.0.0.1:9050"', '"127.0.0.1"')
    assert_error(tmp_path, text, 5, '[tor]: key "socks" must be "host:port"')


def test_unknown_kind_and_kind_specific_keys(tmp_path: Path) -> None:
    text = HEAD + LISTING.replace('kind = "listing"', 'kind = "pastebin"')
    assert_error(tmp_path, text, line_of(text, "kind = ", 2),
                 'key "kind" must be one of: directory, listing, forum, json, feed')
    text = HEAD.replace('path = "./inbox"', 'path = "./inbox"\ntor = true')
    assert_error(tmp_path, text, line_of(text, "tor = true"), 'source "inbox": key "tor" is unknown')


def test_item_url_template_is_checked(tmp_path: Path) -> None:
    text = HEAD + LISTING.replace("/raw/{id}", "/raw/{key}")
    assert_error(tmp_path, text, line_of(text, "item_url"), "unknown placeholders ['key']")


def test_json_source_keys(tmp_path: Path) -> None:
    text = HEAD + """
    [[sources]]
    name = "gists"
    kind = "json"
    endpoint = "https://api.github.com/gists/public"
    id = "id"
    url = "files..raw_url"
    """
    assert_error(tmp_path, text, line_of(text, "files..raw_url"), 'key "url" must be a dotted field path')


# -- helpers -----------------------------------------------------------------------------------------

def test_find_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    system = tmp_path / "etc" / "sources.toml"
    monkeypatch.setattr(config_module, "SYSTEM_CONFIG", system)
    assert find_config("custom.toml") == Path("custom.toml")
    with pytest.raises(ConfigError, match="no configuration found"):
        find_config(None)
    system.parent.mkdir()
    system.write_text("")
    assert find_config(None) == system
    (tmp_path / "sources.toml").write_text("")
    assert find_config(None) == Path("sources.toml")


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"nope\.toml: cannot read: No such file"):
        load_config(tmp_path / "nope.toml")


@given(st.integers(1, 10**6), st.sampled_from([("", 1), ("s", 1), ("m", 60), ("h", 3600), ("d", 86400)]))
def test_parse_duration(number: int, unit: tuple[str, int]) -> None:
    assert parse_duration(f"{number}{unit[0]}") == number * unit[1]
    assert parse_duration(number) == number


@pytest.mark.parametrize(("since", "hours"), [("24h", 24), ("7d", 168), ("1d12h", 36), ("90m", 1.5)])
def test_findings_since_reads_the_configurations_durations(since: str, hours: float) -> None:
    from datetime import UTC, datetime, timedelta

    from watcher.cli.daemon import parse_since

    moment = parse_since(since)
    assert moment is not None
    assert abs((datetime.now(UTC) - timedelta(hours=hours) - moment).total_seconds()) < 5
    assert parse_since("2026-11-01") == datetime(2026, 11, 1, tzinfo=UTC)


@given(st.from_regex(r"[a-z][a-z_]{0,15}", fullmatch=True))
def test_any_unknown_key_is_reported_on_its_line(key: str) -> None:
    from watcher.options import option_keys

    if key in ("name", "kind", "path") + option_keys(config_module.SourceConfig)[1]:
        return
    text = HEAD.replace("interval = 10", f"interval = 10\n{key} = 1")
    path = Path("/nonexistent/sources.toml")
    expected = rf'^/nonexistent/sources\.toml:12: source "inbox": key "{key}" is unknown'
    with pytest.raises(ConfigError, match=expected):
        config_module.Validator(path, text, {}).config(__import__("tomllib").loads(text))


@pytest.mark.parametrize("kind, keys", [("directory", 'path = "."'),
                                        ("json", 'endpoint = "http://127.0.0.1/api"\nid = "id"\nurl = "raw"')])
def test_expect_is_refused_where_there_is_no_html_page(tmp_path, kind: str, keys: str) -> None:
    path = tmp_path / "sources.toml"
    path.write_text(f'[[sources]]\nname = "s"\nkind = "{kind}"\n{keys}\nexpect = "div.board"\n', encoding="utf-8")
    with pytest.raises(ConfigError, match=r'sources.toml:\d+: source "s": key "expect" applies to the pages of listing, forum, feed and privatebin'):
        load_config(path)


# -- a kind declared by its own module (issue 12): telegram -------------------------------------

TELEGRAM = """
[[sources]]
name = "tg-leaks"
kind = "telegram"
channel = "{channel}"
{extra}
"""


def test_a_telegram_source_loads_with_its_preview_page(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, HEAD + TELEGRAM.format(channel="fuites_sante", extra="depth = 0")), environ={})
    channel = config.sources[1]
    assert (channel.kind, channel.url, channel.options.depth) == ("telegram", "https://t.me/s/fuites_sante", 0)
    mirror = load_config(write(tmp_path, HEAD + TELEGRAM.format(
        channel="x", extra='url = "http://mirrorabcdefghijklmnop.onion/s/x"\ntor = true')), environ={})
    assert mirror.sources[1].url == "http://mirrorabcdefghijklmnop.onion/s/x" and mirror.sources[1].onion


@pytest.mark.parametrize("channel, extra, expected", [
    ("@fuites", "", r':1[4-9]: source "tg-leaks": key "channel" must be a public channel username'),
    ("fuites", "depth = 99", r'key "depth" must be 0 to 50 older pages'),
    ("fuites", "depth = -1", r'key "depth" must be an integer of at least 0'),
    ("fuites", 'url = "http://mirrorabcdefghijklmnop.onion/s/x"', r'key "url" is a .onion URL: set tor = true'),
    ("fuites", "item_links = 'a'", r'key "item_links" is unknown'),
])
def test_a_bad_telegram_source_names_file_line_and_key(tmp_path: Path, channel: str, extra: str, expected: str) -> None:
    with pytest.raises(ConfigError, match=expected):
        load_config(write(tmp_path, HEAD + TELEGRAM.format(channel=channel, extra=extra)), environ={})


def test_a_missing_channel_names_what_a_telegram_source_needs(tmp_path: Path) -> None:
    text = HEAD + '\n[[sources]]\nname = "tg"\nkind = "telegram"\n'
    with pytest.raises(ConfigError, match=r'key "channel" is missing \(a telegram source needs: channel\)'):
        load_config(write(tmp_path, text), environ={})


# -- include: ready-made definitions turned on with one line (issue 12) ----------------------------

def test_included_files_add_their_sources_and_their_errors_name_them(tmp_path: Path) -> None:
    folder = tmp_path / "sources.d"
    folder.mkdir()
    (folder / "a.toml").write_text('[[sources]]\nname = "feed-a"\nkind = "feed"\nurl = "https://a.example/rss"\n')
    (folder / "b.toml").write_text('[[sources]]\nname = "feed-b"\nkind = "feed"\nurl = "https://b.example/rss"\n')
    config = load_config(write(tmp_path, 'include = ["sources.d/*.toml"]\n' + HEAD), environ={})
    assert [s.name for s in config.sources] == ["inbox", "feed-a", "feed-b"]
    assert config.sources[2].origin == (folder / "b.toml", 0)
    (folder / "c.toml").write_text('\n[[sources]]\nname = "inbox"\nkind = "feed"\nurl = "https://c.example/rss"\n')
    with pytest.raises(ConfigError, match=r'sources\.d/c\.toml:3: source "inbox": key "name" duplicates'):
        load_config(write(tmp_path, 'include = ["sources.d/*.toml"]\n' + HEAD), environ={})
    (folder / "c.toml").write_text('[[sources]]\nname = "c"\nkind = "feed"\nurl = "ftp://c"\n')
    with pytest.raises(ConfigError, match=r'sources\.d/c\.toml:4: source "c": key "url" must be an http'):
        load_config(write(tmp_path, 'include = ["sources.d/*.toml"]\n' + HEAD), environ={})
    (folder / "c.toml").write_text('[tor]\nsocks = "127.0.0.1:1"\n')
    with pytest.raises(ConfigError, match=r'c\.toml:1: top level: "tor" is not allowed in an included file'):
        load_config(write(tmp_path, 'include = ["sources.d/*.toml"]\n' + HEAD), environ={})


def test_an_include_that_matches_nothing_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"'nowhere/\*\.toml' matches no file"):
        load_config(write(tmp_path, 'include = ["nowhere/*.toml"]\n' + HEAD), environ={})
