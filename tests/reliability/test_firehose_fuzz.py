"""Fuzzing the Firehose endpoint (SPEC §5): thousands of generated and mutated messages.

Each message is posted through Django's test client with a real inbound token, inside a
transaction rolled back afterwards, so every example starts from the same database. For every
one: never a 5xx; a 4xx is JSON with an "error"; a refused message changed no row at all; an
accepted one is applied whole (its profiles exist with their memberships and identity, forwards
are queued for exactly the active subscriptions), and replaying it changes nothing more.
"""

from __future__ import annotations

import json
import os
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from django.db import transaction
from django.test import override_settings
from django.utils import timezone
from hypothesis import HealthCheck, given, settings

from connections.models import (
    Audience,
    Connection,
    FirehoseMessage,
    Forward,
    Membership,
    Profile,
    Subscription,
)
from connections.services.ingest import tokens
from tests.support import fuzzing
from tests.support.factories import ConnectionFactory, ProfileFactory
from tests.support.firehose import URL
from tests.support.tables import changed_since, checksums

pytestmark = [pytest.mark.django_db, pytest.mark.reliability, pytest.mark.timeout(600)]


@pytest.fixture(autouse=True)
def _applied_in_the_request():
    """Each example checks what its answer applied: FIREHOSE_APPLY=request. The worker mode gives the
    same answers and leaves the same data (every test of tests/firehose runs in both modes)."""
    with override_settings(FIREHOSE_APPLY="request"):
        yield

GENERATED_EXAMPLES = 3_200
MUTATED_EXAMPLES = 2_000
assert GENERATED_EXAMPLES + MUTATED_EXAMPLES >= 5_000, "the issue asks for at least 5,000 messages"
FUZZ_SETTINGS = settings(
    deadline=None,
    database=None,
    # CI explores the same 5,200 messages every run (a red build always reproduces); set
    # FUZZ_RANDOM=1 to explore new ones locally.
    derandomize=not os.environ.get("FUZZ_RANDOM"),
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
)

# --- the database every example starts from --------------------------------------------------


@dataclass
class World:
    token: str
    tables: dict[str, str]  # table -> checksum
    members: dict[tuple[int, int], bool]  # (profile pk, audience pk) -> is_member
    profiles: dict[int, tuple[str, str | None, str, str, str]]  # pk -> customer_id, mpid, email, first, last
    by_customer_id: dict[str, int]
    active: dict[int, set[int]]  # audience pk -> connection pks with an active subscription
    subscriptions: dict[tuple[int, int], str]  # (audience pk, connection pk) -> status
    audiences: dict[int, tuple[int, str]]  # audience_id -> (pk, name)
    connections: dict[str, Connection]  # connection_key -> connection
    forwards: set[int]  # the queued forwards' pks
    stats: Counter[str] = field(default_factory=Counter)


@pytest.fixture
def world(db) -> World:
    off, on, faulted = (
        ConnectionFactory(connection_key=key, one_attribute_per_audience=key == "ck-one-per-audience")
        for key in fuzzing.CONNECTION_KEYS
    )
    Connection.objects.filter(pk=faulted.pk).update(state=Connection.State.FAULTED, last_error="401")
    audiences = {i: Audience.objects.create(audience_id=i, name=name) for i, name in fuzzing.AUDIENCES.items()}
    for audience_id, connection, status in [
        (1, off, "active"),
        (2, off, "inactive"),
        (123, on, "active"),
        (fuzzing.MAX_AUDIENCE_ID, on, "active"),
        (1, on, "inactive"),
        (2, faulted, "active"),
    ]:
        Subscription.objects.create(audience=audiences[audience_id], connection=connection, status=status)
    c1, c2, c4 = (ProfileFactory(customer_id=c) for c in fuzzing.CUSTOMER_IDS)
    Profile.objects.filter(pk=c1.pk).update(mpid="m-1")
    m3 = Profile.objects.create(customer_id="", mpid="m-3")
    now = timezone.now()
    for profile, audience_id, is_member in [
        (c1, 1, True),
        (c1, 2, False),
        (c2, 123, True),
        (c4, 123, True),
        (m3, 1, True),
    ]:
        Membership.objects.create(profile=profile, audience=audiences[audience_id], is_member=is_member, changed_at=now)
    # Queued forwards, which a deactivation must cancel.
    for connection, profile, audience_id in [(off, c1, 1), (on, c2, 123), (on, c4, None)]:  # c4: an identity change
        audience = audiences.get(audience_id)
        Forward.objects.create(
            connection=connection, profile=profile, audience=audience, reason="membership", due_at=now
        )
    _inbound, token = tokens.create_token("mParticle")

    return World(
        token=token,
        tables=checksums(),
        members={(m.profile_id, m.audience_id): m.is_member for m in Membership.objects.all()},
        profiles={p.pk: identity_of(p) for p in Profile.objects.all()},
        by_customer_id={p.customer_id: p.pk for p in Profile.objects.exclude(customer_id="")},
        active=active_connections(),
        subscriptions={(s.audience_id, s.connection_id): s.status for s in Subscription.objects.all()},
        audiences={a.audience_id: (a.pk, a.name) for a in Audience.objects.all()},
        connections={c.connection_key: c for c in Connection.objects.all()},
        forwards=set(Forward.objects.values_list("pk", flat=True)),
    )


