"""Pages that stand in for the content: login walls and anti-bot challenges.

A site that logged the watcher out, or that puts a challenge in front of it, still answers
200 with an HTML page; a source that only counted links would poll "successfully" and see
nothing. `wall_reason` says what such a page looks like, for the source's warning.

The title is always looked at (a content page is not titled "Login" or "Just a moment...").
The other markers are looked at only on a page where no link was found, since a content page
may carry them too (a login box in a sidebar, a captcha on a comment form): a password field, a
form posting to a login URL, Cloudflare's challenge (cf-chl, "Checking your browser"),
DDoS-Guard, a captcha. Each is an XPath or a case-insensitive search of literals: linear.
"""

from __future__ import annotations

import re

from lxml import etree

from watcher.sources.markup import html_root

_TITLE = etree.XPath("string((//title)[1])")
_LOGIN_TITLE = re.compile(r"\b(?:log[ -]?in|sign[ -]?in|connexion|se connecter|identification|"
                          r"authentification|authentication)\b", re.IGNORECASE)
_CHALLENGE_TITLE = re.compile(r"just a moment|attention required|checking your browser|ddos-guard|"
                              r"captcha|security check", re.IGNORECASE)
_PASSWORD_FIELD = etree.XPath("boolean(//input[translate(@type, 'PASWORD', 'pasword') = 'password'])")
_LOGIN_FORM = etree.XPath(r"boolean(//form[re:test(@action, '(log|sign)[-_ ]?(in|on)|connexion|auth', 'i')])",
                          namespaces={"re": "http://exslt.org/regular-expressions"})
# Challenge markers: (pattern on the page's bytes, what it is).
_CHALLENGE_MARKERS = (
    (re.compile(rb"cf[-_]chl|checking your browser", re.IGNORECASE), "Cloudflare's challenge"),
    (re.compile(rb"ddos-guard", re.IGNORECASE), "DDoS-Guard"),
    (re.compile(rb"captcha|cf-turnstile", re.IGNORECASE), "a captcha"),
)


def wall_reason(root: etree._Element | None, body: bytes, found_links: bool) -> str | None:
    """'it looks like a login page (a password field, ...)' when the page looks like a login or
    challenge page, else None. `root` is the page's lxml tree (None: lxml failed on it)."""
    login: list[str] = []
    challenge: list[str] = []
    title = str(_TITLE(root)) if root is not None else ""
    if _CHALLENGE_TITLE.search(title):
        challenge.append("a challenge title")
    elif _LOGIN_TITLE.search(title):
        login.append("a login title")
    if not found_links:
        if root is not None and _PASSWORD_FIELD(root):
            login.append("a password field")
        if root is not None and _LOGIN_FORM(root):
            login.append("a form posting to a login URL")
        for pattern, what in _CHALLENGE_MARKERS:
            if pattern.search(body):
                challenge.append(what)
    if challenge:
        return f"it looks like a challenge page ({', '.join(challenge + login)})"
    if login:
        return f"it looks like a login page ({', '.join(login)})"
    return None


def page_wall(body: bytes) -> str | None:
    """`wall_reason` of a page that should not be HTML at all (a feed, an API answer)."""
    return wall_reason(html_root(body), body, found_links=False)
