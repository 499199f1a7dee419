"""Plain field errors in the admin's forms: every database constraint a form can break says what to do,
beside the field it is about; the Site ID is checked; a key typed into a form that comes back with
errors is asked for again, and never sent back."""

from __future__ import annotations

import re

import pytest
from django.contrib import admin
from django.core.exceptions import NON_FIELD_ERRORS, ValidationError
from django.db import models
from django.forms.utils import ErrorList
from django.test import RequestFactory

from connections.models import Audience, Connection, Membership, Profile, Subscription
from connections.models.constraint_errors import constraint_field
from tests.support.admin import add_inline_row, admin_url, changeform_data
from tests.support.factories import (
    ConnectionFactory,
    MembershipFactory,
    ProfileFactory,
    SubscriptionFactory,
)

pytestmark = pytest.mark.django_db

RAW_CONSTRAINT = re.compile(r"Constraint [“\"]")

NEW_CONNECTION = {
    "name": "New workspace",
    "site_id": "site-new",
    "region": "us",
    "transport": "v2_batch",
    "rate_limit": "50",
    "identify_by": "customer_id",
    "erasure": "suppress",
}
TYPED_KEY = "sk-typed-Hq8Lm3Vn1Zt5"


# --- every constraint an admin form can break ---------------------------------------------------


def admin_forms(superuser) -> list[tuple[type[models.Model], set[str]]]:
    """(model, the fields a form edits) for every add and change form of the admin and their inline rows."""
    request = RequestFactory().get("/")
    request.user = superuser
    found = []
    for model, model_admin in admin.site._registry.items():
        if model._meta.app_label != "connections":
            continue
        instance = model._default_manager.first()
        for obj in (None, instance) if instance is not None else (None,):
            if not (
                model_admin.has_add_permission(request)
                if obj is None
                else model_admin.has_change_permission(request, obj)
            ):
                continue
            form = model_admin.get_form(request, obj, change=obj is not None)
            found.append((model, set(form.base_fields)))
            for inline in model_admin.get_inline_instances(request, obj):
                formset = inline.get_formset(request, obj)
                found.append((inline.model, {*formset.form.base_fields, formset.fk.name}))
    return found


def reachable_constraints(superuser) -> dict[str, tuple[type[models.Model], models.BaseConstraint, set[str]]]:
    """The constraints Django checks when one of those forms is saved: every field they use is on the form."""
    reachable = {}
    for model, fields in admin_forms(superuser):
        for constraint in model._meta.constraints:
            if isinstance(constraint, models.UniqueConstraint):
                used = set(constraint.fields) | (
                    models.Q(constraint.condition).referenced_base_fields if constraint.condition else set()
                )
            else:
                used = models.Q(constraint.condition).referenced_base_fields
            if used <= fields:
                reachable[constraint.name] = (model, constraint, fields)
    return reachable


@pytest.fixture
def every_kind_of_row(db):
    membership = MembershipFactory()
    SubscriptionFactory(audience=membership.audience)


def test_every_constraint_an_admin_form_can_break_has_a_plain_message_on_its_field(superuser, every_kind_of_row):
    reachable = reachable_constraints(superuser)

    # The walk finds the constraints people did run into (rate limit 0, segment ID 0) and the others.
    assert {
        "connection_rate_limit_positive",
        "connection_site_id_not_empty",
        "connection_region_valid",
        "audience_id_positive",
        "subscription_segment_id_positive",
        "subscription_unique_audience_connection",
        "profile_unique_customer_id",
        "profile_unique_mpid",
        "membership_unique_profile_audience",
    } <= reachable.keys()
    for name, (model, constraint, fields) in reachable.items():
        # What validate_constraints raises, placed the way the model places it, as the admin renders it.
        raised = ValidationError(constraint.get_violation_error_message(), code=constraint.violation_error_code)
        placed = model()._on_fields({NON_FIELD_ERRORS: [raised]})
        [(where, errors)] = placed.items()
        rendered = str(ErrorList(errors))
        assert not RAW_CONSTRAINT.search(rendered), f"{name} has no message of its own: {rendered}"
        assert name not in rendered
        assert constraint.violation_error_code, f"{name} needs a violation_error_code to be placed on its field"
        field = constraint_field(constraint)
        if field is not None:
            assert where == field and field in fields, f"{name}'s error is not beside the {field} field"
        else:
            assert where == NON_FIELD_ERRORS


