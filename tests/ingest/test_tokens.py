"""Inbound tokens: only a hash is stored; revoked or unknown tokens are refused."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from connections.models import InboundToken
from connections.services.ingest import tokens

pytestmark = pytest.mark.django_db


def test_a_new_token_is_stored_only_as_its_hash_and_prefix():
    token, secret = tokens.create_token("mParticle")

    stored = InboundToken.objects.get(pk=token.pk)
    assert len(secret) >= 43
    assert stored.token_hash == tokens.hash_token(secret)
    assert stored.prefix == secret[:8]
    assert secret not in {stored.token_hash, stored.name}


def test_the_token_authenticates():
    token, secret = tokens.create_token("mParticle")

    assert tokens.authenticate(secret) == token


@pytest.mark.parametrize("wrong", ["", "not-a-token", "x" * 43])
def test_an_unknown_token_is_refused(wrong):
    tokens.create_token("mParticle")

    assert tokens.authenticate(wrong) is None


def test_a_revoked_token_is_refused():
    token, secret = tokens.create_token("mParticle")

    assert tokens.revoke([token]) == 1
    assert tokens.authenticate(secret) is None
    assert tokens.revoke([token]) == 0  # already revoked


def test_last_used_is_recorded_at_most_once_a_minute():
    token, secret = tokens.create_token("mParticle")

    def last_used():  # type: ignore[no-untyped-def]
        return InboundToken.objects.get(pk=token.pk).last_used_at

    tokens.authenticate(secret)
    first = last_used()
    tokens.authenticate(secret)

    assert first is not None
    assert last_used() == first

    stale = timezone.now() - timedelta(minutes=2)
    InboundToken.objects.filter(pk=token.pk).update(last_used_at=stale)
    tokens.authenticate(secret)

    assert last_used() > stale + timedelta(minutes=1)


def test_two_tokens_are_different():
    _a, first = tokens.create_token("a")
    _b, second = tokens.create_token("b")

    assert first != second
