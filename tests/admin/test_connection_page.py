"""The connection's page (SPEC §6): health above the form, the deliveries chart, and the Test credentials,
Resume and Resync buttons; the list's state, recent failure rate and pending count."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone

from cioaudience.celery import app as celery_app
from connections.models import Connection, Delivery, Forward, ResyncRun
from connections.services.resync import runs as resync
from connections.tasks import resync_connection
from tests.conftest import STANDIN_WORKSPACES
from tests.support.admin import admin_url, make_delivery, make_forward
from tests.support.factories import ConnectionFactory, MembershipFactory, ProfileFactory, SubscriptionFactory
from tests.support.workers import purge_broker

pytestmark = pytest.mark.django_db

API_KEY = "sk-live-Qx7Rz9Wm2Kp4"


def delivery_at(connection, ago: timedelta, status: str = Delivery.Status.SUCCEEDED) -> Delivery:
    """A delivery `ago` before the start of the current hour (so `ago=NOW` is in the chart's last bar)."""
    this_hour = timezone.now().replace(minute=0, second=0, microsecond=0)
    delivery = make_delivery(connection, status=status, http_status=200 if status == "succeeded" else 400)
    Delivery.objects.filter(pk=delivery.pk).update(created_at=this_hour - ago)
    return delivery


NOW = timedelta(0)


CONFIRM = {"post": "yes"}  # the confirmation page's own POST (Resync asks first: tests/admin/test_confirmations.py)


def button_url(connection: Connection, name: str) -> str:
    return admin_url(Connection, name, connection.pk)


def messages_of(response) -> list[tuple[str, str]]:  # type: ignore[no-untyped-def]
    return [(m.level_tag, m.message) for m in response.context["messages"]]


@pytest.fixture
def connection(db):
    # Customer.io accepted its credentials (a check or a delivery): its state shows as Active.
    return ConnectionFactory(name="Main workspace", api_key=API_KEY, credentials_verified_at=timezone.now())


# --- the chart ---


def test_the_chart_draws_the_deliveries_of_the_last_48_hours_per_hour(client, marketer, connection):
    delivery_at(connection, NOW)
    delivery_at(connection, NOW)
    delivery_at(connection, NOW, Delivery.Status.FAILED)
    delivery_at(connection, timedelta(hours=5))
    delivery_at(connection, timedelta(hours=48))  # before the first of the 48 hours
    delivery_at(connection, timedelta(hours=1), Delivery.Status.PENDING)  # not an outcome
    delivery_at(ConnectionFactory(), NOW)  # another connection's
    client.force_login(marketer)

    response = client.get(admin_url(Connection, "change", connection.pk))

    chart = response.context["chart"]
    assert (chart.totals.succeeded, chart.totals.failed) == (3, 1)
    assert len(chart.bars) == 48
    html = response.content.decode()
    assert html.count('<rect class="cio-succeeded"') == 2  # two hours with successes
    assert html.count('<rect class="cio-failed"') == 1
    assert "3 deliveries succeeded and 1 failed (25.0% failed)" in html
    assert re.search(r"<title>[^<]*\(so far\): 2 succeeded, 1 failed</title>", html)
    assert "No deliveries in the last 48 hours" not in html


def test_a_connection_without_recent_deliveries_shows_an_empty_chart_state(client, marketer, connection):
    delivery_at(connection, timedelta(hours=50))
    client.force_login(marketer)

    html = client.get(admin_url(Connection, "change", connection.pk)).content.decode()

    assert "No deliveries in the last 48 hours." in html
    assert "cio-chart-title" not in html  # no chart drawn


def test_the_chart_is_labelled_in_the_time_zone_of_the_browser(client, marketer, connection):
    delivery_at(connection, NOW)
    client.cookies["cioaudience_tz"] = "Asia/Kolkata"  # UTC+05:30, set by the admin's pages
    client.force_login(marketer)

    response = client.get(admin_url(Connection, "change", connection.pk))

    html = response.content.decode()
    assert "Times are in Asia/Kolkata" in html
    # Hours are cut in UTC, so in Kolkata every bar runs from half past to half past.
    bar = r"<title>\w{3} \d+ \w{3}, \d\d:30\N{EN DASH}\d\d:30 \(so far\): 1 succeeded, 0 failed</title>"
    assert re.search(bar, html)


def test_an_unknown_time_zone_cookie_falls_back_to_the_server_time_zone(client, marketer, connection):
    client.cookies["cioaudience_tz"] = "../../etc/passwd"
    client.force_login(marketer)

    html = client.get(admin_url(Connection, "change", connection.pk)).content.decode()

    assert "Times are in UTC" in html


# --- the health panel ---


def test_the_page_shows_state_last_success_and_the_backlog(client, marketer, connection):
    Connection.objects.filter(pk=connection.pk).update(last_success_at=timezone.now() - timedelta(minutes=5))
    for profile in ProfileFactory.create_batch(3):
        make_forward(connection, profile)
    client.force_login(marketer)

    response = client.get(admin_url(Connection, "change", connection.pk))

    html = response.content.decode()
    assert str(response.context["backlog"].count) == "3"
    assert "oldest change waiting" in html
    assert "5\xa0minutes ago" in html
    assert 'class="cio-badge cio-active"' in html
    assert button_url(connection, "resume") not in html  # only for a faulted connection


def test_a_faulted_connection_shows_its_error_and_when_with_a_resume_button(client, marketer, connection):
    Connection.objects.filter(pk=connection.pk).update(
        state=Connection.State.FAULTED,
        last_error="Customer.io rejected the Site ID / API key (HTTP 401): Unauthorized",
        last_error_at=timezone.now(),
    )
    client.force_login(marketer)

    html = client.get(admin_url(Connection, "change", connection.pk)).content.decode()

    assert "Faulted since" in html
    assert "(HTTP 401): Unauthorized" in html
    assert button_url(connection, "resume") in html


def test_a_backing_off_connection_shows_since_when_the_next_probe_and_its_buttons(client, marketer, connection):
    now = timezone.now()
    Connection.objects.filter(pk=connection.pk).update(
        state=Connection.State.BACKING_OFF,
        state_changed_at=now - timedelta(minutes=12),
        next_probe_at=now + timedelta(minutes=3, seconds=30),
        last_error="Customer.io server error (HTTP 503): Service Unavailable",
        last_error_at=now,
    )
    for profile in ProfileFactory.create_batch(2):
        make_forward(connection, profile)
    Forward.objects.update(created_at=now - timedelta(minutes=12))
    client.force_login(marketer)

    html = client.get(admin_url(Connection, "change", connection.pk)).content.decode()

    assert 'class="cio-badge cio-backing-off"' in html and "since 12\xa0minutes ago" in html
    assert "in 3\xa0minutes" in html  # the next probe
    assert "(HTTP 503): Service Unavailable" in html
    assert "oldest change waiting 12\xa0minutes" in html
    assert button_url(connection, "probe") in html and button_url(connection, "resume") in html


def test_probe_now_moves_the_next_probe_to_now(client, marketer, connection):
    Connection.objects.filter(pk=connection.pk).update(
        state=Connection.State.BACKING_OFF, next_probe_at=timezone.now() + timedelta(minutes=4)
    )
    purge_broker()
    client.force_login(marketer)

    response = client.post(button_url(connection, "probe"), follow=True)

    connection.refresh_from_db()
    assert connection.next_probe_at <= timezone.now()
    assert ("success", "Main workspace: a probe is being sent now; the page shows the outcome in a moment.") in (
        messages_of(response)
    )
    purge_broker()


def test_probe_now_on_an_active_connection_says_there_is_nothing_to_probe(client, marketer, connection):
    client.force_login(marketer)
    response = client.post(button_url(connection, "probe"), follow=True)
    assert messages_of(response) == [("warning", "Main workspace is not backing off: there is nothing to probe.")]


def test_the_list_shows_each_state_with_its_backlog(client, marketer, connection):
    other = ConnectionFactory(name="Second", state=Connection.State.BACKING_OFF, last_error="HTTP 503")
    for profile in ProfileFactory.create_batch(3):
        make_forward(other, profile)
    client.force_login(marketer)

    html = client.get(admin_url(Connection, "changelist")).content.decode()

    assert 'class="cio-badge cio-backing-off"' in html and 'class="cio-badge cio-active"' in html
    assert re.search(r"<td class=\"field-backlog\"><span[^>]*>3</span> <span class=\"help\">oldest", html)


def test_the_page_never_shows_the_api_key(client, marketer, connection):
    subscription = SubscriptionFactory(connection=connection)
    MembershipFactory(audience=subscription.audience)
    delivery_at(connection, NOW)
    resync.start(resync.scope_for(connection))
    Connection.objects.filter(pk=connection.pk).update(
        state=Connection.State.FAULTED, last_error="rejected", last_error_at=timezone.now()
    )
    client.force_login(marketer)

    html = client.get(admin_url(Connection, "change", connection.pk)).content.decode()

    assert "Latest resync" in html
    assert API_KEY not in html
    assert API_KEY[-5:] not in html
    assert "gAAAA" not in html  # no Fernet token


# --- Test credentials ---


def test_valid_credentials_are_reported_with_the_detected_region(client, marketer, standin, workspace_connection):
    connection = workspace_connection("site-eu")
    client.force_login(marketer)

    response = client.post(button_url(connection, "test_credentials"), follow=True)

    assert response.redirect_chain == [(admin_url(Connection, "change", connection.pk), 302)]
    [(level, message)] = messages_of(response)
    assert level == "success"
    assert "Customer.io accepted the credentials; the workspace is in the EU region." in message


def test_a_workspace_in_the_other_region_is_a_warning(client, marketer, standin, workspace_connection):
    connection = workspace_connection("site-eu")
    Connection.objects.filter(pk=connection.pk).update(region="us")
    client.force_login(marketer)

    response = client.post(button_url(connection, "test_credentials"), follow=True)

    [(level, message)] = messages_of(response)
    assert level == "warning"
    assert "The connection is set to US: change its region to EU" in message


def test_rejected_credentials_are_an_error_that_says_what_to_do(client, marketer, standin):
    connection = ConnectionFactory(site_id="site-us", api_key="sk-wrong-key-0000")
    client.force_login(marketer)

    response = client.post(button_url(connection, "test_credentials"), follow=True)

    [(level, message)] = messages_of(response)
    assert level == "error"
    assert "rejected the Site ID / API key (HTTP 401)" in message
    assert "enter the Track API key again" in message
    assert "sk-wrong-key" not in response.content.decode()


# --- Resume ---


def test_resume_clears_the_fault(client, marketer, connection):
    Connection.objects.filter(pk=connection.pk).update(state=Connection.State.FAULTED, last_error="rejected")
    client.force_login(marketer)

    response = client.post(button_url(connection, "resume"), follow=True)

    assert Connection.objects.get(pk=connection.pk).state == Connection.State.ACTIVE
    [(level, message)] = messages_of(response)
    assert level == "success" and "Resumed Main workspace" in message
    assert button_url(connection, "resume") not in response.content.decode()


def test_resuming_an_active_connection_changes_nothing(client, marketer, connection):
    client.force_login(marketer)

    response = client.post(button_url(connection, "resume"), follow=True)

    assert messages_of(response) == [("warning", "Main workspace was already active.")]


# --- Resync ---


@pytest.fixture
def subscribed(connection):
    subscription = SubscriptionFactory(connection=connection)
    MembershipFactory(audience=subscription.audience)
    MembershipFactory(audience=subscription.audience, is_member=False)  # a recorded ex-member is resent too
    SubscriptionFactory(connection=connection, status="inactive")  # not resynced
    return connection


def test_resync_starts_a_run_at_once_and_publishes_the_task_after_commit(
    client, marketer, subscribed, django_capture_on_commit_callbacks
):
    purge_broker()
    client.force_login(marketer)

    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        response = client.post(button_url(subscribed, "resync"), CONFIRM, follow=True)

    run = ResyncRun.objects.get(connection=subscribed)
    assert (run.status, run.total, run.queued) == (ResyncRun.Status.RUNNING, 2, 0)
    assert len(callbacks) == 1
    assert celery_app.control.purge() == 1  # the resync_connection task, for a worker
    [(level, message)] = messages_of(response)
    assert level == "success" and "resync started. 2 profiles are being queued" in message
    html = response.content.decode()
    assert "0 of 2 profiles" in html
    assert "window.location.reload()" in html  # refreshes while it runs


@pytest.mark.parametrize("transport", ["v1", "v2_batch"])
def test_the_task_a_resync_publishes_carries_the_run_the_page_shows(client, marketer, subscribed, standin, transport):
    """v1: the task queues the run for the change path's workers; v2: the task sends it itself."""
    subscribed.transport, subscribed.site_id = transport, "site-us"
    subscribed.api_key = STANDIN_WORKSPACES["site-us"][0]
    subscribed.save()
    client.force_login(marketer)
    client.post(button_url(subscribed, "resync"), CONFIRM)

    resync_connection(subscribed.pk)  # what the worker runs

    run = ResyncRun.objects.get(connection=subscribed)
    assert (run.status, run.queued) == (ResyncRun.Status.DONE, 2)
    html = client.get(admin_url(Connection, "change", subscribed.pk)).content.decode()
    assert "2 of 2 profiles" in html
    if transport == "v1":
        assert Forward.objects.filter(connection=subscribed, reason=Forward.Reason.RESYNC).count() == 2
        assert "0 succeeded, 0 failed, 2 still to send" in html
    else:
        assert not Forward.objects.exists() and len(standin.people("site-us")) == 2
        assert "2 succeeded, 0 failed, 0 still to send" in html


def test_resync_again_resumes_the_unfinished_run(client, marketer, subscribed):
    client.force_login(marketer)
    client.post(button_url(subscribed, "resync"), CONFIRM, follow=True)

    response = client.post(button_url(subscribed, "resync"), CONFIRM, follow=True)

    assert ResyncRun.objects.filter(connection=subscribed).count() == 1
    [(_level, message)] = messages_of(response)
    assert "resuming the unfinished resync from its checkpoint (0 of 2 profiles queued so far)" in message


def test_resync_without_an_active_subscription_is_refused(client, marketer, connection):
    SubscriptionFactory(connection=connection, status="inactive")
    client.force_login(marketer)

    response = client.post(button_url(connection, "resync"), CONFIRM, follow=True)

    assert not ResyncRun.objects.exists()
    assert messages_of(response) == [
        ("warning", "Connection 'Main workspace' has no active subscription: nothing to resync.")
    ]


def test_the_resync_list_action_starts_a_run_per_connection(client, marketer, subscribed):
    other = SubscriptionFactory().connection
    MembershipFactory(audience=other.subscriptions.get().audience)
    client.force_login(marketer)

    client.post(
        admin_url(Connection, "changelist"),
        {"action": "resync_connections", "_selected_action": [subscribed.pk, other.pk], **CONFIRM},
    )

    assert set(ResyncRun.objects.values_list("connection_id", "total")) == {(subscribed.pk, 2), (other.pk, 1)}


# --- who may press the buttons, and how ---

BUTTONS = ("test_credentials", "resume", "resync")


@pytest.mark.parametrize("button", BUTTONS)
def test_log_viewers_may_not_press_the_buttons(client, log_viewer, connection, button):
    Connection.objects.filter(pk=connection.pk).update(state=Connection.State.FAULTED)
    client.force_login(log_viewer)

    assert client.post(button_url(connection, button)).status_code == 403
    assert Connection.objects.get(pk=connection.pk).state == Connection.State.FAULTED


@pytest.mark.parametrize("button", BUTTONS)
def test_anonymous_visitors_are_sent_to_the_login_page(client, connection, button):
    response = client.post(button_url(connection, button))

    assert response.status_code == 302
    assert response["Location"].startswith("/admin/login/")


@pytest.mark.parametrize("button", ("test_credentials", "resume"))  # Resync's GET asks first
def test_the_buttons_refuse_get(client, marketer, connection, button):
    Connection.objects.filter(pk=connection.pk).update(state=Connection.State.FAULTED)
    client.force_login(marketer)

    response = client.get(button_url(connection, button))

    assert response.status_code == 405
    assert Connection.objects.get(pk=connection.pk).state == Connection.State.FAULTED


@pytest.mark.parametrize("button", BUTTONS)
def test_the_buttons_need_the_csrf_token(marketer, connection, button):
    Connection.objects.filter(pk=connection.pk).update(state=Connection.State.FAULTED)
    client = Client(enforce_csrf_checks=True)
    client.force_login(marketer)

    assert client.post(button_url(connection, button), CONFIRM).status_code == 403
    assert Connection.objects.get(pk=connection.pk).state == Connection.State.FAULTED


def test_an_unknown_connection_is_not_found(client, marketer):
    client.force_login(marketer)

    assert client.post(admin_url(Connection, "resume", 987654)).status_code == 404


# --- the list ---


def test_the_list_shows_state_recent_failure_rate_and_backlog(client, marketer, connection):
    faulted = ConnectionFactory(name="Broken workspace", state=Connection.State.FAULTED, last_error="rejected")
    quiet = ConnectionFactory(name="Quiet workspace")
    for _ in range(3):
        delivery_at(connection, timedelta(hours=2))
    delivery_at(connection, timedelta(hours=3), Delivery.Status.FAILED)
    delivery_at(connection, timedelta(hours=30), Delivery.Status.FAILED)  # older than 24 hours
    make_forward(connection, ProfileFactory())
    make_forward(connection, ProfileFactory())
    client.force_login(marketer)

    response = client.get(admin_url(Connection, "changelist"))

    rows = {row.name: row for row in response.context["cl"].result_list}
    assert (rows["Main workspace"].recent_outcomes.failed, rows["Main workspace"].recent_outcomes.attempts) == (1, 4)
    assert rows["Main workspace"].backlog.count.value == 2
    assert rows["Quiet workspace"].recent_outcomes.failure_rate is None
    html = response.content.decode()
    # One failure is shown, not called alarming (figures.FAILURES_ALARM).
    assert '<span class="cio-warn" title="1 of 4 delivery attempts failed in the last 24 hours.">25.0 %</span>' in html
    assert 'class="cio-badge cio-faulted" title="Credentials rejected: rejected">Faulted' in html
    assert faulted.pk and quiet.pk


def test_the_list_costs_the_same_however_many_connections_it_shows(client, marketer, django_assert_max_num_queries):
    for _ in range(20):
        connection = ConnectionFactory()
        delivery_at(connection, timedelta(hours=1))
        make_forward(connection, ProfileFactory())
    client.force_login(marketer)

    # Session, user, groups/permissions, count, rows, the outcomes and the pending counts.
    with django_assert_max_num_queries(10):
        client.get(admin_url(Connection, "changelist"))
