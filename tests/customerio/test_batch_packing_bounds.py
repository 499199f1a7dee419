"""v2 batches: each body strictly under the size limit, and no more actions than allowed."""

from __future__ import annotations

import pytest

from connections.customerio.limits import encode_json, pack_v2_batches, v2_action

ENVELOPE_BYTES = len(b'{"batch":[]}')


def body_size(actions, indexes) -> int:
    return len(encode_json({"batch": [actions[index] for index in indexes]}))


def test_when_only_one_action_fits_every_batch_holds_one_and_stays_under_the_limit():
    actions = [v2_action(f"cust-{index}", {"note": "x" * 100}) for index in range(3)]
    one = len(encode_json(actions[0]))
    max_bytes = ENVELOPE_BYTES + one + 1 + one  # two together would be exactly at the limit

    groups = pack_v2_batches(actions, max_bytes=max_bytes)

    assert groups == [[0], [1], [2]]
    assert all(body_size(actions, group) < max_bytes for group in groups)


def test_an_action_whose_batch_would_be_exactly_at_the_limit_is_refused():
    action = v2_action("cust-1", {"note": "x" * 100})
    exact = ENVELOPE_BYTES + len(encode_json(action))

    with pytest.raises(ValueError, match="cannot fit in a batch"):
        pack_v2_batches([action], max_bytes=exact)
    assert pack_v2_batches([action], max_bytes=exact + 1) == [[0]]


def test_one_action_per_batch_is_a_valid_maximum():
    actions = [v2_action(f"cust-{index}", {}) for index in range(3)]

    assert pack_v2_batches(actions, max_actions=1) == [[0], [1], [2]]


@pytest.mark.parametrize("max_actions", [0, -1])
def test_a_maximum_below_one_action_is_refused_with_the_reason(max_actions):
    with pytest.raises(ValueError, match=r"^max_actions must be at least 1$"):
        pack_v2_batches([v2_action("cust-1", {})], max_actions=max_actions)
