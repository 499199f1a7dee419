"""API keys and inbound tokens never show (SPEC §8): not in a page, a log line, a task, an error, the database.

One long scenario exercises the product broadly with known secrets in play: the Firehose
endpoint (right and wrong tokens), deliveries that succeed and fail every way against the
stand-in, credential checks, the management commands, the admin's forms, buttons and actions,
then every admin page as each role. Everything said on the way is captured (tests/reliability/
evidence.py) and searched for each secret: whole, as Basic credentials (`base64(site:key)`), and
as any fragment longer than what the product may show (an API key's last 4 characters, a
token's first 8). Two more tests make the product fail loudly and read the error reports.
"""

from __future__ import annotations

import json
import re
import time
from io import StringIO
from typing import Any

import pytest
from cryptography.fernet import Fernet
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection as db
from django.db import transaction
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from cio_standin import Faults, Workspace
from connections import tasks
from connections.firehose import inbox
from connections.models import (
    BatchDelivery,
    Connection,
    Delivery,
    ErasureRecord,
    Forward,
    InboundToken,
    Profile,
    Subscription,
    SuppressedIdentifier,
)
from connections.services.connection import transitions
from connections.services.connection.credentials import verify_credentials
from connections.services.erasure import calls as erasure_calls
from connections.services.erasure import local as erasure
from connections.services.ingest import subscriptions, tokens
from connections.services.resync import runs as resync
from connections.services.resync import streaming
from tests.support.admin import changeform_data
from tests.support.admin_urls import login_rows, routes, url_of
from tests.support.evidence import Evidence, RecordingClient, Secret, findings, recording
from tests.support.factories import AudienceFactory, ConnectionFactory
from tests.support.firehose import URL as FIREHOSE_URL
from tests.support.firehose import audience, membership_request, user_profile
from tests.support.workers import purge_broker

pytestmark = [pytest.mark.django_db, pytest.mark.reliability, pytest.mark.timeout(300)]

# Deterministic and unlike anything else on a page, so that any 6 characters of one are telling.
US_KEY = "cioKeyUS7qZxW2pLm9TvR4bN"  # a v2 connection's key, accepted by the stand-in
EU_KEY = "cioKeyEU3hJk8sDf5GyQ1wXc"  # a v1 connection's key, accepted by the stand-in
WRONG_KEY = "cioKeyWRONG6tYu2IoP9aSdF"  # refused by the stand-in: the connection becomes faulted
NEW_KEY = "cioKeyNEW4zXc7VbN1mQwErT"  # typed into the admin's add form
REPLACED_KEY = "cioKeyRPL8kLj5HgF2dSa9Qw"  # typed into the change form, replacing NEW_KEY
TYPO_KEY = "cioKeyTYPO2nBv6CxZ9LkJhG"  # typed into an add form that does not validate
WRONG_TOKEN = "tokWRONGx7Yq2Lp9Zr4Kd8Vn3Mb6Hs1Jw5"  # sent to the Firehose endpoint, refused
SITES = {"site-hyg-us": (US_KEY, "us"), "site-hyg-eu": (EU_KEY, "eu"), "site-hyg-new": (NEW_KEY, "us")}
API_KEYS = {
    "US_KEY": US_KEY,
    "EU_KEY": EU_KEY,
    "WRONG_KEY": WRONG_KEY,
    "NEW_KEY": NEW_KEY,
    "REPLACED_KEY": REPLACED_KEY,
    "TYPO_KEY": TYPO_KEY,
}
FAILURES = [  # each fault is met by both transports
    Faults(share=1.0, statuses=(400,)),
    Faults(share=1.0, statuses=(500,)),
    Faults(share=1.0, statuses=(429,), retry_after=0),
    Faults(partial_207_share=1.0),
    Faults(drop_share=1.0),
    Faults(timeout_share=1.0, timeout_seconds=0.6),
]


