"""Inbound tokens in the admin: shown once at creation, stored hashed, revocable."""

from __future__ import annotations

import hashlib

import pytest

from connections.models import InboundToken
from connections.services.ingest import tokens
from tests.support.admin import admin_url, make_token

pytestmark = pytest.mark.django_db


def test_a_token_created_in_the_admin_is_shown_once_and_stored_hashed(client, superuser):
    client.force_login(superuser)

    response = client.post(admin_url(InboundToken, "add"), {"name": "mParticle production"})

    assert response.status_code == 200
    secret = response.context["token"]
    assert secret in response.content.decode()
    stored = InboundToken.objects.get(name="mParticle production")
    assert stored.token_hash == hashlib.sha256(secret.encode()).hexdigest()
    assert stored.prefix == secret[:8]
    assert tokens.authenticate(secret) == stored
    for url in (admin_url(InboundToken, "changelist"), admin_url(InboundToken, "change", stored.pk)):
        assert secret not in client.get(url).content.decode()


def test_the_token_is_not_kept_in_a_message_for_a_later_page(client, superuser):
    client.force_login(superuser)

    secret = client.post(admin_url(InboundToken, "add"), {"name": "mParticle"}).context["token"]
    next_page = client.get(admin_url(InboundToken, "changelist"))

    assert secret not in next_page.content.decode()
    assert all(secret not in cookie.value for cookie in client.cookies.values())


def test_the_list_shows_name_prefix_and_usage_but_never_the_hash(client, superuser):
    token, secret = make_token("Partner feed")
    client.force_login(superuser)

    html = client.get(admin_url(InboundToken, "changelist")).content.decode()

    assert "Partner feed" in html
    assert f"{secret[:8]}…" in html
    assert token.token_hash not in html


def test_revoking_a_token_makes_it_fail_authentication(client, superuser):
    token, secret = make_token()
    client.force_login(superuser)

    client.post(admin_url(InboundToken, "changelist"), {"action": "revoke_tokens", "_selected_action": [token.pk]})

    token.refresh_from_db()
    assert token.revoked_at is not None
    assert tokens.authenticate(secret) is None


def test_a_second_token_with_the_same_name_is_refused(client, superuser):
    make_token("mParticle")
    client.force_login(superuser)

    response = client.post(admin_url(InboundToken, "add"), {"name": "mParticle"})

    assert response.status_code == 200
    assert response.context["adminform"].form.errors
    assert InboundToken.objects.count() == 1
