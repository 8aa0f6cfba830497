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


def test_feed_entries_carry_their_date_and_author() -> None:
    from watcher.sources.feedparse import parse_feed

    rss = b"""<?xml version="1.0"?><rss version="2.0" xmlns:dc="http://purl.org/dc/elements/1.1/"><channel>
    <item><title>Fuite chez une mutuelle</title><link>https://news.example/a</link>
    <pubDate>Mon, 30 Nov 2026 21:04:00 +0000</pubDate><dc:creator>Damien</dc:creator></item>
    <item><title>No date</title><link>https://news.example/b</link></item></channel></rss>"""
    atom = b"""<?xml version="1.0"?><feed xmlns="http://www.w3.org/2005/Atom"><title>x</title>
    <entry><title>Victim</title><id>urn:1</id><updated>2026-12-01T08:00:00Z</updated>
    <author><name>lockbit5</name></author></entry></feed>"""
    assert [(e.published, e.author) for e in parse_feed("https://news.example/", rss).entries] == [
        ("Mon, 30 Nov 2026 21:04:00 +0000", "Damien"), (None, None)]
    assert [(e.published, e.author) for e in parse_feed("https://x.example/", atom).entries] == [
        ("2026-12-01T08:00:00Z", "lockbit5")]
