"""Every admin URL x every role (SPEC §6): who gets a page, who is refused, who is sent to log in.

The URLs are enumerated from the admin site itself (`admin.site.get_urls()`, recursively, which
holds each ModelAdmin's `get_urls()`, custom buttons included), and each is requested with real
object ids. What each role must get is written out below as a table, from the spec, not derived
from the code under test; a URL the table does not know fails the test until someone decides.

CSRF protection is on for the whole admin; the Firehose endpoint, which authenticates with a
token instead of a cookie, is the one view exempt from it.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from django.contrib.auth.models import Permission
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver, reverse

from connections.models import (
    BatchDelivery,
    Connection,
    ErasureCall,
    ErasureRecord,
    InboundToken,
    Subscription,
    SuppressedIdentifier,
)
from connections.services.ingest import tokens
from tests.support.admin import make_delivery, make_forward
from tests.support.admin_urls import Route, login_rows, model_admin_url_names, routes, url_of
from tests.support.batch_log import log_identify
from tests.support.factories import ConnectionFactory, MembershipFactory, SubscriptionFactory, UserFactory
from tests.support.firehose import URL as FIREHOSE_URL
from tests.support.firehose import official
from tests.support.tables import changed_since, checksums

pytestmark = [pytest.mark.django_db, pytest.mark.reliability]

ROLES = ("anonymous", "log_viewer", "marketer", "superuser")

# What a request may get. Redirects are told apart by where they lead.
OK, DENIED, NOT_FOUND, NOT_ALLOWED = 200, 403, 404, 405
LOGIN = "302 to the login page"
INDEX = "302 to the admin index"
BACK = "302 to the object's change page"

#                 anonymous, log viewer, marketer, superuser
STAFF = (LOGIN, OK, OK, OK)  # any staff member's own pages
MANAGED = (LOGIN, DENIED, OK, OK)  # marketers manage connections, audiences, subscriptions, profiles
LOG_READ = (LOGIN, OK, OK, OK)  # the forwarding log: everyone staff reads it
LOG_WRITE = (LOGIN, DENIED, DENIED, DENIED)  # ... and nobody writes to it, superusers included
SUPERUSER_ONLY = (LOGIN, DENIED, DENIED, OK)  # users, groups, inbound tokens, pending forwards
NOBODY = (LOGIN, DENIED, DENIED, DENIED)  # pending forwards are written by the product only
TO_CHANGE_PAGE = (LOGIN, BACK, BACK, BACK)  # Django's /<id>/ shortcut; the change page then decides
BUTTON_BY_GET = (LOGIN, NOT_ALLOWED, NOT_ALLOWED, NOT_ALLOWED)  # buttons are POST only
BUTTON = (LOGIN, DENIED, BACK, BACK)  # a button posted: done, back to the page
CONFIRMATION = (LOGIN, DENIED, OK, OK)  # a button that first asks "are you sure?"


def model_rows(prefix: str, pages: tuple[str, str, str], list_add: tuple[str, str]) -> dict:  # type: ignore[type-arg]
    """The five standard pages of a model and its /<id>/ shortcut, read as (change, history, delete), (list, add)."""
    change, history, delete = pages
    changelist, add = list_add
    return {
        (f"{prefix}_changelist", "GET"): changelist,
        (f"{prefix}_add", "GET"): add,
        (f"{prefix}_change", "GET"): change,
        (f"{prefix}_history", "GET"): history,
        (f"{prefix}_delete", "GET"): delete,
        (f"{prefix}_object", "GET"): TO_CHANGE_PAGE,
    }


# (URL name, method) -> what (anonymous, log viewer, marketer, superuser) get.
EXPECTED: dict[tuple[str, str], tuple[object, object, object, object]] = {
    ("index", "GET"): STAFF,
    ("login", "GET"): (OK, INDEX, INDEX, INDEX),
    # Django 5 logs out on POST only; nobody to log out is sent to the index (and from there to log in).
    ("logout", "GET"): (INDEX, NOT_ALLOWED, NOT_ALLOWED, NOT_ALLOWED),
    ("logout", "POST"): (INDEX, OK, OK, OK),
    ("password_change", "GET"): STAFF,
    ("password_change_done", "GET"): STAFF,
    ("jsi18n", "GET"): STAFF,
    # The autocomplete behind a subscription's audience field: for those who may view audiences.
    ("autocomplete", "GET"): MANAGED,
    ("view_on_site", "GET"): (LOGIN, NOT_FOUND, NOT_FOUND, NOT_FOUND),  # no model has a public page
    ("app_list auth", "GET"): (LOGIN, NOT_FOUND, NOT_FOUND, OK),
    ("app_list connections", "GET"): STAFF,
    ("catch_all", "GET"): (LOGIN, NOT_FOUND, NOT_FOUND, NOT_FOUND),  # nobody learns what exists before logging in
    **model_rows("auth_group", (SUPERUSER_ONLY,) * 3, (SUPERUSER_ONLY,) * 2),
    **model_rows("auth_user", (SUPERUSER_ONLY,) * 3, (SUPERUSER_ONLY,) * 2),
    ("auth_user_password_change", "GET"): SUPERUSER_ONLY,
    **model_rows("connections_connection", (MANAGED,) * 3, (MANAGED,) * 2),
    ("connections_connection_test_credentials", "GET"): BUTTON_BY_GET,
    ("connections_connection_test_credentials", "POST"): BUTTON,
    ("connections_connection_probe", "GET"): BUTTON_BY_GET,
    ("connections_connection_probe", "POST"): BUTTON,
    ("connections_connection_resume", "GET"): BUTTON_BY_GET,
    ("connections_connection_resume", "POST"): BUTTON,
    ("connections_connection_resync", "GET"): CONFIRMATION,
    ("connections_connection_resync", "POST"): CONFIRMATION,
    **model_rows("connections_audience", (MANAGED,) * 3, (MANAGED,) * 2),
    **model_rows("connections_subscription", (MANAGED,) * 3, (MANAGED,) * 2),
    ("connections_subscription_activate", "GET"): BUTTON_BY_GET,
    ("connections_subscription_activate", "POST"): BUTTON,
    ("connections_subscription_deactivate", "GET"): BUTTON_BY_GET,
    ("connections_subscription_deactivate", "POST"): CONFIRMATION,
    **model_rows("connections_profile", (MANAGED,) * 3, (MANAGED,) * 2),
    **model_rows("connections_delivery", (LOG_READ, LOG_READ, LOG_WRITE), (LOG_READ, LOG_WRITE)),
    # The batch log (one row per request of whole-audience work): read as the forwarding log is.
    **model_rows("connections_batchdelivery", (LOG_READ, LOG_READ, LOG_WRITE), (LOG_READ, LOG_WRITE)),
    **model_rows("connections_forward", (SUPERUSER_ONLY, SUPERUSER_ONLY, NOBODY), (SUPERUSER_ONLY, NOBODY)),
    **model_rows("connections_inboundtoken", (SUPERUSER_ONLY,) * 3, (SUPERUSER_ONLY,) * 2),
    # Erasure records: marketers read them; nobody edits or deletes one (they are the proof of an erasure).
    **model_rows("connections_erasurerecord", (MANAGED, MANAGED, NOBODY), (MANAGED, NOBODY)),
    # Suppressed identifiers: marketers read them and delete one to un-suppress it; nobody adds or edits.
    **model_rows("connections_suppressedidentifier", (MANAGED, MANAGED, MANAGED), (MANAGED, NOBODY)),
    ("connections_delivery_retry", "GET"): BUTTON_BY_GET,
    ("connections_delivery_retry", "POST"): BUTTON,
    ("connections_profile_erase", "GET"): CONFIRMATION,
    ("connections_profile_erase", "POST"): CONFIRMATION,
    # Logins (django-axes, django-otp): superusers unlock and enrol; the records are written by logins only.
    ("app_list axes", "GET"): (LOGIN, NOT_FOUND, NOT_FOUND, OK),
    ("app_list otp_totp", "GET"): (LOGIN, NOT_FOUND, NOT_FOUND, OK),
    **model_rows("axes_accessattempt", (SUPERUSER_ONLY,) * 3, (SUPERUSER_ONLY, NOBODY)),
    **model_rows("axes_accesslog", (SUPERUSER_ONLY,) * 3, (SUPERUSER_ONLY, NOBODY)),
    **model_rows("axes_accessfailurelog", (SUPERUSER_ONLY,) * 3, (SUPERUSER_ONLY, NOBODY)),
    **model_rows("otp_totp_totpdevice", (SUPERUSER_ONLY,) * 3, (SUPERUSER_ONLY,) * 2),
    ("otp_totp_totpdevice_config", "GET"): SUPERUSER_ONLY,
    ("otp_totp_totpdevice_qrcode", "GET"): SUPERUSER_ONLY,
}


@pytest.fixture
def objects(db, marketer, log_viewer, superuser):  # type: ignore[no-untyped-def]
    """A row of every registered model, for the URLs that take an id."""
    subscription = SubscriptionFactory(connection__state=Connection.State.FAULTED)
    membership = MembershipFactory(audience=subscription.audience)
    token, _secret = tokens.create_token("mParticle")
    return {
        **login_rows(superuser),
        "auth.group": marketer.groups.get(),
        "auth.user": log_viewer,
        "connections.connection": subscription.connection,
        "connections.audience": subscription.audience,
        "connections.subscription": subscription,
        "connections.profile": membership.profile,
        "connections.delivery": make_delivery(subscription.connection, membership.profile),
        "connections.batchdelivery": BatchDelivery.objects.get(
            pk=log_identify(subscription.connection, [membership.profile]).id
        ),
        "connections.forward": make_forward(subscription.connection, membership.profile, subscription.audience),
        "connections.inboundtoken": token,
        "connections.erasurerecord": erasure_record(subscription.connection),
        "connections.suppressedidentifier": SuppressedIdentifier.objects.create(
            connection=subscription.connection, identifier_hash="0" * 64
        ),
    }


def erasure_record(connection: Connection) -> ErasureRecord:
    record = ErasureRecord.objects.create(source=ErasureRecord.Source.COMMAND, request_id=str(uuid.uuid4()))
    ErasureCall.objects.create(
        record=record, connection=connection, connection_name=connection.name, action="suppress", status="succeeded"
    )
    return record


def outcome(response, change_page: str | None) -> object:  # type: ignore[no-untyped-def]
    """What a response amounts to, in the table's terms."""
    if response.status_code != 302:
        return response.status_code
    location = response["Location"]
    if location.startswith("/admin/login/"):
        return LOGIN
    if location == "/admin/":
        return INDEX
    if change_page and location == change_page:
        return BACK
    return f"302 to {location}"


