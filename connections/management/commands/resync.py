"""``manage.py resync``: send the full current state of a connection's profiles again (SPEC §7)."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import time
from collections.abc import Iterator
from multiprocessing.process import BaseProcess
from typing import Any, TextIO

from django.core.management.base import BaseCommand, CommandError, CommandParser
from tqdm import tqdm

from connections.management.lookup import add_rows_per_transaction, find_audience, find_connection, positive_int
from connections.models import Connection, ResyncRun
from connections.services.forwarding import worker as forwarding
from connections.services.resync import background_resync, lane_processes, lanes, streaming
from connections.services.resync import runs as resync

STALL_SECONDS = 60.0  # waiting this long with no profile delivered: send from this process
POLL_SECONDS = 1.0  # how often progress is read while workers send
SEND_HERE_BUDGET_SECONDS = 1.0  # send this long between progress updates


class Command(BaseCommand):
    help = (
        "Resync a connection: send the full current state of every profile with a membership record in its "
        "active subscriptions (members \"true\", recorded ex-members \"false\", or SegmentMembership), or in one "
        "audience with --audience, and wait until it is delivered. Resumable: after Ctrl-C or a crash, run the "
        "same command again and it continues from its checkpoint. On a v2 connection this process sends it, "
        "1,000 people per request, a large run's other id ranges (STREAM_LANES) each from a process of its own "
        "(--no-wait hands it to workers instead). On v1 it is queued and sent by "
        "the workers; with --send-here (or when no worker delivers anything for --stall-timeout seconds) this "
        "process sends them itself, through the same path, so a resync also finishes where no worker runs."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--connection", required=True, metavar="NAME_OR_ID", help="The connection's name, or its numeric id."
        )
        parser.add_argument(
            "--audience",
            type=positive_int,
            metavar="AUDIENCE_ID",
            help="Only this audience (its audience ID in the source system, which must have an active "
            "subscription on the connection): its attribute alone with one attribute per audience.",
        )
        parser.add_argument(
            "--dry-run",
            action="store_true",
            help="Print what would be sent, one JSON line per profile (customer_id and attributes), and "
            "queue and send nothing.",
        )
        mode = parser.add_mutually_exclusive_group()
        mode.add_argument(
            "--no-wait", action="store_true", help="Queue the forwards and exit; the workers send them."
        )
        mode.add_argument(
            "--send-here",
            action="store_true",
            help="Send from this process instead of waiting for workers (workers running as well is safe: "
            "a profile is only ever sent by one of them).",
        )
        parser.add_argument(
            "--stall-timeout",
            type=float,
            default=STALL_SECONDS,
            metavar="SECONDS",
            help=f"While waiting for workers: when nothing is delivered for this long, send from this "
            f"process (default {STALL_SECONDS:g}).",
        )
        add_rows_per_transaction(
            parser, "--chunk-size", resync.CHUNK_SIZE, "Profiles queued per transaction, i.e. between checkpoints"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if options["stall_timeout"] <= 0:
            raise CommandError("--stall-timeout must be more than 0 seconds.")
        connection = find_connection(options["connection"])
        audience = find_audience(options["audience"]) if options["audience"] else None
        try:
            scope = resync.scope_for(connection, audience)
        except resync.ResyncError as error:
            raise CommandError(str(error)) from None
        self.show_progress = options["verbosity"] > 0
        self.verbosity = options["verbosity"]
        if options["dry_run"]:
            self.dry_run(scope)
            return

        started = time.monotonic()
        run, resumed = resync.start(scope)
        if resumed:
            self.stdout.write(
                f"Resuming resync #{run.pk} of {scope.describe()} after profile id {run.last_profile_id}: "
                f"{run.queued} of {run.total} profiles were queued before it stopped."
            )
        else:
            self.stdout.write(f"Resync #{run.pk} of {scope.describe()}: {run.total} profiles.")
        if not scope.audience_pks:
            self.stdout.write(self.style.WARNING("The connection has no active subscription: nothing to resync."))
        if connection.state == Connection.State.FAULTED:
            self.stdout.write(
                self.style.WARNING(
                    "The connection is faulted (Customer.io rejected its credentials): what is queued waits "
                    "until it is resumed in the admin."
                )
            )
        if streaming.streams(connection):
            if options["no_wait"]:
                self.hand_to_a_worker(run)
                return
            with self.quiet_delivery_lines():
                self.stream(run, scope, connection)
            self.summarise(run, time.monotonic() - started)
            return
        self.queue(run, scope, chunk_size=options["chunk_size"], wake=not options["send_here"])

        if options["no_wait"]:
            self.stdout.write(
                self.style.SUCCESS(f"Queued {run.queued} profiles (resync #{run.pk}); the workers send them.")
            )
            return
        with self.quiet_delivery_lines():
            self.deliver(run, connection, send_here=options["send_here"], stall=options["stall_timeout"])
        self.summarise(run, time.monotonic() - started)

    # --- queuing ------------------------------------------------------------------------

    def queue(self, run: ResyncRun, scope: resync.Scope, *, chunk_size: int, wake: bool) -> None:
        bar = self.bar("Queuing", total=run.total, initial=run.queued)
        try:
            for queued in resync.queue(run, scope, chunk_size=chunk_size, wake=wake):
                bar.update(queued)
        except BaseException as error:
            # Committed chunks stay queued (the checkpoint moved with them); the next run resumes.
            resync.interrupt(run)
            bar.close()
            message = (
                f"{run.queued} of {run.total} profiles queued; run the same command again to resume "
                f"after profile id {run.last_profile_id}."
            )
            if isinstance(error, KeyboardInterrupt):
                raise CommandError(f"Interrupted: {message}", returncode=130) from None
            self.stderr.write(f"Resync stopped by an error: {message}")
            raise
        bar.close()

    # --- streaming (v2) ------------------------------------------------------------------

    def stream(self, run: ResyncRun, scope: resync.Scope, connection: Connection) -> None:
        """Send the run page by page from this process until it is done, its lanes (a large run's
        other ranges) each from a process of its own; Ctrl-C keeps every checkpoint."""
        bar = self.bar("Sending", total=run.total, initial=run.queued)
        attempt = 1
        helpers = [self.carry_lane(connection, lane, scope) for lane in lanes.unfinished(run)]
        try:
            while True:
                turn = streaming.carry_on(
                    connection,
                    run,
                    scope,
                    SEND_HERE_BUDGET_SECONDS,
                    attempt,
                    hand_out=lambda lane: helpers.append(self.carry_lane(connection, lane, scope)),
                )
                run.refresh_from_db(fields=["queued"])  # with the lanes' people
                bar.n = run.queued
                bar.refresh()
                if turn.held_elsewhere:
                    bar.close()
                    raise CommandError(
                        f"Resync #{run.pk} is being sent by a worker; its progress shows in the admin "
                        "(or run this command again once it stops)."
                    )
                self.stop_if_faulted(run, connection, bar)
                if turn.finished:
                    break
                attempt = turn.attempt
                time.sleep(turn.come_back_in or 0.0)
            self.wait_for_lanes(run, scope, connection, helpers, bar)
        except KeyboardInterrupt:
            streaming.stop(run)
            for helper in helpers:  # each stops its own lane, giving its mark up
                if helper.is_alive() and helper.pid is not None:
                    os.kill(helper.pid, signal.SIGINT)
            for helper in helpers:
                helper.join()
            run.refresh_from_db(fields=["queued", "last_profile_id"])
            bar.close()
            raise CommandError(
                f"Interrupted: {run.queued} of {run.total} profiles sent; run the same command again to resume "
                f"after profile id {run.last_profile_id}.",
                returncode=130,
            ) from None
        bar.n = run.total
        bar.close()

    def carry_lane(self, connection: Connection, lane: ResyncRun, scope: resync.Scope) -> BaseProcess:
        return lane_processes.start_process(connection, lane, scope, SEND_HERE_BUDGET_SECONDS)

    def wait_for_lanes(
        self, run: ResyncRun, scope: resync.Scope, connection: Connection, helpers: list[BaseProcess], bar: tqdm
    ) -> None:
        """The run's own range is sent: wait for its lanes' processes, then send here what one left
        (a process that failed), so the command returns with the whole run sent."""
        while any(helper.is_alive() for helper in helpers):
            for helper in helpers:
                helper.join(timeout=POLL_SECONDS / len(helpers))
            run.refresh_from_db(fields=["queued"])
            bar.n = run.queued
            bar.refresh()
            self.stop_if_faulted(run, connection, bar)
        for lane in lanes.unfinished(run):
            lane_processes.carry_here(connection, lane, scope, SEND_HERE_BUDGET_SECONDS)
            self.stop_if_faulted(run, connection, bar)
        run.refresh_from_db(fields=["queued", "status"])

    def hand_to_a_worker(self, run: ResyncRun) -> None:
        if not background_resync.publish(run):
            raise CommandError("The broker is unavailable: no worker was told. Run the command again to resume.")
        self.stdout.write(self.style.SUCCESS(f"Resync #{run.pk} handed to a worker, which sends it."))

    # --- delivery -----------------------------------------------------------------------

    def deliver(self, run: ResyncRun, connection: Connection, *, send_here: bool, stall: float) -> None:
        """Wait until none of the run's profiles is left in the outbox, sending here if asked or stalled.

        Waiting for workers, progress is the outbox count, read once per poll. Sending here,
        it is what each round reported, and the outbox is only asked whether anything is
        left: counting a million rows every second would cost more than the sending.
        """
        pending = resync.pending_profiles(run)
        bar = self.bar("Delivering", total=run.queued, initial=max(0, run.queued - pending))
        last_move = time.monotonic()
        try:
            while pending:
                self.stop_if_faulted(run, connection, bar)
                if send_here:
                    report = forwarding.forward_pending(connection.pk, time_budget=SEND_HERE_BUDGET_SECONDS)
                    done = report.succeeded + report.failed + report.skipped + report.cancelled
                    if done:
                        bar.update(min(done, max(0, bar.total - bar.n)))
                    else:
                        # Everything left is in backoff or held by a worker: wait a moment.
                        time.sleep(min(POLL_SECONDS, report.next_due_in or POLL_SECONDS))
                    pending = int(resync.has_pending(run))
                    continue
                time.sleep(POLL_SECONDS)
                now_pending = resync.pending_profiles(run)
                if now_pending != pending:
                    last_move = time.monotonic()
                pending = now_pending
                bar.n = max(0, run.queued - pending)
                bar.refresh()
                if pending and time.monotonic() - last_move > stall:
                    bar.clear()
                    self.stderr.write(
                        f"No profile was delivered for {stall:g}s: is a worker running? Sending from this process."
                    )
                    send_here = True
        except KeyboardInterrupt:
            bar.close()
            raise CommandError(
                f"Stopped waiting: {resync.pending_profiles(run)} of {run.queued} profiles are still in the "
                "outbox, where they stay until a worker sends them (nothing is lost).",
                returncode=130,
            ) from None
        bar.n = run.queued
        bar.close()

    def stop_if_faulted(self, run: ResyncRun, connection: Connection, bar: tqdm) -> None:
        connection.refresh_from_db(fields=["state"])
        if connection.state != Connection.State.FAULTED:
            return
        bar.close()
        self.summarise(run, None)
        if streaming.streams(connection):
            streaming.stop(run)
            raise CommandError(
                f"Customer.io rejected the credentials of {connection.name!r}: the connection is faulted and "
                f"{run.total - run.queued} profiles are still to send. Fix the API key and resume the "
                f"connection in the admin, then run the same command again to resume after profile id "
                f"{run.last_profile_id}."
            )
        raise CommandError(
            f"Customer.io rejected the credentials of {connection.name!r}: the connection is faulted and "
            f"{resync.pending_profiles(run)} profiles wait in the outbox. Fix the API key and resume the "
            "connection in the admin; the workers then send them."
        )

    def summarise(self, run: ResyncRun, duration: float | None) -> None:
        outcome = resync.outcomes(run)
        lines = [
            f"Resync #{run.pk} summary:",
            # A streamed run's count is of people sent or settled (skipped...); a queued run's, of people queued.
            f"  profiles {'done' if streaming.streams(run.connection) else 'queued'}: {run.queued}",
            f"  succeeded: {outcome.succeeded}",
            f"  failed: {outcome.failed}",
            f"  skipped: {outcome.skipped}",
        ]
        if outcome.cancelled:
            lines.append(f"  cancelled: {outcome.cancelled}")
        lines.append(f"  requests: {outcome.requests}")
        if duration is not None:
            lines.append(f"  duration: {duration:.1f}s")
        self.stdout.write("\n".join(lines))
        if outcome.failed and duration is not None:
            raise CommandError(
                f"{outcome.failed} profiles failed; the forwarding log says why (filter by this connection "
                "and status failed), and they can be retried from there."
            )

    # --- dry run ------------------------------------------------------------------------

    def dry_run(self, scope: resync.Scope) -> None:
        """One JSON line per profile on stdout (pipe it to jq); the count on stderr."""
        profiles = unsent = 0
        for planned in resync.preview(scope):
            profiles += 1
            line: dict[str, Any] = {"customer_id": planned.customer_id, "attributes": planned.attributes}
            if planned.identifier is not None and planned.identifier.kind != "id":
                line["identified_by"] = planned.identifier.kind
            if planned.segment_operations:
                line["segments"] = [{"segment_id": s, "action": a} for s, a in planned.segment_operations]
            if planned.skip:
                line = {"profile_id": planned.profile_id, "customer_id": planned.customer_id, "skipped": planned.skip}
            elif planned.cancel:
                line = {"customer_id": planned.customer_id, "cancelled": planned.cancel}
            elif planned.violation:
                line["failed"] = planned.violation
            unsent += not planned.sendable
            self.stdout.write(json.dumps(line, ensure_ascii=False))
        self.stderr.write(
            f"Dry run of a resync of {scope.describe()}: {profiles} profiles, "
            f"{profiles - unsent} would be sent, {unsent} not (see their lines). Nothing was queued or sent."
        )

    @contextlib.contextmanager
    def quiet_delivery_lines(self) -> Iterator[None]:
        """Sending here logs a line per profile; below -v 2 the bar and the summary say enough."""
        logger = logging.getLogger("cioaudience.forwarding")
        level = logger.level
        if self.verbosity < 2:
            logger.setLevel(logging.WARNING)
        try:
            yield
        finally:
            logger.setLevel(level)

    def bar(self, description: str, *, total: int, initial: int) -> tqdm:
        stream: TextIO = getattr(self.stderr, "_out", self.stderr)
        return tqdm(
            total=total,
            initial=initial,
            desc=description,
            unit=" profiles",
            unit_scale=True,
            file=stream,
            mininterval=0.5,
            disable=not self.show_progress,
            dynamic_ncols=True,
        )
