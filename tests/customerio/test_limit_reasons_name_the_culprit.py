"""The reason an operator reads for a refused profile points at the attribute and says what to do."""

from __future__ import annotations

import pytest

from connections.customerio.limits import limit_violation

TRANSPORTS = ["v1", "v2_batch"]


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_a_long_attribute_name_is_quoted_by_its_first_60_characters(transport):
    name = "In " + "".join(f"{index:03d}" for index in range(60))  # 183 bytes, each prefix distinct

    reason = limit_violation("cust-1", {name: "true"}, transport)

    assert reason is not None
    assert f"attribute name {name[:60]!r}… is 183 bytes" in reason
    assert name[:61] not in reason


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_a_name_of_60_characters_over_the_byte_limit_is_quoted_whole(transport):
    name = "€" * 60  # 60 characters, 180 bytes

    reason = limit_violation("cust-1", {name: "true"}, transport)

    assert reason is not None
    assert reason.startswith(f"attribute name {name!r} is 180 bytes")
    assert "…" not in reason


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_a_name_that_cannot_be_encoded_is_quoted_in_the_reason(transport):
    name = "In Caf\ud800"  # a lone surrogate: valid JSON input, no UTF-8 form

    reason = limit_violation("cust-1", {name: "true"}, transport)

    assert reason == f"attribute name {name!r} contains characters that cannot be encoded as UTF-8"


@pytest.mark.parametrize("customer_id", [".", ".."])
def test_a_dot_customer_id_on_v1_is_told_why_and_which_transport_can_send_it(customer_id):
    reason = limit_violation(customer_id, {}, "v1")

    assert reason is not None
    assert "(it would be read as a dot segment of the URL path)" in reason
    assert reason.endswith("; the v2 batch transport can")
