"""`field__any=values`: `__in` for long lists of values, sent as one array on PostgreSQL.

A claim names a thousand profiles and three thousand outbox rows. With `__in`, Django writes one
placeholder per value and psycopg parses the statement for its placeholders on every call: for
a claim of 1,000 profiles that cost more than the database spent on the statements. `__any`
gives PostgreSQL `column = ANY(%s)` with the whole list as one array parameter (plain ints as one
array literal, `models.arrays`); other databases (SQLite) get the ordinary `IN (...)`, so every
query reads the same everywhere. Raw SQL has `services.bulk.in_values` for the same.
"""

from __future__ import annotations

from django.core.exceptions import EmptyResultSet
from django.db.models import Field, IntegerField
from django.db.models.fields.related import ForeignObject
from django.db.models.fields.related_lookups import RelatedIn
from django.db.models.lookups import In

from connections.models.arrays import int_array_literal

__all__ = ["Any", "RelatedAny"]


def _plain_integers(lookup: In) -> bool:
    """Ints for an integer column (a primary key, a foreign key to one): nothing to normalise or prepare.

    Django prepares each value of an `__in` list three times (normalise a model instance, the
    target field's get_prep_value, the lookup's own): for a page of a thousand profiles that was
    a millisecond per filter, several per page (issue 29). Plain ints need none of it.
    """
    if not lookup.rhs_is_direct_value():
        return False
    field = lookup.lhs.output_field
    target = field.target_field if field.is_relation else field
    return isinstance(target, IntegerField) and all(type(value) is int for value in lookup.rhs)


def _as_array(lookup: In, compiler, connection):  # type: ignore[no-untyped-def]
    if not lookup.rhs_is_direct_value():
        return lookup.as_sql(compiler, connection)
    lhs, lhs_params = lookup.process_lhs(compiler, connection)
    field = lookup.lhs.output_field
    if lookup.plain:
        values = list(dict.fromkeys(lookup.rhs))
    else:
        values = [
            field.get_db_prep_value(v, connection, prepared=True) for v in dict.fromkeys(lookup.rhs) if v is not None
        ]
    if not values:
        raise EmptyResultSet
    # Cast to the column's type: psycopg would pick the smallest array type that holds the values.
    array = int_array_literal(values) if lookup.plain else None
    return f"{lhs} = ANY(%s::{field.db_type(connection)}[])", (*lhs_params, values if array is None else array)


class _PlainIntegers:
    plain = False

    def get_prep_lookup(self):  # type: ignore[no-untyped-def]
        if _plain_integers(self):  # type: ignore[arg-type]
            self.plain = True
            return list(self.rhs)  # type: ignore[attr-defined]
        return super().get_prep_lookup()  # type: ignore[misc]


@Field.register_lookup
class Any(_PlainIntegers, In):
    lookup_name = "any"
    as_postgresql = _as_array


@ForeignObject.register_lookup
class RelatedAny(_PlainIntegers, RelatedIn):
    """The same on a foreign key (`profile_id__any`), which only takes lookups registered for relations."""

    lookup_name = "any"
    as_postgresql = _as_array
