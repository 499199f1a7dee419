"""The admin's panels, for each role: the home overview, an audience's numbers.

A profile's panel: tests/admin/test_profile_page.py.
"""

from __future__ import annotations

import html
import re
from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from connections.models import Audience, Connection, Delivery, FirehoseMessage, ImportRun, Profile
from connections.services.ingest import subscriptions
from connections.services.ingest.memberships import ProfileChange, ProfileInput, apply_changes
from connections.services.resync import runs as resync
from tests.support.admin import admin_url, make_delivery, make_forward
from tests.support.admin import page_text as text
from tests.support.factories import AudienceFactory, ConnectionFactory, ProfileFactory

pytestmark = pytest.mark.django_db

INDEX = "/admin/"


@pytest.fixture
def scene(db):
    """A healthy connection, a faulted one with a backlog, failures and a resync; an import."""
    healthy = ConnectionFactory(
        name="Healthy US",
        last_success_at=timezone.now() - timedelta(minutes=3),
        credentials_verified_at=timezone.now() - timedelta(minutes=3),
    )
    broken = ConnectionFactory(
        name="Broken EU", state=Connection.State.FAULTED, last_error="Customer.io answered 401: Unauthorized"
    )
    audience = AudienceFactory(audience_id=555, name="Loyal buyers")
    subscriptions.subscribe(audience, healthy)
    for profile in ProfileFactory.create_batch(4):
        make_forward(broken, profile)
    for status in ["succeeded"] * 8 + ["failed"] * 2:
        make_delivery(healthy, status=status)
    resync.queue_all(resync.scope_for(healthy))
    ImportRun.objects.create(audience=audience, source="buyers.csv", lines_total=10, lines_done=10, status="done")
    return {"healthy": healthy, "broken": broken, "audience": audience}


# --- the home overview -----------------------------------------------------------------------


@pytest.mark.parametrize("role", ["marketer", "superuser"])
def test_the_home_page_shows_every_connection_and_what_needs_attention(as_role, scene, role):
    response = as_role(role).get(INDEX)
    page = text(response)

    assert response.status_code == 200
    assert "Broken EU is faulted: Customer.io rejected its API key" in page
    # 2 failures of 10: shown as a count in the table, not called a problem (tests/admin/test_home_failures.py).
    assert "Healthy US had" not in page and "attempts fail" not in page
    assert "Broken EU" not in page.split("is faulted")[1].split("Connections")[0]  # its fault says it already
    broken_row = re.search(r"Broken EU Faulted (\S+) ", page)
    assert broken_row and broken_row.group(1) == "4", "4 changes waiting"
    assert re.search(r"Healthy US Active 0 nothing waits 3 minutes ago 2 of 10", page), page
    assert "Resync of Healthy US (every active subscription): 0 of 0 people queued, done" in page
    assert "Import of buyers.csv into Loyal buyers : 10 of 10 lines applied, done" in page
    content = response.content.decode()
    assert f'href="{reverse("admin:connections_connection_change", args=[scene["broken"].pk])}"' in content
    # Django's app list is still there, below.
    assert "Everything in the admin" in page
    assert 'href="/admin/connections/profile/"' in content


def test_a_log_viewer_sees_the_overview_with_links_to_the_log_only(as_role, scene):
    response = as_role("log_viewer").get(INDEX)
    content = response.content.decode()

    assert response.status_code == 200
    assert "Broken EU is faulted" in text(response)
    assert "/admin/connections/connection/" not in content, "no links to pages a log viewer cannot open"
    failures = f'/admin/connections/delivery/?connection__id__exact={scene["healthy"].pk}&amp;status__exact=failed'
    assert failures in content
    assert as_role("log_viewer").get(html.unescape(failures)).status_code == 200


def test_the_home_page_says_when_all_is_well(as_role):
    ConnectionFactory(name="Fine", last_success_at=timezone.now())

    page = text(as_role("marketer").get(INDEX))

    assert "Every connection is working: nothing needs attention." in page
    assert "No resync or import yet." in page


