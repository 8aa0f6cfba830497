"""Victim feeds (issue 12): a `json` source whose records carry the text (`fields`), and
`mention_severity`, what an insurer named on that source means. A loopback replica of the
ransomware.live v2 `recentvictims` shape, polled by the daemon configured in TOML."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web

from watcher.config import ConfigError, load_config
from watcher.daemon import Daemon
from watcher.store import StateDB

from tests.support.sources import sources_toml
from tests.support.fakesites import FakeSite, serve


class VictimApi(FakeSite):
    """`/v2/recentvictims`: a bare list of victims; `/page/<n>` what a record's url names."""

    def __init__(self) -> None:
        self.victims: list[dict[str, object]] = []
        super().__init__()

    def routes(self, router: web.UrlDispatcher) -> None:
        router.add_get("/v2/recentvictims", self.recent)
        router.add_get("/page/{n}", self.page)

    async def recent(self, request: web.Request) -> web.Response:
        return web.json_response(self.victims)

    async def page(self, request: web.Request) -> web.Response:
        return web.Response(text=f"victim page {request.match_info['n']}", content_type="text/plain")

    def victim(self, n: int, name: str, description: str, **extra: object) -> None:
        self.victims.insert(0, {"victim": name, "group": "lockbit5", "country": "FR", "description": description,
                                "domain": f"victim{n}.example", "discovered": f"2026-12-0{n} 10:00:00",
                                "url": f"{self.base_url}/page/{n}", "id": f"v{n}", **extra})


@pytest.fixture
async def api() -> AsyncIterator[VictimApi]:
    async with serve(VictimApi()) as site:
        yield site


def write(tmp_path: Path, api: VictimApi, extra: str) -> Path:
    return sources_toml(tmp_path, f'[[sources]]\nname = "rlive"\nkind = "json"\n'
                                  f'endpoint = "{api.url("/v2/recentvictims")}"\nid = "id"\ntitle = "victim"\n'
                                  f'date = "discovered"\nfields = ["victim", "description", "domain", "group"]\n'
                                  f'allow_private = true\n{extra}')


async def poll(config: Path) -> list[dict[str, object]]:
    assert await Daemon(load_config(config), once=True, workers=1).run() == 0
    with StateDB(config.parent / "state" / "watcher.db") as state:
        return state.findings()


async def test_a_mutuelle_named_on_a_victim_feed_is_high(tmp_path: Path, api: VictimApi) -> None:
    api.victim(1, "Harmonie Mutuelle", "Leaked 400 GB of member data (adherents, garanties)")
    api.victim(2, "Boulangerie Dupont", "Bakery in Lyon")
    findings = await poll(write(tmp_path, api, 'mention_severity = "high"'))
    assert [(f["severity"], f["title"]) for f in findings] == [("high", "Harmonie Mutuelle")]
    assert "named on rlive (mention_severity high)" in findings[0]["reasons"]
    assert not any("/page/" in p for p in api.paths())            # fields only: the url is not followed


async def test_without_mention_severity_a_name_is_low(tmp_path: Path, api: VictimApi) -> None:
    api.victim(1, "Harmonie Mutuelle", "Leaked member data")
    findings = await poll(write(tmp_path, api, ""))
    assert [f["severity"] for f in findings] == ["low"]


async def test_fields_and_url_give_two_documents_and_an_edited_record_is_new(tmp_path: Path, api: VictimApi) -> None:
    api.victim(1, "Viamedis", "first claim")
    config = write(tmp_path, api, 'url = "url"\nmention_severity = "critical"')
    first = await poll(config)
    assert {f["title"] for f in first} == {"Viamedis"} and "/page/1" in api.paths()
    api.victims[0]["description"] = "data published: 12 GB"
    again = await poll(config)
    assert len(again) == 2 and {f["severity"] for f in again} == {"critical"}


@pytest.mark.parametrize("extra, expected", [
    ('mention_severity = "urgent"', r'key "mention_severity" must be one of: low, medium, high, critical'),
    ("fields = []", r'key "fields" must be a list of dotted field paths'),
    ('fields = ["a..b"]', r'key "fields" must be a dotted field path'),
])
def test_bad_values_name_the_key(tmp_path: Path, extra: str, expected: str) -> None:
    site = VictimApi()
    site.base_url = "http://127.0.0.1:9"
    path = write(tmp_path, site, "")
    text = path.read_text().replace('fields = ["victim", "description", "domain", "group"]\n', "") + extra + "\n"
    path.write_text(text)
    with pytest.raises(ConfigError, match=expected):
        load_config(path)


def test_a_json_source_needs_url_or_fields(tmp_path: Path) -> None:
    path = tmp_path / "sources.toml"
    path.write_text('[[sources]]\nname = "x"\nkind = "json"\nendpoint = "https://api.example.org/v"\nid = "id"\n')
    with pytest.raises(ConfigError, match=r"url or fields: a json source needs one"):
        load_config(path)


async def test_the_records_date_is_kept_and_shown_in_the_alert(tmp_path: Path, api: VictimApi) -> None:
    """The post's own date (the record's `date` field) is stored with the finding's item and
    shown in the alert: "first seen" alone would say when we looked, not when it was posted."""
    from watcher.alerts.message import render
    from watcher.alerts.records import list_alerts

    api.victim(3, "Harmonie Mutuelle", "Leaked member data")
    findings = await poll(write(tmp_path, api, 'mention_severity = "high"'))
    assert findings[0]["posted_at"] == "2026-12-03T10:00:00Z"            # read as UTC (watcher.dates)
    with StateDB(tmp_path / "state" / "watcher.db") as state:
        [alert] = list_alerts(state)
    assert "Posted: 2026-12-03T10:00:00Z" in render(alert).body


async def test_watcher_findings_shows_when_it_was_posted(tmp_path: Path, api: VictimApi,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    from watcher.cli import main

    api.victim(4, "Harmonie Mutuelle", "Leaked member data")
    config = write(tmp_path, api, 'mention_severity = "high"')
    await poll(config)
    assert main(["findings", "--config", str(config)]) == 0
    assert "posted 2026-12-04T10:00:00Z" in capsys.readouterr().out
