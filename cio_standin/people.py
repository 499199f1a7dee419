"""The people and manual segments of one stand-in workspace, as Customer.io keeps them.

Not thread-safe on its own: ``State`` calls it under its lock. What is reproduced here
(Customer.io's Track API documentation and OpenAPI document):

- A person is found by ``id`` or by ``email`` (emails case-insensitively). A person created
  by email has no id; an identify by id whose ``email`` attribute belongs to such a person
  gives that person the id instead of creating another one.
- The v1 path names a person by id or email, told apart by the value's shape (an ``@``).
- ``"_update": true`` updates a person who exists and never creates one; it is a flag, not
  an attribute, so it is not stored.
- Manual segments hold people; ``add_customers`` / ``remove_customers`` name them by the
  ``id_type`` of the request and ignore ids that match nobody (Customer.io does not create
  people from a segment request).

People are listed under their id, or under the email they were created by when they have
no id, which keeps ``{id: attributes}`` what a test of the seed expects.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

UPDATE_FLAG = "_update"


@dataclass
class ManualSegment:
    id: int
    name: str
    description: str
    created_at: int  # Unix seconds, as Customer.io reports it
    members: set[str] = field(default_factory=set)  # person keys

    def to_json(self, *, with_members: bool = False) -> dict[str, Any]:
        """The App API's segment object (with ``members`` for the control API)."""
        data: dict[str, Any] = {
            "id": self.id,
            "deduplicate_id": f"{self.id}:{self.created_at}",
            "name": self.name,
            "description": self.description,
            "state": "finished",
            "progress": None,
            "type": "manual",
            "tags": None,
            "created_at": self.created_at,
            "updated_at": self.created_at,
        }
        if with_members:
            data["members"] = sorted(self.members)
        return data


@dataclass
class SegmentChange:
    """What a segment request did: people named that exist, and ids that matched nobody."""

    changed: int = 0
    ignored: list[str] = field(default_factory=list)


def kind_of_path_identifier(value: str) -> str:
    """v1 puts an id or an email in the path; Customer.io tells them apart by shape."""
    return "email" if "@" in value else "id"


class SitePeople:
    def __init__(self) -> None:
        self.attributes: dict[str, dict[str, Any]] = {}
        self._by_email: dict[str, str] = {}  # lower-cased email -> key (checked on use)
        self._email_only: set[str] = set()  # keys of people created by email, without an id
        self.segments: dict[int, ManualSegment] = {}
        self.suppressed: set[str] = set()  # identifiers Customer.io ignores from now on (erasure.py)

    # --- finding people -------------------------------------------------------------------

    def find(self, kind: str, value: str) -> str | None:
        """The key of the person whose ``kind`` ("id", "email", anything else: as given) is
        ``value``, or None."""
        if kind == "email":
            wanted = value.lower()
            key = self._by_email.get(wanted)
            # An entry is only a hint: the person may have changed their email since. A person
            # created by email keeps that email as their identifier (their key).
            if key is not None and (
                (key in self._email_only and key.lower() == wanted)
                or str(self.attributes.get(key, {}).get("email", "")).lower() == wanted
            ):
                return key
            return value if value in self._email_only else None
        if value in self.attributes and value not in self._email_only:
            return value
        return None

    # --- changing people ------------------------------------------------------------------

    def identify(self, kind: str, value: str, attributes: dict[str, Any]) -> bool:
        """Merge ``attributes`` into the person; False when ``_update`` kept a new person from
        being created."""
        if value in self.suppressed:  # Customer.io ignores any call naming a suppressed identifier
            return True
        update_only = attributes.get(UPDATE_FLAG) is True
        stored = {name: v for name, v in attributes.items() if name != UPDATE_FLAG}
        key = self.find(kind, value)
        if key is None and kind == "id":
            key = self._claim_email_only_person(value, stored.get("email"))
        if key is None:
            if update_only:
                return False
            key = value
            if kind == "email":
                self._email_only.add(key)
                self._by_email[value.lower()] = key
        person = self.attributes.setdefault(key, {})
        person.update(stored)
        email = person.get("email")
        if isinstance(email, str) and email:
            self._by_email[email.lower()] = key
        return True

    def delete(self, kind: str, value: str) -> bool:
        key = self.find(kind, value)
        if key is None:
            return False
        self.attributes.pop(key, None)
        self._email_only.discard(key)
        for segment in self.segments.values():
            segment.members.discard(key)
        return True

    def _claim_email_only_person(self, person_id: str, email: Any) -> str | None:
        """An identify by id carrying the email of a person created by email: that person
        gets the id (Customer.io's documented behaviour), under which they are kept from now."""
        if not isinstance(email, str) or not email:
            return None
        key = self.find("email", email)
        if key is None or key not in self._email_only:
            return None
        self._email_only.discard(key)
        self.attributes[person_id] = self.attributes.pop(key)
        for segment in self.segments.values():
            if key in segment.members:
                segment.members.discard(key)
                segment.members.add(person_id)
        self._by_email[email.lower()] = person_id
        return person_id

    # --- manual segments ------------------------------------------------------------------

    def add_to_segment(self, segment: ManualSegment, id_type: str, ids: Iterable[str]) -> SegmentChange:
        change = SegmentChange()
        for value in ids:
            key = self.find(id_type, value) if id_type in ("id", "email") else None
            if key is None:
                change.ignored.append(value)
            elif key not in segment.members:
                segment.members.add(key)
                change.changed += 1
        return change

    def remove_from_segment(self, segment: ManualSegment, id_type: str, ids: Iterable[str]) -> SegmentChange:
        change = SegmentChange()
        for value in ids:
            key = self.find(id_type, value) if id_type in ("id", "email") else None
            if key is None:
                change.ignored.append(value)
            elif key in segment.members:
                segment.members.discard(key)
                change.changed += 1
        return change


