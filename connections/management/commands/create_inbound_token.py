"""`manage.py create_inbound_token --name NAME`: a token for the Firehose endpoint, printed once."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import IntegrityError, transaction

from connections.models import InboundToken
from connections.services.ingest import tokens

NAME_MAX = InboundToken._meta.get_field("name").max_length


class Command(BaseCommand):
    help = (
        "Create a token that lets mParticle call the Firehose endpoint (POST /api/mparticle/firehose). "
        "The token is printed once and stored only as a hash."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--name", required=True, help="Who will use the token, e.g. 'mParticle production'. Must be unique."
        )

    def handle(self, *args: Any, **options: Any) -> None:
        name = options["name"].strip()
        if not name:
            raise CommandError("--name must not be empty.")
        if NAME_MAX is not None and len(name) > NAME_MAX:
            raise CommandError(f"--name is {len(name)} characters long; at most {NAME_MAX} are allowed.")
        if InboundToken.objects.filter(name=name).exists():
            raise CommandError(f"An inbound token named {name!r} already exists; choose another name.")
        try:
            with transaction.atomic():
                _, token = tokens.create_token(name)
        except IntegrityError:  # created by someone else since the check above
            raise CommandError(f"An inbound token named {name!r} already exists; choose another name.") from None

        self.stdout.write(self.style.SUCCESS(f"Created inbound token {name!r}."))
        self.stdout.write("It is shown only this once (only a hash is stored); copy it now:\n")
        self.stdout.write(f"    {token}\n")
        self.stdout.write("Send it with every Firehose request as the header:\n")
        self.stdout.write(f"    Authorization: Token {token}")
