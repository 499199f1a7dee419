"""`manage.py resync` over real HTTP to the stand-in (SPEC §7): full state, one audience, dry run, resuming."""

import json
import os
import subprocess
import sys
from io import StringIO

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from cio_standin import Faults
from connections.management.commands import resync as resync_command
from connections.models import Audience, Connection, Delivery, Forward, ResyncRun
from connections.services.forwarding.attributes import MISSING_CUSTOMER_ID_REASON
from connections.services.resync import runs as resync
from connections.tasks import resync_connection
from tests.support.factories import AudienceFactory, MembershipFactory, ProfileFactory, SubscriptionFactory
from tests.support.workers import ROOT, purge_broker, running_workers, wait_until

pytestmark = pytest.mark.django_db

VIP = 'Café "VIP", 2.0'


def resync_cmd(*args):
    out, err = StringIO(), StringIO()
    call_command("resync", *args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


@pytest.fixture
def world(standin, workspace_connection):
    """Two active subscriptions and an inactive one; members, a recorded ex-member, a profile without an id.

    Memberships are written directly (no outbox rows), as if everything had been sent long ago.
    """

    def make(toggle=False, transport="v1", **fields):
        # v1 by default: most tests here are about queueing for the workers; on v2 the command streams
        # the resync itself (the tests parametrized on transport, and the streamed ones at the end).
        connection = workspace_connection(
            "site-us", one_attribute_per_audience=toggle, rate_limit=10_000, transport=transport, **fields
        )
        new = AudienceFactory(audience_id=123, name="New Users")
        vip = AudienceFactory(audience_id=456, name=VIP)
        elsewhere = AudienceFactory(audience_id=789, name="Elsewhere")
        SubscriptionFactory(connection=connection, audience=new)
        SubscriptionFactory(connection=connection, audience=vip)
        SubscriptionFactory(connection=connection, audience=elsewhere, status="inactive")
        ada = ProfileFactory(customer_id="ada", email="ada@example.com", first_name="Ada", last_name="Lovelace")
        MembershipFactory(profile=ada, audience=new, is_member=True)
        MembershipFactory(profile=ada, audience=vip, is_member=False)  # left VIP: a recorded ex-member
        grace = ProfileFactory(customer_id="grace", email="grace@example.com", first_name="Grace", last_name="")
        MembershipFactory(profile=grace, audience=vip, is_member=True)
        MembershipFactory(profile=grace, audience=elsewhere, is_member=True)
        alan = ProfileFactory(customer_id="alan")  # only in an audience not forwarded here
        MembershipFactory(profile=alan, audience=elsewhere, is_member=True)
        nameless = ProfileFactory(customer_id="", email="hashed-only@example.com")
        MembershipFactory(profile=nameless, audience=new, is_member=True)
        return connection

    return make


@pytest.mark.parametrize("transport", ["v2_batch", "v1"])
def test_it_sends_every_member_true_and_every_recorded_ex_member_false(world, standin, transport):
    connection = world(toggle=True, transport=transport)

    out, _ = resync_cmd("--connection", connection.name, "--send-here")

    assert standin.people("site-us") == {
        "ada": {
            "email": "ada@example.com",
            "first_name": "Ada",
            "last_name": "Lovelace",
            "In New Users": "true",
            f"In {VIP}": "false",
        },
        "grace": {"email": "grace@example.com", "first_name": "Grace", f"In {VIP}": "true"},
    }
    assert f"profiles {'done' if transport == 'v2_batch' else 'queued'}: 3" in out
    requests = 1 if transport == "v2_batch" else 2
    assert "succeeded: 2" in out and "failed: 0" in out and "skipped: 1" in out and f"requests: {requests}" in out
    assert "duration:" in out
    skipped = Delivery.objects.get(status=Delivery.Status.SKIPPED)
    assert skipped.reason == "resync" and skipped.error == MISSING_CUSTOMER_ID_REASON
    assert not Forward.objects.exists()
    assert ResyncRun.objects.get().status == ResyncRun.Status.DONE


@pytest.mark.parametrize("transport", ["v2_batch", "v1"])
def test_with_the_toggle_off_it_sends_segment_membership_of_active_subscriptions(world, standin, transport):
    connection = world(toggle=False, transport=transport)

    out, _ = resync_cmd("--connection", str(connection.pk), "--send-here")

    people = standin.people("site-us")
    assert people["ada"]["SegmentMembership"] == "'123'"
    assert people["grace"]["SegmentMembership"] == "'456'"  # 789's subscription is inactive
    assert set(people) == {"ada", "grace"}
    assert f"requests: {1 if transport == 'v2_batch' else 2}" in out


@pytest.mark.parametrize("transport", ["v2_batch", "v1"])
def test_audience_limits_it_to_that_audiences_profiles_and_attribute(world, standin, transport):
    connection = world(toggle=True, transport=transport)

    out, _ = resync_cmd("--connection", connection.name, "--audience", "456", "--send-here")

    assert standin.people("site-us") == {
        "ada": {"email": "ada@example.com", "first_name": "Ada", "last_name": "Lovelace", f"In {VIP}": "false"},
        "grace": {"email": "grace@example.com", "first_name": "Grace", f"In {VIP}": "true"},
    }
    assert f"profiles {'done' if transport == 'v2_batch' else 'queued'}: 2" in out
    assert ResyncRun.objects.get().audience.audience_id == 456


def test_an_audience_without_an_active_subscription_is_refused(world):
    connection = world()

    with pytest.raises(CommandError, match="Audience 789 \\(Elsewhere\\) has no active subscription"):
        resync_cmd("--connection", connection.name, "--audience", "789")
    with pytest.raises(CommandError, match=r"^No audience with audience ID 999\.$"):
        resync_cmd("--connection", connection.name, "--audience", "999")
    assert not Forward.objects.exists() and not ResyncRun.objects.exists()


def test_dry_run_prints_the_exact_attributes_and_sends_nothing(world, standin):
    connection = world(toggle=True)

    out, err = resync_cmd("--connection", connection.name, "--dry-run")

    lines = [json.loads(line) for line in out.splitlines()]
    assert lines[:2] == [
        {
            "customer_id": "ada",
            "attributes": {
                "email": "ada@example.com",
                "first_name": "Ada",
                "last_name": "Lovelace",
                "In New Users": "true",
                f"In {VIP}": "false",
            },
        },
        {
            "customer_id": "grace",
            "attributes": {"email": "grace@example.com", "first_name": "Grace", f"In {VIP}": "true"},
        },
    ]
    assert list(lines[0]["attributes"]) == ["email", "first_name", "last_name", "In New Users", f"In {VIP}"]
    assert lines[2]["customer_id"] == "" and lines[2]["skipped"] == MISSING_CUSTOMER_ID_REASON
    assert len(lines) == 3
    assert "3 profiles, 2 would be sent" in err and "Nothing was queued or sent" in err
    assert standin.requests() == []
    assert not Forward.objects.exists() and not ResyncRun.objects.exists() and not Delivery.objects.exists()


def test_dry_run_prints_what_the_worker_would_send_with_the_toggle_off(world, standin):
    connection = world(toggle=False)

    out, _ = resync_cmd("--connection", connection.name, "--dry-run", "--audience", "123")

    first = json.loads(out.splitlines()[0])
    assert first == {
        "customer_id": "ada",
        "attributes": {
            "email": "ada@example.com",
            "first_name": "Ada",
            "last_name": "Lovelace",
            "SegmentMembership": "'123'",
        },
    }
    resync_cmd("--connection", connection.name, "--audience", "123", "--send-here")
    assert standin.people("site-us")["ada"] == first["attributes"]


def test_a_restart_after_a_crash_resumes_from_the_checkpoint(world, standin):
    connection = world()
    scope = resync.scope_for(connection)
    run, resumed = resync.start(scope)
    resync.queue_next_chunk(run, scope, chunk_size=2, wake=False)  # ...and then the process dies
    first_chunk = set(Forward.objects.values_list("profile_id", flat=True))
    assert not resumed and len(first_chunk) == 2 and run.status == ResyncRun.Status.RUNNING

    out, _ = resync_cmd("--connection", connection.name, "--no-wait")

    assert f"Resuming resync #{run.pk}" in out and f"after profile id {run.last_profile_id}" in out
    profile_ids = list(Forward.objects.values_list("profile_id", flat=True))
    assert len(profile_ids) == 3 == len(set(profile_ids))  # the rest only: nobody queued twice
    assert min(set(profile_ids) - first_chunk) > run.last_profile_id
    run.refresh_from_db()
    assert run.status == ResyncRun.Status.DONE and run.queued == 3 and ResyncRun.objects.count() == 1
    assert Forward.objects.filter(reason="resync", audience=None).count() == 3


class CtrlCAfterFirstChunk(resync_command.tqdm):
    def update(self, n=1):
        super().update(n)
        if self.desc == "Queuing":
            raise KeyboardInterrupt


def test_ctrl_c_while_queuing_keeps_the_checkpoint_and_the_next_run_resumes(world, standin, monkeypatch):
    connection = world()
    monkeypatch.setattr(resync_command, "tqdm", CtrlCAfterFirstChunk)

    with pytest.raises(CommandError, match="Interrupted: 1 of 3 profiles queued; run the same command again") as exc:
        resync_cmd("--connection", connection.name, "--chunk-size", "1")

    assert exc.value.returncode == 130
    run = ResyncRun.objects.get()
    assert run.status == ResyncRun.Status.INTERRUPTED and run.queued == 1 == Forward.objects.count()
    monkeypatch.undo()

    out, _ = resync_cmd("--connection", connection.name, "--send-here")

    assert "Resuming" in out and "profiles queued: 3" in out and "succeeded: 2" in out
    assert set(standin.people("site-us")) == {"ada", "grace"}


def test_a_finished_resync_is_not_resumed_but_started_afresh(world):
    connection = world()
    resync_cmd("--connection", connection.name, "--no-wait")
    Forward.objects.all().delete()

    out, _ = resync_cmd("--connection", connection.name, "--no-wait")

    assert "Resuming" not in out and ResyncRun.objects.count() == 2 and Forward.objects.count() == 3


def test_an_unknown_connection_is_a_one_line_error(db):
    with pytest.raises(CommandError) as exc:
        resync_cmd("--connection", "x")
    assert str(exc.value) == "No connection named or numbered 'x'."


def test_without_a_worker_it_sends_from_its_own_process_once_nothing_moves(world, standin):
    connection = world()

    out, err = resync_cmd("--connection", connection.name, "--stall-timeout", "0.3")

    assert "is a worker running? Sending from this process." in err
    assert set(standin.people("site-us")) == {"ada", "grace"} and "succeeded: 2" in out


def test_rejected_credentials_stop_it_with_the_forwards_kept(world, standin):
    connection = world()
    connection.api_key = "sk-wrong"
    connection.save()

    with pytest.raises(CommandError, match="connection is faulted and 2 profiles wait in the outbox"):
        resync_cmd("--connection", connection.name, "--send-here")

    connection.refresh_from_db()
    assert connection.state == Connection.State.FAULTED
    assert Forward.objects.filter(reason="resync").count() == 2  # the skipped one is done; the rest wait


@pytest.mark.parametrize("transport", ["v2_batch", "v1"])
def test_failed_profiles_make_it_exit_non_zero_after_the_summary(world, standin, transport):
    connection = world(transport=transport)
    standin.set_faults(Faults(share=1.0, statuses=[400]))
    out = StringIO()

    with pytest.raises(CommandError, match="2 profiles failed; the forwarding log says why"):
        call_command("resync", "--connection", connection.name, "--send-here", stdout=out, stderr=StringIO())

    assert "failed: 2" in out.getvalue() and "skipped: 1" in out.getvalue()


def test_the_task_queues_a_resync_for_the_workers(world):
    connection = world()
    audience = Audience.objects.get(audience_id=456)

    assert resync_connection(connection.pk) == 3
    assert resync_connection(connection.pk, audience.pk) == 2

    assert Forward.objects.filter(reason="resync", audience=None).count() == 3
    assert Forward.objects.filter(reason="resync", audience=audience).count() == 2
    assert set(ResyncRun.objects.values_list("status", "queued")) == {("done", 3), ("done", 2)}
    assert resync_connection(connection.pk + 1000) == 0


def test_help_explains_it():
    result = subprocess.run(
        [sys.executable, "manage.py", "resync", "--help"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, "DJANGO_SETTINGS_MODULE": "tests.settings"},
        check=False,
    )
    assert result.returncode == 0
    assert "--connection NAME_OR_ID" in result.stdout and "--dry-run" in result.stdout and "Resumable" in result.stdout


@pytest.mark.worker
@pytest.mark.timeout(120)
@pytest.mark.django_db(transaction=True)
def test_it_waits_for_the_workers_to_deliver(world, standin):
    purge_broker()
    connection = world(toggle=True)

    with running_workers(standin.url):
        out, err = resync_cmd("--connection", connection.name, "--stall-timeout", "60")

    assert "Sending from this process" not in err
    assert set(standin.people("site-us")) == {"ada", "grace"}
    assert "profiles queued: 3" in out and "succeeded: 2" in out and "skipped: 1" in out


@pytest.mark.worker
@pytest.mark.timeout(120)
@pytest.mark.django_db(transaction=True)
def test_a_task_that_spends_its_time_budget_hands_the_rest_to_a_fresh_task(world, standin):
    # A resync of millions of profiles must never run into the Celery time limit: with no
    # budget at all the task queues one chunk, then sends itself to resume from the checkpoint.
    purge_broker()
    connection = world()

    assert resync_connection(connection.pk, None, 0.0) == 3
    run = ResyncRun.objects.get()
    assert run.status == "running", "the budget was spent before the run was marked done"

    with running_workers(standin.url):
        wait_until(lambda: ResyncRun.objects.get().status == "done", message="the re-sent task to finish the run")
        wait_until(lambda: {"ada", "grace"} <= set(standin.people("site-us")), message="the resync to be delivered")
    assert ResyncRun.objects.get().queued == 3


# --- on v2, the command streams the resync itself (issue 29) ---------------------------------------


def test_on_v2_it_sends_pages_itself_with_no_outbox_row(world, standin, settings):
    settings.FORWARD_BATCH_SIZE = 1  # a page per person: three pages
    connection = world(toggle=True, transport="v2_batch")

    out, _ = resync_cmd("--connection", connection.name)

    assert set(standin.people("site-us")) == {"ada", "grace"}
    assert "profiles done: 3" in out and "succeeded: 2" in out and "skipped: 1" in out and "requests: 2" in out
    assert not Forward.objects.exists() and not Delivery.objects.exclude(status="skipped").exists()
    run = ResyncRun.objects.get()
    assert (run.status, run.queued, run.inflight_to, run.claimed_until) == ("done", 3, None, None)


def test_on_v2_a_restart_resumes_after_the_checkpoint(world, standin):
    connection = world(transport="v2_batch")
    scope = resync.scope_for(connection)
    run, _ = resync.start(scope)
    first = resync.next_profile_ids(scope, 0, 1)
    ResyncRun.objects.filter(pk=run.pk).update(last_profile_id=first[-1], queued=1)  # one page answered, then a crash

    out, _ = resync_cmd("--connection", connection.name)

    assert f"Resuming resync #{run.pk}" in out
    sent = [i for r in standin.requests("site-us") for i in r.identifiers]
    assert "ada" not in sent and set(sent) == {"grace"}  # ada's page was answered before the crash
    assert "profiles done: 3" in out


class CtrlCWhileSending(resync_command.tqdm):
    def refresh(self, *args, **kwargs):
        super().refresh(*args, **kwargs)
        if self.desc == "Sending" and self.n:
            raise KeyboardInterrupt


def test_on_v2_ctrl_c_keeps_the_checkpoint_and_lets_go_of_the_page(world, standin, monkeypatch, settings):
    settings.FORWARD_BATCH_SIZE = 1
    connection = world(transport="v2_batch")
    monkeypatch.setattr(resync_command, "tqdm", CtrlCWhileSending)
    monkeypatch.setattr(resync_command, "SEND_HERE_BUDGET_SECONDS", 0.0)  # a page a turn

    with pytest.raises(CommandError, match="Interrupted: 1 of 3 profiles sent; run the same command again") as exc:
        resync_cmd("--connection", connection.name)

    assert exc.value.returncode == 130
    run = ResyncRun.objects.get()
    assert (run.status, run.queued, run.inflight_to, run.claimed_until) == ("interrupted", 1, None, None)
    monkeypatch.undo()

    out, _ = resync_cmd("--connection", connection.name)

    assert "Resuming" in out and "profiles done: 3" in out and "succeeded: 2" in out
    assert set(standin.people("site-us")) == {"ada", "grace"}


def test_on_v2_rejected_credentials_stop_it_and_say_how_to_resume(world, standin):
    connection = world(transport="v2_batch")
    connection.api_key = "sk-wrong"
    connection.save()

    with pytest.raises(CommandError, match="connection is faulted and 3 profiles are still to send"):
        resync_cmd("--connection", connection.name)

    connection.refresh_from_db()
    run = ResyncRun.objects.get()
    assert connection.state == Connection.State.FAULTED
    assert (run.status, run.last_profile_id, run.inflight_to) == ("interrupted", 0, None)


def test_on_v2_the_task_streams_the_resync_and_a_second_delivery_starts_nothing(world, standin):
    connection = world(transport="v2_batch")
    resync.start(resync.scope_for(connection))  # the admin's request records the run

    assert resync_connection(connection.pk) == 3
    assert resync_connection(connection.pk) == 0  # the same task delivered twice: nothing left to carry on

    assert set(standin.people("site-us")) == {"ada", "grace"} and not Forward.objects.exists()
    assert list(ResyncRun.objects.values_list("status", "queued")) == [("done", 3)]


def test_on_v2_no_wait_hands_it_to_a_worker(world, monkeypatch):
    connection = world(transport="v2_batch")
    published = []
    monkeypatch.setattr(
        "connections.services.outbox.wakeup.send_task",
        lambda name, args, countdown=None: published.append(args) or True,
    )

    out, _ = resync_cmd("--connection", connection.name, "--no-wait")

    run = ResyncRun.objects.get()
    assert f"Resync #{run.pk} handed to a worker" in out and published == [[connection.pk, None]]
    assert run.status == "running" and run.queued == 0
