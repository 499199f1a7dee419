"""SPEC §6 roles: marketers manage connections, audiences, subscriptions and profiles; log viewers
only read the log; only superusers see inbound tokens and pending forwards."""

from __future__ import annotations

import pytest

from connections.models import Audience, Connection, Delivery, InboundToken, Profile, Subscription
from tests.support.admin import admin_url, make_delivery, make_forward, make_token
from tests.support.factories import MembershipFactory, SubscriptionFactory

pytestmark = pytest.mark.django_db

ROLES = ("anonymous", "log_viewer", "marketer", "superuser")
OK, DENIED, LOGIN = 200, 403, 302

MANAGED = {"anonymous": LOGIN, "log_viewer": DENIED, "marketer": OK, "superuser": OK}
LOG_READ = {"anonymous": LOGIN, "log_viewer": OK, "marketer": OK, "superuser": OK}
NOBODY = {"anonymous": LOGIN, "log_viewer": DENIED, "marketer": DENIED, "superuser": DENIED}
SUPERUSER_ONLY = {"anonymous": LOGIN, "log_viewer": DENIED, "marketer": DENIED, "superuser": OK}

PAGES = {
    **{
        (model.__name__, view): MANAGED
        for model in (Connection, Audience, Subscription, Profile)
        for view in ("changelist", "add", "change", "delete")
    },
    ("Delivery", "changelist"): LOG_READ,
    ("Delivery", "change"): LOG_READ,
    ("Delivery", "add"): NOBODY,
    ("Delivery", "delete"): NOBODY,
    **{(InboundToken.__name__, view): SUPERUSER_ONLY for view in ("changelist", "add", "change", "delete")},
    ("Forward", "changelist"): SUPERUSER_ONLY,
    ("Forward", "change"): SUPERUSER_ONLY,
    ("Forward", "add"): NOBODY,
}


@pytest.fixture
def page_urls(db):
    subscription = SubscriptionFactory()
    membership = MembershipFactory(audience=subscription.audience)
    delivery = make_delivery(subscription.connection, membership.profile)
    forward = make_forward(subscription.connection, membership.profile, subscription.audience)
    token, _secret = make_token()
    objects = {
        "Connection": subscription.connection,
        "Audience": subscription.audience,
        "Subscription": subscription,
        "Profile": membership.profile,
        "Delivery": delivery,
        "Forward": forward,
        "InboundToken": token,
    }

    def url(model_name: str, view: str) -> str:
        obj = objects[model_name]
        args = (obj.pk,) if view in ("change", "delete") else ()
        return admin_url(type(obj), view, *args)

    return url


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize(("model_name", "view"), list(PAGES))
def test_each_role_gets_each_admin_page_as_spec_says(as_role, page_urls, role, model_name, view):
    response = as_role(role).get(page_urls(model_name, view))

    assert response.status_code == PAGES[model_name, view][role]
    if role == "anonymous":
        assert response["Location"].startswith("/admin/login/")


@pytest.mark.parametrize(
    ("role", "visible", "hidden"),
    [
        ("log_viewer", {"Forwarding log"}, {"Connections", "Audiences", "Inbound tokens", "Pending forwards"}),
        (
            "marketer",
            {"Connections", "Audiences", "Subscriptions", "Profiles", "Forwarding log"},
            {"Inbound tokens", "Pending forwards"},
        ),
        ("superuser", {"Connections", "Forwarding log", "Inbound tokens", "Pending forwards"}, set()),
    ],
)
def test_the_admin_index_lists_only_what_the_role_may_see(as_role, role, visible, hidden):
    response = as_role(role).get("/admin/")

    html = response.content.decode()
    assert response.status_code == 200
    assert all(f">{name}<" in html for name in visible)
    assert not any(f">{name}<" in html for name in hidden)


def test_the_admin_is_titled_for_the_product(as_role):
    html = as_role("superuser").get("/admin/").content.decode()

    assert "cioaudience" in html
    assert "Customer.io audience forwarding" in html


def test_a_marketer_given_inbound_token_permissions_still_cannot_see_tokens(as_role, marketer):
    from django.contrib.auth.models import Permission

    marketer.user_permissions.add(*Permission.objects.filter(codename__endswith="_inboundtoken"))
    token, _secret = make_token()

    client = as_role("marketer")

    assert client.get(admin_url(InboundToken, "changelist")).status_code == 403
    assert client.get(admin_url(InboundToken, "change", token.pk)).status_code == 403


def test_nobody_can_delete_from_the_log_or_add_to_it(as_role):
    client = as_role("superuser")
    response = client.get(admin_url(Delivery, "changelist"))

    actions = dict(response.context["action_form"].fields["action"].choices)
    assert "delete_selected" not in actions
    assert client.get(admin_url(Delivery, "add")).status_code == 403
