"""A cheap digest of the database, to show that something changed nothing."""

from __future__ import annotations

import hashlib

from django.apps import apps

from connections.models.observability import TELEMETRY_MODELS

# Refreshed by authentication at most once a minute (connections.services.ingest.tokens): bookkeeping
# of the token, not an effect of what the request asked for.
NOT_COMPARED = {"connections.inboundtoken": {"last_used_at"}}


def checksums() -> dict[str, str]:
    """A digest of every row of every table the product owns (and of users and groups), per table.

    Telemetry (counts of requests, running totals for /metrics) is left out: it records that a
    request came, not what it changed.
    """
    digests = {}
    for model in [*apps.get_app_config("connections").get_models(), *apps.get_app_config("auth").get_models()]:
        label = model._meta.label_lower
        if label in TELEMETRY_MODELS:
            continue
        names = [f.attname for f in model._meta.concrete_fields if f.attname not in NOT_COMPARED.get(label, ())]
        rows = model._base_manager.order_by("pk").values_list(*names)
        digests[label] = hashlib.sha256(repr(list(rows)).encode()).hexdigest()
    return digests


def changed_since(before: dict[str, str]) -> set[str]:
    """The tables whose rows differ from the digest `before`."""
    now = checksums()
    return {table for table, digest in now.items() if before.get(table) != digest}