@pytest.fixture
def evidence(standin):
    evidence = Evidence()
    with recording(evidence):
        yield evidence
    purge_broker()  # the tasks published here are for no worker


@pytest.fixture
def workspaces(standin_server, standin, settings):
    for site, (key, region) in SITES.items():
        standin_server.add_workspace(Workspace(site, key, region=region))
    settings.FORWARD_BACKOFF_BASE = 0.0  # retries are due at once: every failure in a few seconds
    return standin


def assert_nothing_found(evidence: Evidence, secrets: list[Secret]) -> None:
    found = findings(evidence, secrets, list(SITES))
    assert not found, f"{len(found)} secrets found:\n" + "\n".join(found[:40])


def post_firehose(client: Client, message: dict[str, Any], authorization: str | None):  # type: ignore[no-untyped-def]
    headers = {"HTTP_AUTHORIZATION": authorization} if authorization else {}
    return client.post(FIREHOSE_URL, json.dumps(message), content_type="application/json", **headers)


def run_command(evidence: Evidence, *args: str, shown: bool = True, fails: bool = False) -> str:
    out, err = StringIO(), StringIO()
    try:
        call_command(*args, stdout=out, stderr=err)
    except CommandError as error:
        if not fails:
            raise
        evidence.add("command error", " ".join(args), str(error))
    if shown:
        evidence.add("command output", " ".join(args), out.getvalue())
    evidence.add("command output", f"{' '.join(args)} (stderr)", err.getvalue())
    return out.getvalue()


# --- the scenario, part by part ---------------------------------------------------------------


def exercise_firehose(evidence: Evidence, token: str, connection_key: str) -> None:
    """Refused credentials, then six people joining audience 11, which every connection forwards."""
    web = RecordingClient(evidence)
    people = [user_profile(f"p{i}", email=f"p{i}@example.com", audiences=[audience(11, "add")]) for i in range(6)]
    message = membership_request(*people, connection_key=connection_key)
    for authorization in (f"Token {WRONG_TOKEN}", f"Bearer {token}", f"token{token}", None):
        assert post_firehose(web, message, authorization).status_code == 401
    assert post_firehose(web, message, f"Token {token}").status_code == 200
    assert post_firehose(web, message | {"id": "not-a-uuid"}, f"Token {token}").status_code == 400
    inbox.apply_pending()  # FIREHOSE_APPLY=worker (the default): the applier's logs are looked at too


def deliver(standin, connection: Connection, faults: Faults | None = None) -> None:  # type: ignore[no-untyped-def]
    # A 429 paused the whole connection for a second (SPEC section 4): wait it out.
    paused_until = Connection.objects.values_list("paused_until", flat=True).get(pk=connection.pk)
    if paused_until is not None:
        time.sleep(max(0.0, (paused_until - timezone.now()).total_seconds()))
    standin.set_faults(faults or Faults())
    tasks.forward_connection.apply(args=(connection.pk,), throw=True)
    standin.clear_faults()


def exercise_deliveries(standin, settings, main: Connection, europe: Connection, wrong: Connection) -> None:  # type: ignore[no-untyped-def]
    """Success on both transports, the wrong key (401: faulted), then each fault on both transports."""
    for connection in (main, europe, wrong):
        deliver(standin, connection)
    settings.CUSTOMERIO_TIMEOUT = 0.3
    for n, faults in enumerate(FAILURES):
        profile = Profile.objects.get(customer_id=f"p{n}")
        for connection in (main, europe):
            Forward.objects.create(connection=connection, profile=profile, reason="resync", due_at=profile.created_at)
            deliver(standin, connection, faults)
    settings.CUSTOMERIO_TIMEOUT = 2.0
    assert Connection.objects.get(pk=wrong.pk).state == Connection.State.FAULTED
    answers = set(Delivery.objects.values_list("http_status", flat=True))
    assert {200, 207, 400, 401, 429, 500, None} <= answers, answers


