"""The Customer.io manual segment id of subscriptions, as mParticle's audience settings give it."""

from __future__ import annotations

from collections.abc import Mapping

from connections.models import Connection, Subscription


def store_segment_ids(connection: Connection, segment_ids: Mapping[int, int | None]) -> int:
    """Set each audience's subscription on this connection to its segment id (None clears it).

    Keyed by the source's `audience_id`; audiences without a subscription here are left alone
    (mParticle sends the settings of its own audience connection, which may not exist here yet).
    Returns how many subscriptions changed.
    """
    changed = 0
    # Django turns exclude(x=5) into NOT (x = 5 AND x IS NOT NULL) and exclude(x=None) into
    # x IS NOT NULL, so rows holding NULL are compared correctly both ways.
    for audience_id, segment_id in segment_ids.items():
        changed += (
            Subscription.objects.filter(connection=connection, audience__audience_id=audience_id)
            .exclude(customerio_segment_id=segment_id)
            .update(customerio_segment_id=segment_id)
        )
    return changed
