"""Waking the workers during a flood: at most one wake-up per connection per window, and never a
change left without a wake-up that starts after it (connections/services/outbox/wake_throttle.py)."""

import random

import pytest
from django.conf import settings as django_settings
from django.db import transaction

from connections.services.outbox import wakeup
from connections.services.outbox.wake_throttle import WakeThrottle

# The rule is exercised with the window users run, not a shortened one.
WINDOW = django_settings.FORWARD_WAKE_WINDOW_SECONDS


def test_the_default_window_is_a_quarter_second():
    assert WINDOW == 0.25


def test_a_lone_change_wakes_the_workers_at_once():
    assert WakeThrottle().delay(1, now=100.0, window=WINDOW) == 0.0


def test_changes_inside_the_window_share_one_wake_up_at_its_end():
    throttle = WakeThrottle()
    assert throttle.delay(1, now=100.0, window=WINDOW) == 0.0
    assert throttle.delay(1, now=100.1, window=WINDOW) == pytest.approx(WINDOW - 0.1)
    # Already covered by the wake-up due at 100.25: nothing more to publish.
    assert throttle.delay(1, now=100.2, window=WINDOW) is None
    assert throttle.delay(1, now=100.24, window=WINDOW) is None
    # Once that one is due, a new change needs the next window's.
    assert throttle.delay(1, now=100.3, window=WINDOW) == pytest.approx(0.2)
    # After a quiet window, at once again.
    assert throttle.delay(1, now=101.0, window=WINDOW) == 0.0


def test_each_connection_has_its_own_window():
    throttle = WakeThrottle()
    assert throttle.delay(1, now=100.0, window=WINDOW) == 0.0
    assert throttle.delay(2, now=100.1, window=WINDOW) == 0.0
    assert throttle.delay(1, now=100.1, window=WINDOW) == pytest.approx(WINDOW - 0.1)


def test_a_window_of_zero_wakes_on_every_change():
    throttle = WakeThrottle()
    assert [throttle.delay(1, now=100.0 + i / 1000, window=0) for i in range(5)] == [0.0] * 5


def test_forgetting_drops_the_scheduled_wake_ups():
    throttle = WakeThrottle()
    throttle.delay(1, now=100.0, window=WINDOW)
    throttle.delay(1, now=100.1, window=WINDOW)
    throttle.delay(2, now=100.1, window=WINDOW)
    throttle.forget(1)
    assert throttle.delay(1, now=100.2, window=WINDOW) == 0.0
    assert throttle.delay(2, now=100.2, window=WINDOW) == pytest.approx(WINDOW - 0.1)  # 2 is still in its window
    throttle.forget()
    assert throttle.delay(2, now=100.3, window=WINDOW) == 0.0


@pytest.mark.parametrize("seed", range(20))
def test_every_change_is_followed_by_a_wake_up_within_the_window_and_there_are_few(seed):
    rng = random.Random(seed)
    throttle = WakeThrottle()
    now, changes, wake_ups = 1000.0, [], []
    for _ in range(500):
        now += rng.choice([0.0, 0.001, 0.01, 0.05, 0.2, 0.6])
        changes.append(now)
        delay = throttle.delay(7, now, WINDOW)
        if delay is not None:
            assert delay >= 0
            wake_ups.append(now + delay)
    for at in changes:
        covering = [w for w in wake_ups if w >= at]
        assert covering, f"the change at {at} has no wake-up after it"
        assert min(covering) - at <= WINDOW + 1e-9
    # At most one wake-up per window of the run, plus the first.
    assert len(wake_ups) <= (changes[-1] - changes[0]) / WINDOW + 2
    assert wake_ups == sorted(wake_ups)


@pytest.fixture
def published(monkeypatch):
    sent = []
    monkeypatch.setattr(
        wakeup, "send_task", lambda name, args, countdown=None: sent.append((name, args, countdown)) or True
    )
    return sent


@pytest.mark.django_db
def test_a_burst_of_commits_publishes_one_wake_up_now_and_one_at_the_windows_end(
    published, django_capture_on_commit_callbacks
):
    for _ in range(50):
        with django_capture_on_commit_callbacks(execute=True), transaction.atomic():
            wakeup.wake_workers([5])
    assert [args for _, args, _ in published] == [[5], [5]]
    assert published[0][2] is None  # at once
    assert 0 < published[1][2] <= WINDOW


@pytest.mark.django_db
def test_eager_tasks_ignore_countdowns_so_every_commit_wakes_at_once(
    published, django_capture_on_commit_callbacks, settings
):
    settings.CELERY_TASK_ALWAYS_EAGER = True
    for _ in range(3):
        with django_capture_on_commit_callbacks(execute=True), transaction.atomic():
            wakeup.wake_workers([5])
    assert [countdown for _, _, countdown in published] == [None, None, None]


@pytest.mark.django_db
def test_nothing_is_published_before_the_transaction_commits(published, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=False) as callbacks, transaction.atomic():
        wakeup.wake_workers([5, 6])
    assert published == []
    for callback in callbacks:
        callback()
    assert [args for _, args, _ in published] == [[5], [6]]


@pytest.mark.django_db
def test_a_wake_up_the_broker_refused_is_not_counted_on(monkeypatch, django_capture_on_commit_callbacks):
    attempts = []

    def broker_down_once(name, args, countdown=None):  # type: ignore[no-untyped-def]
        attempts.append(countdown)
        return len(attempts) > 1  # the first publish fails (the sweep would cover it)

    monkeypatch.setattr(wakeup, "send_task", broker_down_once)
    for _ in range(2):
        with django_capture_on_commit_callbacks(execute=True), transaction.atomic():
            wakeup.wake_workers([5])
    # The second change, inside the window, still publishes: nothing was scheduled by the first.
    assert attempts == [None, None]
