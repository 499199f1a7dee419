"""Subscriptions (audience x connection): activation, deactivation, deletion, renames.

Activation backfills the audience's current members (backfill.py: at once for a small
audience, through a worker for a large one). Deactivation and deletion send nothing:
Customer.io keeps whatever attributes it has; forwards still queued for that subscription
are cancelled and recorded as such: at once when they are few, else by a worker when it
claims them (payloads.plan), so that a request never does work proportional to the audience.
"""

from __future__ import annotations

from collections.abc import Iterable

from django.conf import settings
from django.db import transaction
from django.db.models import QuerySet
from django.utils import timezone

from connections.models import Audience, Connection, Delivery, Forward, Subscription
from connections.services.resync import backfill

CANCELLED_BECAUSE = "Subscription deactivated or deleted: not sent; Customer.io keeps its attributes."


def cancel_queued(connection_id: int, audience_pks: Iterable[int], why: str = CANCELLED_BECAUSE) -> int:
    """Cancel forwards not yet claimed by a worker for these audiences on a connection, logging each.

    Up to BACKFILL_INLINE_MAX rows are cancelled here, in the caller's transaction. More are left
    where they are: a worker cancels (and logs) each when it claims it, since `payloads.plan` sends
    nothing for an audience without an active subscription, so a request never does work
    proportional to a large audience.
    """
    queued = Forward.objects.filter(
        connection_id=connection_id, audience_id__in=list(audience_pks), claim_token=""
    ).select_related("profile")
    if queued.order_by()[: settings.BACKFILL_INLINE_MAX + 1].count() > settings.BACKFILL_INLINE_MAX:
        return 0
    now = timezone.now()
    cancelled = 0
    for chunk in _chunks(queued.iterator(chunk_size=2000), 2000):
        Delivery.objects.bulk_create(
            [
                Delivery(
                    connection_id=connection_id,
                    profile_id=f.profile_id,
                    customer_id=f.profile.customer_id,
                    status=Delivery.Status.CANCELLED,
                    reason=f.reason,
                    error=why,
                    attempt=f.attempts + 1,
                    finished_at=now,
                )
                for f in chunk
            ]
        )
        cancelled += Forward.objects.filter(pk__in=[f.pk for f in chunk]).delete()[0]
    return cancelled


def _chunks(iterable: Iterable[Forward], size: int) -> Iterable[list[Forward]]:
    chunk: list[Forward] = []
    for item in iterable:
        chunk.append(item)
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


@transaction.atomic
def set_status(subscriptions: QuerySet[Subscription] | Iterable[Subscription], status: str) -> int:
    """Activate or deactivate subscriptions: the one path for both (admin, Firehose, commands).

    Returns how many subscriptions actually changed state.
    """
    changed = 0
    pks = [s.pk for s in subscriptions]
    for sub in Subscription.objects.select_for_update().filter(pk__in=pks).order_by("pk"):
        if sub.status == status:
            continue
        sub.status = status
        sub.save(update_fields=["status", "updated_at"])
        changed += 1
        if status == Subscription.Status.ACTIVE:
            backfill.backfill(sub.connection_id, sub.audience_id, Forward.Reason.ACTIVATION)
        else:
            cancel_queued(sub.connection_id, [sub.audience_id])
    return changed


def activate(subscription: Subscription) -> bool:
    changed = set_status([subscription], Subscription.Status.ACTIVE) > 0
    subscription.refresh_from_db(fields=["status", "updated_at"])
    return changed


def deactivate(subscription: Subscription) -> bool:
    changed = set_status([subscription], Subscription.Status.INACTIVE) > 0
    subscription.refresh_from_db(fields=["status", "updated_at"])
    return changed


@transaction.atomic
def subscribe(audience: Audience, connection: Connection) -> tuple[Subscription, bool]:
    """Create the subscription active, or re-activate it. Returns it and whether it was created."""
    sub, created = Subscription.objects.get_or_create(
        audience=audience, connection=connection, defaults={"status": Subscription.Status.ACTIVE}
    )
    if created:
        backfill.backfill(connection.pk, audience.pk, Forward.Reason.ACTIVATION)
    else:
        activate(sub)
    return sub, created


@transaction.atomic
def delete_subscriptions(subscriptions: Iterable[Subscription]) -> int:
    """Delete subscriptions, cancelling what is queued for them. Sends nothing."""
    deleted = 0
    for sub in subscriptions:
        cancel_queued(sub.connection_id, [sub.audience_id])
        sub.delete()
        deleted += 1
    return deleted


@transaction.atomic
def delete_audiences(pks: Iterable[int]) -> int:
    """Delete audiences with their subscriptions (sending nothing) and memberships. Returns how many.

    Each is locked first (FOR UPDATE): a message or import writing its memberships holds it FOR
    KEY SHARE until it commits, so the delete waits for them and takes their rows along, rather
    than leaving memberships of an audience that no longer exists (they have no foreign key
    constraint).
    """
    locked = list(Audience.objects.select_for_update().filter(pk__in=list(pks)).values_list("pk", flat=True))
    delete_subscriptions(Subscription.objects.filter(audience_id__in=locked))
    Audience.objects.filter(pk__in=locked).delete()
    return len(locked)


@transaction.atomic
def rename_audience(audience: Audience, new_name: str) -> bool:
    """Rename; with one attribute per audience, current members are re-sent under the new name.

    The old `In <old name>` attribute is left untouched in Customer.io.
    """
    if audience.name == new_name:
        return False
    audience.name = new_name
    audience.save(update_fields=["name", "updated_at"])
    toggled = Subscription.objects.filter(
        audience=audience, status=Subscription.Status.ACTIVE, connection__one_attribute_per_audience=True
    ).values_list("connection_id", flat=True)
    for connection_id in toggled:
        backfill.backfill(connection_id, audience.pk, Forward.Reason.RENAME)
    return True
