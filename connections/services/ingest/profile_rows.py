"""Step 1 of `memberships.apply_changes`: the profiles a batch of changes names, found or created.

Set-based, with plain tuples (no model objects): one SELECT for the profiles already known (by
mpid or customer ID), one `INSERT ... ON CONFLICT DO NOTHING RETURNING` for the new ones and
one `UPDATE ... FROM v` for those whose identity changed. A profile a concurrent message
created first (its insert skipped by ON CONFLICT) is read back and gets this message's values.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from django.db.backends.base.base import BaseDatabaseWrapper

from connections.models import Profile
from connections.services.outbox import bulk

IDENTITY_FIELDS = ("email", "first_name", "last_name")
COLUMNS = ("customer_id", "mpid", *IDENTITY_FIELDS)
Key = tuple[str, str]


@dataclass(frozen=True)
class ProfileInput:
    """Who a change is about. `None` means "not given": the stored value is kept."""

    customer_id: str = ""
    mpid: str | None = None
    email: str | None = None
    first_name: str | None = None
    last_name: str | None = None


@dataclass(slots=True)
class ProfileRow:
    """A profile as this batch will leave it; `pk` is None until it is inserted."""

    pk: int | None
    customer_id: str
    mpid: str | None
    email: str = ""
    first_name: str = ""
    last_name: str = ""
    dirty: bool = False  # a stored profile whose values this batch changes

    def values(self) -> tuple[str, str | None, str, str, str]:
        return (self.customer_id, self.mpid, self.email, self.first_name, self.last_name)


@dataclass
class Resolved:
    pks: dict[Key, int]  # each input's key -> the profile's primary key
    identity_changed: set[int]  # stored profiles whose values changed (their forwards are queued)
    created: int
    updated: int


def key(p: ProfileInput) -> Key:
    return ("mpid", p.mpid) if p.mpid else ("customer_id", p.customer_id)


def resolve(inputs: Sequence[ProfileInput], now: datetime) -> Resolved:
    """Find or create the profiles of `inputs` and write their identity fields."""
    db = bulk.database(Profile)
    stored = _fetch(db, {p.mpid for p in inputs if p.mpid}, {p.customer_id for p in inputs if p.customer_id})
    by_mpid = {row.mpid: row for row in stored if row.mpid}
    by_cid = {row.customer_id: row for row in stored if row.customer_id}
    resolved: dict[Key, ProfileRow] = {}
    new: dict[Key, ProfileRow] = {}
    for p in inputs:
        k = key(p)
        row = resolved.get(k)
        if row is None:
            # By mpid first: mParticle's id of the person outlives a changed customer ID.
            row = (by_mpid.get(p.mpid) if p.mpid else None) or (by_cid.get(p.customer_id) if p.customer_id else None)
            if row is None:
                row = new.get(k) or ProfileRow(None, p.customer_id, p.mpid or None)
                new[k] = row
                if p.customer_id:
                    by_cid[p.customer_id] = row
            resolved[k] = row
        changed = False
        # A customer ID another profile holds stays with that profile (it is unique).
        if p.customer_id and row.customer_id != p.customer_id and p.customer_id not in by_cid:
            row.customer_id = p.customer_id
            by_cid[p.customer_id] = row
            changed = True
        if p.mpid and not row.mpid:
            row.mpid = p.mpid
            changed = True
        for name in IDENTITY_FIELDS:
            value = getattr(p, name)  # None: not given, the stored value is kept
            if value is not None and getattr(row, name) != value:
                setattr(row, name, value)
                changed = True
        if changed and row.pk is not None:
            row.dirty = True

    created = _insert(db, list(new.values()), now)
    dirty = [row for row in resolved.values() if row.dirty]
    _update(db, dirty, now)
    return Resolved(
        pks={k: _pk(row) for k, row in resolved.items()},
        identity_changed={_pk(row) for row in dirty},
        created=created,
        updated=len({id(row) for row in dirty}),
    )


def _pk(row: ProfileRow) -> int:
    if row.pk is None:  # every row is stored by now: None here is a bug, never bad input
        raise RuntimeError(f"profile {row.customer_id or row.mpid!r} was not stored")
    return row.pk


def _fetch(db: BaseDatabaseWrapper, mpids: set[str], customer_ids: set[str]) -> list[ProfileRow]:
    if not (mpids or customer_ids):
        return []
    table = Profile._meta.db_table
    select = f"SELECT p.id, {', '.join('p.' + c for c in COLUMNS)} FROM {table} p"  # noqa: S608
    with db.cursor() as cursor:
        if bulk.is_postgresql(db):
            # One index probe per key (LATERAL ... LIMIT 1), whatever the planner's statistics
            # say: a plain join or `= ANY` is planned as a full scan while the table is unanalyzed.
            # `customer_id <> ''` matches the partial unique index on customer IDs. FOR KEY SHARE
            # keeps each found profile until this transaction commits its memberships (which
            # have no foreign key constraint, see the model): an erasure deleting it waits, and a
            # profile an erasure deleted meanwhile is not found, so it is created anew.
            cursor.execute(
                f"SELECT f.* FROM json_array_elements_text(%s::json) k(v),"  # noqa: S608
                f" LATERAL ({select} WHERE p.mpid = k.v LIMIT 1 FOR KEY SHARE) f"
                f" UNION SELECT f.* FROM json_array_elements_text(%s::json) k(v),"
                f" LATERAL ({select} WHERE p.customer_id = k.v AND p.customer_id <> '' LIMIT 1 FOR KEY SHARE) f",
                [bulk.as_json(sorted(mpids)), bulk.as_json(sorted(customer_ids))],
            )
        else:
            by_mpid, mpid_params = bulk.in_values(db, "p.mpid", sorted(mpids))
            by_cid, cid_params = bulk.in_values(db, "p.customer_id", sorted(customer_ids))
            cursor.execute(f"{select} WHERE {by_mpid} OR ({by_cid} AND p.customer_id <> '')", mpid_params + cid_params)
        return [ProfileRow(*row) for row in cursor.fetchall()]


def _insert(db: BaseDatabaseWrapper, new: list[ProfileRow], now: datetime) -> int:
    """Insert the new profiles and give each its pk. Returns how many this batch created."""
    if not new:
        return 0
    table = Profile._meta.db_table
    stamp = bulk.timestamp(db, now)
    keyless = [row for row in new if not (row.customer_id or row.mpid)]
    keyed = [row for row in new if row.customer_id or row.mpid]
    with db.cursor() as cursor:
        # Rows with neither key cannot conflict, nor be told apart in RETURNING: one statement each
        # (a batch has at most one: they all share the key ("customer_id", "")).
        for row in keyless:
            cursor.execute(
                f"INSERT INTO {table} ({', '.join(COLUMNS)}, created_at, updated_at)"  # noqa: S608
                " VALUES (%s, %s, %s, %s, %s, %s, %s) RETURNING id",
                [*row.values(), stamp, stamp],
            )
            (row.pk,) = cursor.fetchone()
    if not keyed:
        return len(keyless)
    spec = [("customer_id", "text"), ("mpid", "text"), ("email", "text"), ("first_name", "text"), ("last_name", "text")]
    returned = bulk.run(
        db,
        spec,
        [row.values() for row in keyed],
        f"INSERT INTO {table} ({', '.join(COLUMNS)}, created_at, updated_at)"  # noqa: S608
        f" SELECT {', '.join(COLUMNS)}, %s, %s FROM v WHERE true"
        # A concurrent message may insert the same person first: its row is kept (and read
        # back below) rather than failing this message.
        " ON CONFLICT DO NOTHING RETURNING id, customer_id, mpid",
        [stamp, stamp],
    )
    by_mpid = {mpid: pk for pk, _, mpid in returned if mpid}
    by_cid = {cid: pk for pk, cid, mpid in returned if not mpid}
    raced = []
    for row in keyed:
        row.pk = by_mpid.get(row.mpid) if row.mpid else by_cid.get(row.customer_id)
        if row.pk is None:
            raced.append(row)
    if raced:
        _adopt(db, raced)
    return len(keyless) + len(keyed) - len(raced)


def _adopt(db: BaseDatabaseWrapper, raced: list[ProfileRow]) -> None:
    """Profiles another transaction created first: take their pks; mark them for this batch's values."""
    stored = _fetch(db, {r.mpid for r in raced if r.mpid}, {r.customer_id for r in raced if r.customer_id})
    by_mpid = {s.mpid: s for s in stored if s.mpid}
    by_cid = {s.customer_id: s for s in stored if s.customer_id}
    for row in raced:
        found = (by_mpid.get(row.mpid) if row.mpid else None) or by_cid[row.customer_id]
        row.pk = found.pk
        row.dirty = found.values() != row.values()


def _update(db: BaseDatabaseWrapper, dirty: list[ProfileRow], now: datetime) -> None:
    if not dirty:
        return
    table = Profile._meta.db_table
    unique = list({row.pk: row for row in dirty}.values())
    by_key, keys = "", []
    if bulk.is_postgresql(db):
        # The primary keys again, as an array: without it an unanalyzed table (autovacuum off, or
        # just grown) is joined to `v` by a sequential scan, 1 ms at 12,000 profiles and growing
        # with the table; `id = ANY(...)` is an index probe per key whatever the statistics.
        by_key, keys = f" AND {table}.id = ANY(%s)", [[row.pk for row in unique]]
    bulk.run(
        db,
        [("id", "bigint"), *((name, "text") for name in COLUMNS)],
        [(row.pk, *row.values()) for row in unique],
        f"UPDATE {table} SET {', '.join(f'{c} = v.{c}' for c in COLUMNS)}, updated_at = %s"  # noqa: S608
        f" FROM v WHERE {table}.id = v.id{by_key}",
        [bulk.timestamp(db, now), *keys],
    )
