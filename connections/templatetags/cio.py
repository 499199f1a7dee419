"""Template filters for the admin's panels."""

from __future__ import annotations

from datetime import datetime, timedelta

from django import template
from django.utils import timezone
from django.utils.timesince import timesince, timeuntil
from django.utils.translation import gettext as _

register = template.Library()


@register.filter
def ago(moment: datetime | None) -> str:
    """ "just now", "3 minutes ago", "2 hours ago": the coarsest unit, as a person says it."""
    if moment is None:
        return ""
    if timezone.now() - moment < timedelta(minutes=1):
        return _("just now")
    return _("%(time)s ago") % {"time": timesince(moment, depth=1)}


@register.filter
def waited(moment: datetime | None) -> str:
    """How long since `moment`, without "ago": "under a minute", "2 hours"."""
    if moment is None:
        return ""
    if timezone.now() - moment < timedelta(minutes=1):
        return _("under a minute")
    return timesince(moment, depth=1)


@register.filter
def until(moment: datetime | None) -> str:
    """ "now", "in 3 minutes": how long until `moment`, the coarsest unit."""
    if moment is None:
        return ""
    if moment - timezone.now() < timedelta(seconds=5):
        return _("now")
    return _("in %(time)s") % {"time": timeuntil(moment, depth=1)}
