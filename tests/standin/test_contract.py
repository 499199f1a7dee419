"""Request bodies held against Customer.io's OpenAPI document (its `oneOf`s relaxed to `anyOf`)."""

from __future__ import annotations

from cio_standin import contract
from cio_standin.contract import validate_v1_identify_body, validate_v2_batch_body


def identify(person_id: str = "42", **attributes: object) -> dict:
    return {"type": "person", "action": "identify", "identifiers": {"id": person_id}, "attributes": attributes}


# --- the document --------------------------------------------------------------------------


def test_the_published_document_uses_one_of_and_the_checked_one_does_not() -> None:
    assert '"oneOf"' in contract.OPENAPI_PATH.read_text()
    assert "oneOf" not in repr(contract._relaxed_document())


# --- v1 identify ---------------------------------------------------------------------------


def test_a_correct_v1_identify_body_passes() -> None:
    body = {
        "email": "ada@example.com",
        "first_name": "Ada",
        "SegmentMembership": "'123','456'",
        "In New Users": "true",
        "created_at": 1361205308,
        "vip": True,
    }
    assert validate_v1_identify_body(body) == []


def test_an_empty_v1_body_passes() -> None:
    assert validate_v1_identify_body({}) == []


def test_a_nested_object_value_fails_v1() -> None:
    errors = validate_v1_identify_body({"address": {"city": "Paris"}})
    assert errors == ["address: {'city': 'Paris'} is not of any of the types 'string', 'integer', 'boolean'"]


def test_a_float_value_fails_v1() -> None:
    assert validate_v1_identify_body({"score": 1.5}) == [
        "score: 1.5 is not of any of the types 'string', 'integer', 'boolean'"
    ]


def test_a_null_value_fails_v1() -> None:
    assert validate_v1_identify_body({"email": "a@b.c", "plan": None})


def test_a_reserved_attribute_of_the_wrong_type_fails_v1() -> None:
    assert validate_v1_identify_body({"created_at": "yesterday"}) == [
        "created_at: 'yesterday' is not of type 'integer'"
    ]


def test_a_v1_body_that_is_not_an_object_fails() -> None:
    assert validate_v1_identify_body(["email", "a@b.c"]) == ["body: ['email', 'a@b.c'] is not of type 'object'"]


# --- v2 batch ------------------------------------------------------------------------------


def test_a_correct_v2_batch_of_person_identifies_passes() -> None:
    body = {"batch": [identify("1", email="a@b.c", SegmentMembership="'1'"), identify("2", SegmentMembership="")]}
    assert validate_v2_batch_body(body) == []


def test_other_documented_actions_pass_too() -> None:
    body = {
        "batch": [
            {"type": "person", "action": "event", "identifiers": {"id": "1"}, "name": "purchase"},
            {"type": "person", "action": "delete", "identifiers": {"email": "a@b.c"}},
            {"type": "object", "action": "identify", "identifiers": {"object_type_id": "1", "object_id": "acme"}},
        ]
    }
    assert validate_v2_batch_body(body) == []


def test_an_unknown_action_fails_naming_the_known_ones() -> None:
    [error] = validate_v2_batch_body({"batch": [{**identify(), "action": "upsert"}]})
    assert error.startswith("batch/0/action: 'upsert' is not a known action (known: add_device,")
    assert "identify" in error


def test_an_unknown_type_fails() -> None:
    [error] = validate_v2_batch_body({"batch": [{**identify(), "type": "robot"}]})
    assert error == "batch/0/type: 'robot' is not a known type (known: delivery, object, person)"


def test_an_unknown_identifier_key_fails() -> None:
    errors = validate_v2_batch_body({"batch": [identify(), {**identify(), "identifiers": {"customer_id": "42"}}]})
    assert errors == [
        "batch/1/identifiers: {'customer_id': '42'} needs one of the properties 'id', 'email', 'phone', 'cio_id'"
    ]


def test_a_numeric_identifier_fails() -> None:
    assert validate_v2_batch_body({"batch": [{**identify(), "identifiers": {"id": 42}}]}) == [
        "batch/0/identifiers/id: 42 is not of type 'string'"
    ]


def test_attributes_that_are_not_an_object_fail() -> None:
    assert validate_v2_batch_body({"batch": [{**identify(), "attributes": ["a"]}]}) == [
        "batch/0/attributes: ['a'] is not of type 'object'"
    ]


def test_a_missing_required_field_is_named() -> None:
    assert validate_v2_batch_body({"batch": [{"type": "person", "action": "event", "identifiers": {"id": "1"}}]}) == [
        "batch/0: 'name' is a required property"
    ]


def test_a_batch_that_is_not_an_array_fails() -> None:
    assert validate_v2_batch_body({"batch": {"0": identify()}}) == [
        "batch: {'0': " + repr(identify()) + "} is not of type 'array'"
    ]


def test_each_invalid_action_gets_its_own_message() -> None:
    errors = validate_v2_batch_body({"batch": [5, identify(), {"type": "person"}]})
    assert errors[0] == "batch/0: 5 is not of type 'object'"
    assert all(error.startswith("batch/2") for error in errors[1:]) and len(errors) > 1


def test_the_fast_path_for_identifies_agrees_with_the_whole_schema() -> None:
    actions = [identify(), {**identify(), "timestamp": 5}, {**identify(), "attributes": {"_update": True}}]
    for action in actions:
        assert contract.v2_action_validator().is_valid(action)
        assert contract.validate_v2_batch_action(action) == []


# --- limits the schema does not express ----------------------------------------------------


def test_a_value_over_1000_bytes_breaks_a_limit_that_is_named() -> None:
    [error] = contract.v1_limit_errors("42", {"SegmentMembership": "x" * 1001})
    assert error == "SegmentMembership: attribute value is 1001 bytes, longer than the limit of 1000 bytes"
    assert contract.v1_limit_errors("42", {"SegmentMembership": "x" * 1000}) == []


def test_values_are_measured_in_utf8_bytes() -> None:
    assert contract.v1_limit_errors("42", {"name": "é" * 501})  # 1,002 bytes in 501 characters


def test_an_identifier_over_150_bytes_breaks_a_limit() -> None:
    assert contract.v1_limit_errors("x" * 151, {}) == [
        "identifier: identifier is 151 bytes, longer than the limit of 150 bytes"
    ]


def test_more_than_300_attributes_break_a_limit() -> None:
    [error] = contract.v1_limit_errors("42", {f"a{i}": "1" for i in range(301)})
    assert "301 attributes, more than the limit of 300 per call" in error


def test_an_attribute_name_over_150_bytes_breaks_a_limit() -> None:
    assert contract.v1_limit_errors("42", {"n" * 151: "1"})


def test_an_action_of_32_kb_breaks_the_action_limit() -> None:
    problems = contract.v2_action_limit_problems(identify(), contract.MAX_ACTION_BYTES)
    assert problems == [("", "action is 32768 bytes; the limit is under 32768 bytes (32 KB)")]
    assert contract.v2_action_limit_problems(identify(), contract.MAX_ACTION_BYTES - 1) == []
