"""``manage.py cio_standin``: run the local Customer.io stand-in (SPEC §10) until Ctrl-C."""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import os
import signal
import sys
from pathlib import Path
from types import FrameType
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from cio_standin import StandinServer, Workspace

WORKSPACES_ENV = "CIO_STANDIN_WORKSPACES"
SPEC_HELP = (
    "SITE_ID:API_KEY[:REGION][:RATE][:APP_API_KEY], REGION us (default) or eu, RATE in requests per second, "
    "APP_API_KEY the App API's Bearer key (optional: creating manual segments)"
)


def _parse_workspaces(specs: list[str], source: str) -> list[Workspace]:
    workspaces = []
    for spec in specs:
        try:
            workspaces.append(Workspace.parse(spec))
        except ValueError as error:
            # Workspace's messages name the site ID only, never the API key.
            raise CommandError(f"{source}: {error}") from None
    return workspaces


def _split(text: str) -> list[str]:
    return [part.strip() for part in text.replace("\n", ",").split(",") if part.strip()]


class Command(BaseCommand):
    help = (
        "Run the local Customer.io stand-in: a Track API (and App API segment) server on 127.0.0.1 "
        "that checks credentials, validates bodies against Customer.io's OpenAPI document, keeps "
        "people's attributes and manual segments and can inject faults (control API under /_standin/)."
    )
    # It needs neither the database nor the app's checks: start fast, even on an empty checkout.
    requires_system_checks: list[str] = []

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--port", type=int, required=True, help="Port to listen on (0: any free port).")
        parser.add_argument("--host", default="127.0.0.1", help="Address to listen on (default 127.0.0.1).")
        parser.add_argument(
            "--workspace",
            action="append",
            default=[],
            metavar="SPEC",
            help=f"A workspace to accept, repeatable: {SPEC_HELP}. Default: ${WORKSPACES_ENV} "
            "(comma-separated specs).",
        )
        parser.add_argument(
            "--workspaces-file",
            type=Path,
            help="A file of workspace specs (one per line or comma-separated), which keeps API keys "
            "out of the process list.",
        )
        parser.add_argument(
            "--validate-share",
            type=float,
            default=1.0,
            help="Share of bodies validated against the OpenAPI document, 0 to 1 (default 1: all).",
        )
        parser.add_argument("--seed", type=int, default=0, help="Seed for fault injection (default 0).")
        parser.add_argument(
            "--no-record",
            action="store_true",
            help="Keep counters only, not each request (long benchmarks); invalid requests are still kept.",
        )
        parser.add_argument(
            "--no-record-bodies", action="store_true", help="Record requests without their bodies."
        )

    def _workspaces(self, options: dict[str, Any]) -> list[Workspace]:
        workspaces = _parse_workspaces(options["workspace"], "--workspace")
        if options["workspaces_file"] is not None:
            try:
                text = options["workspaces_file"].read_text()
            except OSError as error:
                raise CommandError(f"--workspaces-file: cannot read it: {error.strerror}") from None
            workspaces += _parse_workspaces(_split(text), "--workspaces-file")
        if not workspaces and os.environ.get(WORKSPACES_ENV, "").strip():
            workspaces = _parse_workspaces(_split(os.environ[WORKSPACES_ENV]), WORKSPACES_ENV)
        if not workspaces:
            raise CommandError(
                f"no workspace given: pass --workspace {SPEC_HELP.split(',')[0]} (repeatable), "
                f"--workspaces-file, or set {WORKSPACES_ENV}"
            )
        site_ids = [w.site_id for w in workspaces]
        duplicates = sorted({s for s in site_ids if site_ids.count(s) > 1})
        if duplicates:
            raise CommandError(f"workspace given twice: {', '.join(duplicates)}")
        return workspaces

    def handle(self, *args: Any, **options: Any) -> None:
        workspaces = self._workspaces(options)
        share = options["validate_share"]
        if not 0 <= share <= 1:
            raise CommandError("--validate-share must be from 0 to 1")
        if not 0 <= options["port"] <= 65535:
            raise CommandError("--port must be from 0 to 65535")
        if options["verbosity"] >= 2:
            handler = logging.StreamHandler(self.stdout)
            handler.setFormatter(logging.Formatter("%(asctime)s %(message)s"))
            logger = logging.getLogger("cio_standin")
            logger.addHandler(handler)
            logger.setLevel(logging.INFO)
        try:
            server = StandinServer(
                workspaces,
                host=options["host"],
                port=options["port"],
                validate_share=share,
                seed=options["seed"],
                record_requests=not options["no_record"],
                record_bodies=not options["no_record_bodies"],
                log_requests=options["verbosity"] >= 2,
            )
        except OSError as error:
            raise CommandError(f"cannot listen on {options['host']}:{options['port']}: {error.strerror}") from None

        # Ctrl-C (SIGINT) and `kill` (SIGTERM) stop it cleanly, even when it was started with them
        # ignored or blocked, as a parent may leave them (a non-interactive shell starts background
        # jobs with SIGINT ignored). Installed before announcing: a reader may stop it at once.
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, _raise_keyboard_interrupt)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT, signal.SIGTERM})
        with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C is how it is meant to stop
            self._announce(server, workspaces, options["host"])
            server.serve_forever()
        server.stop()
        stats = server.stats()
        self.stdout.write(f"Stopped after {stats['requests']} requests.")

    def _announce(self, server: StandinServer, workspaces: list[Workspace], host: str) -> None:
        out = self.stdout
        out.write(self.style.SUCCESS(f"Customer.io stand-in listening on {server.url}"))
        for workspace in workspaces:
            rate = f"{workspace.rate_limit} requests/s" if workspace.rate_limit else "no rate limit"
            app = ", App API key set" if workspace.app_api_key else ""
            out.write(f"  workspace {workspace.site_id} ({workspace.region}, {rate}{app})")
        out.write(f"Control API: {server.control_url} (stats, people, segments, requests, faults, reset)")
        out.write(f"Point the product at it: CUSTOMERIO_US_URL={server.url} CUSTOMERIO_EU_URL={server.url}")
        if any(workspace.app_api_key for workspace in workspaces):
            out.write(f"App API: CUSTOMERIO_APP_US_URL={server.url} CUSTOMERIO_APP_EU_URL={server.url}")
        if not _is_loopback(host):
            out.write(self.style.WARNING(f"Listening on {host}: the control API has no authentication."))
        out.write("Quit with Ctrl-C.")
        out.flush()
        sys.stdout.flush()


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def _raise_keyboard_interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt
