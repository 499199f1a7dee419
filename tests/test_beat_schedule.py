"""Celery beat's schedule: the outbox sweep every SWEEP_INTERVAL_SECONDS, the daily log prune and
the batch log's monthly partitions made daily, naming tasks a worker registers, callable with the
arguments beat sends.

That beat really runs the sweep at the default interval, and that the sweep delivers, is shown by
tests/reliability/test_ratelimit_redis_stall.py (a real beat process; the test never sweeps itself).
"""

from __future__ import annotations

import inspect
from datetime import timedelta

import pytest
from celery.schedules import crontab, maybe_schedule

from cioaudience.celery import app


@pytest.fixture(scope="module")
def registered() -> set[str]:
    app.loader.import_default_modules()  # what a worker does at start: autodiscover connections.tasks
    return set(app.tasks)


def entry(name: str) -> dict:
    assert name in app.conf.beat_schedule, f"beat has no {name!r} entry"
    return app.conf.beat_schedule[name]


def test_beat_uses_the_schedule_from_the_settings(settings):
    assert app.conf.beat_schedule == settings.CELERY_BEAT_SCHEDULE


def test_the_sweep_runs_every_sweep_interval(settings):
    sweep = entry("sweep-outbox")

    assert sweep["task"] == "connections.tasks.sweep"
    assert maybe_schedule(sweep["schedule"]).run_every == timedelta(seconds=settings.SWEEP_INTERVAL_SECONDS)


def test_the_log_is_pruned_once_a_day_at_a_quiet_hour():
    prune = entry("prune-deliveries")
    schedule = maybe_schedule(prune["schedule"])

    assert prune["task"] == "connections.tasks.prune_deliveries_task"
    assert isinstance(schedule, crontab)
    assert (schedule.hour, schedule.minute) == ({3}, {30})
    assert schedule.day_of_week == set(range(7))
    assert schedule.day_of_month == set(range(1, 32)) and schedule.month_of_year == set(range(1, 13))


def test_the_batch_logs_partitions_are_made_once_a_day():
    make = entry("make-batch-log-partitions")
    schedule = maybe_schedule(make["schedule"])

    assert make["task"] == "connections.tasks.make_batch_log_partitions"
    assert isinstance(schedule, crontab)
    assert schedule.day_of_week == set(range(7)) and schedule.day_of_month == set(range(1, 32))


@pytest.mark.parametrize("name", ["sweep-outbox", "prune-deliveries", "make-batch-log-partitions"])
def test_each_entry_names_a_registered_task_that_accepts_what_beat_sends(name, registered):
    scheduled = entry(name)

    assert scheduled["task"] in registered
    task = app.tasks[scheduled["task"]]
    inspect.signature(task.run).bind(*scheduled.get("args", ()), **scheduled.get("kwargs", {}))