def change_page_of(route: Route, objects: dict) -> str | None:  # type: ignore[type-arg]
    if route.model is None:
        return None
    obj = objects[route.model._meta.label_lower]
    return reverse(f"admin:{obj._meta.app_label}_{obj._meta.model_name}_change", args=[obj.pk])


# --- the tests ----------------------------------------------------------------------------------


def test_the_table_names_every_admin_url_and_nothing_else():
    keys = {route.key for route in routes()}

    assert model_admin_url_names() <= keys, "each ModelAdmin's own URLs are part of the site's"
    assert keys == {key for key, _method in EXPECTED}, "a URL was added or removed: put it in EXPECTED"


@pytest.mark.parametrize("role", ROLES)
def test_each_role_gets_exactly_what_the_table_says_on_every_admin_url(request, objects, role):
    user = None if role == "anonymous" else request.getfixturevalue(role)
    column = ROLES.index(role)
    wrong = []
    checked = 0
    for route in routes():
        for method in ("GET", "POST"):
            if (route.key, method) not in EXPECTED:
                continue
            client = Client()
            if user is not None:
                client.force_login(user)
            url = url_of(route, objects)
            before = checksums()
            response = client.get(url) if method == "GET" else client.post(url)
            got = outcome(response, change_page_of(route, objects))
            expected = EXPECTED[route.key, method][column]
            checked += 1
            if got != expected:
                wrong.append(f"{method} {url}: expected {expected}, got {got}")
                continue
            # Following a link changes nothing, nor does a refused POST (users: last_login, from force_login).
            changed = changed_since(before) - {"auth.user"}
            if changed and (method == "GET" or expected in (DENIED, LOGIN)):
                wrong.append(f"{method} {url} ({got}) changed {sorted(changed)}")
    print(f"\n{role}: {checked} admin URL x method pairs checked")
    assert not wrong, f"{role}:\n" + "\n".join(wrong)