def field_errors(response, field: str) -> str:
    """The text of the errors the admin shows on `field` (and fails if there are none)."""
    form = response.context["adminform"].form
    assert field in form.errors, f"no error on {field}: {form.errors}"
    return " ".join(form.errors[field])


def assert_plain(response) -> None:
    html = response.content.decode()
    assert not RAW_CONSTRAINT.search(html)
    assert "Constraint " not in html


# --- the constraints, one by one, as a person meets them ---------------------------------------


def test_a_rate_limit_of_0_is_refused_on_the_field(client, marketer):
    client.force_login(marketer)

    response = client.post(admin_url(Connection, "add"), {**NEW_CONNECTION, "rate_limit": "0", "api_key": TYPED_KEY})

    assert response.status_code == 200
    assert field_errors(response, "rate_limit") == "Rate limit must be at least 1 request per second."
    assert_plain(response)
    assert not Connection.objects.exists()


def test_a_rate_limit_of_0_on_a_saved_connection_changes_nothing(client, marketer):
    connection = ConnectionFactory(rate_limit=100)
    client.force_login(marketer)
    url = admin_url(Connection, "change", connection.pk)

    response = client.post(url, {**changeform_data(client.get(url)), "rate_limit": "0"})

    assert field_errors(response, "rate_limit") == "Rate limit must be at least 1 request per second."
    assert Connection.objects.get(pk=connection.pk).rate_limit == 100


def test_a_segment_id_of_0_is_refused_on_the_field(client, marketer):
    subscription = SubscriptionFactory()
    client.force_login(marketer)
    url = admin_url(Subscription, "change", subscription.pk)

    response = client.post(url, {**changeform_data(client.get(url)), "customerio_segment_id": "0"})

    assert response.status_code == 200
    assert field_errors(response, "customerio_segment_id").startswith(
        "A Customer.io segment ID is a whole number of 1 or more"
    )
    assert_plain(response)
    assert Subscription.objects.get(pk=subscription.pk).customerio_segment_id is None


def test_an_audience_id_of_0_is_refused_on_the_field(client, marketer):
    client.force_login(marketer)

    response = client.post(
        admin_url(Audience, "add"),
        {"audience_id": "0", "name": "Zero", "subscriptions-TOTAL_FORMS": "0", "subscriptions-INITIAL_FORMS": "0"},
    )

    message = "The audience ID must be a whole number of 1 or more, as in mParticle."
    assert field_errors(response, "audience_id") == message
    assert_plain(response)
    assert not Audience.objects.exists()


@pytest.mark.parametrize(
    ("field", "existing", "message"),
    [
        ("customer_id", {"customer_id": "cust-1"}, "Another profile already has this customer ID"),
        ("mpid", {"customer_id": "cust-1", "mpid": "8080"}, "Another profile already has this mParticle ID"),
    ],
)
def test_a_second_profile_with_the_same_identifier_is_refused_on_the_field(client, marketer, field, existing, message):
    ProfileFactory(**existing)
    client.force_login(marketer)
    data = {
        "customer_id": "cust-2",
        field: existing[field],
        "memberships-TOTAL_FORMS": "0",
        "memberships-INITIAL_FORMS": "0",
    }

    response = client.post(admin_url(Profile, "add"), data)

    assert field_errors(response, field).startswith(message)
    assert_plain(response)
    assert Profile.objects.count() == 1


def test_subscribing_an_audience_twice_to_a_connection_is_refused_plainly(client, marketer):
    subscription = SubscriptionFactory()
    client.force_login(marketer)

    response = client.post(
        admin_url(Subscription, "add"),
        {"audience": subscription.audience.pk, "connection": subscription.connection.pk},
    )

    form = response.context["adminform"].form
    assert form.non_field_errors() == [
        "This audience is already forwarded to this connection: change its subscription instead."
    ]
    assert_plain(response)
    assert Subscription.objects.count() == 1