def identity_of(profile: Profile) -> tuple[str, str | None, str, str, str]:
    return (profile.customer_id, profile.mpid, profile.email, profile.first_name, profile.last_name)


def active_connections() -> dict[int, set[int]]:
    active: dict[int, set[int]] = {}
    for audience_pk, connection_pk in Subscription.objects.filter(status="active").values_list(
        "audience_id", "connection_id"
    ):
        active.setdefault(audience_pk, set()).add(connection_pk)
    return active


def changed_tables(world: World) -> set[str]:
    return changed_since(world.tables)


# --- posting and the checks every message gets -------------------------------------------------


def post(client, world: World, body: bytes):  # type: ignore[no-untyped-def]
    return client.post(URL, data=body, content_type="application/json", HTTP_AUTHORIZATION=f"Token {world.token}")


def check_one(client, world: World, body: bytes) -> None:  # type: ignore[no-untyped-def]
    with transaction.atomic():
        response = post(client, world, body)
        world.stats["messages"] += 1
        assert response.status_code < 500, f"{response.status_code} for {body[:300]!r}: {response.content[:300]!r}"
        if response.status_code >= 400:
            world.stats[f"refused {response.status_code}"] += 1
            assert response["Content-Type"] == "application/json", body[:300]
            error = json.loads(response.content)["error"]
            assert isinstance(error, str) and error.strip(), response.content
            assert not changed_tables(world), f"refused ({error}) but rows changed: {changed_tables(world)}"
        else:
            assert response.status_code == 200, response.content
            message = json.loads(body)  # what was accepted must be JSON to Python too
            world.stats[f"accepted {message['type']}"] += 1
            check_accepted(world, message, json.loads(response.content))
            if message["type"] != fuzzing.REGISTRATION and world.stats["messages"] % 4 == 0:
                check_replay(client, world, body, response)
        transaction.set_rollback(True)


def check_replay(client, world: World, body: bytes, first) -> None:  # type: ignore[no-untyped-def]
    before = checksums()
    again = post(client, world, body)
    world.stats["replays"] += 1
    assert again.status_code == 200 and again.content == first.content, "a replay gets the first answer"
    assert checksums() == before, "a replayed message id changes nothing more"


def check_accepted(world: World, message: dict[str, Any], response: dict[str, Any]) -> None:
    kind = message["type"]
    assert response["type"] == kind.removesuffix("_request") + "_response"
    if kind == fuzzing.REGISTRATION:
        assert not changed_tables(world), "a registration request changes nothing"
        return
    stored = FirehoseMessage.objects.get()
    assert stored.message_type == kind and stored.response == response
    if kind == fuzzing.SUBSCRIPTION:
        check_subscription_applied(world, message)
    elif kind == fuzzing.DSR:
        check_erasure_applied(world, message)
    else:
        check_memberships_applied(world, message)
    check_new_forwards_only_for_active_subscriptions(world)


