"""Customer.io's documented limits: what is refused, and that the reason names the limit."""

from __future__ import annotations

import itertools
import json

import pytest

from connections.customerio.identifiers import Identifier
from connections.customerio.limits import (
    MAX_ATTRIBUTE_VALUE_BYTES,
    MAX_V2_ACTION_BYTES,
    MAX_V2_BATCH_BYTES,
    encode_json,
    identifier_violation,
    limit_violation,
    pack_v2_batches,
    v2_action,
)
from connections.services.forwarding.attributes import segment_membership_value

TRANSPORTS = ["v1", "v2_batch"]


def many_attributes(count: int, value: str = "x") -> dict[str, str]:
    return {f"attr_{index}": value for index in range(count)}


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize(
    ("customer_id", "attributes"),
    [
        pytest.param("c" * 150, {}, id="identifier-of-exactly-150-bytes"),
        pytest.param("é" * 75, {}, id="identifier-of-150-bytes-in-two-byte-chars"),
        pytest.param("c", {"n" * 150: "v"}, id="attribute-name-of-exactly-150-bytes"),
        pytest.param("c", {"v": "x" * 1000}, id="value-of-exactly-1000-bytes"),
        pytest.param("c", many_attributes(300), id="exactly-300-attributes"),
        pytest.param("c", {"SegmentMembership": ""}, id="empty-segment-membership"),
    ],
)
def test_requests_at_the_limits_are_sendable(customer_id, attributes, transport):
    assert limit_violation(customer_id, attributes, transport) is None


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize(
    ("customer_id", "attributes", "expected_reason"),
    [
        pytest.param(
            "c" * 163,
            {},
            "customer_id is 163 bytes; Customer.io allows at most 150 bytes per identifier",
            id="identifier-over-150-bytes",
        ),
        pytest.param(
            "é" * 76,
            {},
            "customer_id is 152 bytes; Customer.io allows at most 150 bytes per identifier",
            id="identifier-counted-in-utf8-bytes-not-characters",
        ),
        pytest.param("", {}, "customer_id is empty; Customer.io needs an identifier", id="empty-identifier"),
        pytest.param(
            "c",
            {"n" * 151: "v"},
            "is 151 bytes; Customer.io allows at most 150 bytes per attribute name",
            id="attribute-name-over-150-bytes",
        ),
        pytest.param(
            "c",
            {"In " + "ü" * 74: "true"},
            "is 151 bytes; Customer.io allows at most 150 bytes per attribute name",
            id="audience-attribute-name-over-150-bytes-in-multibyte-chars",
        ),
        pytest.param(
            "c",
            {"note": "€" * 334},
            "note value is 1,002 bytes; Customer.io allows at most 1,000 bytes per attribute value",
            id="value-over-1000-bytes-in-multibyte-chars",
        ),
        pytest.param(
            "c",
            many_attributes(301),
            "301 attributes; Customer.io allows at most 300 attributes per call",
            id="301-attributes",
        ),
        pytest.param(
            "c",
            {"name": "\ud800"},
            "name value contains characters that cannot be encoded as UTF-8",
            id="lone-surrogate-value",
        ),
    ],
)
def test_requests_over_a_limit_are_refused_with_a_reason_naming_it(customer_id, attributes, expected_reason, transport):
    reason = limit_violation(customer_id, attributes, transport)

    assert reason is not None
    assert expected_reason in reason


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_segment_membership_of_about_150_audiences_is_refused_not_cut(transport):
    value = segment_membership_value(range(1_000_000, 1_000_150))
    assert len(value.encode()) > MAX_ATTRIBUTE_VALUE_BYTES

    reason = limit_violation("cust-1", {"SegmentMembership": value}, transport)

    assert reason == (
        f"SegmentMembership value is {len(value.encode()):,} bytes; "
        "Customer.io allows at most 1,000 bytes per attribute value"
    )


def test_a_v2_action_of_32_kb_or_more_is_refused_although_v1_may_send_it():
    # 40 values of 900 bytes: every single value is within limits, the action is not.
    attributes = many_attributes(40, value="x" * 900)
    assert len(encode_json(v2_action("cust-1", attributes))) >= MAX_V2_ACTION_BYTES

    reason = limit_violation("cust-1", attributes, "v2_batch")

    assert reason is not None
    assert "32,768 bytes (32 KB)" in reason and "action" in reason
    assert limit_violation("cust-1", attributes, "v1") is None


