"""The PostgreSQL path of `import_memberships`: a batch of checked rows applied by COPY and set-based SQL.

`imports.apply_rows` sends a batch here on PostgreSQL (SQLite keeps the portable path,
`memberships.apply_changes`). The batch is one transaction, with the same rules and results
as `apply_changes` for the same rows:

1. `merged`: one row per customer ID, the file's last line about a person winning (its action;
   for each of email and names, the last value given: an empty one keeps the stored value);
2. those rows are streamed with `COPY` into a temporary table (`import_people`, emptied at every
   commit), which one statement (`APPLY`) then reads, with a CTE per step:
3. profiles: found by customer ID (one index probe per row, whatever the planner's statistics),
   the new ones inserted (`ON CONFLICT DO NOTHING`: one a concurrent message created first is
   left out, and the batch applied again to it, found this time), the stored ones whose
   identity changes updated;
4. memberships: for stored profiles the upsert of `membership_rows.record`, its changed pairs
   feeding the outbox insert (`ON CONFLICT DO NOTHING`: at most one waiting row per key); for
   the profiles just inserted, plain inserts (no other transaction sees them yet, so nothing
   can conflict, and ON CONFLICT's speculative insertion is skipped);
5. identity forwards for the updated profiles (a second statement, only when some were):
   every connection with an active subscription to an audience they have a record in,
   except where step 4 queued a membership forward already.

Measured on 1,000,000 new people (README, "Ingestion"): the statement is about half of a
batch's server time; the other half was the deferred foreign-key checks at commit (five per
line; the outbox's three are gone since migration 0011, the memberships' two since 0012).

The import's audience exists (the command checks it) and its changes count as "now".
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol

from django.db import transaction
from django.utils import timezone

from connections.models import Audience, Forward, Membership, Profile, Subscription
from connections.services.ingest.memberships import ApplyResult
from connections.services.outbox import bulk
from connections.services.outbox import queue as outbox

STAGE = "import_people"
Person = tuple[str, str | None, str | None, str | None, bool]  # customer_id, email, first, last, is_member


class ImportRow(Protocol):
    """A checked line of the file (`imports.Row`): None for an email or name means "not given"."""

    @property
    def customer_id(self) -> str: ...
    @property
    def email(self) -> str | None: ...
    @property
    def first_name(self) -> str | None: ...
    @property
    def last_name(self) -> str | None: ...
    @property
    def is_member(self) -> bool: ...


def available() -> bool:
    """Whether this path applies: the profiles live in PostgreSQL."""
    return bulk.is_postgresql(bulk.database(Profile))


def merged(rows: Iterable[ImportRow]) -> list[Person]:
    """One entry per customer ID: the last action, and the last email and names given (None: none given)."""
    people: dict[str, list] = {}
    for row in rows:
        known = people.get(row.customer_id)
        if known is None:
            people[row.customer_id] = [row.customer_id, row.email, row.first_name, row.last_name, row.is_member]
            continue
        if row.email is not None:
            known[1] = row.email
        if row.first_name is not None:
            known[2] = row.first_name
        if row.last_name is not None:
            known[3] = row.last_name
        known[4] = row.is_member
    return [tuple(values) for values in people.values()]  # type: ignore[misc]


def apply_rows(rows: Iterable[ImportRow], audience: Audience) -> ApplyResult:
    """Apply a batch of rows in one transaction; the counts mean what `apply_changes`'s do."""
    result = ApplyResult()
    people = merged(rows)
    if not people:
        return result
    db = bulk.database(Profile)
    params = {
        "audience": audience.pk,
        "now": timezone.now(),
        "active": Subscription.Status.ACTIVE.value,
        "membership": Forward.Reason.MEMBERSHIP.value,
        "identity": Forward.Reason.IDENTITY.value,
    }
    with transaction.atomic(using=db.alias), db.cursor() as cursor:
        # Kept until the batch commits, as a Firehose message keeps its audiences (memberships
        # have no foreign key constraint): deleting the audience waits for the batch.
        cursor.execute(f"SELECT 1 FROM {Audience._meta.db_table} WHERE id = %s FOR KEY SHARE", [audience.pk])  # noqa: S608
        if cursor.fetchone() is None:
            raise Audience.DoesNotExist(f"audience {audience.audience_id} was deleted during the import")
        cursor.execute(CREATE_STAGE)
        cursor.execute(f"DELETE FROM {STAGE}")  # noqa: S608 - empty unless an outer transaction holds the last batch's
        with cursor.copy(f"COPY {STAGE} (customer_id, email, first_name, last_name, is_member) FROM STDIN") as copy:
            for person in people:
                copy.write_row(person)
        woken: set[int] = set()
        updated: list[int] = []
        for attempt in range(2):
            cursor.execute(APPLY, params)
            created, changed_ids, changed, queued, connection_ids, raced = cursor.fetchone()
            result.profiles_created += created
            result.memberships_changed += changed
            result.forwards_queued += queued
            updated += changed_ids
            woken.update(connection_ids)
            if not raced:
                break
            if attempt:  # committed before the insert skipped them, they are visible now: a bug, not bad input
                raise RuntimeError(f"{len(raced)} imported profiles were neither found nor inserted")
            # Profiles a concurrent transaction created first (their inserts skipped): applied
            # again, found this time, with this batch's values (what `profile_rows._adopt` does).
            cursor.execute(f"DELETE FROM {STAGE} WHERE NOT customer_id = ANY(%s)", [raced])  # noqa: S608
        result.profiles_updated = len(updated)
        if updated:
            cursor.execute(QUEUE_IDENTITY_FORWARDS, {**params, "profiles": updated})
            queued, connection_ids = cursor.fetchone()
            result.forwards_queued += queued
            woken.update(connection_ids)
        outbox.wake_workers(woken)  # once the transaction commits
    return result


