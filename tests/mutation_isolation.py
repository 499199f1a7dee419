"""pytest plugin for `make mutation` only (loaded with `-p tests.mutation_isolation`).

mutmut imports the test settings once and then forks a process per mutant, so every fork
would inherit the same SQLite test database file name and two forks running at once would
create, migrate and delete each other's database. Each fork gets its own file instead.
"""

import os

import pytest


@pytest.hookimpl(tryfirst=True)
def pytest_sessionstart(session):
    from django.conf import settings
    from django.db import connections

    database = settings.DATABASES["default"]
    if database["ENGINE"] != "django.db.backends.sqlite3":
        return
    name = str(settings.VAR_DIR / f"test-mutation-{os.getpid()}.sqlite3")
    # The connection handler holds its own copy of the settings once it has been used.
    for settings_dict in {id(d): d for d in (database, connections["default"].settings_dict)}.values():
        settings_dict.setdefault("TEST", {})["NAME"] = name