def test_a_second_row_for_the_same_audience_on_a_profile_is_refused_plainly(client, marketer):
    membership = MembershipFactory()
    client.force_login(marketer)
    url = admin_url(Profile, "change", membership.profile.pk)
    data = changeform_data(client.get(url))
    add_inline_row(data, "memberships", audience=membership.audience.pk, is_member="on")

    response = client.post(url, data)

    # The formset compares its rows before the database would: Django's own words, plain already.
    assert response.status_code == 200
    assert "Please correct the duplicate data for audience." in response.content.decode()
    assert_plain(response)
    assert Membership.objects.count() == 1


# --- the Site ID --------------------------------------------------------------------------------


@pytest.mark.parametrize("site_id", ["site us", "site:us", "site/us", "sité", "-site"])
def test_a_site_id_with_spaces_or_punctuation_is_refused(client, marketer, site_id):
    client.force_login(marketer)

    response = client.post(admin_url(Connection, "add"), {**NEW_CONNECTION, "site_id": site_id, "api_key": TYPED_KEY})

    assert field_errors(response, "site_id").startswith(
        "A Site ID has only letters, digits, dots, dashes and underscores, with no spaces"
    )
    assert not Connection.objects.exists()


def test_spaces_around_a_site_id_are_dropped(client, marketer):
    client.force_login(marketer)

    response = client.post(
        admin_url(Connection, "add"), {**NEW_CONNECTION, "site_id": "  3f9a1c2b7d4e5f6a8b0c \t", "api_key": TYPED_KEY}
    )

    assert response.status_code == 302
    assert Connection.objects.get().site_id == "3f9a1c2b7d4e5f6a8b0c"


# --- keys typed into a form that comes back with errors ----------------------------------------


def notice(response, field: str) -> str:
    found = re.search(rf'<p class="secret-notice[^"]*" id="id_{field}_notice">([^<]*)</p>', response.content.decode())
    return found.group(1) if found else ""


def test_after_an_error_the_add_form_asks_for_the_typed_keys_again(client, marketer):
    client.force_login(marketer)

    response = client.post(
        admin_url(Connection, "add"),
        {**NEW_CONNECTION, "rate_limit": "0", "api_key": TYPED_KEY, "app_api_key": "app-typed-Vn1Zt5Hq8"},
    )

    html = response.content.decode()
    assert notice(response, "api_key") == "Re-enter the API key: for safety it is not sent back to the browser."
    assert notice(response, "app_api_key") == (
        "Re-enter the App API key: for safety it is not sent back to the browser."
    )
    assert 'aria-describedby="id_api_key_notice id_api_key_helptext"' in html  # read out with the input
    assert TYPED_KEY not in html and TYPED_KEY[-5:] not in html
    assert "app-typed-Vn1Zt5Hq8" not in html


def test_after_an_error_the_change_form_says_an_empty_key_keeps_the_stored_one(client, marketer):
    connection = ConnectionFactory(api_key="sk-stored-Lm3Vn1Zt5Hq8", app_api_key="")
    client.force_login(marketer)
    url = admin_url(Connection, "change", connection.pk)

    response = client.post(url, {**changeform_data(client.get(url)), "rate_limit": "0", "api_key": TYPED_KEY})

    assert notice(response, "api_key") == (
        "Re-enter the API key: for safety it is not sent back to the browser. "
        "Left empty, the stored key (ending …5Hq8) is kept."
    )
    assert notice(response, "app_api_key") == ""  # nothing typed there, nothing lost
    assert TYPED_KEY not in response.content.decode()
    assert Connection.objects.get(pk=connection.pk).api_key == "sk-stored-Lm3Vn1Zt5Hq8"


def test_no_notice_without_an_error_or_without_a_typed_key(client, marketer):
    client.force_login(marketer)

    untyped = client.post(admin_url(Connection, "add"), {**NEW_CONNECTION, "rate_limit": "0"})
    fresh = client.get(admin_url(Connection, "add"))

    assert field_errors(untyped, "api_key") == "This field is required."
    assert notice(untyped, "api_key") == "" and notice(fresh, "api_key") == ""