def exercise_credential_checks(evidence: Evidence, settings, standin, connections: list[Connection]) -> None:  # type: ignore[no-untyped-def]
    """Accepted, refused, unreachable, and a key the encryption keys cannot decrypt."""
    for connection in connections:
        evidence.add("credential check", connection.name, verify_credentials(connection).message)
    settings.CUSTOMERIO_US_URL = "http://127.0.0.1:9"
    evidence.add("credential check", "unreachable", verify_credentials(connections[0]).message)
    settings.CUSTOMERIO_US_URL = standin.url
    keys = settings.ENCRYPTION_KEYS
    settings.ENCRYPTION_KEYS = [Fernet.generate_key().decode()]
    check = verify_credentials(Connection.objects.get(pk=connections[0].pk))
    evidence.add("credential check", "undecryptable", check.message)
    settings.ENCRYPTION_KEYS = keys
    assert "cannot be used" in check.message


def exercise_commands(evidence: Evidence, settings) -> str:  # type: ignore[no-untyped-def]
    """Every command that touches connections; returns the token `create_inbound_token` printed (by design)."""
    run_command(evidence, "verify_credentials", fails=True)  # the wrong key is rejected: exit code 1
    run_command(evidence, "resync", "--connection", "Main", "--dry-run")
    run_command(evidence, "resync", "--connection", "Europe", "--send-here")
    created = run_command(evidence, "create_inbound_token", "--name", "from-the-command", shown=False)
    settings.ENCRYPTION_KEYS = [Fernet.generate_key().decode(), *settings.ENCRYPTION_KEYS]
    run_command(evidence, "rotate_encryption_key")
    run_command(evidence, "prune_deliveries", "--older-than", "1m", "--dry-run")
    run_command(evidence, "prune_deliveries", "--older-than", "30d")
    token = created.split("Authorization: Token ")[-1].strip()
    assert tokens.authenticate(token) is not None
    return token


# The add form's choices of SPEC section 11, at their defaults (a browser always submits them).
NEW_OPTIONS = {"identify_by": "customer_id", "erasure": "suppress"}


def exercise_admin(evidence: Evidence, superuser) -> tuple[RecordingClient, str]:  # type: ignore[no-untyped-def]
    """A superuser's forms, buttons and actions; returns the client and the token the admin showed (once)."""
    admin = RecordingClient(evidence, superuser)
    add_url = reverse("admin:connections_connection_add")
    form = {"site_id": "site-hyg-new", "region": "us", "transport": "v2_batch", "rate_limit": "50", **NEW_OPTIONS}
    assert admin.post(add_url, {**form, "api_key": TYPO_KEY}).status_code == 200  # no name: the form again
    assert admin.post(add_url, {**form, "name": "New", "api_key": NEW_KEY}, follow=True).status_code == 200
    new = Connection.objects.get(name="New")
    change_url = reverse("admin:connections_connection_change", args=[new.pk])
    data = changeform_data(admin.get(change_url))
    admin.post(change_url, {**data, "api_key": ""}, follow=True)  # blank: the stored key is kept
    admin.post(change_url, {**data, "api_key": REPLACED_KEY}, follow=True)
    assert Connection.objects.get(pk=new.pk).api_key == REPLACED_KEY

    every = [str(pk) for pk in Connection.objects.values_list("pk", flat=True)]
    for pk in every:
        for button in ("test_credentials", "resume", "resync"):
            admin.post(reverse(f"admin:connections_connection_{button}", args=[pk]), {"post": "yes"}, follow=True)
    changelist = reverse("admin:connections_connection_changelist")
    for action in ("test_credentials", "resume_connections", "resync_connections"):
        admin.post(changelist, {"action": action, "_selected_action": every, "post": "yes"}, follow=True)
    failed = list(Delivery.objects.filter(status="failed").values_list("pk", flat=True))
    admin.post(
        reverse("admin:connections_delivery_changelist"),
        {"action": "retry_selected", "_selected_action": failed},
        follow=True,
    )

    said = "".join(text for where, text in evidence.texts if where.startswith("response"))
    for message in ("Customer.io accepted the credentials", "rejected the Site ID / API key", "resync started"):
        assert message in said, f"the admin never said {message!r}"

    with evidence.response_not_recorded():  # the page that shows a new token, once, by design
        page = admin.post(reverse("admin:connections_inboundtoken_add"), {"name": "from-the-admin"})
    token = re.search(r'<code id="inbound-token"[^>]*>([^<]+)</code>', page.content.decode()).group(1)  # type: ignore[union-attr]
    inbound = tokens.authenticate(token)
    assert inbound is not None and inbound.name == "from-the-admin"
    admin.post(
        reverse("admin:connections_inboundtoken_changelist"),
        {"action": "revoke_tokens", "_selected_action": [inbound.pk]},
        follow=True,
    )
    return admin, token


