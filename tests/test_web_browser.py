"""The web console in a real browser: Debian's chromium driven by playwright (never
`playwright install`: `make test-tools` and `.ci/run` install chromium with apt).

An analyst signs in, filters incidents, opens one, acknowledges it with a note and sees the
note in its timeline, retries a failed alert; a hostile item's title, author and URL (script
payloads) show as text while no dialog opens, nothing reaches the console and no script
element exists; the pages read without JavaScript and hold no NIR in clear. Screenshots of the
dashboard and an incident page go to .artifacts/web/ (gitignored) for review.
"""

from __future__ import annotations

import random
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import async_playwright
from tests.support.nirs import nir_forms
from tests.support.web import HOSTILE_AUTHOR, HOSTILE_TITLE, PASSWORD, USER, RunningConsole, running_console

from watcher.alerts.records import alert_by_ref, triage_log
from watcher.analyze import Analyzer

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parents[1] / ".artifacts" / "web"


@pytest.fixture
async def console(tmp_path: Path, analyzer: Analyzer, rng: random.Random) -> AsyncIterator[RunningConsole]:
    async with running_console(tmp_path, analyzer, rng) as running:
        yield running


@pytest.fixture
async def browser() -> AsyncIterator[Any]:
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: `make test-tools` installs Debian's chromium (apt-get install chromium)")
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
        try:
            yield browser
        finally:
            await browser.close()


class Watched:
    """A page whose dialogs, console messages and script errors are all kept: none may come."""

    def __init__(self, page: Any) -> None:
        self.page = page
        self.events: list[str] = []
        page.on("dialog", self._dialog)
        page.on("console", lambda message: self.events.append(f"console: {message.text}"))
        page.on("pageerror", lambda error: self.events.append(f"pageerror: {error}"))

    async def _dialog(self, dialog: Any) -> None:
        self.events.append(f"dialog: {dialog.message}")
        await dialog.dismiss()


async def sign_in(page: Any, console: RunningConsole) -> None:
    await page.goto(f"{console.url}/")
    assert page.url == f"{console.url}/login"
    await page.fill("input[name=user]", USER)
    await page.fill("input[name=password]", PASSWORD)
    async with page.expect_navigation():
        await page.click("form[action='/login'] button[type=submit]")
    assert page.url == f"{console.url}/"


async def test_an_analyst_filters_acks_with_a_note_and_retries(console: RunningConsole, browser: Any) -> None:
    page = await browser.new_page(viewport={"width": 1280, "height": 900})
    watched = Watched(page)
    await sign_in(page, console)
    assert await page.locator("h1").inner_text() == "Dashboard"
    assert await page.locator("svg[role=img]").count() == 3
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=str(ARTIFACTS / "dashboard.png"), full_page=True)

    await page.click("nav a[href='/incidents']")
    severity = console.filled.severities[console.filled.incidents[0]]
    await page.select_option("select[name=severity]", severity)
    async with page.expect_navigation():
        await page.click("form.filters button[type=submit]")
    assert f"severity={severity}" in page.url
    links = await page.locator("table.incidents td:first-child a").all_inner_texts()
    assert {int(n) for n in links} == {i for i, s in console.filled.severities.items() if s == severity}

    incident = int(links[0])
    async with page.expect_navigation():
        await page.click(f"table.incidents a[href='/incidents/{incident}']")
    assert await page.locator("h1").inner_text() == f"Incident #{incident} {severity.upper()} open"
    note = "Checked with the insurer's DPO: genuine extract"
    await page.fill("textarea[name=note]", note)
    async with page.expect_navigation():
        await page.click("button[value=ack]")
    timeline = page.locator("#timeline .triage-entry")
    assert await timeline.count() == 1
    entry = await timeline.inner_text()
    assert "ack by analyst" in entry and note in entry
    assert await page.locator("p.done").inner_text() == "Acknowledged."
    await page.screenshot(path=str(ARTIFACTS / "incident.png"), full_page=True)
    with console.state() as state:
        assert [(e["action"], e["who"], e["note"]) for e in triage_log(state, incident)] == [("ack", USER, note)]

    refused = await page.request.post(f"{console.url}/incidents/{incident}/triage", form={"action": "close"})
    assert refused.status == 403                          # the browser's own cookie, no CSRF token

    await page.goto(f"{console.url}/alerts?status=failed")
    alert = console.filled.failed_alert
    async with page.expect_navigation():
        await page.click(f"form[action='/alerts/{alert}/retry'] button")
    assert "status=pending" in page.url
    assert "Re-queued" in await page.locator("p.done").inner_text()
    with console.state() as state:
        assert alert_by_ref(state, str(alert)).state == "pending"   # type: ignore[union-attr]
    assert watched.events == []


async def test_hostile_titles_authors_and_urls_are_text_and_run_nothing(console: RunningConsole,
                                                                         browser: Any) -> None:
    page = await browser.new_page()
    watched = Watched(page)
    await sign_in(page, console)
    hostile = console.filled.hostile_incident
    for path in (f"/incidents/{hostile}", "/incidents", "/alerts?status=all", "/"):
        response = await page.goto(f"{console.url}{path}")
        assert response.headers["content-security-policy"].startswith("default-src 'none'")
        assert await page.locator("script").count() == 0, path
        assert await page.locator("img").count() == 0, path
        hrefs = await page.eval_on_selector_all("[href], [src], [action]", "els => els.map(e => "
                                                "e.getAttribute('href') || e.getAttribute('src') || "
                                                "e.getAttribute('action'))")
        assert all(h.startswith("/") or h == "data:," for h in hrefs), (path, hrefs)
    await page.goto(f"{console.url}/incidents/{hostile}")
    text = await page.locator("#timeline").inner_text()
    assert HOSTILE_TITLE in text and HOSTILE_AUTHOR in text and 'javascript:alert("url")//' in text
    await page.wait_for_timeout(300)                 # an onerror would have fired by now
    assert watched.events == []


async def test_pages_read_without_javascript_and_hold_no_nir_in_clear(console: RunningConsole, browser: Any) -> None:
    context = await browser.new_context(java_script_enabled=False)
    page = await context.new_page()
    await sign_in(page, console)
    html = []
    for path in ("/", "/incidents", "/sources", "/alerts?status=all",
                 *(f"/incidents/{i}" for i in console.filled.incidents)):
        await page.goto(f"{console.url}{path}")
        assert await page.locator("h1").count() == 1 and await page.locator("main").inner_text(), path
        html.append(await page.content())
    everything = "\n".join(html)
    assert "•" in everything
    for nir in console.filled.nirs:
        assert not any(form in everything for form in nir_forms(nir).values()), "a NIR in clear in a page"
        assert not re.search(re.escape(nir[:13]), everything)
    await context.close()