def test_the_v2_action_limit_is_strictly_under_32_kb():
    base = v2_action("c", {"a": ""})
    padding = MAX_V2_ACTION_BYTES - len(encode_json(base))
    just_under = {f"a{index}": "x" * 990 for index in range(padding // 1000)}
    filler = MAX_V2_ACTION_BYTES - len(encode_json(v2_action("c", {**just_under, "z": ""})))

    exactly_32_kb = {**just_under, "z": "x" * filler}
    one_byte_less = {**just_under, "z": "x" * (filler - 1)}

    assert len(encode_json(v2_action("c", exactly_32_kb))) == MAX_V2_ACTION_BYTES
    assert limit_violation("c", exactly_32_kb, "v2_batch") is not None
    assert limit_violation("c", one_byte_less, "v2_batch") is None


def test_an_unknown_transport_is_a_programming_error():
    with pytest.raises(ValueError, match="unknown transport"):
        limit_violation("c", {}, "v3")


def test_encode_json_is_compact_utf8_without_escapes():
    assert encode_json({"In Café": "'1','2'"}) == "{\"In Café\":\"'1','2'\"}".encode()


def test_v2_action_is_a_person_identify():
    assert v2_action("cust-1", {"SegmentMembership": "'1'"}) == {
        "type": "person",
        "action": "identify",
        "identifiers": {"id": "cust-1"},
        "attributes": {"SegmentMembership": "'1'"},
    }


def test_v2_action_identifies_by_email_when_given_an_email_identifier():
    action = v2_action(Identifier("email", "jane@example.com"), {"email": "jane@example.com", "_update": True})

    assert action == {
        "type": "person",
        "action": "identify",
        "identifiers": {"email": "jane@example.com"},
        "attributes": {"email": "jane@example.com", "_update": True},
    }


def test_a_plain_string_is_still_a_customer_id():
    assert v2_action("cust-1", {}) == v2_action(Identifier("id", "cust-1"), {})
    assert limit_violation("c" * 151, {}, "v1") == limit_violation(Identifier("id", "c" * 151), {}, "v1")


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize(
    ("identifier", "expected_reason"),
    [
        pytest.param(
            Identifier("email", "j" * 140 + "@example.com"),
            "email is 152 bytes; Customer.io allows at most 150 bytes per identifier",
            id="email-over-150-bytes",
        ),
        pytest.param(Identifier("email", ""), "email is empty; Customer.io needs an identifier", id="empty-email"),
        pytest.param(
            Identifier("email", "\ud800@example.com"),
            "email contains characters that cannot be encoded as UTF-8",
            id="lone-surrogate-email",
        ),
        pytest.param(
            Identifier("id", "c" * 151),
            "customer_id is 151 bytes; Customer.io allows at most 150 bytes per identifier",
            id="customer-id-over-150-bytes",
        ),
    ],
)
def test_the_limit_on_the_identifier_names_the_field_it_came_from(identifier, expected_reason, transport):
    assert limit_violation(identifier, {"SegmentMembership": ""}, transport) == expected_reason
    assert identifier_violation(identifier) == expected_reason


def test_an_email_of_exactly_150_bytes_with_the_update_flag_is_sendable():
    email = "j" * 138 + "@example.com"
    assert len(email.encode()) == 150

    assert limit_violation(Identifier("email", email), {"email": email, "_update": True}, "v2_batch") is None
    assert identifier_violation(Identifier("email", email)) is None


def test_the_update_flag_counts_as_one_of_the_300_attributes():
    attributes: dict[str, str | bool] = {**many_attributes(300), "_update": True}

    assert limit_violation("c", attributes, "v2_batch") == (
        "301 attributes; Customer.io allows at most 300 attributes per call"
    )


def batch_body_size(actions, indexes) -> int:
    return len(encode_json({"batch": [actions[index] for index in indexes]}))


def test_batches_of_multibyte_actions_stay_under_500_kb_and_keep_every_action_in_order():
    # ~3.3 KB per action in 3-byte characters: 500 KB holds about 150 of them.
    actions = [v2_action(f"cust-{index}", {"note": "€" * 300, "In Café ✓": "true"}) for index in range(1000)]

    groups = pack_v2_batches(actions)

    assert [index for group in groups for index in group] == list(range(1000))
    assert all(batch_body_size(actions, group) < MAX_V2_BATCH_BYTES for group in groups)
    assert len(groups) > 1
    # Packed tightly: adding the next action would have crossed the limit.
    for group, following in itertools.pairwise(groups):
        assert batch_body_size(actions, [*group, following[0]]) >= MAX_V2_BATCH_BYTES


def test_packing_predicts_the_exact_size_of_the_serialized_batch():
    actions = [v2_action(f"c{index}", {"In Ünï": "true"}) for index in range(10)]
    exact = batch_body_size(actions, range(10))

    assert pack_v2_batches(actions, max_bytes=exact + 1) == [list(range(10))]
    assert len(pack_v2_batches(actions, max_bytes=exact)) == 2


def test_packing_honours_a_maximum_number_of_actions_per_batch():
    actions = [v2_action(f"c{index}", {}) for index in range(7)]

    assert pack_v2_batches(actions, max_actions=3) == [[0, 1, 2], [3, 4, 5], [6]]


def test_packing_nothing_gives_no_batches():
    assert pack_v2_batches([]) == []


def test_packing_refuses_an_action_that_cannot_fit_in_any_batch():
    actions = [v2_action("c", {"v": "x" * 200})]

    with pytest.raises(ValueError, match="action 0 is"):
        pack_v2_batches(actions, max_bytes=100)


def test_packing_100k_actions_keeps_every_action_once_in_order():
    # No wall-clock assertion (a loaded CI machine makes those flaky); bench/resync.py measures speed.
    actions = [v2_action(f"customer-{index}", {"SegmentMembership": "'1','2','3'"}) for index in range(100_000)]

    groups = pack_v2_batches(actions)

    assert [index for group in groups for index in group] == list(range(100_000))


def test_encode_json_matches_json_dumps_of_the_whole_batch():
    # The packer's arithmetic relies on this: a batch body is its actions joined by commas.
    actions = [v2_action("a", {"x": "é"}), v2_action("b", {})]
    body = encode_json({"batch": actions})

    assert body == b'{"batch":[' + b",".join(encode_json(action) for action in actions) + b"]}"
    assert json.loads(body) == {"batch": actions}


@pytest.mark.parametrize("customer_id", [".", ".."])
def test_a_customer_id_of_only_dots_is_refused_on_v1_with_the_reason(customer_id):
    reason = limit_violation(customer_id, {"SegmentMembership": "'1'"}, "v1")

    assert reason is not None
    assert repr(customer_id) in reason and "dot" in reason and "v1" in reason


@pytest.mark.parametrize("customer_id", [".", ".."])
def test_a_customer_id_of_only_dots_is_fine_on_v2(customer_id):
    assert limit_violation(customer_id, {"SegmentMembership": "'1'"}, "v2_batch") is None


@pytest.mark.parametrize("customer_id", ["...", ".a", "a.", "a/..", "./"])
def test_other_ids_with_dots_are_not_dot_segments(customer_id):
    assert limit_violation(customer_id, {}, "v1") is None


def test_the_quick_answer_for_a_plain_person_never_hides_a_limit(monkeypatch):
    """`limit_violation` answers a plain person from one encoding of each string; whenever it says
    None, the named checks (which it skips) say None too, at and around every limit."""
    from connections.customerio import limits
    from connections.customerio.identifiers import Identifier

    cases = []
    for transport in ("v2_batch", "v1"):
        for identifier in ("c1", ".", "..", "x" * 150, "x" * 151, "é" * 75, "é" * 76, "\ud800", "", "a@b.c"):
            cases.append((transport, Identifier("id", identifier), {"email": "a@b.c", "In VIP": "true"}))
        for value in ("v" * 1000, "v" * 1001, "é" * 500, "é" * 501, "\x1f" * 1000, "\ud800", True):
            cases.append((transport, Identifier("id", "c1"), {"note": value}))
        for name in ("n" * 150, "n" * 151, "\ud800"):
            cases.append((transport, Identifier("id", "c1"), {name: "v"}))
        cases.append((transport, Identifier("id", "c1"), {f"a{n}": "v" for n in range(300)}))
        cases.append((transport, Identifier("id", "c1"), {f"a{n}": "v" for n in range(301)}))
        # JSON escapes a control character as 6 bytes: 32 values of 1,000 of them are near the 32 KB action limit.
        cases.append((transport, Identifier("id", "c1"), {f"c{n}": "\x1f" * 1000 for n in range(5)}))
        cases.append((transport, Identifier("email", "a@b.c"), {f"c{n}": "\x1f" * 900 for n in range(6)}))
        cases.append((transport, Identifier("id", "c1"), {f"c{n}": "\x1f" * 1000 for n in range(6)}))
        cases.append((transport, Identifier("id", "c1"), {f"c{n}": "x" * 1000 for n in range(33)}))
    quick = [limits.limit_violation(identifier, attributes, transport) for transport, identifier, attributes in cases]
    monkeypatch.setattr(limits, "_plainly_within", lambda *args: False)
    named = [limits.limit_violation(identifier, attributes, transport) for transport, identifier, attributes in cases]

    assert quick == named
    assert sum(v is None for v in named) >= 10 and sum(v is not None for v in named) >= 10  # both kinds are tried
