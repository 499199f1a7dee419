"""`manage.py import_memberships FILE --audience ID`: CSV or JSON Lines, all or nothing, forwarded."""

import io
import json
import sys

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from connections.models import Forward, Membership, Profile
from tests.support.factories import AudienceFactory, MembershipFactory, ProfileFactory, SubscriptionFactory
from tests.support.firehose import row_counts

pytestmark = pytest.mark.django_db

HEADER = "customer_id,email,first_name,last_name,action\n"


@pytest.fixture
def audience(db):
    return AudienceFactory(audience_id=42, name="Imported")


def run(path, *args: str) -> tuple[str, str]:
    out, err = io.StringIO(), io.StringIO()
    call_command("import_memberships", str(path), "--audience", "42", *args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def memberships() -> set[tuple[str, bool]]:
    return {(m.profile.customer_id, m.is_member) for m in Membership.objects.select_related("profile")}


def write(tmp_path, name: str, text: str | bytes):
    path = tmp_path / name
    if isinstance(text, str):
        path.write_text(text, encoding="utf-8")
    else:
        path.write_bytes(text)
    return path


def test_a_csv_file_adds_and_removes_members_and_sets_identities(tmp_path, audience):
    MembershipFactory(profile=ProfileFactory(customer_id="c2"), audience=audience)
    path = write(
        tmp_path,
        "people.csv",
        HEADER + 'c1,ada@example.com,Ada,"Lovelace, Countess",add\nc2,,,,delete\n',
    )

    run(path)

    assert memberships() == {("c1", True), ("c2", False)}
    ada = Profile.objects.get(customer_id="c1")
    assert (ada.email, ada.first_name, ada.last_name) == ("ada@example.com", "Ada", "Lovelace, Countess")


def test_empty_identity_columns_keep_what_is_stored(tmp_path, audience):
    ProfileFactory(customer_id="c1", email="old@example.com", first_name="Ada", last_name="Lovelace")

    run(write(tmp_path, "people.csv", HEADER + "c1,,,,add\n"))

    profile = Profile.objects.get()
    assert (profile.email, profile.first_name, profile.last_name) == ("old@example.com", "Ada", "Lovelace")


def test_the_csv_columns_may_come_in_any_order(tmp_path, audience):
    run(write(tmp_path, "people.csv", "action,customer_id,email,last_name,first_name\r\nadd,c1,,,\r\n"))

    assert memberships() == {("c1", True)}


def test_a_jsonl_file_is_imported(tmp_path, audience):
    lines = [
        {"customer_id": "c1", "email": "ada@example.com", "first_name": "Ada", "action": "add"},
        {"customer_id": "c2", "action": "delete", "last_name": None},
    ]
    path = write(tmp_path, "people.jsonl", "\n".join(json.dumps(line) for line in lines) + "\n\n")

    run(path)

    assert memberships() == {("c1", True), ("c2", False)}
    assert Profile.objects.get(customer_id="c1").first_name == "Ada"


def test_standard_input_is_read_with_the_format_given(audience, monkeypatch):
    data = (HEADER + "c1,,,,add\nc2,,,,add\n").encode()
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(data)))

    out, _ = run("-", "--format", "csv")

    assert memberships() == {("c1", True), ("c2", True)}
    assert "lines read:           2" in out


def test_standard_input_that_cannot_be_read_twice_is_still_checked_before_anything_is_applied(audience, monkeypatch):
    class Pipe(io.BytesIO):
        def seekable(self) -> bool:
            return False

    pipe = Pipe((HEADER + "c1,,,,add\nc2,,,,join\n").encode())
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(pipe))
    before = row_counts()

    with pytest.raises(CommandError, match="line 3: unknown action 'join'"):
        run("-", "--format", "csv")
    assert row_counts() == before


def test_standard_input_needs_a_format(audience):
    with pytest.raises(CommandError, match="--format"):
        run("-")


def test_the_summary_counts_what_was_done(tmp_path, audience):
    SubscriptionFactory(audience=audience)
    ProfileFactory(customer_id="c2", email="c2@example.com")
    path = write(tmp_path, "people.csv", HEADER + "c1,,,,add\nc2,new@example.com,,,add\nc3,,,,delete\n")

    out, _ = run(path)

    assert "lines read:           3" in out
    assert "profiles created:     2" in out
    assert "profiles updated:     1" in out
    assert "memberships changed:  3" in out
    assert "forwards queued:      3" in out
    assert "lines skipped:        0" in out


def test_imported_changes_are_queued_for_active_subscriptions(tmp_path, audience):
    active = SubscriptionFactory(audience=audience)
    SubscriptionFactory(audience=audience, status="inactive")

    run(write(tmp_path, "people.csv", HEADER + "c1,,,,add\nc2,,,,add\n"))

    assert sorted((f.connection_id, f.profile.customer_id, f.reason) for f in Forward.objects.all()) == [
        (active.connection_id, "c1", "membership"),
        (active.connection_id, "c2", "membership"),
    ]