PROFILE = Profile._meta.db_table
MEMBERSHIP = Membership._meta.db_table
FORWARD = Forward._meta.db_table
SUBSCRIPTION = Subscription._meta.db_table

# Emptied at every commit, so that a batch never sees another's rows; created by the first batch
# of each database session (a pooled server session may be new to this client at any transaction).
CREATE_STAGE = (
    f"CREATE TEMPORARY TABLE IF NOT EXISTS {STAGE} (customer_id text NOT NULL, email text,"
    " first_name text, last_name text, is_member boolean NOT NULL) ON COMMIT DELETE ROWS"
)

# One statement for the whole batch; each CTE reads the rows as they were before the statement.
APPLY = (
    # The stored profiles: one probe of the unique index per row (LATERAL ... LIMIT 1), whatever
    # the planner's statistics say (this machine's PostgreSQL never analyzes: a join could be
    # planned as a scan of the profile table per batch). `<> ''` matches the partial unique index.
    # Locked FOR KEY SHARE, as `profile_rows` does: memberships have no foreign key constraint.
    f"WITH s AS (SELECT i.*, p.id AS pk, p.email AS stored_email, p.first_name AS stored_first_name,"  # noqa: S608
    f" p.last_name AS stored_last_name FROM {STAGE} i LEFT JOIN LATERAL (SELECT id, email, first_name, last_name"
    f" FROM {PROFILE} p WHERE p.customer_id = i.customer_id AND p.customer_id <> '' LIMIT 1 FOR KEY SHARE) p ON true),"
    # The new ones; a concurrent message may insert the same person first: its row is kept and
    # the batch applied again to that person (`raced` below).
    f" inserted AS (INSERT INTO {PROFILE} (customer_id, mpid, email, first_name, last_name, created_at, updated_at)"
    " SELECT customer_id, NULL, coalesce(email, ''), coalesce(first_name, ''), coalesce(last_name, ''),"
    " %(now)s, %(now)s FROM s WHERE pk IS NULL ORDER BY customer_id ON CONFLICT DO NOTHING"
    " RETURNING id, customer_id),"
    # The stored ones whose values change (an email or name not given keeps the stored value);
    # `= ANY(ARRAY(...))` keeps the update to probes by primary key.
    " dirty AS (SELECT pk, email, first_name, last_name FROM s WHERE pk IS NOT NULL"
    " AND (email <> stored_email OR first_name <> stored_first_name OR last_name <> stored_last_name)),"
    f" updated AS (UPDATE {PROFILE} p SET email = coalesce(d.email, p.email),"
    " first_name = coalesce(d.first_name, p.first_name), last_name = coalesce(d.last_name, p.last_name),"
    " updated_at = %(now)s FROM dirty d WHERE p.id = d.pk AND p.id = ANY(ARRAY(SELECT pk FROM dirty))"
    " RETURNING p.id),"
    # `membership_rows.record`'s upsert and outbox insert for the stored profiles. `changed_at`
    # moves only when the state changes, which is how RETURNING tells changes apart.
    f" stored AS (INSERT INTO {MEMBERSHIP} AS m (profile_id, audience_id, is_member, changed_at, source_time)"
    " SELECT pk, %(audience)s, is_member, %(now)s, %(now)s FROM s WHERE pk IS NOT NULL"
    " ORDER BY pk"  # one lock order with concurrent messages (membership_rows sorts too)
    " ON CONFLICT (profile_id, audience_id) DO UPDATE SET is_member = excluded.is_member,"
    " changed_at = CASE WHEN m.is_member = excluded.is_member THEN m.changed_at ELSE excluded.changed_at END,"
    " source_time = excluded.source_time"
    " WHERE m.source_time IS NULL OR m.source_time <= excluded.source_time"
    " RETURNING profile_id, changed_at = %(now)s AS changed),"
    f" stored_keys AS (SELECT s.connection_id, c.profile_id FROM stored c JOIN {SUBSCRIPTION} s"
    " ON s.audience_id = %(audience)s AND s.status = %(active)s WHERE c.changed),"
    f" stored_queued AS (INSERT INTO {FORWARD} (connection_id, profile_id, audience_id, reason, created_at,"
    " due_at, attempts, claim_token) SELECT connection_id, profile_id, %(audience)s, %(membership)s, %(now)s,"
    " %(now)s, 0, '' FROM stored_keys ORDER BY 1, 2 ON CONFLICT DO NOTHING),"  # every outbox writer's order
    # The profiles inserted above: no other transaction sees them before this one commits, so
    # neither their memberships nor their forwards can conflict: plain inserts, without the
    # speculative insertion ON CONFLICT costs. Every one of them is a change.
    f" fresh AS (INSERT INTO {MEMBERSHIP} (profile_id, audience_id, is_member, changed_at, source_time)"
    " SELECT inserted.id, %(audience)s, s.is_member, %(now)s, %(now)s FROM inserted JOIN s USING (customer_id)"
    " ORDER BY 1 RETURNING profile_id),"
    f" fresh_keys AS (SELECT s.connection_id, c.profile_id FROM fresh c JOIN {SUBSCRIPTION} s"
    " ON s.audience_id = %(audience)s AND s.status = %(active)s),"
    f" fresh_queued AS (INSERT INTO {FORWARD} (connection_id, profile_id, audience_id, reason, created_at,"
    " due_at, attempts, claim_token) SELECT connection_id, profile_id, %(audience)s, %(membership)s, %(now)s,"
    " %(now)s, 0, '' FROM fresh_keys ORDER BY 1, 2),"
    " keys AS (SELECT * FROM stored_keys UNION ALL SELECT * FROM fresh_keys)"
    " SELECT (SELECT count(*) FROM inserted), ARRAY(SELECT id FROM updated),"
    " (SELECT count(*) FROM stored WHERE changed) + (SELECT count(*) FROM fresh),"
    " (SELECT count(*) FROM keys), ARRAY(SELECT DISTINCT connection_id FROM keys),"
    " ARRAY(SELECT customer_id FROM s WHERE pk IS NULL EXCEPT SELECT customer_id FROM inserted)"
)

