"""Finding the objects a command names, with the one-line errors every command gives."""

from __future__ import annotations

import argparse

from django.core.management.base import CommandError

from connections.models import Audience, Connection


def find_connection(name_or_id: str) -> Connection:
    """The connection with this name, or else with this id (a name wins: a connection may be called "12")."""
    connection = Connection.objects.filter(name=name_or_id).first()
    if connection is None and name_or_id.strip().isdigit():
        connection = Connection.objects.filter(pk=int(name_or_id)).first()
    if connection is None:
        raise CommandError(f"No connection named or numbered {name_or_id!r}.")
    return connection


def find_audience(audience_id: int) -> Audience:
    """The audience with this source-system `audience_id` (not the database id)."""
    audience = Audience.objects.filter(audience_id=audience_id).first()
    if audience is None:
        raise CommandError(f"No audience with audience ID {audience_id}.")
    return audience


def positive_int(value: str) -> int:
    """An argparse type: a whole number above zero."""
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {value!r}") from None
    if number < 1:
        raise argparse.ArgumentTypeError(f"must be 1 or more, got {number}")
    return number


def add_rows_per_transaction(parser: argparse.ArgumentParser, flag: str, default: int, what: str) -> None:
    """The option every long-running command has: how many rows one transaction handles."""
    parser.add_argument(flag, type=positive_int, default=default, metavar="N", help=f"{what} (default {default}).")
