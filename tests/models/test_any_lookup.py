"""`field__any=values` (connections/lookups.py): the same rows as `__in`, as one array on PostgreSQL.

The claim, the log and the payload planning name thousands of ids per statement; `__any` must
select exactly what `__in` selects, on every database, for plain columns, foreign keys and text.
"""

import os

import pytest
from django.db import connection as db_connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from connections.models import Forward, Profile, SuppressedIdentifier
from connections.services.forwarding import claims
from tests.support.factories import ConnectionFactory, ProfileFactory

pytestmark = pytest.mark.django_db
POSTGRES = os.environ.get("DATABASE_URL", "").startswith("postgres")


@pytest.fixture
def rows():
    connection = ConnectionFactory()
    people = ProfileFactory.create_batch(5)
    return [
        Forward.objects.create(connection=connection, profile=p, reason="membership", due_at=timezone.now())
        for p in people
    ]


def ids(queryset):
    return sorted(queryset.values_list("pk", flat=True))


def test_any_selects_what_in_selects(rows):
    wanted = [rows[0].pk, rows[3].pk, rows[3].pk, 10**12]  # a repeat and an id that does not exist
    assert ids(Forward.objects.filter(pk__any=wanted)) == ids(Forward.objects.filter(pk__in=wanted))
    assert ids(Forward.objects.filter(pk__any=wanted)) == sorted([rows[0].pk, rows[3].pk])
    assert ids(Forward.objects.exclude(id__any=wanted)) == sorted(r.pk for r in rows[1:3] + rows[4:])


def test_any_on_a_foreign_key_takes_ids_or_objects(rows):
    people = [rows[1].profile, rows[2].profile]
    by_object = ids(Forward.objects.filter(profile__any=people))
    assert by_object == ids(Forward.objects.filter(profile_id__any={p.pk for p in people}))
    assert by_object == sorted([rows[1].pk, rows[2].pk])


def test_any_with_no_values_or_only_none_selects_nothing(rows):
    assert ids(Forward.objects.filter(pk__any=[])) == []
    assert ids(Forward.objects.filter(pk__any=[None])) == []
    assert ids(Forward.objects.filter(pk__any=[None, rows[2].pk])) == [rows[2].pk]


def test_any_on_text(rows):
    connection = rows[0].connection
    for value in ("a" * 64, "b" * 64):
        SuppressedIdentifier.objects.create(connection=connection, identifier_hash=value)
    found = SuppressedIdentifier.objects.filter(identifier_hash__any=["b" * 64, "c" * 64])
    assert list(found.values_list("identifier_hash", flat=True)) == ["b" * 64]


def test_any_with_a_subquery_reads_as_in(rows):
    people = Profile.objects.filter(pk__in=[rows[4].profile_id])
    assert ids(Forward.objects.filter(profile_id__any=people.values("pk"))) == [rows[4].pk]


@pytest.mark.skipif(not POSTGRES, reason="PostgreSQL's array parameter")
def test_a_claim_names_its_rows_as_one_array_on_postgresql():
    connection = ConnectionFactory()
    now = timezone.now()
    Forward.objects.bulk_create(
        Forward(connection=connection, profile=p, reason="membership", due_at=now)
        for p in ProfileFactory.create_batch(300)
    )
    with CaptureQueriesContext(db_connection) as queries:
        _, claimed = claims.claim(connection.pk, 1000)
    assert len(claimed) == 300
    update = next(q["sql"] for q in queries if q["sql"].startswith('UPDATE "connections_forward"'))
    assert '"id" = ANY(' in update and "::bigint[]" in update
    assert " IN (" not in update, "300 ids were written as 300 placeholders"


def test_any_still_prepares_what_is_not_a_plain_int(rows):
    """Plain ints skip Django's preparation (a thousand of them per page); anything else is prepared."""
    as_text = [str(rows[0].pk), rows[1].pk]
    assert ids(Forward.objects.filter(pk__any=as_text)) == sorted([rows[0].pk, rows[1].pk])
    assert ids(Forward.objects.filter(profile_id__any=[str(rows[2].profile_id)])) == [rows[2].pk]
    generated = (r.profile_id for r in rows[3:])
    assert ids(Forward.objects.filter(profile_id__any=generated)) == sorted(r.pk for r in rows[3:])