def render_every_page(evidence: Evidence, admin: RecordingClient, users: list, wrong: Connection) -> int:  # type: ignore[type-arg]
    """Every admin URL as each role, with rows the scenario left; every delivery's and connection's page."""
    subscription = Subscription.objects.filter(connection=wrong).first()
    # An erasure, so that its record and the suppressed identifiers have pages too (their calls include one
    # to the connection whose key is wrong).
    erased = erasure.erase(erasure.PersonQuery(customer_id="p5"), source=ErasureRecord.Source.COMMAND).record
    erasure_calls.send_due(wrong.pk)
    # A streamed page with the wrong key too (a large activation or resync): its batch request row
    # holds Customer.io's 401 answer, and has pages of its own.
    transitions.resume(wrong)  # faulted by its first 401; resumed, its page meets the 401 again
    scope = resync.scope_for(wrong)
    run, _ = resync.start(scope)
    streaming.carry_on(wrong, run, scope, 5.0)
    objects = {
        **login_rows(users[-1]),
        "auth.group": users[1].groups.get(),
        "auth.user": users[0],
        "connections.connection": wrong,
        "connections.audience": subscription.audience,
        "connections.subscription": subscription,
        "connections.profile": Profile.objects.get(customer_id="p0"),
        "connections.delivery": Delivery.objects.filter(connection=wrong, http_status=401).first(),
        "connections.batchdelivery": BatchDelivery.objects.filter(connection=wrong, http_status=401).first(),
        "connections.forward": Forward.objects.filter(connection=wrong).first(),  # waiting since the 401
        "connections.inboundtoken": InboundToken.objects.get(name="from-the-admin"),
        "connections.erasurerecord": erased,
        "connections.suppressedidentifier": SuppressedIdentifier.objects.filter(connection=wrong).first(),
    }
    assert all(objects.values())
    pages = 0
    for user in users:
        client = RecordingClient(evidence, user)
        for route in routes():
            client.get(url_of(route, objects))
            pages += 1
    for pk in Delivery.objects.values_list("pk", flat=True):
        admin.get(reverse("admin:connections_delivery_change", args=[pk]))
        pages += 1
    for pk in Connection.objects.values_list("pk", flat=True):
        admin.get(reverse("admin:connections_connection_change", args=[pk]))
        pages += 1
    for query in ("status__exact=failed", "http=401", "http=none", "q=p0", f"connection__id__exact={wrong.pk}"):
        admin.get(reverse("admin:connections_delivery_changelist") + "?" + query)
        pages += 1
    return pages


# --- the tests ----------------------------------------------------------------------------------


