"""The daemon's state: sources, items, findings and fingerprints in one SQLite file.

One process writes the database (the daemon), through one connection owned by one thread.
`StateDB` is the synchronous core; `Store` is the daemon's asyncio door, which runs any
function of a `StateDB` (`await store.call(StateDB.record_items, records, alert)`) on a
dedicated single-worker `ThreadPoolExecutor`, whose thread also opens the connection (an sqlite3
connection is bound to the thread that created it). Calls are thus serialized in submission
order and never block the event loop. `Store.is_seen`, asked for every listed item, reads on a
read-only connection of the loop's own thread instead.

Nothing here stores a cleartext identifier: a `Report` carries keyed fingerprints (HMAC hex)
and masked samples only, and every text the store keeps (item ids, versions, URLs, titles,
errors, notices, samples, reasons) goes through `watcher.redact` first. The daemon passes item
ids and versions through `redact.keyed_id`, so two ids differing only by an identifier stay
two items; a URL holding an identifier is kept masked and gets no conditional-GET validators
(its page is fetched in full, its masked form would not match). The store also refuses a
fingerprint that is not a hex digest, and deletes with `secure_delete` (freed pages zeroed).

The package, by role:

    schema.py      tables and views, one migration function each (MIGRATIONS, SCHEMA_VERSION),
                   and applying them; the schema is described there
    connection.py  opening: the writer (`StateDB(path)`: file 0600, pragmas, WAL, migration)
                   and the one read-only way (`StateDB.read_only(path)`, `connect_read_only`)
    sources.py     sources, poll outcomes, HTTP validators      (the daemon's poll loop)
    items.py       recording items, failed items, `is_seen`     (the daemon)
    findings.py    findings and fingerprints                    (recording, `watcher findings`)
    texts.py       how stored texts are shaped: redacted, one line, JSON, post dates
    state.py       `StateDB` (the query classes together) and `Store`

Alerting (watcher.alerts) keeps its tables in this database (created by the schema, so
migrations stay one ordered sequence) and owns their queries (`alerts/records.py`,
`incidents.py`, `health.py`). It works through two doors: an `AlertHook` given to
`record_item(s)` runs inside the recording transaction (so a finding and its alert commit
together or not at all), and `Store.call` runs its own functions on the store thread.

sqlite-utils is not used: the store talks to `sqlite3` directly. It used four things of it
(`query` as dicts, `table_names`, `enable_wal`, `execute`'s commit of a statement outside a
transaction), each one line of `sqlite3` (`dict_rows`, `table_names`, `PRAGMA journal_mode`,
`isolation_level=None`), and worked around it twice: `insert_all(ignore=True)` fails on WITHOUT
ROWID tables (so fingerprints were inserted with `executemany` anyway), and its `execute()`
commits on its own, which `transaction()` had to step around. What the code relied on was
sqlite-utils 4.2 behaviour while `pyproject.toml` allowed 3.36; dropping the dependency
settles that, and spares `watcher status` and the CLI importing it. The views stay readable
with datasette or the `sqlite-utils` command, installed on their own.
"""

from .connection import Connection, connect_read_only, dict_rows, table_names
from .findings import FindingQueries
from .items import AlertHook, FindingEvent, ItemFailure, ItemQueries, ItemRecord, ItemResult, is_seen_query
from .schema import (
    MIGRATIONS,
    SCHEMA_VERSION,
    Migration,
    NotAStateDatabaseError,
    SchemaTooNewError,
    SchemaTooOldError,
)
from .sources import PollHealth, SourceQueries, Validators
from .state import StateDB, Store, StoreClosedError

__all__ = [
    "MIGRATIONS",
    "SCHEMA_VERSION",
    "AlertHook",
    "Connection",
    "FindingEvent",
    "FindingQueries",
    "ItemFailure",
    "ItemQueries",
    "ItemRecord",
    "ItemResult",
    "Migration",
    "NotAStateDatabaseError",
    "PollHealth",
    "SchemaTooNewError",
    "SchemaTooOldError",
    "SourceQueries",
    "StateDB",
    "Store",
    "StoreClosedError",
    "Validators",
    "connect_read_only",
    "dict_rows",
    "is_seen_query",
    "table_names",
]
