"""The batch log's monthly partitions on PostgreSQL: made ahead of time, dropped past retention.

    daily beat task -> ensure_month_partitions: this month and the next MONTHS_AHEAD, when missing
    retention      -> drop_month_partitions_before(cutoff): whole months past it, DETACH + DROP

Rows of a month that has no partition yet land in the DEFAULT partition (migration 0019), so a
write never fails; making that month's partition later moves them into it. Partitions are named
`<table>_YYYY_MM` and bounded by UTC months. On other databases (SQLite) there are no partitions
and every function here does nothing.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from datetime import UTC, datetime

from django.db import OperationalError, connections, router, transaction
from django.utils import timezone

from connections.models import BatchDelivery

log = logging.getLogger("cioaudience.retention")

TABLE = BatchDelivery._meta.db_table
DEFAULT_PARTITION = f"{TABLE}_default"
_MONTH_NAME = re.compile(rf"{TABLE}_(\d{{4}})_(\d{{2}})")
MONTHS_AHEAD = 2  # beyond the current month: a beat that stops for a month still finds them made
# Making or dropping a partition locks the whole table; writers queue behind a lock that waits, so
# it waits this long at most for the table's readers to finish, and the next day's run tries again.
LOCK_TIMEOUT = "5s"
# One lock for every change to the set of partitions: two maintenance runs never race.
_LOCK = 0x62617463  # "batc"


@dataclass(frozen=True)
class MonthPartition:
    name: str
    start: datetime  # inclusive, the first instant of a UTC month
    end: datetime  # exclusive, the first instant of the next

    @classmethod
    def containing(cls, moment: datetime) -> MonthPartition:
        moment = moment.astimezone(UTC)
        return cls.starting(datetime(moment.year, moment.month, 1, tzinfo=UTC))

    @classmethod
    def starting(cls, start: datetime) -> MonthPartition:
        end = datetime(start.year + start.month // 12, start.month % 12 + 1, 1, tzinfo=UTC)
        return cls(name=f"{TABLE}_{start:%Y_%m}", start=start, end=end)

    def next(self) -> MonthPartition:
        return MonthPartition.starting(self.end)


def _db() -> str:
    return router.db_for_write(BatchDelivery)


def partitioned() -> bool:
    return connections[_db()].vendor == "postgresql"


def month_partitions() -> list[MonthPartition]:
    """The monthly partitions there are, oldest first (DEFAULT is not one)."""
    if not partitioned():
        return []
    with connections[_db()].cursor() as cursor:
        cursor.execute(
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid"
            " WHERE i.inhparent = %s::regclass",
            [TABLE],
        )
        names = {name for (name,) in cursor.fetchall()}
    found = []
    for name in names:
        # Only the months made here; a partition an operator added by hand is theirs to keep.
        if match := _MONTH_NAME.fullmatch(name):
            found.append(MonthPartition.starting(datetime(int(match[1]), int(match[2]), 1, tzinfo=UTC)))
    return sorted(found, key=lambda p: p.start)


def ensure_month_partitions(now: datetime | None = None, months_ahead: int = MONTHS_AHEAD) -> list[str]:
    """Make the partitions of this month and the next `months_ahead` that are missing; their names."""
    if not partitioned():
        return []
    wanted = [MonthPartition.containing(now or timezone.now())]
    for _ in range(months_ahead):
        wanted.append(wanted[-1].next())
    made = []
    for partition in wanted:
        try:
            with transaction.atomic(using=_db()), connections[_db()].cursor() as cursor:
                _lock(cursor)
                if partition.name in {p.name for p in month_partitions()}:
                    continue
                _create(cursor, partition)
        except OperationalError as error:
            if not _lock_timed_out(error):
                raise
            log.warning(
                "batch log: the table stayed busy for %s; %s is made on the next run", LOCK_TIMEOUT, partition.name
            )
            break
        made.append(partition.name)
    return made


def _lock(cursor) -> None:  # type: ignore[no-untyped-def]
    cursor.execute(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'")
    cursor.execute("SELECT pg_advisory_xact_lock(%s)", [_LOCK])


def _lock_timed_out(error: OperationalError) -> bool:
    return getattr(error.__cause__, "sqlstate", None) == "55P03"  # lock_not_available


def _create(cursor, partition: MonthPartition) -> None:  # type: ignore[no-untyped-def]
    # PostgreSQL refuses a partition whose range the DEFAULT partition holds rows of: those rows
    # (written while the month had none) move into the new partition, in the same transaction.
    bounds = [partition.start, partition.end]
    cursor.execute(
        f"CREATE TEMPORARY TABLE batch_rows_moving ON COMMIT DROP AS WITH moved AS ("  # noqa: S608
        f" DELETE FROM {DEFAULT_PARTITION} WHERE created_at >= %s AND created_at < %s RETURNING *)"
        " SELECT * FROM moved",
        bounds,
    )
    cursor.execute(f"CREATE TABLE {partition.name} PARTITION OF {TABLE} FOR VALUES FROM (%s) TO (%s)", bounds)
    cursor.execute(f"INSERT INTO {TABLE} SELECT * FROM batch_rows_moving")  # noqa: S608
    cursor.execute("DROP TABLE batch_rows_moving")


def drop_month_partitions_before(cutoff: datetime) -> list[tuple[str, int]]:
    """DETACH and DROP each monthly partition that ends at or before `cutoff`; (name, rows it held)."""
    dropped = []
    for partition in month_partitions():
        if partition.end > cutoff:
            break
        try:
            with transaction.atomic(using=_db()), connections[_db()].cursor() as cursor:
                _lock(cursor)
                cursor.execute(f"SELECT count(*) FROM {partition.name}")  # noqa: S608
                (rows,) = cursor.fetchone()
                cursor.execute(f"ALTER TABLE {TABLE} DETACH PARTITION {partition.name}")
                cursor.execute(f"DROP TABLE {partition.name}")
        except OperationalError as error:
            if not _lock_timed_out(error):
                raise
            # Its rows are still deleted by date (retention.prune_batch_requests); the month goes next time.
            log.warning(
                "batch log: the table stayed busy for %s; %s is dropped on the next run", LOCK_TIMEOUT, partition.name
            )
            break
        dropped.append((partition.name, rows))
    return dropped
