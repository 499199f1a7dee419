"""What an erasure tells each workspace: pure rules (no database)."""

from connections.scrubbing import scrub_text
from connections.services.erasure.rules import (
    ERASED,
    PersonIdentifiers,
    decide_call,
    identifier_hash,
)

PERSON = PersonIdentifiers(customer_id="c-1", email="ada@example.com")
NO_ID = PersonIdentifiers(customer_id="", email="ada@example.com")


def test_the_person_is_identified_as_the_connection_identifies_people():
    assert decide_call("suppress", "customer_id", PERSON).identifier == "c-1"
    assert decide_call("suppress", "email", PERSON).identifier == "ada@example.com"
    assert decide_call("delete", "customer_id_or_email", PERSON).kind == "id"
    assert (
        decide_call("delete", "customer_id_or_email", NO_ID).kind,
        decide_call("delete", "customer_id_or_email", NO_ID).identifier,
    ) == ("email", "ada@example.com")


def test_a_person_the_connection_could_never_have_sent_gets_no_call():
    decision = decide_call("suppress", "customer_id", NO_ID)
    assert decision.identifier == "" and "no customer ID" in decision.skip
    assert "no email" in decide_call("suppress", "email", PersonIdentifiers("c-1", "")).skip


def test_none_sends_nothing():
    decision = decide_call("none", "customer_id", PERSON)
    assert decision.action == "none" and decision.identifier == "" and decision.skip


def test_emails_hash_the_same_in_any_case_and_kinds_do_not_collide():
    assert identifier_hash("email", "Ada@Example.com") == identifier_hash("email", "ada@example.com")
    assert identifier_hash("id", "Ada") != identifier_hash("id", "ada")
    assert identifier_hash("id", "x@y.z") != identifier_hash("email", "x@y.z")
    assert "ada" not in identifier_hash("email", "ada@example.com")


def test_scrubbing_replaces_the_longest_values_first():
    text = "rejected ada@example.com (Ada) id c-100"
    assert scrub_text(text, ["Ada", "ada@example.com", "c-100"], ERASED) == "rejected [erased] ([erased]) id [erased]"


def test_scrubbing_replaces_every_encoding_of_a_value():
    text = (
        'url /customers/ada.b%40example.com?e=ada.b%2Bx%40example.com q=Zo%C3%AB+Ann json "Zo\\u00eb Ann" '
        "ada.b@example.com"
    )
    values = ["ADA.B@example.com", "ada.b+x@example.com", "Zoë Ann"]

    assert scrub_text(text, values, ERASED) == 'url /customers/[erased]?e=[erased] q=[erased] json "[erased]" [erased]'


def test_scrubbing_finds_every_form_of_every_value_among_a_thousand():
    """Only the values that may be in a text are encoded (a batch names a thousand people): the
    filter must never let one through, whatever its encoding, in its case or lower case."""
    from connections.scrubbing import encoded_forms

    values = [f"p{n:05d}" for n in range(1000)] + ["Zoë Ann", "ADA.B+x@Example.com", "ÄÖÜ", "«»!", "o'hara@x.io"]
    for value in values[-5:] + values[:3]:
        for form in encoded_forms(value):
            assert scrub_text(f"error near {form}; done", values, ERASED) == f"error near {ERASED}; done", form


def test_scrubbing_leaves_a_text_without_personal_values_as_it_is():
    values = [f"p{n:05d}" for n in range(1000)]
    assert scrub_text("{}", values, ERASED) == "{}"
    assert scrub_text('{"errors":[{"reason":"p0000 is not p00001x"}]}', values, ERASED) == (
        '{"errors":[{"reason":"p0000 is not [erased]x"}]}'
    )
