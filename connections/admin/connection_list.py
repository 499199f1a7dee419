"""The connection list's columns and the state badge: what a marketer sees at a glance.

Each listed row's recent outcomes and backlog come from two grouped queries over the page's
rows only (`ConnectionChangeList`); the badge's title says since when and why.
"""

from __future__ import annotations

from django.contrib import admin
from django.contrib.admin.views.main import ChangeList
from django.http import HttpRequest
from django.template.loader import render_to_string
from django.utils import timezone
from django.utils.formats import date_format, number_format
from django.utils.html import format_html
from django.utils.safestring import SafeString
from django.utils.timesince import timesince
from django.utils.translation import gettext_lazy as _

from connections.models import Connection
from connections.services.visibility import figures
from connections.templatetags.cio import ago


def state_badge(connection: Connection) -> SafeString:
    """The state as a coloured badge; its title says since when and why."""
    return render_to_string("admin/connections/includes/state_badge.html", {"c": connection})


class ConnectionChangeList(ChangeList):
    """Adds each listed row's recent outcomes and pending forwards: two grouped queries over the page's rows only."""

    def get_results(self, request: HttpRequest) -> None:
        super().get_results(request)
        rows = list(self.result_list)
        ids = [row.pk for row in rows]
        outcomes = figures.recent_outcomes(ids)
        backlogs = figures.backlogs(ids)
        for row in rows:
            row.recent_outcomes = outcomes.get(row.pk, figures.DeliveryCounts())
            row.backlog = backlogs.get(row.pk, figures.Backlog(figures.BoundedCount(0)))
        self.result_list = rows



class ConnectionListColumns:
    """Columns of the connection list (mixed into ConnectionAdmin)."""

    @admin.display(description=_("state"), ordering="state")
    def state_badge(self, obj: Connection) -> SafeString:
        return state_badge(obj)

    @admin.display(description=_("failed (24 h)"))
    def recent_failure_rate(self, obj: Connection) -> SafeString | str:
        outcomes: figures.DeliveryCounts = obj.recent_outcomes  # type: ignore[attr-defined]
        rate = outcomes.failure_rate
        if rate is None:
            return format_html(
                '<span title="{}">{}</span>', _("No deliveries in the last 24 hours."), self.get_empty_value_display()
            )
        title = _("%(failed)s of %(attempts)s delivery attempts failed in the last 24 hours.") % {
            "failed": number_format(outcomes.failed, force_grouping=True),
            "attempts": number_format(outcomes.attempts, force_grouping=True),
        }
        return format_html(
            '<span class="cio-{}" title="{}">{} %</span>', outcomes.level, title, number_format(round(rate * 100, 1), 1)
        )

    @admin.display(description=_("backlog"))
    def backlog(self, obj: Connection) -> SafeString:
        backlog: figures.Backlog = obj.backlog  # type: ignore[attr-defined]
        if not backlog.count.value:
            return format_html('<span title="{}">0</span>', _("Nothing waits to be sent."))
        return format_html(
            '<span title="{}">{}</span> <span class="help">{}</span>',
            _("People waiting to be sent (or retried) to this workspace, and the age of the oldest change among them."),
            backlog.count,
            _("oldest %(age)s") % {"age": timesince(backlog.oldest, depth=1)} if backlog.oldest else "",
        )

    @admin.display(description=_("last success"), ordering="last_success_at")
    def last_success(self, obj: Connection) -> SafeString | str:
        if obj.last_success_at is None:
            return self.get_empty_value_display()
        return format_html(
            '<span title="{}">{}</span>',
            date_format(timezone.localtime(obj.last_success_at), "DATETIME_FORMAT"),
            ago(obj.last_success_at),
        )

    @admin.display(description=_("API key"))
    def api_key_hint(self, obj: Connection) -> str:
        return obj.masked_api_key

    @admin.display(description=_("App API key"))
    def app_api_key_hint(self, obj: Connection) -> str:
        return obj.masked_app_api_key

