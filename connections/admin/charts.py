"""The deliveries-per-hour chart of a connection's page, laid out here and drawn as inline SVG by a template.

Geometry is whole pixels in the SVG's own coordinates (the SVG scales to the page), so no number
in the markup is ever localized. Labels are in the current time zone (`timezone.localtime`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from django.utils import formats, timezone
from django.utils.translation import gettext as _
from django.utils.translation import ngettext

from connections.services.visibility.figures import DeliveryCounts, HourOfDeliveries

SLOT = 18  # pixels per hour
BAR = 14  # bar width within its slot
LEFT, RIGHT, TOP, BOTTOM = 52, 10, 12, 40  # margins around the plot
PLOT_HEIGHT = 160
TICK_EVERY_HOURS = 6
MIN_TOP = 5


@dataclass(frozen=True)
class Bar:
    x: int
    slot_x: int
    succeeded_y: int
    succeeded_height: int
    failed_y: int
    failed_height: int
    tooltip: str


@dataclass(frozen=True)
class XTick:
    x: int
    time: str
    date: str  # only where the day changes, else ""


@dataclass(frozen=True)
class YTick:
    y: int
    label: str


@dataclass(frozen=True)
class DeliveryChart:
    hours: int
    totals: DeliveryCounts
    bars: list[Bar]
    x_ticks: list[XTick]
    y_ticks: list[YTick]
    summary: str
    time_zone: str
    width: int
    height: int
    plot_left: int
    plot_right: int
    plot_top: int
    plot_bottom: int
    slot: int = SLOT
    plot_height: int = PLOT_HEIGHT

    @property
    def y_label_x(self) -> int:
        return self.plot_left - 6

    @property
    def time_label_y(self) -> int:
        return self.plot_bottom + 15

    @property
    def date_label_y(self) -> int:
        return self.plot_bottom + 30

    @property
    def tick_end_y(self) -> int:
        return self.plot_bottom + 4

    @property
    def is_empty(self) -> bool:
        return self.totals.attempts == 0


def nice_ceiling(value: int) -> int:
    """The smallest 1, 2 or 5 times a power of ten that is >= value (at least 1)."""
    step = 1
    while True:
        for factor in (1, 2, 5):
            if factor * step >= value:
                return factor * step
        step *= 10


def _day(moment) -> str:  # type: ignore[no-untyped-def]
    return formats.date_format(moment, "D j M")


def _clock(moment) -> str:  # type: ignore[no-untyped-def]
    return formats.date_format(moment, "H:i")


def _percent(part: int, whole: int) -> str:
    return formats.number_format(100 * part / whole, 1) if whole else "0"


def delivery_chart(hours: list[HourOfDeliveries]) -> DeliveryChart:
    totals = DeliveryCounts(sum(h.outcomes.succeeded for h in hours), sum(h.outcomes.failed for h in hours))
    # At least 5 high, so that one delivery is a short bar rather than a full-height one.
    top = nice_ceiling(max(max((h.outcomes.attempts for h in hours), default=0), MIN_TOP))
    plot_bottom = TOP + PLOT_HEIGHT

    def height_of(count: int) -> int:
        # A bar that is not zero is at least a pixel high, so a lone failure is not invisible.
        return max(1, round(count * PLOT_HEIGHT / top)) if count else 0

    bars, x_ticks = [], []
    last_day = ""
    for index, hour in enumerate(hours):
        local = timezone.localtime(hour.start)
        slot_x = LEFT + index * SLOT
        succeeded_height = height_of(hour.outcomes.succeeded)
        failed_height = height_of(hour.outcomes.failed)
        bars.append(
            Bar(
                x=slot_x + (SLOT - BAR) // 2,
                slot_x=slot_x,
                succeeded_y=plot_bottom - succeeded_height,
                succeeded_height=succeeded_height,
                failed_y=plot_bottom - succeeded_height - failed_height,
                failed_height=failed_height,
                tooltip=_tooltip(hour, local),
            )
        )
        if local.hour % TICK_EVERY_HOURS == 0 or index == 0:
            day = _day(local)
            x_ticks.append(XTick(x=slot_x, time=_clock(local), date=day if day != last_day else ""))
            last_day = day
    if len(x_ticks) > 1 and x_ticks[1].x - x_ticks[0].x < 3 * SLOT:
        # The first hour only carries the date when a regular tick follows too closely.
        first, second = x_ticks[0], x_ticks[1]
        x_ticks[1] = XTick(second.x, second.time, second.date or first.date)
        x_ticks.pop(0)
    y_ticks = [
        YTick(y=plot_bottom - round(PLOT_HEIGHT * share), label=formats.number_format(round(top * share)))
        for share in (0, 0.5, 1)
        if share == 0 or top * share == int(top * share)
    ]
    return DeliveryChart(
        hours=len(hours),
        totals=totals,
        bars=bars,
        x_ticks=x_ticks,
        y_ticks=y_ticks,
        summary=_summary(hours, totals),
        time_zone=timezone.get_current_timezone_name(),
        width=LEFT + len(hours) * SLOT + RIGHT,
        height=plot_bottom + BOTTOM,
        plot_left=LEFT,
        plot_right=LEFT + len(hours) * SLOT,
        plot_top=TOP,
        plot_bottom=plot_bottom,
    )


def _tooltip(hour: HourOfDeliveries, local) -> str:  # type: ignore[no-untyped-def]
    end = timezone.localtime(hour.start + timedelta(hours=1))
    when = f"{_day(local)}, {_clock(local)}\N{EN DASH}{_clock(end)}"
    if hour.is_current:
        when += " " + _("(so far)")
    outcomes = hour.outcomes
    return _("%(when)s: %(succeeded)s succeeded, %(failed)s failed") % {
        "when": when,
        "succeeded": formats.number_format(outcomes.succeeded, force_grouping=True),
        "failed": formats.number_format(outcomes.failed, force_grouping=True),
    }


def _summary(hours: list[HourOfDeliveries], totals: DeliveryCounts) -> str:
    if not totals.attempts:
        return ngettext(
            "No deliveries in the last %(hours)d hour.", "No deliveries in the last %(hours)d hours.", len(hours)
        ) % {"hours": len(hours)}
    numbers = {
        "hours": len(hours),
        "succeeded": formats.number_format(totals.succeeded, force_grouping=True),
        "failed": formats.number_format(totals.failed, force_grouping=True),
        "percent": _percent(totals.failed, totals.attempts),
    }
    if totals.failed:
        text = (
            ngettext(
                "In the last %(hours)d hours: %(succeeded)s delivery succeeded and %(failed)s failed "
                "(%(percent)s%% failed).",
                "In the last %(hours)d hours: %(succeeded)s deliveries succeeded and %(failed)s failed "
                "(%(percent)s%% failed).",
                totals.succeeded,
            )
            % numbers
        )
    else:
        text = (
            ngettext(
                "In the last %(hours)d hours: %(succeeded)s delivery succeeded and none failed.",
                "In the last %(hours)d hours: %(succeeded)s deliveries succeeded and none failed.",
                totals.succeeded,
            )
            % numbers
        )
    busiest = max(hours, key=lambda h: h.outcomes.attempts)
    local = timezone.localtime(busiest.start)
    text += " " + _("Busiest hour: %(day)s, %(time)s, with %(busiest)s.") % {
        "day": _day(local),
        "time": _clock(local),
        "busiest": formats.number_format(busiest.outcomes.attempts, force_grouping=True),
    }
    failing = [h for h in hours if h.outcomes.failed]
    if failing:
        last = timezone.localtime(failing[-1].start)
        text += " " + _("Last failure in the hour from %(day)s, %(time)s.") % {"day": _day(last), "time": _clock(last)}
    return text
