"""Demo data for `make demo`: a connection to the local stand-in, audiences, profiles, a superuser."""

from __future__ import annotations

import secrets

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand
from django.db import transaction

from connections.models import Audience, Connection
from connections.services.ingest import subscriptions
from connections.services.ingest.memberships import ProfileChange, ProfileInput, apply_changes

AUDIENCES = [(101, "New Users"), (202, "Café \"VIP\", 2.0"), (303, "Churn risk")]
PEOPLE = [
    ("cust-ada", "ada@example.com", "Ada", "Lovelace", {101: True, 202: True}),
    ("cust-grace", "grace@example.com", "Grace", "Hopper", {101: True}),
    ("cust-alan", "alan@example.com", "Alan", "Turing", {202: True, 303: True}),
    ("cust-katherine", "katherine@example.com", "Katherine", "Johnson", {303: False}),
    ("", "hashed-only@example.com", "No", "Identifier", {101: True}),
]


class Command(BaseCommand):
    help = "Load demo data: a connection to the local stand-in, audiences, profiles and a superuser."

    def add_arguments(self, parser):  # type: ignore[no-untyped-def]
        parser.add_argument("--site-id", default="demo-site", help="Site ID the stand-in accepts.")
        parser.add_argument("--api-key-file", required=True, help="File holding the stand-in's API key.")
        parser.add_argument(
            "--app-api-key-file", help="File holding the stand-in's App API key (optional: creating manual segments)."
        )
        parser.add_argument("--username", default="admin", help="Superuser to create.")

    @transaction.atomic
    def handle(self, *args, **options):  # type: ignore[no-untyped-def]
        with open(options["api_key_file"]) as f:
            api_key = f.read().strip()
        app_api_key = ""
        if options["app_api_key_file"]:
            with open(options["app_api_key_file"]) as f:
                app_api_key = f.read().strip()
        connection, created = Connection.objects.get_or_create(
            name="Demo workspace (stand-in)",
            defaults={"site_id": options["site_id"], "api_key": api_key, "app_api_key": app_api_key, "rate_limit": 50},
        )
        if not created:
            self.stdout.write("Demo data already loaded.")
        else:
            for audience_id, name in AUDIENCES:
                audience, _ = Audience.objects.get_or_create(audience_id=audience_id, defaults={"name": name})
                subscriptions.subscribe(audience, connection)
            apply_changes(
                [
                    ProfileChange(ProfileInput(customer_id=c, email=e, first_name=first, last_name=last, mpid=None), m)
                    for c, e, first, last, m in PEOPLE
                ],
                audience_names=dict(AUDIENCES),
            )
            self.stdout.write(self.style.SUCCESS(f"Loaded {len(AUDIENCES)} audiences and {len(PEOPLE)} profiles."))

        User = get_user_model()
        password = secrets.token_urlsafe(12)
        user, _ = User.objects.get_or_create(username=options["username"], defaults={"is_staff": True})
        user.is_staff = user.is_superuser = True
        user.set_password(password)
        user.save()
        self.stdout.write(self.style.SUCCESS(f"Superuser: {user.username} / password: {password}"))
