"""``manage.py erase_person --customer-id ID | --email E [--dry-run]``: erase a person (SPEC section 12)."""

from __future__ import annotations

import getpass
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from connections.firehose import inbox
from connections.models import ErasureRecord
from connections.services.erasure import local as erasure


class Command(BaseCommand):
    help = (
        "Erase a person: delete their profile(s), memberships and queued forwards, remove their values from the "
        "forwarding log, and tell each connection's Customer.io workspace as the connection's 'on erasure' "
        "setting says (suppress, delete, or nothing), through the workers. A record without personal data is "
        "kept (admin: Erasures). Running it again changes nothing."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--customer-id", default="", metavar="ID", help="The person's customer ID (exact).")
        parser.add_argument("--email", default="", metavar="E", help="The person's email (any case).")
        parser.add_argument(
            "--dry-run", action="store_true", help="Say what would be erased and sent, and change nothing."
        )

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            query = erasure.PersonQuery(customer_id=options["customer_id"], email=options["email"])
        except erasure.ErasureError as error:
            raise CommandError(f"{error}: --customer-id ID or --email E") from None
        if options["dry_run"]:
            plan = erasure.plan_erasure(query)
            self._describe(plan, "Dry run: would erase")
            self.stdout.write("Nothing was changed.")
            return
        # The erasure covers what messages accepted before it store (FIREHOSE_APPLY=worker): they are
        # applied first, for a few seconds at most; past that the erasure waits behind them for a worker.
        done = inbox.erase_in_order([query], source=ErasureRecord.Source.COMMAND, requested_by=_os_user())
        if done.queued:
            self.stdout.write(
                self.style.WARNING(
                    f"{done.waiting_before} Firehose message(s) accepted before this erasure are still being "
                    f"applied: the erasure is queued behind them as {done.queued[0]}, and a worker carries it out "
                    "in its turn (admin: Erasures lists it once done)."
                )
            )
            return
        result = done.erased[0]
        if result.record is None:
            self.stdout.write(f"No profile or log row matches this {query.matched_on}: nothing to erase.")
            return
        self._describe(result.plan, "Erased")
        self.stdout.write(
            self.style.SUCCESS(
                f"Erasure recorded as {result.record.request_id}; the Customer.io calls are sent by the workers "
                "(admin: Erasures shows their outcome)."
            )
        )

    def _describe(self, plan: erasure.ErasurePlan, verb: str) -> None:
        if not plan.found:
            self.stdout.write("No profile or log row matches: nothing to erase.")
            return
        self.stdout.write(
            f"{verb} {len(plan.profile_ids)} profile(s), {plan.memberships} membership(s), "
            f"{plan.outbox_rows} queued forward(s); {plan.deliveries} forwarding-log row(s) scrubbed; "
            f"taken out of {plan.batch_requests} batch request(s)."
        )
        for call in plan.calls:
            self.stdout.write(f"  {call.describe()}")


def _os_user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no user name in a container without a passwd entry
        return ""
