"""The analyst's web console (issue 17): incidents, sources and alerts in a browser, and triage.

Served by the daemon when the configuration has a `[web]` table, or alone by `watcher web`
(on the same state database, read-write for triage). Everything it shows comes from the state
database, which holds masked identifiers only; whatever an attacker chose (titles, authors,
URLs) is rendered as escaped text by jinja2's autoescaping, under a Content-Security-Policy
that allows no script at all.

- `settings`: the `[web]` table (`WebSettings`), read by `watcher.config.Validator`.
- `auth`: users (scrypt hashes), server-side sessions, CSRF tokens, the login rate limit.
- `app`: the aiohttp application (security headers, session middleware) and `serve`.
- `routes`: the pages and the triage and retry actions.
- `views`, `charts`: the read model (queries) and its SVG charts.

Importing this package imports neither aiohttp nor jinja2: the configuration reads
`watcher.web.settings` on every command.
"""