def check_new_forwards_only_for_active_subscriptions(world: World) -> None:
    active = active_connections()
    new = Forward.objects.exclude(pk__in=world.forwards)
    for connection_pk, audience_pk, profile_pk in new.values_list("connection_id", "audience_id", "profile_id"):
        if audience_pk is not None:
            assert connection_pk in active.get(audience_pk, ()), "a forward for an inactive subscription"
        else:
            audiences = Membership.objects.filter(profile_id=profile_pk).values_list("audience_id", flat=True)
            assert any(connection_pk in active.get(a, ()) for a in audiences), "an identity forward to nowhere"


# --- subscription requests ----------------------------------------------------------------


def check_subscription_applied(world: World, message: dict[str, Any]) -> None:
    connection = world.connections[message["account"]["account_settings"]["connectionKey"]]
    audience_id, name, action = message["audience_id"], message["audience_name"], message["action"]
    changed = changed_tables(world)
    assert not changed & {"connections.profile", "connections.membership", "connections.connection"}
    before = world.audiences.get(audience_id)
    if action == "remove":
        if before is None:
            assert changed == {"connections.firehosemessage"}
            return
        sub = Subscription.objects.filter(audience_id=before[0], connection=connection).first()
        if sub is not None:
            assert sub.status == "inactive"
        assert not Forward.objects.filter(connection=connection, audience_id=before[0], claim_token="").exists()
        assert Audience.objects.get(audience_id=audience_id).name == before[1]
        return
    audience = Audience.objects.get(audience_id=audience_id)
    assert audience.name == name
    sub = Subscription.objects.get(audience=audience, connection=connection)
    status_before = world.subscriptions.get((audience.pk, connection.pk))
    if action == "add" or status_before is None:
        assert sub.status == "active"
    else:
        assert sub.status == status_before, "an update leaves the subscription's status alone"
    members = [p for (p, a), is_member in world.members.items() if a == audience.pk and is_member]
    if sub.status == "active" and status_before != "active":
        # A member with a row already waiting for this audience keeps that one (the outbox holds one
        # row per profile and audience; its payload is computed when sent): any reason counts.
        queued = Forward.objects.filter(connection=connection, audience=audience)
        assert set(members) <= set(queued.values_list("profile_id", flat=True)), "activation backfills the members"
    if before is not None and before[1] != name:
        for connection_pk in world.active.get(audience.pk, ()):
            if Connection.objects.get(pk=connection_pk).one_attribute_per_audience:
                queued = Forward.objects.filter(connection_id=connection_pk, audience=audience)
                assert set(members) <= set(queued.values_list("profile_id", flat=True)), "a rename re-sends members"


# --- membership change requests --------------------------------------------------------------


@dataclass
class Entry:
    """What one user profile of a message asks for, read as the protocol defines it (reference README)."""

    customer_id: str
    mpid: str | None
    memberships: dict[int, bool]
    identity: dict[str, str]  # email / first_name / last_name given


def entries(message: dict[str, Any]) -> Iterator[Entry]:
    for profile in message.get("user_profiles") or ():
        identities = profile.get("user_identities") or ()
        raw = {}
        for identity in identities:
            if identity["encoding"] == "raw" and identity["value"]:
                raw.setdefault(identity["type"], identity["value"])
        mpid = profile.get("mpid")
        mpid = str(mpid) if mpid not in (None, "") else None
        if not raw.get("customer") and not mpid:
            continue  # names nobody: nothing stored
        audiences = profile.get("audiences") or ()
        given = {"email": raw["email"]} if "email" in raw else {}
        for key, name in (("$FirstName", "first_name"), ("$LastName", "last_name")):
            for audience in audiences:
                for attribute in audience.get("user_attributes") or ():
                    if attribute.get("key") != key:
                        continue
                    if attribute["action"] == "delete":
                        given[name] = ""
                    elif attribute.get("value") is not None:
                        given[name] = attribute["value"]
        yield Entry(
            customer_id=raw.get("customer", ""),
            mpid=mpid,
            memberships={
                a["audience_id"]: a["action"] == "add" for a in audiences if a["action"] != "attribute_update"
            },
            identity=given,
        )


