"""Which applier may apply what: a person's changes in order, different people at once (pure rules).

A stored membership message (FIREHOSE_APPLY=worker, `inbox`) is about many people. Its profiles
are split into SHARDS slices by a stable hash of who each is (`person_key`: the mpid, else the
raw Customer ID, as `profile_rows.key` finds a profile), and each slice is applied in order of
its own: an applier holds some shards (an advisory lock each) and applies, in one transaction,
the oldest pending messages' slices of those shards, then marks those shards done on each
message (`FirehoseMessage.shards_done`, a bit per shard); the message stops being pending when
every shard is done. DSR erasures, erasures queued by the admin or `erase_person`, and
subscription requests are *barriers*: applied alone, holding every shard.

Why the order holds (PostgreSQL; SQLite has one writer at a time, so each transaction below is
alone there and the same arguments hold trivially):

1. **One person's membership messages, in answer order.** Let M < M' (ids, the order messages
   were stored and answered) both name person P, whose shard is s = shard_of(P): the same for
   both, since the key and the hash depend on nothing else. Only a transaction holding s's lock
   applies s's slices, so s's slices are applied one transaction at a time; each transaction
   takes, among the messages still not done for s, the oldest ones (`ORDER BY id`, before the
   first barrier), and marks them done for s in the same commit. So when the transaction that
   applies M' began, M was done for s (committed earlier), or it is in the same batch, where
   slices are applied in id order. A rollback undoes a slice and its mark together, so a slice
   is applied exactly once. P's changes in M therefore precede those in M'.
2. **A barrier B (a DSR or queued erasure, a subscription request) after every earlier message
   and before every later one.** An applier applies B only while it holds every shard's lock
   (it waits for them: other appliers' batches finish first) and B is the oldest pending
   message: every earlier message is done for all shards, committed. No transaction applies a
   slice of a message after B while B is pending: each batch is read below the first pending
   barrier (`id < B`), and B is marked applied in B's own commit. So for every person, an
   erasure sees every change accepted before it, and nothing accepted after it is applied
   before it; a subscription change sees every earlier membership applied and none later.
3. **The admin's and `erase_person`'s erasures** (`inbox.erase_in_order`) apply what is pending
   first and then erase inside one transaction holding every shard, after checking that no
   message stored before the call is still pending: the same position as a barrier stored at
   that moment. Past their wait they are stored as a barrier (`queued_erasure`) and rule 2 holds.

Assumption, stated rather than hidden: two messages about one person name it by the same key.
mParticle sends the mpid with every profile, so they do. A profile sent once with an mpid and
once without (Customer ID only) has two keys and may fall in two shards, whose slices are not
ordered with each other; that person's final state is still the last writer's per membership
(the source-time rule), but names could be applied out of order.
"""

from __future__ import annotations

import zlib
from collections.abc import Mapping
from typing import Any

from connections.models import FirehoseMessage

SHARDS = 8  # slices of every message; at most this many appliers apply at once
ALL = (1 << SHARDS) - 1  # `shards_done` of a message every shard has applied

BARRIER_TYPES = FirehoseMessage.BARRIER_TYPES  # applied alone, holding every shard


def shard_of(key: str) -> int:
    """The shard of a person key: CRC-32, stable across processes and runs (unlike `hash`)."""
    return zlib.crc32(key.encode()) % SHARDS


def person_key(profile: Mapping[str, Any]) -> str:
    """Who a raw user profile of a membership message is about: its mpid, else its raw Customer ID.

    Read from the message as received, before the whole parse (an applier keeps only its
    shards' profiles): any deterministic choice splits the profiles, and this one follows how
    `profile_rows.key` finds a profile. A profile with neither changes nothing (`ingest.profile_change`).
    """
    mpid = profile.get("mpid")
    if mpid not in (None, ""):
        return f"mpid:{mpid}"
    for identity in profile.get("user_identities") or ():
        if isinstance(identity, Mapping) and identity.get("type") == "customer" and identity.get("encoding") == "raw":
            return f"customer_id:{identity.get('value')}"
    return ""


def mask(shards: set[int] | frozenset[int]) -> int:
    return sum(1 << s for s in shards)


def still_to_apply(done: int, held: frozenset[int]) -> frozenset[int]:
    """Of the shards an applier holds, those a message with `done` has not had applied yet."""
    return frozenset(s for s in held if not done & (1 << s))


def fair_share(running: int) -> int:
    """How many shards one of `running` appliers takes per batch, so that each gets some."""
    return max(1, -(-SHARDS // max(1, running)))
