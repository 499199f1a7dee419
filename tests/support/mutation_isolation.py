"""pytest plugin for `make mutation` only (loaded with `-p tests.support.mutation_isolation`).

mutmut runs the selected tests once in its own process, then forks a process per mutant and
runs pytest again in it. What the first run left behind does not survive a fork:

- the SQLite test database file is named once, when the settings are imported, so two forks
  running at once would create, migrate and delete each other's database: each gets its own;
- the v1 send pool's threads exist only in the parent, so a fork that sends on v1 would wait
  for ever on a pool without threads; the HTTP sessions and the rate limiter kept for the
  process likewise point at the previous run's stand-in and locks. They are dropped, and the
  product makes new ones on first use, as in a fresh process.
"""

import os
import threading

import pytest


@pytest.hookimpl(tryfirst=True)
def pytest_sessionstart(session):
    from django.conf import settings
    from django.db import connections

    from connections.customerio import http, ratelimit
    from connections.services.forwarding import transports

    transports._v1_pool = None
    transports._v1_pool_lock = threading.Lock()
    http._thread_local = threading.local()
    ratelimit._limiter_for.cache_clear()

    database = settings.DATABASES["default"]
    if database["ENGINE"] != "django.db.backends.sqlite3":
        return
    name = str(settings.VAR_DIR / f"test-mutation-{os.getpid()}.sqlite3")
    # The connection handler holds its own copy of the settings once it has been used.
    for settings_dict in {id(d): d for d in (database, connections["default"].settings_dict)}.values():
        settings_dict.setdefault("TEST", {})["NAME"] = name
