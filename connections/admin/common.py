"""Pieces shared by the admin modules: a paginator for huge tables, deletion summaries, fixed inline rows,
counted messages."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.utils import get_deleted_objects, quote
from django.contrib.admin.widgets import RelatedFieldWidgetWrapper
from django.core.paginator import Paginator
from django.db import connections, models
from django.db.models.deletion import get_candidate_relations_to_delete
from django.http import HttpRequest
from django.urls import reverse
from django.utils.functional import Promise, cached_property
from django.utils.html import escape, format_html
from django.utils.text import capfirst

# Beyond this many matching rows a list says "10000+" instead of counting them all.
COUNT_CAP = 10_000


class CheapCountPaginator(Paginator):
    """A paginator that never runs COUNT(*) over millions of rows.

    Unfiltered, on PostgreSQL, a large table's size is PostgreSQL's own estimate
    (`pg_class.reltuples`, kept by ANALYZE). Otherwise rows are counted up to
    `COUNT_CAP` and no further. The pagination template says which (`is_estimate`, `is_capped`).
    """

    is_estimate = False
    is_capped = False

    @cached_property
    def count(self) -> int:
        queryset = self.object_list
        if not queryset.query.has_filters():
            estimate = estimated_row_count(queryset.model, queryset.db)
            if estimate is not None and estimate > COUNT_CAP:
                self.is_estimate = True
                return estimate
        counted = queryset.order_by()[: COUNT_CAP + 1].count()
        if counted > COUNT_CAP:
            self.is_capped = True
            return COUNT_CAP
        return counted


def estimated_row_count(model: type[models.Model], using: str) -> int | None:
    """PostgreSQL's estimate of a table's rows, or None (another database, or never analyzed)."""
    db = connections[using]
    if db.vendor != "postgresql":
        return None
    with db.cursor() as cursor:
        cursor.execute("SELECT reltuples::bigint FROM pg_class WHERE oid = to_regclass(%s)", [model._meta.db_table])
        row = cursor.fetchone()
    return int(row[0]) if row and row[0] is not None and row[0] >= 0 else None


def summarized_deleted_objects(
    model_admin: admin.ModelAdmin, objs: Sequence[models.Model], request: HttpRequest
) -> tuple[list[str], dict[str, int], set[str], list[str]]:
    """Like Django's `get_deleted_objects`, but counts the rows that go with the objects instead of listing them.

    Django's lists every related row (an audience with a million members would make a page
    of a million lines) and asks for delete permission on each related model, so nobody could
    delete a connection that has a forwarding log. Here the log, the outbox and the other
    dependent rows go with their parent: the permission to delete the parent is what counts.
    Falls back to Django's when a relation protects or restricts deletion.
    """
    objs = list(objs)
    model = model_admin.model
    pks = [obj.pk for obj in objs]
    counts: Counter[str] = Counter({str(model._meta.verbose_name_plural): len(objs)})
    if not _count_cascade(model, "pk__in", pks, counts):
        return get_deleted_objects(objs, request, model_admin.admin_site)
    return [_object_line(model_admin, obj, request) for obj in objs], dict(counts), set(), []


def _count_cascade(model: type[models.Model], lookup: str, pks: list[object], counts: Counter[str]) -> bool:
    """Add the rows deleted along with `model` rows to `counts`; False if a relation is not a plain cascade."""
    for relation in get_candidate_relations_to_delete(model._meta):
        on_delete = relation.on_delete
        if on_delete in (models.PROTECT, models.RESTRICT):
            return False
        if on_delete is not models.CASCADE:
            continue  # SET_NULL and friends keep the related rows
        related = relation.related_model
        path = f"{relation.field.name}__{lookup}"
        found = related._base_manager.filter(**{path: pks}).count()
        if found:
            counts[str(related._meta.verbose_name_plural)] += found
            if not _count_cascade(related, path, pks, counts):
                return False
    return True


def _object_line(model_admin: admin.ModelAdmin, obj: models.Model, request: HttpRequest) -> str:
    opts = obj._meta
    if not model_admin.has_view_or_change_permission(request, obj):
        return f"{capfirst(opts.verbose_name)}: {obj}"
    url = reverse(f"{model_admin.admin_site.name}:{opts.app_label}_{opts.model_name}_change", args=[quote(obj.pk)])
    return format_html('{}: <a href="{}">{}</a>', capfirst(opts.verbose_name), url, obj)


class PlainHelpTextForm(forms.ModelForm):
    """The admin renders help texts as HTML; ours are plain text (some say "In <audience name>"), so escape them."""

    def __init__(self, *args, **kwargs) -> None:  # type: ignore[no-untyped-def]
        super().__init__(*args, **kwargs)
        for field in self.fields.values():
            if field.help_text:
                field.help_text = escape(field.help_text)


class FixedOnceSavedForm(PlainHelpTextForm):
    """An inline row whose `fixed_fields` are chosen when the row is added and cannot change afterwards.

    (A subscription's connection, a membership's audience: changing them would be a different row.)
    """

    fixed_fields: tuple[str, ...] = ()

    def __init__(self, *args, **kwargs) -> None:  # type: ignore[no-untyped-def]
        super().__init__(*args, **kwargs)
        if self.instance.pk is None:
            return
        for name in self.fixed_fields:
            if name in self.fields:
                field = self.fields[name]
                field.disabled = True
                # No "change / add / view" links beside a choice that cannot change.
                if isinstance(field.widget, RelatedFieldWidgetWrapper):
                    field.widget = field.widget.widget


class FixedOnceSavedInline(admin.TabularInline):
    """A tabular inline whose rows' `fixed_fields` cannot change once saved (FixedOnceSavedForm), read with
    their `related` rows in the same query."""

    form = FixedOnceSavedForm
    fixed_fields: tuple[str, ...] = ()
    related: tuple[str, ...] = ()
    extra = 0

    def get_formset(self, request: HttpRequest, obj: models.Model | None = None, **kwargs):  # type: ignore[no-untyped-def]
        formset = super().get_formset(request, obj, **kwargs)
        formset.form.fixed_fields = self.fixed_fields  # the factory made this form class for this formset only
        return formset

    def get_queryset(self, request: HttpRequest) -> models.QuerySet:
        return super().get_queryset(request).select_related(*self.related)


class ReadOnlyAdminMixin:
    """View-only: nobody adds, changes or deletes rows here through the admin."""

    def has_add_permission(self, request: HttpRequest, obj: models.Model | None = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: models.Model | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: models.Model | None = None) -> bool:
        return False


def report_count(
    model_admin: admin.ModelAdmin, request: HttpRequest, message: Promise, count: int, level: int = messages.SUCCESS
) -> None:
    """Tell the user what an action did to `count` things.

    `message`: `ngettext_lazy(singular, plural, "count")`, both holding `%(count)d`; the count picks the form.
    """
    model_admin.message_user(request, message % {"count": count}, level)
