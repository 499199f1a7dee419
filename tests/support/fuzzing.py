"""Hypothesis strategies for Firehose bodies: generated messages, and mutations of mParticle's official samples.

Values are drawn mostly from small pools that name what the fuzz test's database holds (its
audience ids, customer ids, mpids and connection keys), so that many messages are accepted
and touch existing rows, and otherwise from odd, wrong-typed or out-of-range values.
`encode` turns a message into the request body; `Raw` splices JSON text that Python's json
module will not write (a 5,000-digit number, a document nested 100,000 levels deep).
"""

from __future__ import annotations

import copy
import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from hypothesis import strategies as st

from tests.support.firehose import official

MAX_AUDIENCE_ID = 2**63 - 1

# What the fuzz test's database holds (tests/reliability/test_firehose_fuzz.py builds it from these).
CONNECTION_KEYS = ("ck-segment-membership", "ck-one-per-audience", "ck-faulted")
AUDIENCES = {1: "One", 2: "Two", 123: "New Users", MAX_AUDIENCE_ID: "The largest id"}
CUSTOMER_IDS = ("c-1", "c-2", "c-4 ü ñ 🎉")
MPIDS = ("m-1", "m-3", "12345")

MEMBERSHIP = "audience_membership_change_request"
SUBSCRIPTION = "audience_subscription_request"
REGISTRATION = "module_registration_request"
DSR = "dsr_processing_request"

ODD_STRINGS = (
    "",
    " ",
    "\t\n",
    "\x00",
    "a\x00b",
    "\ud800",
    "x\udfffy",
    "\u202eRTL override",
    "zero\u200bwidth",
    "e\u0301\u0301\u0301",
    "🎉" * 40,
    "'\",.;\\",
    "<script>alert(1)</script>",
    "%s %(x)s {0}",
    "NaN",
    "null",
    "Robert'); DROP TABLE connections_profile;--",
    "ǅ𝔘𝔫𝔦𝔠𝔬𝔡𝔢",
    "\ufeffbom",
    "\U0010ffff",
)
INTERESTING_INTS = (0, 1, -1, 2**31, 2**53 + 1, MAX_AUDIENCE_ID, 2**63, 2**64, -(2**63), 10**30)


@dataclass(frozen=True)
class Raw:
    """JSON text put into the body as it is."""

    text: str


MISSING = object()  # a field left out of its object


def exactly(n: int) -> st.SearchStrategy[str]:
    return st.sampled_from(["x" * n, "ü" * n, "🎉" * n])


def _storable(text: str) -> bool:
    return "\x00" not in text and not any(0xD800 <= ord(c) <= 0xDFFF for c in text)


def text_upto(n: int, min_size: int = 0) -> st.SearchStrategy[str]:
    """Text a database can store (no NUL, no lone surrogate), odd Unicode included, at most `n` characters."""
    storable = st.characters(codec="utf-8", exclude_characters="\x00")
    odd = [t for t in ODD_STRINGS if min_size <= len(t) <= n and _storable(t)]
    return st.one_of(st.text(storable, min_size=min_size, max_size=min(n, 16)), st.sampled_from(odd), exactly(n))


odd_text = st.one_of(
    st.text(max_size=12),
    st.sampled_from(ODD_STRINGS),
    st.text(st.characters(codec="utf-8", exclude_categories=()), max_size=8),
    st.sampled_from([33, 64, 65, 100, 101, 150, 151, 254, 255, 256, 1000]).flatmap(exactly),
)
huge_number = st.integers(4_301, 6_000).map(lambda n: Raw("9" * n))
deep_nesting = st.one_of(
    st.integers(60, 70).map(lambda n: Raw("[" * n + "]" * n)),
    st.integers(1_000, 100_000).map(lambda n: Raw('{"a":' * n + "1" + "}" * n)),
    st.integers(2, 6).map(lambda n: Raw("[" * n + "]" * (n - 1))),  # brackets that do not match
)
scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.sampled_from(INTERESTING_INTS), st.floats(), odd_text)
json_values = st.recursive(
    scalars,
    lambda children: st.lists(children, max_size=3) | st.dictionaries(odd_text, children, max_size=3),
    max_leaves=6,
)
wrong = st.one_of(json_values, huge_number, deep_nesting)


