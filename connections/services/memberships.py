"""Membership and identity changes: the one path by which data enters (Firehose, import, admin).

`apply_changes` writes profiles, memberships and the outbox in the caller's transaction,
with a bounded number of bulk queries however many profiles a message carries.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from django.db import transaction
from django.utils import timezone

from connections.models import Audience, Forward, Membership, Profile, Subscription
from connections.services import bulk, outbox

IDENTITY_FIELDS = ("email", "first_name", "last_name")


@dataclass(frozen=True)
class ProfileInput:
    """Who a change is about. `None` means "not given": the stored value is kept."""

    customer_id: str = ""
    mpid: str | None = None
    email: str | None = None
    first_name: str | None = None
    last_name: str | None = None


@dataclass(frozen=True)
class ProfileChange:
    profile: ProfileInput
    # audience_id (the source system's id) -> True (joined), False (left)
    memberships: dict[int, bool] = field(default_factory=dict)


@dataclass
class ApplyResult:
    profiles_created: int = 0
    profiles_updated: int = 0
    memberships_changed: int = 0
    forwards_queued: int = 0


def _key(p: ProfileInput) -> tuple[str, str]:
    return ("mpid", p.mpid) if p.mpid else ("customer_id", p.customer_id)


def _resolve_profiles(
    inputs: Sequence[ProfileInput], result: ApplyResult
) -> tuple[dict[tuple[str, str], Profile], set[int]]:
    """Find or create the profiles; update identity fields. Returns the profiles and the changed ones."""
    mpids = {p.mpid for p in inputs if p.mpid}
    customer_ids = {p.customer_id for p in inputs if p.customer_id}
    by_mpid = {pr.mpid: pr for pr in Profile.objects.filter(mpid__in=mpids)} if mpids else {}
    by_cid = {pr.customer_id: pr for pr in Profile.objects.filter(customer_id__in=customer_ids)} if customer_ids else {}
    # One Python object per row: a message may name one person by mpid and by customer ID,
    # and both entries' changes must land on the same object.
    same = {pr.pk: pr for pr in by_mpid.values()}
    by_cid = {c: same.get(pr.pk, pr) for c, pr in by_cid.items()}

    resolved: dict[tuple[str, str], Profile] = {}
    to_create: dict[tuple[str, str], Profile] = {}
    to_update: dict[int, Profile] = {}
    identity_changed: set[int] = set()
    for p in inputs:
        key = _key(p)
        if key in resolved:
            profile = resolved[key]
        else:
            profile = (by_mpid.get(p.mpid) if p.mpid else None) or (
                by_cid.get(p.customer_id) if p.customer_id else None
            )
            if profile is None:
                profile = to_create.get(key) or Profile(customer_id=p.customer_id, mpid=p.mpid or None)
                to_create[key] = profile
                if p.customer_id:
                    by_cid[p.customer_id] = profile
            resolved[key] = profile
        changed = False
        if p.customer_id and profile.customer_id != p.customer_id and p.customer_id not in by_cid:
            profile.customer_id = p.customer_id
            by_cid[p.customer_id] = profile
            changed = True
        if p.mpid and not profile.mpid:
            profile.mpid = p.mpid
            changed = True
        for name in IDENTITY_FIELDS:
            value = getattr(p, name)
            if value is not None and getattr(profile, name) != value:
                setattr(profile, name, value)
                changed = True
        if changed and profile.pk:
            to_update[profile.pk] = profile
            identity_changed.add(profile.pk)

    if to_create:
        raced = _create_profiles(list(to_create.values()))
        result.profiles_created += len(to_create) - len(raced)
        for profile in raced:
            to_update[profile.pk] = profile
            identity_changed.add(profile.pk)
    if to_update:
        now = timezone.now()
        for profile in to_update.values():
            profile.updated_at = now
        bulk.update_rows(Profile, list(to_update.values()), ["customer_id", "mpid", *IDENTITY_FIELDS, "updated_at"])
        result.profiles_updated += len(to_update)
    return resolved, identity_changed


def _create_profiles(new: list[Profile]) -> list[Profile]:
    """Insert new profiles, safe against a concurrent message creating the same person.

    `ON CONFLICT DO NOTHING` waits for the other transaction and skips its rows; they are then
    read back, so every object gets its primary key. Returns the ones another transaction
    created first with other values: the caller writes this message's values over them.
    """
    keyless = [p for p in new if not (p.customer_id or p.mpid)]
    keyed = [p for p in new if p.customer_id or p.mpid]
    Profile.objects.bulk_create(keyless, batch_size=1000)
    if not keyed:
        return []
    Profile.objects.bulk_create(keyed, batch_size=1000, ignore_conflicts=True)
    by_mpid = {r.mpid: r for r in Profile.objects.filter(mpid__in=[p.mpid for p in keyed if p.mpid])}
    by_cid = {r.customer_id: r for r in Profile.objects.filter(customer_id__in=[p.customer_id for p in keyed])}
    raced = []
    for profile in keyed:
        row = (by_mpid.get(profile.mpid) if profile.mpid else None) or by_cid[profile.customer_id]
        profile.pk = row.pk
        profile._state.adding = False
        if any(getattr(row, f) != getattr(profile, f) for f in ("customer_id", "mpid", *IDENTITY_FIELDS)):
            raced.append(profile)
    return raced


def _apply_memberships(pairs: dict[tuple[int, int], bool], result: ApplyResult) -> set[tuple[int, int]]:
    """Write (profile pk, audience pk) -> is_member. Returns the pairs whose state changed."""
    if not pairs:
        return set()
    now = timezone.now()
    profile_pks = {p for p, _ in pairs}
    audience_pks = {a for _, a in pairs}
    existing = {
        (m.profile_id, m.audience_id): m
        for m in Membership.objects.filter(profile_id__in=profile_pks, audience_id__in=audience_pks)
    }
    changed: set[tuple[int, int]] = set()
    to_create: list[Membership] = []
    to_update: list[Membership] = []
    for (profile_pk, audience_pk), is_member in pairs.items():
        current = existing.get((profile_pk, audience_pk))
        if current is None:
            to_create.append(
                Membership(profile_id=profile_pk, audience_id=audience_pk, is_member=is_member, changed_at=now)
            )
        elif current.is_member != is_member:
            current.is_member = is_member
            current.changed_at = now
            to_update.append(current)
        else:
            continue
        changed.add((profile_pk, audience_pk))
    if to_create:
        # As for profiles: a concurrent message may have recorded some of these pairs first.
        Membership.objects.bulk_create(to_create, batch_size=1000, ignore_conflicts=True)
        wanted = {(m.profile_id, m.audience_id): m.is_member for m in to_create}
        for stored in Membership.objects.filter(
            profile_id__in={p for p, _ in wanted}, audience_id__in={a for _, a in wanted}
        ):
            desired = wanted.get((stored.profile_id, stored.audience_id))
            if desired is not None and stored.is_member != desired:
                stored.is_member, stored.changed_at = desired, now
                to_update.append(stored)
    bulk.update_rows(Membership, to_update, ["is_member", "changed_at"])
    result.memberships_changed += len(changed)
    return changed


def ensure_audiences(names_by_id: dict[int, str]) -> dict[int, Audience]:
    """audience_id -> Audience, creating the ones not seen before (with the given name)."""
    found = {a.audience_id: a for a in Audience.objects.filter(audience_id__in=names_by_id)}
    missing = [Audience(audience_id=i, name=names_by_id[i] or str(i)) for i in names_by_id if i not in found]
    if missing:
        Audience.objects.bulk_create(missing, ignore_conflicts=True)
        found = {a.audience_id: a for a in Audience.objects.filter(audience_id__in=names_by_id)}
    return found


@transaction.atomic
def apply_changes(changes: Sequence[ProfileChange], audience_names: dict[int, str] | None = None) -> ApplyResult:
    """Apply profile and membership changes and queue what must be forwarded, all in one transaction."""
    result = ApplyResult()
    if not changes:
        return result
    names = dict(audience_names or {})
    for change in changes:
        for audience_id in change.memberships:
            names.setdefault(audience_id, str(audience_id))
    audiences = ensure_audiences(names) if names else {}

    profiles, identity_changed = _resolve_profiles([c.profile for c in changes], result)
    pairs: dict[tuple[int, int], bool] = {}
    for change in changes:
        profile = profiles[_key(change.profile)]
        for audience_id, is_member in change.memberships.items():
            pairs[(profile.pk, audiences[audience_id].pk)] = is_member
    changed = _apply_memberships(pairs, result)

    keys: set[outbox.ForwardKey] = set()
    by_audience = outbox.active_connection_ids_by_audience(a for _, a in changed)
    for profile_pk, audience_pk in changed:
        for connection_id in by_audience.get(audience_pk, ()):
            keys.add((connection_id, profile_pk, audience_pk))
    if identity_changed:
        forwarded = {(c, p) for c, p, _ in keys}
        for connection_id, profile_pk in connections_forwarding_profiles(identity_changed):
            if (connection_id, profile_pk) not in forwarded:
                keys.add((connection_id, profile_pk, None))
    membership_keys = {k for k in keys if k[2] is not None}
    result.forwards_queued += outbox.enqueue(membership_keys, Forward.Reason.MEMBERSHIP)
    result.forwards_queued += outbox.enqueue(keys - membership_keys, Forward.Reason.IDENTITY)
    return result


def connections_forwarding_profiles(profile_pks: set[int]) -> set[tuple[int, int]]:
    """(connection pk, profile pk) for every active subscription to an audience the profile has a record in."""
    rows = Membership.objects.filter(
        profile_id__in=profile_pks,
        audience__subscriptions__status=Subscription.Status.ACTIVE,
    ).values_list("audience__subscriptions__connection_id", "profile_id")
    return set(rows)


def update_profile_identity(profile: Profile, **fields: str) -> bool:
    """Change a profile's email or names (admin edits); forwards the change when it is forwarded."""
    changed = {k: v for k, v in fields.items() if getattr(profile, k) != v}
    if not changed:
        return False
    with transaction.atomic():
        for k, v in changed.items():
            setattr(profile, k, v)
        profile.save(update_fields=[*changed, "updated_at"])
        outbox.enqueue(
            ((c, p, None) for c, p in connections_forwarding_profiles({profile.pk})), Forward.Reason.IDENTITY
        )
    return True