def test_inbound_tokens_are_superuser_only_even_with_the_permissions_given_directly(objects):
    staff = UserFactory(username="tokenkeeper")
    staff.user_permissions.add(*Permission.objects.filter(codename__endswith="_inboundtoken"))
    assert staff.has_perms([f"connections.{a}_inboundtoken" for a in ("add", "change", "delete", "view")])
    client = Client()
    client.force_login(staff)
    token_routes = [r for r in routes() if r.model is InboundToken]

    answers = {route.key: client.get(url_of(route, objects)).status_code for route in token_routes}
    added = client.post(reverse("admin:connections_inboundtoken_add"), {"name": "sneaky"})
    revoked = client.post(
        reverse("admin:connections_inboundtoken_changelist"),
        {"action": "revoke_tokens", "_selected_action": [objects["connections.inboundtoken"].pk]},
    )
    index = client.get(reverse("admin:index"))

    assert len(answers) == 6
    assert answers.pop("connections_inboundtoken_object") == 302  # the /<id>/ shortcut, to a 403
    assert set(answers.values()) == {403}, answers
    assert added.status_code == 403 and revoked.status_code == 403
    assert not InboundToken.objects.filter(name="sneaky").exists()
    assert not InboundToken.objects.filter(revoked_at__isnull=False).exists()
    assert index.status_code == 200 and b"Inbound tokens" not in index.content


