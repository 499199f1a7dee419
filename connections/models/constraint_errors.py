"""Constraint errors in plain words, on the field they are about.

Each constraint a form can break carries its own `violation_error_message` and
`violation_error_code` (the one home of its wording). Django 5.2's `Model.validate_constraints`
puts a check constraint's error, and a unique constraint's with a custom code, among the
errors of the whole form; `FieldConstraintErrors` moves each to the one field its constraint
is about (a constraint over several fields, such as "this audience on this connection", stays
an error of the whole form).
"""

from __future__ import annotations

from django.core.exceptions import NON_FIELD_ERRORS, ValidationError
from django.db import models


def constraint_field(constraint: models.BaseConstraint) -> str | None:
    """The one field a constraint checks, or None (several fields, or expressions)."""
    if isinstance(constraint, models.UniqueConstraint):
        fields = set(constraint.fields)
    elif isinstance(constraint, models.CheckConstraint):
        fields = models.Q(constraint.condition).referenced_base_fields
    else:
        return None
    return next(iter(fields)) if len(fields) == 1 else None


class FieldConstraintErrors(models.Model):
    """A model whose constraint errors are shown on the field each constraint checks."""

    class Meta:
        abstract = True

    def validate_constraints(self, exclude=None) -> None:  # type: ignore[no-untyped-def]
        try:
            super().validate_constraints(exclude=exclude)
        except ValidationError as error:
            raise ValidationError(self._on_fields(error.error_dict)) from None

    def _on_fields(self, errors: dict[str, list[ValidationError]]) -> dict[str, list[ValidationError]]:
        field_of = {
            constraint.violation_error_code: constraint_field(constraint)
            for constraint in self._meta.constraints
            if constraint.violation_error_code
        }
        placed: dict[str, list[ValidationError]] = {}
        for key, found in errors.items():
            for error in found:
                field = field_of.get(error.code) if key == NON_FIELD_ERRORS else None
                placed.setdefault(field or key, []).append(error)
        return placed