def resolve(
    world: World, entry: Entry, seen: dict[tuple[str, str], Profile], linked: dict[str, str] | None = None
) -> Profile:
    """The profile an entry is about: by mpid, else by the customer ID (as it was when the message came).

    Entries of one message naming the same mpid (or, without one, the same customer ID) are one person.
    An entry with an mpid that shares a customer ID with another entry is that person too, and may
    give them a new customer ID (the last entry wins): `linked` maps such customer IDs to the mpid.
    """
    key = ("mpid", entry.mpid) if entry.mpid else ("customer_id", entry.customer_id)
    profile = seen.get(key) or (Profile.objects.filter(mpid=entry.mpid).first() if entry.mpid else None)
    if profile is None and entry.customer_id:
        pk = world.by_customer_id.get(entry.customer_id)
        profile = Profile.objects.filter(pk=pk).first() if pk else None
        profile = profile or Profile.objects.filter(customer_id=entry.customer_id).first()
    if profile is None and linked and entry.customer_id in linked:
        profile = Profile.objects.filter(mpid=linked[entry.customer_id]).first()
    assert profile is not None, f"no profile for {entry}"
    seen[key] = profile
    return profile


def check_erasure_applied(world: World, message: dict[str, Any]) -> None:
    """The people the DSR names are gone (with their memberships); everyone else is as before."""
    identities = message["subject_identities"]
    customer_id = (identities.get("controller_customer_id") or {}).get("value")
    email = ((identities.get("email") or {}).get("value") or "").lower()
    named = {
        pk for pk, (cid, _mpid, mail, _first, _last) in world.profiles.items()
        if (customer_id and cid == customer_id) or (email and mail.lower() == email)
    }
    remaining = {p.pk: identity_of(p) for p in Profile.objects.all()}
    assert set(remaining) == set(world.profiles) - named, "exactly the named people are erased"
    assert all(remaining[pk] == world.profiles[pk] for pk in remaining), "nobody else changes"
    assert not Membership.objects.filter(profile_id__in=named).exists()


def check_memberships_applied(world: World, message: dict[str, Any]) -> None:
    changed = changed_tables(world)
    assert not changed & {"connections.connection", "connections.subscription", "connections.delivery"}
    expected: dict[tuple[int, int], bool] = {}
    identity: dict[int, dict[str, str]] = {}
    seen: dict[tuple[str, str], Profile] = {}
    all_entries = list(entries(message))
    linked: dict[str, str] = {}
    for entry in all_entries:
        if entry.mpid and entry.customer_id:
            linked.setdefault(entry.customer_id, entry.mpid)
    for entry in all_entries:
        profile = resolve(world, entry, seen, linked)
        for audience_id, is_member in entry.memberships.items():
            expected[(profile.pk, audience_id)] = is_member
        identity.setdefault(profile.pk, {}).update(entry.identity)
    if not expected and not identity:
        assert changed <= {"connections.firehosemessage"}, changed
    audience_pks = dict(Audience.objects.values_list("audience_id", "pk"))
    for (profile_pk, audience_id), is_member in expected.items():
        audience_pk = audience_pks[audience_id]
        row = Membership.objects.get(profile_id=profile_pk, audience_id=audience_pk)
        assert row.is_member == is_member, (profile_pk, audience_id)
        world.stats["memberships checked"] += 1
        if world.members.get((profile_pk, audience_pk)) != is_member:
            for connection_pk in world.active.get(audience_pk, ()):
                assert Forward.objects.filter(
                    connection_id=connection_pk, profile_id=profile_pk, audience_id=audience_pk
                ).exists(), "a membership change is queued for each active subscription"
                world.stats["forwards checked"] += 1
    for profile_pk, fields in identity.items():
        profile = Profile.objects.get(pk=profile_pk)
        for name, value in fields.items():
            assert getattr(profile, name) == value, (name, profile_pk)
        if profile_pk in world.profiles and identity_of(profile) != world.profiles[profile_pk]:
            for audience_pk in Membership.objects.filter(profile=profile).values_list("audience_id", flat=True):
                for connection_pk in world.active.get(audience_pk, ()):
                    assert Forward.objects.filter(connection_id=connection_pk, profile=profile).exists()


# --- the tests ------------------------------------------------------------------------------


def report(name: str, world: World, started: float) -> None:
    counts = ", ".join(f"{k} {v}" for k, v in sorted(world.stats.items()))
    print(f"\n{name}: {world.stats['messages']} messages in {time.monotonic() - started:.0f} s ({counts})")


