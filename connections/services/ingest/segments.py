"""Manual segments and the connection options around them, for the admin (SPEC section 11).

- `create_manual_segment`: with the connection's App API key, create a Customer.io manual
  segment named after the subscription's audience and store its id on the subscription.
- `set_segment_id`: the admin's way to change a subscription's segment id, through the one
  place it changes (`segment_ids`, which the Firehose's setting uses too); on an active
  subscription the audience's members are queued, so the new segment is backfilled (the
  worker adds them after identifying them, as on activation).
- `segment_membership_conflicts`: other connections to the same workspace (Site ID) that also
  write SegmentMembership, whose values would overwrite each other.
"""

from __future__ import annotations

from connections.customerio.app_client import AppAPIError
from connections.models import Connection, Subscription
from connections.services.connection import clients
from connections.services.ingest import segment_ids


class SegmentError(Exception):
    """Why a segment could not be created; the message is for a person and holds no key."""


def writes_segment_membership(connection: Connection) -> bool:
    """Whether forwards to this connection carry the SegmentMembership attribute."""
    return not connection.one_attribute_per_audience or connection.segment_membership_always


def segment_membership_conflicts(connection: Connection) -> list[Connection]:
    """The other connections to the same Site ID that also write SegmentMembership.

    Each computes SegmentMembership from its own subscriptions, so in one Customer.io
    workspace the last one to send wins and the others' audiences vanish from the value.
    """
    if not writes_segment_membership(connection):
        return []
    others = Connection.objects.filter(site_id=connection.site_id).exclude(pk=connection.pk).order_by("name")
    return [other for other in others.only("pk", "name", "one_attribute_per_audience", "segment_membership_always")
            if writes_segment_membership(other)]


def segment_name(subscription: Subscription) -> str:
    # The audience's own name, as "In <name>" attributes use it: what a marketer searches for.
    return subscription.audience.name


def segment_description(subscription: Subscription) -> str:
    return (
        f"Members of audience {subscription.audience.audience_id}, kept in sync by cioaudience "
        f"(connection {subscription.connection.name}). Created empty; members are added as they are forwarded."
    )


def create_manual_segment(subscription: Subscription) -> int:
    """Create a manual segment named after the audience and store its id; returns the id.

    Refuses (SegmentError) a subscription that already names a segment: creating another
    would leave the first one behind with its members.
    """
    if subscription.customerio_segment_id is not None:
        raise SegmentError(
            f"{subscription} already uses manual segment {subscription.customerio_segment_id}: "
            "clear its Customer.io manual segment ID first to create a new one."
        )
    try:
        client = clients.app_client(subscription.connection)
    except clients.NoAppKey as error:
        raise SegmentError(str(error)) from None
    try:
        segment_id = client.create_segment(segment_name(subscription), segment_description(subscription))
    except AppAPIError as error:
        advice = " Enter the App API key again on the connection and save." if error.rejected else ""
        raise SegmentError(f"{subscription.connection.name}: {error}{advice}") from None
    set_segment_id(subscription, segment_id)
    return segment_id


def set_segment_id(subscription: Subscription, segment_id: int | None) -> bool:
    """Store the subscription's manual segment id; True when it changed.

    An active subscription that now names a (different) segment has its audience's members
    queued, so that the segment is backfilled; clearing the id sends nothing (the old segment
    keeps its members, as attributes are kept on deactivation). `segment_ids.change_segment_id`
    does it, for the Firehose's setting too.
    """
    if segment_id is not None and (isinstance(segment_id, bool) or segment_id < 1):
        raise ValueError("a segment id is a positive integer")
    changed = segment_ids.change_segment_id(Subscription.objects.filter(pk=subscription.pk), segment_id)
    subscription.customerio_segment_id = segment_id
    if changed:
        subscription.updated_at = Subscription.objects.values_list("updated_at", flat=True).get(pk=subscription.pk)
    return bool(changed)
