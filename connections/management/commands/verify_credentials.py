"""``manage.py verify_credentials``: ask Customer.io whether each connection's Site ID / API key work."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from connections.management.lookup import find_connection
from connections.models import Connection
from connections.services.connection.credentials import verify_credentials


class Command(BaseCommand):
    help = (
        "Check connections' credentials with Customer.io (GET /api/v1/accounts/region): valid or rejected, and "
        "the workspace's region, with a warning when it differs from the configured one. Every connection unless "
        "--connection is given. Exits non-zero when any check fails. Never prints an API key."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--connection", metavar="NAME_OR_ID", help="Only this connection (its name, or its numeric id)."
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if options["connection"]:
            connections = [find_connection(options["connection"])]
        else:
            connections = list(Connection.objects.order_by("name"))
        if not connections:
            self.stdout.write("No connections to check.")
            return

        valid = rejected = unchecked = mismatched = 0
        for connection in connections:
            check = verify_credentials(connection)
            label = f"{connection.name} (id {connection.pk}, Site ID {connection.site_id}, {connection.region.upper()})"
            if check.valid and check.region_mismatch:
                mismatched += 1
                self.stdout.write(self.style.WARNING(f"WARNING  {label}: {check.message}"))
            elif check.valid:
                self.stdout.write(self.style.SUCCESS(f"VALID    {label}: {check.message}"))
            elif check.rejected:
                self.stdout.write(self.style.ERROR(f"REJECTED {label}: {check.message}"))
            else:
                self.stdout.write(self.style.ERROR(f"ERROR    {label}: {check.message}"))
            valid += check.valid
            rejected += check.rejected
            unchecked += not (check.valid or check.rejected)

        summary = f"{len(connections)} checked: {valid} valid ({mismatched} in another region), {rejected} rejected"
        if unchecked:
            summary += f", {unchecked} could not be checked"
        self.stdout.write(summary + ".")
        if rejected or unchecked:
            raise CommandError(f"{rejected + unchecked} of {len(connections)} connections failed the check.")