def test_generated_messages_are_answered_4xx_or_applied_whole(client, world):
    started = time.monotonic()

    @settings(FUZZ_SETTINGS, max_examples=GENERATED_EXAMPLES)
    @given(message=fuzzing.messages())
    def run(message: Any) -> None:
        check_one(client, world, fuzzing.encode(message))

    run()

    report("generated", world, started)
    assert world.stats["messages"] >= GENERATED_EXAMPLES
    for kind in (fuzzing.REGISTRATION, fuzzing.SUBSCRIPTION, fuzzing.MEMBERSHIP):
        assert world.stats[f"accepted {kind}"] >= GENERATED_EXAMPLES // 50, f"too few {kind} accepted to mean much"


def test_mutated_official_samples_are_answered_4xx_or_applied_whole(client, world):
    started = time.monotonic()

    @settings(FUZZ_SETTINGS, max_examples=MUTATED_EXAMPLES)
    @given(body=fuzzing.mutated_samples())
    def run(body: bytes) -> None:
        check_one(client, world, body)

    run()

    report("mutated samples", world, started)
    assert world.stats["messages"] >= MUTATED_EXAMPLES
    assert world.stats[f"accepted {fuzzing.MEMBERSHIP}"] >= MUTATED_EXAMPLES // 50
    assert sum(n for k, n in world.stats.items() if k.startswith("refused")) >= MUTATED_EXAMPLES // 4


# --- found by fuzzing -----------------------------------------------------------------------------


def test_two_entries_naming_one_person_by_customer_id_and_by_mpid_are_both_applied(client, world):
    """Minimized by hypothesis: one entry names c-1 by Customer ID, the other by mpid (m-1); both change a name."""
    message = {
        "type": fuzzing.MEMBERSHIP,
        "id": "e3e70682-c209-4cac-629f-6fbed82c07cd",
        "timestamp_ms": 0,
        "firehose_version": "3.2.0",
        "account": {"account_id": 0, "account_settings": {"connectionKey": "ck-segment-membership"}},
        "user_profiles": [
            {
                "user_identities": [{"type": "customer", "encoding": "raw", "value": "c-1"}],
                "audiences": [
                    {
                        "audience_id": 1,
                        "audience_name": "One",
                        "action": "add",
                        "user_attributes": [{"key": "$FirstName", "action": "upsert", "value": "Grace"}],
                    }
                ],
            },
            {
                "mpid": "m-1",
                "audiences": [
                    {
                        "audience_id": 1,
                        "audience_name": "One",
                        "action": "add",
                        "user_attributes": [{"key": "$LastName", "action": "delete"}],
                    }
                ],
            },
        ],
    }

    response = post(client, world, json.dumps(message).encode())

    assert response.status_code == 200
    profile = Profile.objects.get(customer_id="c-1")
    assert (profile.mpid, profile.first_name, profile.last_name) == ("m-1", "Grace", "")


def test_an_mpid_given_a_new_customer_id_later_in_the_message_is_one_person_with_the_last_id(client, world):
    """Found by hypothesis: new-2 (no mpid), then new-2 with mpid m-new, then m-new as new-1: one person, new-1."""

    def entry(customer_id, mpid=None, audiences=True):
        profile = {"user_identities": [{"type": "customer", "encoding": "raw", "value": customer_id}]}
        profile["audiences"] = [{"audience_id": 1, "audience_name": "New Users", "action": "add"}] if audiences else []
        if mpid:
            profile["mpid"] = mpid
        return profile

    message = {
        "type": fuzzing.MEMBERSHIP,
        "id": "6f3b3a84-0f0c-4d6e-9d0a-3c1f4f6f2c11",
        "timestamp_ms": 0,
        "firehose_version": "3.2.0",
        "account": {"account_id": 0, "account_settings": {"connectionKey": "ck-segment-membership"}},
        "user_profiles": [entry("new-2"), entry("new-2", "m-new"), entry("new-1", "m-new", audiences=False)],
    }

    response = post(client, world, json.dumps(message).encode())

    assert response.status_code == 200
    profile = Profile.objects.get(mpid="m-new")
    assert profile.customer_id == "new-1"
    assert not Profile.objects.filter(customer_id="new-2").exists()
    assert profile.memberships.get().is_member
