"""Set-based statements over many rows: one statement per table, whatever the number of rows.

Every writer on the ingestion path (`memberships.apply_changes`, and so the Firehose endpoint,
the import and the admin) sends its rows through `rows_cte`, which names them `v`:

- on PostgreSQL, `WITH v (...) AS (SELECT (r->>0)::bigint, ... FROM json_array_elements(%s::json) r)`:
  the rows travel as one JSON parameter, so the statement's text is the same for 1 or 5,000 rows
  (one round trip, planned cheaply). JSON rather than one array per column (`unnest`): psycopg
  dumps arrays element by element in Python (21.6 ms for 1,000 rows of 5 text columns on this
  machine, query included) where `json.dumps` and `json_array_elements` take 4.3 ms;
- elsewhere (SQLite), the portable `WITH v (...) AS (VALUES (...), (...))`, in chunks that stay
  under SQLite's limit of bound parameters.

Django's `bulk_create` / `bulk_update` were most of a Firehose message's time (model objects,
per-field preparation, a CASE WHEN per row and field): see the README's performance notes.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from datetime import datetime
from typing import Any

from django.db import connections, models, router
from django.db.backends.base.base import BaseDatabaseWrapper

from connections.models.arrays import int_array_literal

# (column name in `v`, the PostgreSQL type its JSON field is cast to)
Columns = Sequence[tuple[str, str]]
# Rows per VALUES statement off PostgreSQL: SQLite accepts 32,766 bound parameters.
VALUES_CHUNK = 2000


def database(model: type[models.Model]) -> BaseDatabaseWrapper:
    return connections[router.db_for_write(model)]


def is_postgresql(db: BaseDatabaseWrapper) -> bool:
    return db.vendor == "postgresql"


def rows_cte(db: BaseDatabaseWrapper, columns: Columns, rows: Sequence[Sequence[Any]]) -> Iterator[tuple[str, list]]:
    """`WITH v (columns) AS (...)` clauses with their parameters, covering `rows` (at least one).

    One clause on PostgreSQL; as many as needed to stay under SQLite's parameter limit elsewhere.
    """
    names = ", ".join(name for name, _ in columns)
    if is_postgresql(db):
        fields = ", ".join(f"(r->>{i})::{kind}" for i, (_, kind) in enumerate(columns))
        yield (
            f"WITH v ({names}) AS (SELECT {fields} FROM json_array_elements(%s::json) r)",  # noqa: S608
            [as_json(rows)],
        )
        return
    row = "(" + ", ".join(["%s"] * len(columns)) + ")"
    chunk = max(1, min(VALUES_CHUNK, 30_000 // len(columns)))
    for start in range(0, len(rows), chunk):
        part = rows[start : start + chunk]
        params = [value for r in part for value in r]
        yield f"WITH v ({names}) AS (VALUES {', '.join([row] * len(part))})", params


def run(
    db: BaseDatabaseWrapper, columns: Columns, rows: Sequence[Sequence[Any]], body: str, params: Sequence[Any] = ()
) -> list[tuple]:
    """Run `<rows as v> body` (one statement per chunk); the rows it returns, if any, and the row count.

    `body` reads `v` and may hold `%s` placeholders for `params`, which come after the rows'.
    """
    if not rows:
        return []
    returned: list[tuple] = []
    with db.cursor() as cursor:
        for cte, values in rows_cte(db, columns, rows):
            cursor.execute(f"{cte} {body}", [*values, *params])
            if cursor.description is not None:
                returned.extend(cursor.fetchall())
    return returned


def as_json(values: Sequence[Any]) -> str:
    """Rows (or keys) as one JSON text: json.dumps runs in C, psycopg's array dumper in Python."""
    return json.dumps(values, ensure_ascii=False, separators=(",", ":"))


def in_values(db: BaseDatabaseWrapper, column: str, values: Sequence[Any]) -> tuple[str, list]:
    """`column IN (...)` for a list of values: `= ANY(%s)` (one array parameter) on PostgreSQL,
    a list of plain ints as one bigint[] literal."""
    if is_postgresql(db):
        if values and (array := int_array_literal(values)) is not None:
            return f"{column} = ANY(%s::bigint[])", [array]
        return f"{column} = ANY(%s)", [list(values)]
    if not values:
        return "1 = 0", []
    return f"{column} IN ({', '.join(['%s'] * len(values))})", list(values)


def timestamp(db: BaseDatabaseWrapper, value: datetime) -> Any:
    """A datetime as the backend stores it (SQLite keeps text; PostgreSQL takes the datetime)."""
    return db.ops.adapt_datetimefield_value(value)