# `memberships.connections_forwarding_profiles` for the updated profiles, minus the (connection,
# profile) pairs that got a membership forward above: their membership changed in this
# transaction (changed_at = now) in this audience, which the connection subscribes to.
QUEUE_IDENTITY_FORWARDS = (
    f"WITH keys AS (SELECT DISTINCT s.connection_id, m.profile_id FROM {MEMBERSHIP} m"  # noqa: S608
    f" JOIN {SUBSCRIPTION} s ON s.audience_id = m.audience_id AND s.status = %(active)s"
    " WHERE m.profile_id = ANY(%(profiles)s)"
    f" AND NOT EXISTS (SELECT 1 FROM {MEMBERSHIP} x JOIN {SUBSCRIPTION} t"
    " ON t.audience_id = x.audience_id AND t.status = %(active)s"
    " WHERE x.profile_id = m.profile_id AND x.audience_id = %(audience)s AND x.changed_at = %(now)s"
    " AND t.connection_id = s.connection_id)),"
    f" queued AS (INSERT INTO {FORWARD} (connection_id, profile_id, audience_id, reason, created_at, due_at,"
    " attempts, claim_token) SELECT connection_id, profile_id, NULL, %(identity)s, %(now)s, %(now)s, 0, ''"
    " FROM keys ORDER BY 1, 2 ON CONFLICT DO NOTHING)"
    " SELECT (SELECT count(*) FROM keys), ARRAY(SELECT DISTINCT connection_id FROM keys)"
)