def weighted(*choices: tuple[int, st.SearchStrategy[Any]]) -> st.SearchStrategy[Any]:
    """One of the strategies, each drawn with its weight (the first when shrinking)."""
    bounds = []
    total = 0
    for weight, strategy in choices:
        total += weight
        bounds.append((total, strategy))
    return st.integers(0, total - 1).flatmap(lambda n: next(s for bound, s in bounds if n < bound))


def optional(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.one_of(st.just(MISSING), strategy)


def obj(**fields: st.SearchStrategy[Any]) -> st.SearchStrategy[dict[str, Any]]:
    """An object with these fields (those drawn as MISSING left out) and, sometimes, unknown ones."""
    extra = st.one_of(st.just({}), st.dictionaries(odd_text, json_values, max_size=2))

    def build(parts: tuple[dict[str, Any], dict[str, Any]]) -> dict[str, Any]:
        extras, known = parts
        return {**extras, **{k: v for k, v in known.items() if v is not MISSING}}

    return st.tuples(extra, st.fixed_dictionaries(fields)).map(build)


# --- valid messages, odd as they may be --------------------------------------------------------

message_ids = st.one_of(
    st.uuids().map(str),
    st.uuids().map(lambda u: str(u).upper()),
    st.uuids().map(lambda u: u.hex),
    st.uuids().map(lambda u: f"urn:uuid:{u}"),
)
known_audience_ids = st.sampled_from(sorted(AUDIENCES))
audience_ids = weighted((3, known_audience_ids), (1, st.integers(1, MAX_AUDIENCE_ID)), (1, st.just(999)))
known_names = st.sampled_from(sorted(AUDIENCES.values()))
customer_ids = st.one_of(st.sampled_from(CUSTOMER_IDS), st.sampled_from(["new-1", "new-2"]), text_upto(255))
emails = st.one_of(st.sampled_from(["a@example.com", "b@example.com", ""]), text_upto(254))
mpids = st.one_of(
    st.sampled_from(MPIDS), st.sampled_from(["m-new", "7", ""]), st.integers(-(10**60), 10**60), text_upto(64)
)
names = st.one_of(st.sampled_from(["Ada", "Grace", ""]), text_upto(150))
settings_maps = st.dictionaries(text_upto(20), text_upto(40), max_size=2)

identity = st.sampled_from(["customer", "customer", "email", "other"]).flatmap(
    lambda kind: obj(
        type=st.just(kind),
        encoding=st.sampled_from(["raw", "raw", "raw", "md5", "sha256"]),
        value=customer_ids if kind == "customer" else emails if kind == "email" else odd_text,
    )
)
user_attribute = obj(
    key=optional(st.sampled_from(["$FirstName", "$LastName", "$FirstName", "Some Key", ""])),
    action=st.sampled_from(["upsert", "delete"]),
    value=optional(st.one_of(names, st.none())),
)
audience_change = obj(
    audience_id=audience_ids,
    audience_name=st.one_of(known_names, text_upto(100)),
    action=st.sampled_from(["add", "delete", "attribute_update"]),
    user_attributes=optional(st.lists(user_attribute, max_size=3)),
    audience_subscription_settings=optional(settings_maps),
)
user_profile = obj(
    mpid=optional(mpids),
    user_identities=optional(st.lists(identity, max_size=4)),
    audiences=weighted((4, st.lists(audience_change, min_size=1, max_size=5)), (1, st.just([])), (1, st.just(MISSING))),
    device_identities=optional(st.lists(json_values, max_size=2)),
)
connection_keys = st.sampled_from([*CONNECTION_KEYS, "no-such-key"])


def account(needs_key: bool) -> st.SearchStrategy[dict[str, Any]]:
    key = {"connectionKey": connection_keys} if needs_key else {}
    settings = st.fixed_dictionaries(key, optional={"Example Setting": text_upto(30)})
    return obj(account_id=st.integers(), account_settings=settings if needs_key else optional(settings))


def envelope(kind: str) -> dict[str, st.SearchStrategy[Any]]:
    return {
        "type": st.just(kind),
        "id": message_ids,
        "timestamp_ms": st.one_of(st.integers(), st.sampled_from(INTERESTING_INTS)),
        "firehose_version": st.one_of(st.sampled_from(["3.2.0", "2.0"]), text_upto(32)),
    }


registration_messages = obj(**envelope(REGISTRATION))
subscription_messages = obj(
    **envelope(SUBSCRIPTION),
    account=account(needs_key=True),
    audience_id=audience_ids,
    audience_name=st.one_of(known_names, text_upto(100, min_size=1).filter(str.strip)),
    action=st.sampled_from(["add", "update", "remove"]),
    audience_subscription_settings=optional(settings_maps),
)
membership_messages = obj(
    **envelope(MEMBERSHIP),
    account=account(needs_key=True),  # every message naming an account names a connection
    user_profiles=weighted(
        (12, st.lists(user_profile, min_size=1, max_size=6)),
        (1, st.just([])),
        (1, st.just(None)),
        (1, st.just(MISSING)),
    ),
)
valid_messages = weighted((1, registration_messages), (2, subscription_messages), (4, membership_messages))


@st.composite
def messages(draw: st.DrawFn) -> dict[str, Any]:
    """A valid message, or (half of the time) one with one to three faults: a field deleted, retyped, replaced..."""
    message = draw(valid_messages)
    if draw(st.booleans()):
        for _ in range(draw(st.integers(1, 3))):
            mutate(draw, message)
    return message


def encode(message: Any, ensure_ascii: bool = True) -> bytes:
    """The message as a request body; each `Raw` value is spliced in as JSON text."""
    spliced: dict[str, str] = {}

    def placeholder(value: Any) -> Any:
        if isinstance(value, Raw):
            key = f"@@raw-{len(spliced)}@@"
            spliced[key] = value.text
            return key
        if isinstance(value, dict):
            return {placeholder(k) if isinstance(k, Raw) else k: placeholder(v) for k, v in value.items()}
        if isinstance(value, list):
            return [placeholder(v) for v in value]
        return value

    text = json.dumps(placeholder(message), ensure_ascii=ensure_ascii)
    for key, raw in spliced.items():
        text = text.replace(json.dumps(key), raw, 1)
    return text.encode("utf-8", errors="surrogatepass")


# --- mutations of the official samples -------------------------------------------------------

SAMPLES = {
    MEMBERSHIP: "AudienceMembershipChangeRequest",
    SUBSCRIPTION: "AudienceSubscriptionRequest",
    REGISTRATION: "ModuleRegistrationRequest",
    DSR: "DsrProcessingRequest",
}
Path = tuple[str | int, ...]


def paths(value: Any, prefix: Path = ()) -> list[Path]:
    """Every path to a value inside `value` (not the root itself)."""
    found: list[Path] = []
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for key, child in items:
        found.append((*prefix, key))
        found.extend(paths(child, (*prefix, key)))
    return found


def _parent(message: Any, path: Path) -> tuple[Any, str | int]:
    target = message
    for part in path[:-1]:
        target = target[part]
    return target, path[-1]


def _delete(draw: st.DrawFn, message: Any, path: Path) -> None:
    parent, key = _parent(message, path)
    del parent[key]


def _replace(draw: st.DrawFn, message: Any, path: Path) -> None:
    parent, key = _parent(message, path)
    parent[key] = draw(
        st.one_of(
            wrong,
            st.sampled_from(INTERESTING_INTS),
            st.sampled_from(["raw", "customer", "email", "add", "delete", "remove", "update", "attribute_update"]),
            st.sampled_from([*CUSTOMER_IDS, *MPIDS, *CONNECTION_KEYS, *AUDIENCES.values()]),
            st.sampled_from(sorted(AUDIENCES)),
        )
    )


def _swap_type(draw: st.DrawFn, message: Any, path: Path) -> None:
    parent, key = _parent(message, path)
    value = parent[key]
    swaps = [str(value), [value], {"value": value}, None, True, 1.5, len(str(value))]
    if isinstance(value, str) and value.lstrip("-").isdigit():
        swaps.append(int(value))
    parent[key] = draw(st.sampled_from([s for s in swaps if type(s) is not type(value)]))


def _duplicate(draw: st.DrawFn, message: Any, path: Path) -> None:
    parent, key = _parent(message, path)
    value = copy.deepcopy(parent[key])
    if isinstance(parent, list):
        parent.insert(draw(st.integers(0, len(parent))), value)
    elif isinstance(value, list) and value:
        value.extend(copy.deepcopy(value) * draw(st.integers(1, 3)))
        parent[key] = value
    else:
        parent[draw(st.sampled_from([f"{key}_copy", str(key).upper(), f" {key}"]))] = value


def _nest(draw: st.DrawFn, message: Any, path: Path) -> None:
    parent, key = _parent(message, path)
    for _ in range(draw(st.integers(1, 80))):
        parent[key] = [parent[key]]


STRUCTURE_MUTATIONS: tuple[Callable[[st.DrawFn, Any, Path], None], ...] = (
    _delete,
    _replace,
    _swap_type,
    _duplicate,
    _nest,
)


def mutate(draw: st.DrawFn, message: Any) -> None:
    """One structural mutation at a random place in the message."""
    candidates = paths(message)
    if candidates:
        draw(st.sampled_from(STRUCTURE_MUTATIONS))(draw, message, draw(st.sampled_from(candidates)))


def _truncate(draw: st.DrawFn, body: bytes) -> bytes:
    return body[: draw(st.integers(0, max(len(body) - 1, 0)))]


def _flip(draw: st.DrawFn, body: bytes) -> bytes:
    at = draw(st.integers(0, len(body) - 1))
    return body[:at] + bytes([body[at] ^ (1 << draw(st.integers(0, 7)))]) + body[at + 1 :]


def _insert(draw: st.DrawFn, body: bytes) -> bytes:
    at = draw(st.integers(0, len(body)))
    junk = draw(st.one_of(st.binary(min_size=1, max_size=8), st.sampled_from([b"{", b"]", b'"', b",", b"\\", b"\xff"])))
    return body[:at] + junk + body[at:]


def _cut(draw: st.DrawFn, body: bytes) -> bytes:
    at = draw(st.integers(0, len(body) - 1))
    return body[:at] + body[at + draw(st.integers(1, 40)) :]


def _repeat(draw: st.DrawFn, body: bytes) -> bytes:
    at = draw(st.integers(0, len(body) - 1))
    end = at + draw(st.integers(1, 60))
    return body[:end] + body[at:end] + body[end:]


def _duplicate_key(draw: st.DrawFn, body: bytes) -> bytes:
    """A second member with the name of an existing one: JSON parsers keep the last."""
    key = draw(st.sampled_from([b"type", b"id", b"action", b"audience_id", b"user_profiles", b"connectionKey"]))
    value = draw(st.sampled_from([b'"add"', b"null", b"1", b"[]", b"{}", b'"remove"', b'"ck-faulted"']))
    at = body.find(b'"' + key + b'"')
    if at < 0:
        return body
    return body[:at] + b'"' + key + b'": ' + value + b", " + body[at:]


BYTE_MUTATIONS: tuple[Callable[[st.DrawFn, bytes], bytes], ...] = (
    _truncate,
    _flip,
    _insert,
    _cut,
    _repeat,
    _duplicate_key,
)


@st.composite
def mutated_samples(draw: st.DrawFn) -> bytes:
    """An official sample, made applicable here most of the time, then mutated structurally and/or byte by byte."""
    kind = draw(st.sampled_from(sorted(SAMPLES)))
    message = official(SAMPLES[kind])
    if draw(st.integers(0, 9)) < 8:
        message["id"] = str(uuid.UUID(int=draw(st.integers(0, 2**128 - 1))))
    if kind in (SUBSCRIPTION, MEMBERSHIP) and draw(st.integers(0, 9)) < 8:
        message["account"]["account_settings"]["connectionKey"] = draw(st.sampled_from(CONNECTION_KEYS))
    if kind == DSR and draw(st.integers(0, 9)) < 6:
        # Name someone the world knows (or not), so that erasures are exercised as well as refusals.
        message["subject_request_id"] = str(uuid.UUID(int=draw(st.integers(0, 2**128 - 1))))
        message["subject_identities"]["controller_customer_id"] = {
            "encoding": "raw",
            "value": draw(st.sampled_from([*CUSTOMER_IDS, "c-unknown"])),
        }
    if kind == MEMBERSHIP and draw(st.booleans()):
        for identity in message["user_profiles"][0]["user_identities"]:
            identity["encoding"] = "raw"  # the sample's hashed identities, as raw ones
    for _ in range(draw(st.integers(0, 4))):
        mutate(draw, message)
    body = encode(message, ensure_ascii=draw(st.booleans()))
    for _ in range(draw(st.sampled_from([0, 0, 1, 1, 2, 3]))):
        if body:
            body = draw(st.sampled_from(BYTE_MUTATIONS))(draw, body)
    return body
