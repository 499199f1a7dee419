"""One `key=value` log line per delivery outcome, parseable whatever the values hold, never a secret."""

import logging
import shlex

import pytest

from cio_standin import Faults
from connections.logfmt import logfmt
from connections.services.forwarding.worker import forward_pending
from connections.services.ingest import subscriptions
from connections.services.ingest.memberships import ProfileChange, ProfileInput, apply_changes
from tests.conftest import STANDIN_WORKSPACES
from tests.support.factories import AudienceFactory

pytestmark = pytest.mark.django_db


def delivery_lines(caplog):
    return [r.getMessage() for r in caplog.records if r.name == "cioaudience.forwarding"]


def fields(line):
    event, *pairs = shlex.split(line)
    return event, dict(pair.split("=", 1) for pair in pairs)


def test_each_outcome_is_one_parseable_line(standin, workspace_connection, caplog):
    caplog.set_level(logging.INFO, logger="cioaudience.forwarding")
    connection = workspace_connection("site-us")
    subscriptions.subscribe(AudienceFactory(audience_id=123), connection)
    apply_changes(
        [
            ProfileChange(ProfileInput(customer_id='odd "id"\nstatus=forged'), {123: True}),
            ProfileChange(ProfileInput(mpid="42"), {123: True}),
        ]
    )

    forward_pending(connection.pk)

    lines = delivery_lines(caplog)
    assert len(lines) == 2 and all("\n" not in line for line in lines)
    parsed = sorted((fields(line) for line in lines), key=lambda f: f[1]["status"])
    (event, skipped), (_, sent) = parsed
    assert event == "delivery"
    assert skipped["status"] == "skipped" and skipped["customer_id"] == "" and "customer_id" in skipped["error"]
    assert sent == {
        "connection": str(connection.pk),
        "customer_id": 'odd "id"\\nstatus=forged',
        "status": "succeeded",
        "http_status": "200",
        "attempt": "1",
        "error": "-",
    }


def test_a_rejected_key_is_never_logged(standin, workspace_connection, caplog):
    caplog.set_level(logging.INFO, logger="cioaudience.forwarding")
    connection = workspace_connection("site-us")
    subscriptions.subscribe(AudienceFactory(audience_id=123), connection)
    apply_changes([ProfileChange(ProfileInput(customer_id="c1"), {123: True})])
    standin.set_faults(Faults(share=1.0, statuses=[401]))

    forward_pending(connection.pk)

    (line,) = delivery_lines(caplog)
    assert fields(line)[1]["status"] == "credentials_rejected" and fields(line)[1]["http_status"] == "401"
    assert STANDIN_WORKSPACES["site-us"][0] not in caplog.text


def test_plain_values_stay_bare_and_the_rest_is_quoted():
    assert logfmt("e", a=1, b="x-y_z.1", c=None, d="two words", e="") == 'e a=1 b=x-y_z.1 c=- d="two words" e=""'