# --- CSRF -------------------------------------------------------------------------------------


def csrf_client(user=None) -> Client:  # type: ignore[no-untyped-def]
    client = Client(enforce_csrf_checks=True)
    if user is not None:
        client.force_login(user)
    return client


def assert_csrf_refused(response) -> None:  # type: ignore[no-untyped-def]
    assert response.status_code == 403
    assert b"CSRF" in response.content


def test_logging_in_without_a_csrf_token_is_refused(superuser):
    client = csrf_client()

    response = client.post(reverse("admin:login"), {"username": "root", "password": "correct horse battery staple"})

    assert_csrf_refused(response)
    assert client.get(reverse("admin:index"))["Location"].startswith("/admin/login/"), "not logged in"


def test_an_admin_action_without_a_csrf_token_is_refused_and_changes_nothing(superuser, objects):
    subscription = objects["connections.subscription"]
    before = checksums()

    response = csrf_client(superuser).post(
        reverse("admin:connections_subscription_changelist"),
        {"action": "deactivate_subscriptions", "_selected_action": [subscription.pk], "post": "yes"},
    )

    assert_csrf_refused(response)
    assert not changed_since(before) - {"auth.user"}
    subscription.refresh_from_db()
    assert subscription.status == Subscription.Status.ACTIVE


def test_every_admin_url_refuses_a_post_without_a_csrf_token(superuser, objects):
    client = csrf_client(superuser)
    before = checksums()
    refused = 0
    for route in routes():
        response = client.post(url_of(route, objects), {"post": "yes", "name": "x"})
        assert response.status_code == 403 and b"CSRF" in response.content, f"POST {route.pattern}"
        refused += 1

    print(f"\n{refused} admin URLs refused a POST without a CSRF token")
    assert not changed_since(before) - {"auth.user"}
    assert Connection.objects.get().state == Connection.State.FAULTED


def test_the_firehose_endpoint_is_the_only_view_exempt_from_csrf(db):
    exempt = {
        str(pattern.pattern)
        for pattern in walk_views(get_resolver().url_patterns)
        if getattr(pattern.callback, "csrf_exempt", False)
    }
    _inbound, token = tokens.create_token("mParticle")
    message = official("AudienceMembershipChangeRequest") | {"id": str(uuid.uuid4())}
    message["account"]["account_settings"]["connectionKey"] = ConnectionFactory().connection_key
    del message["user_profiles"]  # a verification request: authenticated, changes nothing

    response = csrf_client().post(
        FIREHOSE_URL, json.dumps(message), content_type="application/json", HTTP_AUTHORIZATION=f"Token {token}"
    )

    assert exempt == {"api/mparticle/firehose"}
    assert response.status_code == 200


def walk_views(patterns: list[Any]) -> Iterator[URLPattern]:
    """Every view of the project's URLconf, the admin's included."""
    for pattern in patterns:
        if isinstance(pattern, URLResolver):
            yield from walk_views(pattern.url_patterns)
        else:
            yield pattern
