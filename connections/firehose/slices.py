"""Many stored membership messages applied at once: the held shards' slices, one `apply_changes`.

An applier (`inbox`) reads a batch of pending membership messages, oldest first, and applies
the profiles of the shards it holds (`shards`) in one call, so the batch costs one statement
per table instead of each message's own. Each change keeps its message's source time, and of
several changes to one membership the one applying them one by one would leave stands (the
newest source time; of equal times the later message): `memberships.apply_changes`. A person's
identity fields take the later message's values, as one by one.

What belongs to a message's connection rather than to its people (the manual segment ids it
carries) is applied with the slice of shard 0, once, from the whole message.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from connections.firehose import ingest, shards
from connections.firehose.messages import AudienceMembershipChangeRequest, MessageError, decode_body, parse_message
from connections.models import Connection
from connections.services.ingest.memberships import ProfileChange
from connections.services.ingest.segment_ids import store_segment_ids

logger = logging.getLogger(__name__)

CONNECTION_SHARD = 0  # the slice that carries a message's connection-level settings


@dataclass(frozen=True)
class Stored:
    """A pending message as the applier reads it."""

    pk: int
    message_id: str
    body: str
    shards_done: int


def apply(messages: list[Stored], held: frozenset[int]) -> dict[int, int]:
    """Apply the slices of `held` shards not applied yet; returns each message's pk -> the shards applied (a mask)."""
    applied: dict[int, int] = {}
    changes: list[ProfileChange] = []
    names: dict[int, str] = {}
    connections: dict[str, Connection | None] = {}
    for stored in messages:
        slice_shards = shards.still_to_apply(stored.shards_done, held)
        applied[stored.pk] = shards.mask(slice_shards)
        message = _parse_slice(stored, slice_shards)
        if message is None or (message.is_verification and CONNECTION_SHARD not in slice_shards):
            continue
        connection = _connection(message, connections, stored.message_id)
        if CONNECTION_SHARD in slice_shards and connection is not None and _carries_segments(stored.body):
            whole = parse_message(decode_body(stored.body.encode()))
            assert isinstance(whole, AudienceMembershipChangeRequest)  # it parsed as one above
            store_segment_ids(connection, whole.segment_settings())
        if message.is_verification:
            continue
        at = ingest.source_time(message.envelope.timestamp_ms)
        for profile in message.user_profiles or ():
            change = ingest.profile_change(profile)
            if change is not None:
                changes.append(ProfileChange(change.profile, change.memberships, source_time=at))
        for audience_id, name in message.audience_names().items():
            names.setdefault(audience_id, name)
    if changes:
        result = ingest.apply_changes(changes, names)  # the one seam of both modes
        logger.info(
            "Firehose: %d messages' slices, %d profiles, %d created, %d updated, %d memberships changed, "
            "%d forwards queued",
            len(messages),
            len(changes),
            result.profiles_created,
            result.profiles_updated,
            result.memberships_changed,
            result.forwards_queued,
        )
    return applied


def _parse_slice(stored: Stored, slice_shards: frozenset[int]) -> AudienceMembershipChangeRequest | None:
    """The message with only the profiles of `slice_shards`; None (logged) if it no longer parses."""
    try:
        data = decode_body(stored.body.encode())
        profiles = data.get("user_profiles")
        if isinstance(profiles, list):
            data = {**data, "user_profiles": [p for p in profiles if _shard(p) in slice_shards]}
        message = parse_message(data)
    except MessageError as refused:
        # Only a change of this code's parsing since the message was accepted can land here.
        logger.error("Firehose message %s was accepted but no longer parses: %s", stored.message_id, refused)
        return None
    if not isinstance(message, AudienceMembershipChangeRequest):
        logger.error("Firehose message %s is not a membership change, yet was read as one", stored.message_id)
        return None
    return message


def _shard(profile: Any) -> int:
    return shards.shard_of(shards.person_key(profile) if isinstance(profile, Mapping) else "")


def _connection(
    message: AudienceMembershipChangeRequest, found: dict[str, Connection | None], message_id: str
) -> Connection | None:
    key = message.connection_key
    if key not in found:
        found[key] = ingest.connection_if_kept(key)
    if found[key] is None:
        logger.warning(
            "Firehose message %s: its connection was deleted after it was accepted; applying what every "
            "connection shares",
            message_id,
        )
    return found[key]


def _carries_segments(body: str) -> bool:
    """Whether the message may set a manual segment id (cheap: the setting's name in the text)."""
    return "audience_subscription_settings" in body
