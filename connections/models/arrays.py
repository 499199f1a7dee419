"""A list of plain ints as one PostgreSQL array literal, `'{1,2,3}'`, for a parameter cast to an array.

psycopg's client-side binding (Django's default) quotes a list parameter element by element in
Python: about a millisecond for 1,000 ids, and a streamed page binds several such lists (issue 29).
The literal is built by `str.join` and quoted once, as a string; the statement casts it
(`%s::bigint[]`), so it reads the same with server-side binding.
"""

from __future__ import annotations

from collections.abc import Collection


def int_array_literal(values: Collection[object]) -> str | None:
    """`'{1,2,3}'` for a list of plain ints (not bools, not strings); None for anything else."""
    if not all(type(value) is int for value in values):
        return None
    return "{" + ",".join(map(str, values)) + "}"
