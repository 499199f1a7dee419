"""Profiles and their memberships. Edits go through `connections.services.ingest.memberships`, so they are forwarded."""

from __future__ import annotations

from django import forms
from django.contrib import admin
from django.contrib.admin.utils import unquote
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.translation import gettext_lazy as _

from connections.admin.common import (
    CheapCountPaginator,
    FixedOnceSavedInline,
    PlainHelpTextForm,
    summarized_deleted_objects,
)
from connections.admin.erasure import erase_people
from connections.models import Membership, Profile
from connections.services.ingest import memberships
from connections.services.visibility import person_view


def _addressable(profile: Profile | None) -> bool:
    """Whether the membership service can find this profile (by customer ID or mParticle ID)."""
    return profile is None or bool(profile.customer_id or profile.mpid)


class ProfileForm(PlainHelpTextForm):
    class Meta:
        model = Profile
        fields = ("customer_id", "mpid", "email", "first_name", "last_name")

    def clean(self):  # type: ignore[no-untyped-def]
        cleaned = super().clean()
        if self.instance.pk is None and not cleaned.get("customer_id") and not cleaned.get("mpid"):
            raise forms.ValidationError(_("Give a customer ID or an mParticle ID: a profile is found by one of them."))
        return cleaned


class MembershipInline(FixedOnceSavedInline):
    """Untick "is member" to record that the person left (sent as "false"); rows are not deleted."""

    model = Membership
    fixed_fields = ("audience",)
    related = ("audience",)
    fields = ("audience", "is_member", "changed_at")
    readonly_fields = ("changed_at",)
    autocomplete_fields = ("audience",)
    can_delete = False

    def has_add_permission(self, request: HttpRequest, obj: Profile | None = None) -> bool:
        return _addressable(obj) and super().has_add_permission(request, obj)

    def has_change_permission(self, request: HttpRequest, obj: Profile | None = None) -> bool:
        return _addressable(obj) and super().has_change_permission(request, obj)


@admin.register(Profile)
class ProfileAdmin(admin.ModelAdmin):
    form = ProfileForm
    list_display = ("customer_id", "email", "first_name", "last_name", "mpid", "updated_at")
    # Prefix and exact lookups, which indexes can serve: there may be millions of profiles.
    search_fields = ("customer_id__startswith", "email__iexact", "mpid__exact")
    search_help_text = _("A customer ID or its beginning, an exact email address, or an mParticle ID.")
    sortable_by = ("customer_id",)
    show_full_result_count = False
    show_facets = admin.ShowFacets.NEVER
    paginator = CheapCountPaginator
    inlines = (MembershipInline,)
    actions = ("erase_people",)
    fieldsets = (
        (
            _("Identity"),
            {
                "fields": ("customer_id", "mpid"),
                "description": _(
                    "The customer ID is the person's identifier in Customer.io; without it the profile is "
                    "not forwarded. Both are fixed once the profile exists."
                ),
            },
        ),
        (
            _("Sent to Customer.io"),
            {
                "fields": ("email", "first_name", "last_name"),
                "description": _("Changes are forwarded to every connection with an active subscription."),
            },
        ),
        (_("History"), {"fields": ("created_at", "updated_at"), "classes": ("collapse",)}),
    )

    erase_people = erase_people  # connections/admin/erasure.py: confirmation page, then the erasure service

    change_form_template = "admin/connections/profile/change_form.html"

    def get_urls(self):  # type: ignore[no-untyped-def]
        erase = path(
            "<path:object_id>/erase/", self.admin_site.admin_view(self.erase_view), name="connections_profile_erase"
        )
        return [erase, *super().get_urls()]

    def erase_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """The page's "Erase…": the list action's confirmation and erasure, for this one person."""
        profile = self.get_object(request, unquote(object_id))
        if profile is None:
            raise Http404
        if not self.has_delete_permission(request, profile):
            raise PermissionDenied
        response = self.erase_people(request, Profile.objects.filter(pk=profile.pk))
        return response or HttpResponseRedirect(reverse("admin:connections_profile_changelist"))

    def get_actions(self, request: HttpRequest):  # type: ignore[no-untyped-def]
        actions = super().get_actions(request)
        if "delete_selected" in actions:
            function, name, _description = actions["delete_selected"]
            actions["delete_selected"] = (function, name, _("Delete selected profiles here only (not in Customer.io)"))
        return actions

    def render_change_form(  # type: ignore[no-untyped-def]
        self, request: HttpRequest, context, add=False, change=False, form_url="", obj=None
    ) -> TemplateResponse:
        if obj is not None and obj.pk is not None:
            # "This person in Customer.io" (last delivered, next update), above the form.
            history_page = request.GET.get("history", "1")
            context.update(
                person=person_view.build(obj, int(history_page) if history_page.isdigit() else 1),
                can_view_connections=request.user.has_perm("connections.view_connection"),
            )
        return super().render_change_form(request, context, add, change, form_url, obj)

    def get_deleted_objects(self, objs, request):  # type: ignore[no-untyped-def]
        # Memberships and queued forwards go with the profile (Django's would ask for delete permission on forwards).
        return summarized_deleted_objects(self, objs, request)

    def delete_view(self, request: HttpRequest, object_id: str, extra_context=None):  # type: ignore[no-untyped-def]
        erase_url = reverse("admin:connections_profile_erase", args=[object_id])
        return super().delete_view(request, object_id, {**(extra_context or {}), "erase_url": erase_url})

    def get_fieldsets(self, request: HttpRequest, obj: Profile | None = None):  # type: ignore[no-untyped-def]
        return self.fieldsets if obj is not None else self.fieldsets[:2]

    def get_readonly_fields(self, request: HttpRequest, obj: Profile | None = None) -> tuple[str, ...]:
        return () if obj is None else ("customer_id", "mpid", "created_at", "updated_at")

    def save_model(self, request: HttpRequest, obj: Profile, form, change: bool) -> None:  # type: ignore[no-untyped-def]
        if not change:
            obj.save()  # no memberships yet, so nothing to forward
            return
        edited = {name: getattr(obj, name) for name in memberships.IDENTITY_FIELDS if name in form.changed_data}
        for name in edited:
            setattr(obj, name, form.initial[name])
        memberships.update_profile_identity(obj, **edited)

    def save_formset(self, request: HttpRequest, form, formset, change: bool) -> None:  # type: ignore[no-untyped-def]
        if formset.model is not Membership:
            super().save_formset(request, form, formset, change)
            return
        profile = form.instance
        rows = formset.save(commit=False)  # new and edited rows, not saved: the service writes them
        if not rows:
            return
        profile_change = memberships.ProfileChange(
            profile=memberships.ProfileInput(customer_id=profile.customer_id, mpid=profile.mpid),
            memberships={row.audience.audience_id: row.is_member for row in rows},
        )
        memberships.apply_changes([profile_change])