def test_small_batches_give_the_same_result(tmp_path, audience):
    lines = "".join(f"c{n},,,,{'add' if n % 3 else 'delete'}\n" for n in range(25))

    out, _ = run(write(tmp_path, "people.csv", HEADER + lines), "--batch-size", "4")

    assert Membership.objects.count() == 25
    assert Membership.objects.filter(is_member=True).count() == 16
    assert "memberships changed:  25" in out


BAD_CSV_LINES = [
    (",ada@example.com,Ada,Lovelace,add\n", "line 3: customer_id is missing"),
    ("c9,,,,subscribe\n", "line 3: unknown action 'subscribe' (expected add or delete)"),
    ("c9,,,add\n", "line 3: 4 columns; expected 5"),
    ("c9,,,,add,extra\n", "line 3: 6 columns; expected 5"),
    (f"c9,{'e' * 255},,,add\n", "line 3: email is 255 characters long; at most 254 fit"),
    (f"c9,,{'n' * 151},,add\n", "line 3: first_name is 151 characters long; at most 150 fit"),
    (f"{'c' * 256},,,,add\n", "line 3: customer_id is 256 characters long; at most 255 fit"),
    ('c9,"unterminated,,,add\n', "line 3: not valid CSV"),
    ("c9,\x00,,,add\n", "line 3: email contains a NUL character"),
]


@pytest.mark.parametrize(("line", "error"), BAD_CSV_LINES)
def test_a_bad_line_stops_the_import_with_its_number_and_nothing_applied(tmp_path, audience, line, error):
    SubscriptionFactory(audience=audience)
    path = write(tmp_path, "people.csv", HEADER + "c1,,,,add\n" + line + "c2,,,,add\n")
    before = row_counts()

    with pytest.raises(CommandError, match="Nothing was imported") as raised:
        run(path)

    assert error in str(raised.value)
    assert row_counts() == before


def test_a_bad_line_far_into_the_file_stops_the_import_before_any_batch_is_applied(tmp_path, audience):
    lines = "".join(f"c{n},,,,add\n" for n in range(2500)) + "c-bad,,,,maybe\n"
    before = row_counts()

    with pytest.raises(CommandError, match="line 2502: unknown action"):
        run(write(tmp_path, "people.csv", HEADER + lines), "--batch-size", "1000")

    assert row_counts() == before


def test_bytes_that_are_not_utf8_are_a_bad_line(tmp_path, audience):
    path = write(tmp_path, "people.csv", HEADER.encode() + b"c1,,,,add\nc2,caf\xe9,,,add\n")
    before = row_counts()

    with pytest.raises(CommandError, match="line 3: not valid UTF-8"):
        run(path)
    assert row_counts() == before


def test_a_line_too_long_to_be_valid_is_a_bad_line_and_is_not_loaded(tmp_path, audience):
    path = write(tmp_path, "people.csv", HEADER + "c1,,,,add\n" + "x" * 1_000_000 + "\nc2,,,,add\n")

    with pytest.raises(CommandError, match="line 3: the line is longer than 65536 bytes"):
        run(path)
    assert Membership.objects.count() == 0


BAD_JSONL_LINES = [
    ("{not json}", "line 2: not valid JSON"),
    ('["c9", "add"]', "line 2: not a JSON object"),
    ('{"customer_id": "c9"}', "line 2: unknown action ''"),
    ('{"email": "x@example.com", "action": "add"}', "line 2: customer_id is missing"),
    ('{"customer_id": 9, "action": "add"}', "line 2: customer_id must be a string"),
    ('{"customer_id": "c9", "action": "add", "frist_name": "Ada"}', "line 2: unknown key 'frist_name'"),
    ('{"customer_id": "c9", "action": "add", "x": ' + "[" * 5000 + "]" * 5000 + "}", "line 2: not a flat JSON"),
]


@pytest.mark.parametrize(("line", "error"), BAD_JSONL_LINES)
def test_a_bad_jsonl_line_stops_the_import_with_its_number(tmp_path, audience, line, error):
    path = write(tmp_path, "people.jsonl", '{"customer_id": "c1", "action": "add"}\n' + line + "\n")
    before = row_counts()

    with pytest.raises(CommandError) as raised:
        run(path)

    assert error in str(raised.value)
    assert row_counts() == before


