"""Erasures that wait are shown, with their age: on /metrics and on the admin's home page.

Two stages: here (an mParticle DSR or a queued admin/command erasure waiting for the Firehose
applier, FIREHOSE_APPLY=worker) and at Customer.io (suppress/delete calls not accepted yet).
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from connections.firehose import inbox, queued_erasure
from connections.models import ErasureCall, ErasureRecord, FirehoseMessage
from connections.services.erasure import local as erasure
from tests.support.erasure import CUSTOMER_ID, dsr_message, forwarded_person, post_dsr
from tests.visibility.test_admin_panels import text

pytestmark = pytest.mark.django_db


@pytest.fixture
def waiting(settings, workspace_connection):
    """One DSR waiting for the applier for 90 s, and one erasure whose Customer.io call waits for 5 minutes."""
    settings.FIREHOSE_APPLY = "worker"
    connection = workspace_connection(erasure="delete")
    forwarded_person(connection)
    erasure.erase(erasure.PersonQuery(customer_id=CUSTOMER_ID), source=ErasureRecord.Source.COMMAND)
    ErasureRecord.objects.update(created_at=timezone.now() - timedelta(minutes=5))
    assert post_dsr(dsr_message(customer_id="someone-else", email=None)).status_code == 200
    FirehoseMessage.objects.filter(pending=True).update(received_at=timezone.now() - timedelta(seconds=90))
    assert ErasureCall.objects.get().is_open


def scrape(client, settings) -> dict[str, float]:
    settings.METRICS_TOKEN = "metrics-secret"
    page = client.get("/metrics", HTTP_AUTHORIZATION="Bearer metrics-secret").content.decode()
    return {
        line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1])
        for line in page.splitlines()
        if line.startswith("cioaudience_erasures_waiting")
    }


def test_metrics_show_no_erasure_waiting_when_none_waits(client, settings):
    assert scrape(client, settings) == {
        'cioaudience_erasures_waiting{stage="here"}': 0.0,
        'cioaudience_erasures_waiting{stage="customerio"}': 0.0,
        'cioaudience_erasures_waiting_oldest_age_seconds{stage="here"}': 0.0,
        'cioaudience_erasures_waiting_oldest_age_seconds{stage="customerio"}': 0.0,
    }


def test_metrics_show_the_erasures_waiting_at_each_stage_with_their_age(client, settings, waiting):
    found = scrape(client, settings)

    assert found['cioaudience_erasures_waiting{stage="here"}'] == 1.0
    assert found['cioaudience_erasures_waiting{stage="customerio"}'] == 1.0
    assert 90 <= found['cioaudience_erasures_waiting_oldest_age_seconds{stage="here"}'] < 120
    assert 300 <= found['cioaudience_erasures_waiting_oldest_age_seconds{stage="customerio"}'] < 330


def test_a_queued_admin_erasure_counts_as_waiting_here(client, settings):
    settings.FIREHOSE_APPLY = "worker"
    queued_erasure.queue(erasure.PersonQuery(customer_id="someone"), source=ErasureRecord.Source.ADMIN)

    assert scrape(client, settings)['cioaudience_erasures_waiting{stage="here"}'] == 1.0
    inbox.apply_pending()
    assert scrape(client, settings)['cioaudience_erasures_waiting{stage="here"}'] == 0.0


def test_the_admin_home_names_the_erasures_waiting_and_their_age(client, marketer, waiting):
    client.force_login(marketer)

    page = text(client.get("/admin/"))

    assert "1 erasure has waited 1 minute for a worker to carry it out here" in page
    assert "1 suppress or delete call has waited 5 minutes for Customer.io to accept it" in page
    assert "Every connection is working" not in page


def test_the_admin_home_says_nothing_of_erasures_once_they_are_done(client, marketer, waiting):
    inbox.apply_pending()
    ErasureCall.objects.update(status=ErasureCall.Status.SUCCEEDED)
    client.force_login(marketer)

    page = text(client.get("/admin/"))

    assert "Erasures" not in page.split("Connections")[0]
    assert "erasure has waited" not in page and "call has waited" not in page
