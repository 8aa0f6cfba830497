"""Shared fixtures: one compiled `Scanner` / `Analyzer` per session, `found`, `rng`; and the
fixture modules of tests/support (`pytest_plugins`), so no test imports a fixture.

Compiling the Hyperscan database takes seconds: never build a `Scanner` per test. Helpers live
in tests/support (`from tests.support.nirs import random_nir`), never in a test module.
"""

from __future__ import annotations

import os
import random
import tempfile

import pytest

# Compiled pattern databases go to a cache of this test run (and of the processes it starts),
# never to the user's ~/.cache.
os.environ.setdefault("WATCHER_CACHE_DIR", tempfile.mkdtemp(prefix="watcher-test-cache-"))

from watcher.analyze import Analyzer
from watcher.detect import Scanner

from tests.support.nirs import values_of

pytest_plugins = [
    "tests.support.sources",       # paste_site, foreign_site, forum_site, feed_site, api_site, socks_proxy
    "tests.support.receivers",     # json_receiver, smtp_receiver
    "tests.support.tornet",        # tor_authorities, tor_network
    "tests.support.daemon",        # start_daemon
    "tests.support.state",         # seeded, site
]


@pytest.fixture(scope="session")
def scanner() -> Scanner:
    return Scanner()


@pytest.fixture(scope="session")
def analyzer(scanner: Scanner) -> Analyzer:
    return Analyzer(scanner)


@pytest.fixture(scope="session")
def found(analyzer: Analyzer):
    """`found(text)` -> {detector: set of distinct values} with the session analyzer."""
    return lambda text: values_of(analyzer, text)


@pytest.fixture
def rng() -> random.Random:
    return random.Random(20240207)