def test_the_home_page_says_when_firehose_messages_wait_for_a_worker(as_role):
    ConnectionFactory(name="Fine", last_success_at=timezone.now())
    for n, waited in enumerate((30, 5 * 60, 2 * 60)):
        FirehoseMessage.objects.create(
            message_id=f"m{n}", message_type="audience_membership_change_request", response={}, pending=True, body="{}"
        )
        received = timezone.now() - timedelta(seconds=waited)
        FirehoseMessage.objects.filter(message_id=f"m{n}").update(received_at=received)
    FirehoseMessage.objects.create(message_id="applied", message_type="x", response={})  # applied: not counted

    page = text(as_role("log_viewer").get(INDEX))

    assert (
        "mParticle's messages 3 messages accepted from mParticle have waited up to 5 minutes for a worker to apply"
        " them. Is a Celery worker running?" in page
    )
    assert "Every connection is working" not in page
    FirehoseMessage.objects.filter(received_at__lt=timezone.now() - timedelta(seconds=45)).update(pending=False)
    page = text(as_role("log_viewer").get(INDEX))
    assert "accepted from mParticle" not in page, "30 seconds is not yet worth a word"
    assert "Every connection is working: nothing needs attention." in page


def test_the_home_page_of_an_empty_install_says_where_to_start(as_role):
    page = text(as_role("marketer").get(INDEX))

    assert "No connection yet. Add the Customer.io workspace to forward audiences to" in page


def test_anonymous_visitors_are_sent_to_log_in(client, scene):
    response = client.get(INDEX)

    assert response.status_code == 302 and response["Location"].startswith("/admin/login/")


# --- an audience's numbers -------------------------------------------------------------------


@pytest.fixture
def audience_scene(db):
    audience = AudienceFactory(audience_id=900, name="VIP")
    other = AudienceFactory(audience_id=901, name="Empty")
    live = ConnectionFactory(name="Live workspace", credentials_verified_at=timezone.now())
    paused = ConnectionFactory(name="Paused workspace", state=Connection.State.BACKING_OFF)
    subscriptions.subscribe(audience, live)
    subscription = subscriptions.subscribe(audience, paused)[0]
    subscriptions.set_status([subscription], "inactive")
    apply_changes([ProfileChange(ProfileInput(customer_id=f"v{i}"), {900: i < 3}) for i in range(5)])
    sent = Profile.objects.get(customer_id="v1")
    delivery = make_delivery(live, sent)
    return audience, other, delivery


@pytest.mark.parametrize("role", ["marketer", "superuser"])
def test_the_audience_list_counts_members_and_ex_members(as_role, audience_scene, role):
    page = text(as_role(role).get(admin_url(Audience, "changelist")))

    assert re.search(r"VIP 900 3 2 1 ", page), page
    assert re.search(r"Empty 901 0 0 0 ", page), page


@pytest.mark.parametrize("role", ["marketer", "superuser"])
def test_the_audience_page_shows_its_members_and_where_they_go(as_role, audience_scene, role):
    audience, _other, delivery = audience_scene

    response = as_role(role).get(admin_url(Audience, "change", audience.pk))
    page = text(response)

    assert response.status_code == 200
    assert "Members 3 Ex-members 2" in page
    assert re.search(r"Live workspace Active: forwarded Active 5 Succeeded just now", page), page
    assert "Paused workspace Inactive: not forwarded Backing off 0 none recently" in page
    assert f'href="{admin_url(Delivery, "change", delivery.pk)}"' in response.content.decode()


def test_log_viewers_do_not_open_audiences(as_role, audience_scene):
    audience, _other, _delivery = audience_scene

    assert as_role("log_viewer").get(admin_url(Audience, "change", audience.pk)).status_code == 403
    assert as_role("log_viewer").get(admin_url(Audience, "changelist")).status_code == 403
