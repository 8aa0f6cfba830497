"""A post's own date and author (issue 12, part 8): the forum's `post_date` and `author`
selectors, read inside each post."""

from __future__ import annotations

from watcher.sources.threads import parse_thread_page

PAGE = b"""<html><body>
<div class="post" id="p1"><span class="author">vendor42</span><time datetime="2026-11-30T21:04:00Z">30 nov.</time>
<p>sample attached</p></div>
<div class="post" id="p2"><span class="author"> buyer </span><span class="date">le 01/12/2026 a 09:15</span>
<p>price?</p></div>
<div class="post" id="p3"><p>no metadata at all</p></div>
</body></html>"""


def test_date_and_author_are_read_inside_each_post() -> None:
    page = parse_thread_page("div.post", None, "http://forum.example/t/1", PAGE,
                             date_selector="time, span.date", author_selector="span.author")
    assert [(p.post_id, p.posted_at, p.author) for p in page.posts] == [
        ("p1", "2026-11-30T21:04:00Z", "vendor42"),          # the datetime attribute wins over the text
        ("p2", "le 01/12/2026 a 09:15", "buyer"),
        ("p3", None, None),
    ]


def test_without_selectors_there_is_no_metadata() -> None:
    page = parse_thread_page("div.post", None, "http://forum.example/t/1", PAGE)
    assert {(p.posted_at, p.author) for p in page.posts} == {(None, None)}