def test_skip_invalid_reports_each_bad_line_and_imports_the_rest(tmp_path, audience):
    path = write(
        tmp_path,
        "people.csv",
        HEADER + "c1,,,,add\n,,,,add\nc2,,,,maybe\nc3,,,,delete\nc4,,,add\n",
    )

    out, err = run(path, "--skip-invalid")

    assert memberships() == {("c1", True), ("c3", False)}
    assert "line 3: customer_id is missing; skipped" in err
    assert "line 4: unknown action 'maybe' (expected add or delete); skipped" in err
    assert "line 6: 4 columns; expected 5" in err
    assert "lines read:           5" in out
    assert "lines skipped:        3" in out


def test_skip_invalid_skips_bad_json_lines(tmp_path, audience):
    path = write(tmp_path, "people.jsonl", '{"customer_id": "c1", "action": "add"}\n{oops\n')

    out, err = run(path, "--skip-invalid")

    assert memberships() == {("c1", True)}
    assert "line 2: not valid JSON" in err
    assert "lines skipped:        1" in out


def test_an_unknown_audience_is_a_clear_error(tmp_path, db):
    with pytest.raises(CommandError, match="No audience has audience_id 42"):
        run(write(tmp_path, "people.csv", HEADER + "c1,,,,add\n"))


def test_a_wrong_header_is_a_clear_error(tmp_path, audience):
    with pytest.raises(CommandError, match="the header must name the columns"):
        run(write(tmp_path, "people.csv", "id,mail,action\nc1,,add\n"))


def test_a_byte_order_mark_before_the_header_is_accepted(tmp_path, audience):
    run(write(tmp_path, "people.csv", ("\ufeff" + HEADER + "c1,,,,add\n").encode()))
    assert memberships() == {("c1", True)}


def test_the_format_is_guessed_from_the_extension_or_must_be_given(tmp_path, audience):
    path = write(tmp_path, "people.txt", HEADER + "c1,,,,add\n")

    with pytest.raises(CommandError, match="give --format"):
        run(path)
    run(path, "--format", "csv")
    assert memberships() == {("c1", True)}


def test_a_missing_file_is_a_clear_error(tmp_path, audience):
    with pytest.raises(CommandError, match="Cannot read"):
        run(tmp_path / "missing.csv")


def test_a_progress_bar_is_drawn_on_standard_error(tmp_path, audience, capsys):
    run(write(tmp_path, "people.csv", HEADER + "c1,,,,add\n"))

    err = capsys.readouterr().err
    assert "Checking" in err and "Importing" in err and "100%" in err


def test_the_checked_rows_are_applied_from_the_spool_in_batches(tmp_path, audience):
    from connections.services.imports.reading import Row, RowSpool

    spool = RowSpool(batch_size=2)
    rows = [Row(n, f"c{n}", None if n % 2 else f"ï{n}@example.com", "Zoë", None, n % 3 != 0) for n in range(1, 6)]
    for row in rows:
        spool.add(row)

    batches = list(spool.batches())
    spool.close()

    assert [len(b) for b in batches] == [2, 2, 1]
    assert [row for batch in batches for row in batch] == rows


# The rules below hold on both paths: PostgreSQL's (`import_copy`: COPY and set-based statements)
# and the portable one (`apply_changes`); the suite runs on both databases.


@pytest.mark.parametrize("batch_size", ["5000", "2"])
def test_the_last_line_about_a_person_wins_and_empty_values_keep_the_earlier_ones(tmp_path, audience, batch_size):
    lines = (
        "c1,first@example.com,Ada,Lovelace,add\n"
        "c2,,,,add\n"
        "c1,,Augusta,,delete\n"
        "c1,last@example.com,,,add\n"
        "c2,,,,delete\n"
    )

    run(write(tmp_path, "people.csv", HEADER + lines), "--batch-size", batch_size)

    assert memberships() == {("c1", True), ("c2", False)}
    ada = Profile.objects.get(customer_id="c1")
    assert (ada.email, ada.first_name, ada.last_name) == ("last@example.com", "Augusta", "Lovelace")
    assert Profile.objects.count() == 2


def test_importing_the_same_file_again_changes_and_queues_nothing(tmp_path, audience):
    SubscriptionFactory(audience=audience)
    path = write(tmp_path, "people.csv", HEADER + "c1,ada@example.com,Ada,,add\nc2,,,,delete\nc3,,Bo,,add\n")
    run(path)
    Forward.objects.all().delete()  # as if a worker had sent them
    stored = {(p.customer_id, p.email, p.first_name, p.updated_at) for p in Profile.objects.all()}

    out, _ = run(path)

    assert {(p.customer_id, p.email, p.first_name, p.updated_at) for p in Profile.objects.all()} == stored
    assert memberships() == {("c1", True), ("c2", False), ("c3", True)}
    assert not Forward.objects.exists()
    assert "profiles created:     0" in out
    assert "profiles updated:     0" in out
    assert "memberships changed:  0" in out
    assert "forwards queued:      0" in out


