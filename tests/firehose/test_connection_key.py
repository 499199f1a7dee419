"""Every message that names an account must name a connection by its Connection Key (SPEC section 5)."""

import re

import pytest

from connections.models import Profile
from tests.support.firehose import audience, membership_request, official, row_counts, user_profile

pytestmark = pytest.mark.django_db


def test_a_membership_change_with_an_unknown_connection_key_is_refused_and_changes_nothing(post):
    before = row_counts()

    response = post(
        membership_request(user_profile("c1", audiences=[audience(1, "add")]), connection_key="no-such-key")
    )

    assert response.status_code == 400
    error = response.json()["error"]
    assert error.startswith("account.account_settings.connectionKey: no connection has this Connection Key")
    assert row_counts() == before


def test_a_membership_change_without_a_connection_key_is_refused(post):
    message = membership_request(user_profile("c1", audiences=[audience(1, "add")]))
    del message["account"]["account_settings"]["connectionKey"]
    before = row_counts()

    response = post(message)

    assert response.status_code == 400
    assert "connectionKey: is required" in response.json()["error"]
    assert row_counts() == before


def test_a_verification_request_with_an_unknown_key_is_refused_too(post):
    message = membership_request(connection_key="no-such-key")
    del message["user_profiles"]

    assert post(message).status_code == 400


def test_a_known_connection_key_is_accepted(post, connection):
    message = membership_request(
        user_profile("c1", audiences=[audience(1, "add")]), connection_key=connection.connection_key
    )

    response = post(message)

    assert response.status_code == 200
    assert response.json()["suspend_subscription"] is False
    assert Profile.objects.get().customer_id == "c1"


def test_a_subscription_request_with_an_unknown_key_is_refused(post):
    message = official("AudienceSubscriptionRequest")
    message["account"]["account_settings"]["connectionKey"] = "no-such-key"
    before = row_counts()

    assert post(message).status_code == 400
    assert row_counts() == before


def test_applying_a_message_never_reads_the_connections_api_keys(post, connection):
    from django.db import connection as db
    from django.test.utils import CaptureQueriesContext

    message = membership_request(
        user_profile("c1", audiences=[audience(1, "add")]), connection_key=connection.connection_key
    )
    with CaptureQueriesContext(db) as queries:
        assert post(message).status_code == 200

    statements = [q["sql"] for q in queries.captured_queries]
    assert any("connection_key" in sql for sql in statements)  # the connection was looked up
    assert not [sql for sql in statements if re.search(r"\b(app_)?api_key\b", sql)]  # api_key_last4 is fine