class Directory:
    """Every workspace's people and segments, behind the stand-in's one lock (``State.lock``)."""

    def __init__(self, lock: threading.Lock) -> None:
        self._lock = lock
        self._sites: dict[str, SitePeople] = {}
        self._next_segment_id = 1

    def _site(self, site_id: str) -> SitePeople:
        site = self._sites.get(site_id)
        if site is None:
            site = self._sites[site_id] = SitePeople()
        return site

    def merge_person(self, site_id: str, identifier: str, attributes: dict[str, Any]) -> bool:
        with self._lock:
            return self._site(site_id).identify(kind_of_path_identifier(identifier), identifier, attributes)

    def apply_actions(self, site_id: str, actions: list[tuple[str, str, str, dict[str, Any]]]) -> list[str]:
        not_created = []
        with self._lock:
            site = self._site(site_id)
            for action, kind, value, attributes in actions:
                if action == "identify":
                    if not site.identify(kind, value, attributes):
                        not_created.append(value)
                elif action == "delete":
                    site.delete(kind, value)
        return not_created

    def erase(self, site_id: str, operation: str, identifier: str) -> None:
        """delete / suppress (delete, and ignore the identifier from now on) / unsuppress."""
        with self._lock:
            site = self._site(site_id)
            if operation == "unsuppress":
                site.suppressed.discard(identifier)
                return
            site.delete(kind_of_path_identifier(identifier), identifier)
            if operation == "suppress":
                site.suppressed.add(identifier)

    def suppressed(self, site_id: str) -> list[str]:
        with self._lock:
            site = self._sites.get(site_id)
            return sorted(site.suppressed) if site else []

    def people(self, site_id: str) -> dict[str, dict[str, Any]]:
        with self._lock:
            site = self._sites.get(site_id)
            return {key: dict(attributes) for key, attributes in site.attributes.items()} if site else {}

    def tally(self, site_id: str, attribute: str | None) -> dict[str, Any]:
        """Counts for a large workspace: people, each value of one attribute, each segment's members."""
        with self._lock:
            site = self._sites.get(site_id)
            if site is None:
                return {"people": 0, "values": {}, "segment_members": {}}
            values: Counter[str] = Counter()
            if attribute is not None:
                values.update(str(attrs[attribute]) for attrs in site.attributes.values() if attribute in attrs)
            return {
                "people": len(site.attributes),
                "values": dict(values),
                "segment_members": {str(segment.id): len(segment.members) for segment in site.segments.values()},
            }

    def create_segment(self, site_id: str, name: str, description: str = "") -> ManualSegment:
        with self._lock:
            segment = ManualSegment(self._next_segment_id, name, description, int(time.time()))
            self._next_segment_id += 1
            self._site(site_id).segments[segment.id] = segment
            return segment

    def has_segment(self, site_id: str, segment_id: int) -> bool:
        with self._lock:
            site = self._sites.get(site_id)
            return site is not None and segment_id in site.segments

    def segments(self, site_id: str, *, with_members: bool = False) -> list[dict[str, Any]]:
        with self._lock:
            site = self._sites.get(site_id)
            found = sorted(site.segments.values(), key=lambda segment: segment.id) if site else []
            return [segment.to_json(with_members=with_members) for segment in found]

    def segment_members(self, site_id: str, segment_id: int) -> set[str]:
        """The keys (the id, or the email for people without one) of a segment's members."""
        with self._lock:
            site = self._sites.get(site_id)
            if site is None or segment_id not in site.segments:
                raise KeyError(f"no segment {segment_id} in workspace {site_id!r}")
            return set(site.segments[segment_id].members)

    def change_segment(
        self, site_id: str, segment_id: int, operation: str, id_type: str, ids: list[str]
    ) -> SegmentChange:
        """``add_customers`` / ``remove_customers`` on a segment that exists (``has_segment``)."""
        with self._lock:
            site = self._site(site_id)
            segment = site.segments[segment_id]
            if operation == "add_customers":
                return site.add_to_segment(segment, id_type, ids)
            return site.remove_from_segment(segment, id_type, ids)

    def sizes_unlocked(self, site_id: str) -> tuple[int, int]:
        """(people, segments) of a workspace; the caller holds the lock."""
        site = self._sites.get(site_id)
        return (len(site.attributes), len(site.segments)) if site else (0, 0)