def test_a_new_identity_is_forwarded_to_every_connection_of_the_persons_audiences_once(tmp_path, audience):
    """A membership forward carries the identity too: a connection that gets one gets no identity forward."""
    importing = SubscriptionFactory(audience=audience)
    other = SubscriptionFactory(audience=AudienceFactory())
    unchanged, moved = ProfileFactory(customer_id="c1"), ProfileFactory(customer_id="c2")
    for profile in (unchanged, moved):
        MembershipFactory(profile=profile, audience=audience)
        MembershipFactory(profile=profile, audience=other.audience)
    lines = "c1,new1@example.com,,,add\nc2,new2@example.com,,,delete\nc3,c3@example.com,,,add\n"

    out, _ = run(write(tmp_path, "people.csv", HEADER + lines))

    queued = {(f.connection_id, f.profile.customer_id, f.audience_id, f.reason) for f in Forward.objects.all()}
    assert queued == {
        (importing.connection_id, "c1", None, "identity"),  # still a member: only the email changed
        (other.connection_id, "c1", None, "identity"),
        (importing.connection_id, "c2", audience.pk, "membership"),
        (other.connection_id, "c2", None, "identity"),
        (importing.connection_id, "c3", audience.pk, "membership"),
    }
    assert Profile.objects.get(customer_id="c2").email == "new2@example.com"
    assert "profiles updated:     2" in out
    assert "forwards queued:      5" in out


def test_a_forward_already_waiting_is_not_queued_twice(tmp_path, audience):
    subscription = SubscriptionFactory(audience=audience)

    run(write(tmp_path, "people.csv", HEADER + "c1,,,,add\n"))
    run(write(tmp_path, "again.csv", HEADER + "c1,,,,delete\n"))

    assert Forward.objects.filter(connection=subscription.connection).count() == 1
    assert memberships() == {("c1", False)}


def test_a_person_known_by_their_mparticle_id_is_found_by_customer_id(tmp_path, audience):
    ProfileFactory(customer_id="c1", mpid="8675309", email="ada@example.com")

    run(write(tmp_path, "people.csv", HEADER + "c1,,Ada,,add\n"))

    profile = Profile.objects.get()
    assert (profile.mpid, profile.email, profile.first_name) == ("8675309", "ada@example.com", "Ada")
    assert memberships() == {("c1", True)}


@pytest.mark.django_db(transaction=True)
def test_parts_applied_in_parallel_keep_each_persons_last_line(tmp_path):
    """Outside a transaction, PostgreSQL applies the spool's parts on two connections (SQLite on one)."""
    audience = AudienceFactory(audience_id=42, name="Imported")
    subscription = SubscriptionFactory(audience=audience)
    lines = "".join(f"c{n % 40},p{n}@example.com,,,{'add' if n % 7 else 'delete'}\n" for n in range(200))

    out, _ = run(write(tmp_path, "people.csv", HEADER + lines), "--batch-size", "3", "--jobs", "2")

    last = {f"c{n % 40}": (f"p{n}@example.com", bool(n % 7)) for n in range(200)}
    stored = {p.customer_id: p.email for p in Profile.objects.all()}
    assert stored == {cid: email for cid, (email, _) in last.items()}
    assert memberships() == {(cid, member) for cid, (_, member) in last.items()}
    assert set(Forward.objects.values_list("connection_id", "profile__customer_id")) == {
        (subscription.connection_id, cid) for cid in last
    }
    assert "lines read:           200" in out
    assert "profiles created:     40" in out


def test_an_error_in_one_part_stops_the_others_and_is_raised():
    import threading

    from connections.services.imports.parallel import apply_parts
    from connections.services.imports.reading import Row, RowSpool
    from connections.services.ingest.memberships import ApplyResult

    parts = [RowSpool(batch_size=1) for _ in range(2)]
    for n in range(50):
        parts[n % 2].add(Row(n, f"c{n}", None, None, None, True))
    applied: list[str] = []
    started, failed = threading.Event(), threading.Event()

    def apply(batch: list[Row]) -> ApplyResult:
        number = int(batch[0].customer_id[1:])
        if number == 4:
            assert started.wait(timeout=10)
            failed.set()
            raise RuntimeError("the database went away")
        if number % 2:  # the other part is in the middle of its first batch when the error comes
            started.set()
            assert failed.wait(timeout=10)
        applied.append(batch[0].customer_id)
        return ApplyResult(memberships_changed=1)

    with pytest.raises(RuntimeError, match="went away"):
        apply_parts(parts, apply, lambda lines, read, result: None)

    # Each part stopped after the batch it was applying: the rest of both parts was left alone.
    assert sorted(applied) == ["c0", "c1", "c2"]