def test_no_api_key_or_inbound_token_shows_anywhere(
    evidence, workspaces, superuser, marketer, log_viewer, settings, django_capture_on_commit_callbacks
):
    main = ConnectionFactory(name="Main", site_id="site-hyg-us", api_key=US_KEY)
    europe = ConnectionFactory(name="Europe", site_id="site-hyg-eu", api_key=EU_KEY, region="eu", transport="v1")
    wrong = ConnectionFactory(name="Wrong key", site_id="site-hyg-us", api_key=WRONG_KEY)
    for audience_id in (11, 22):
        audience_row = AudienceFactory(audience_id=audience_id, name=f"A{audience_id}")
        for connection in (main, europe, wrong):
            subscriptions.subscribe(audience_row, connection)
    _inbound, token = tokens.create_token("mParticle")
    secrets = [Secret(name, key, "API key") for name, key in API_KEYS.items()]
    secrets += [
        Secret("the inbound token", token, "inbound token"),
        Secret("WRONG_TOKEN", WRONG_TOKEN, "inbound token"),
    ]

    with django_capture_on_commit_callbacks(execute=True):  # tasks are published, as after a commit
        exercise_firehose(evidence, token, main.connection_key)
        exercise_deliveries(workspaces, settings, main, europe, wrong)
        exercise_credential_checks(evidence, settings, workspaces, [main, europe, wrong])
        secrets.append(Secret("the command's token", exercise_commands(evidence, settings), "inbound token"))
        admin, admin_token = exercise_admin(evidence, superuser)
        secrets.append(Secret("the admin's token", admin_token, "inbound token"))
    pages = render_every_page(evidence, admin, [superuser, marketer, log_viewer], Connection.objects.get(pk=wrong.pk))
    evidence.database()

    print(f"\n{len(secrets)} secrets searched for in {evidence.summary()} ({pages} admin pages rendered by role)")
    assert evidence.counts["task message"] > 0 and evidence.counts["exception report"] > 0
    assert_nothing_found(evidence, secrets)


def test_the_database_holds_no_plaintext_api_key_or_token(evidence, workspaces):
    for site, (key, region) in SITES.items():
        ConnectionFactory(site_id=site, api_key=key, region=region)
    _inbound, token = tokens.create_token("mParticle")

    evidence.database()  # every column of every table, as introspected

    assert evidence.counts["database value"] > 0
    assert Connection.objects.get(site_id="site-hyg-us").api_key == US_KEY  # stored, and readable
    found = [where for where, text in evidence.texts for secret in [*API_KEYS.values(), token] if secret in text]
    assert not found, found


def test_the_report_of_an_error_while_saving_a_key_does_not_hold_the_key(evidence, superuser, settings):
    """A missing encryption key is a loud error (SPEC §8); the report an operator then reads must not hold the key."""
    settings.ENCRYPTION_KEYS = []
    admin = RecordingClient(evidence, superuser, raise_request_exception=False)
    form = {"name": "Main", "site_id": "site-hyg-us", "region": "us", "transport": "v2_batch", "rate_limit": "50"}
    form |= NEW_OPTIONS

    response = admin.post(reverse("admin:connections_connection_add"), {**form, "api_key": NEW_KEY})

    assert response.status_code == 500
    assert evidence.counts["exception report"] > 0
    assert_nothing_found(evidence, [Secret("NEW_KEY", NEW_KEY, "API key")])


def test_the_report_of_a_database_error_while_checking_a_token_does_not_hold_the_token(evidence):
    """The token lookup fails (its table is gone for a moment, as in a botched migration): a 500, and a report."""
    _inbound, token = tokens.create_token("mParticle")
    client = RecordingClient(evidence, raise_request_exception=False)
    table = db.ops.quote_name(InboundToken._meta.db_table)
    message = membership_request(
        user_profile("c1", audiences=[audience(1, "add")]), connection_key=ConnectionFactory().connection_key
    )

    with transaction.atomic():  # rolled back: the table is back afterwards
        with db.cursor() as cursor:
            cursor.execute(f"ALTER TABLE {table} RENAME TO {db.ops.quote_name('gone_for_a_moment')}")
        response = post_firehose(client, message, f"Token {token}")
        transaction.set_rollback(True)

    assert response.status_code == 500
    assert evidence.counts["exception report"] > 0
    assert_nothing_found(evidence, [Secret("the inbound token", token, "inbound token")])
