"""Capturing everything the product says, and searching it for secrets (tests/reliability/test_secret_hygiene.py).

`Evidence` collects texts with where they came from: log records at DEBUG (SQL included) and
the exception reports an error e-mail or the DEBUG page would show for them, Celery task
messages as published, responses (body, headers, cookies) through `RecordingClient`, command
output, and every value of every table. `findings` searches them for each form of each secret.
"""

from __future__ import annotations

import base64
import contextlib
import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from celery.signals import before_task_publish
from django.contrib.messages.storage.cookie import CookieStorage
from django.contrib.sessions.backends.db import SessionStore
from django.db import connection as db
from django.http import HttpRequest
from django.test import Client
from django.views.debug import ExceptionReporter

from connections.services.ingest.tokens import PREFIX_CHARS

API_KEY_SHOWN = 4  # the list of connections shows an API key's last 4 characters (SPEC §6)
TOKEN_SHOWN = PREFIX_CHARS  # the admin shows a token's first characters, to tell tokens apart


@dataclass
class Evidence:
    """Every text the product produced, with where it came from."""

    texts: list[tuple[str, str]] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)
    recording_responses: bool = True

    def add(self, kind: str, where: str, text: str) -> None:
        self.texts.append((f"{kind}: {where}", text))
        self.counts[kind] = self.counts.get(kind, 0) + 1

    def summary(self) -> str:
        return ", ".join(f"{n} {kind}s" for kind, n in sorted(self.counts.items()))

    @contextlib.contextmanager
    def response_not_recorded(self) -> Iterator[None]:
        """For the one page that shows a new token, by design, once."""
        self.recording_responses = False
        try:
            yield
        finally:
            self.recording_responses = True

    def response(self, where: str, response) -> None:  # type: ignore[no-untyped-def]
        if not self.recording_responses:
            return
        self.add("response", where, response.content.decode("utf-8", errors="replace"))
        self.add("header", where, repr(sorted(response.items())))
        for name, morsel in response.cookies.items():
            self.add("cookie", f"{where} {name}", morsel.OutputString())
            if name == "messages" and morsel.value:
                decoded = CookieStorage(HttpRequest())._decode(morsel.value)
                self.add("cookie", f"{where} messages, decoded", repr(decoded))

    def database(self) -> None:
        """Every value of every column of every table, and each session's data decoded."""
        with db.cursor() as cursor:
            for table in db.introspection.table_names(cursor):
                columns = [c.name for c in db.introspection.get_table_description(cursor, table)]
                quoted = ", ".join(db.ops.quote_name(c) for c in columns)
                cursor.execute(f"SELECT {quoted} FROM {db.ops.quote_name(table)}")  # noqa: S608 - introspected names
                for row in cursor.fetchall():
                    for column, value in zip(columns, row, strict=True):
                        if value is not None:
                            self.add("database value", f"{table}.{column}", str(value))
        for (data,) in SessionStore.get_model_class().objects.values_list("session_data"):
            self.add("database value", "django_session.session_data, decoded", repr(SessionStore().decode(data)))


class Recorder(logging.Handler):
    """Every log record: its line (with any traceback), and for an exception the reports Django would make."""

    def __init__(self, evidence: Evidence) -> None:
        super().__init__(level=logging.DEBUG)
        self.evidence = evidence
        self.setFormatter(logging.Formatter("%(levelname)s %(name)s %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        where = f"{record.name} {record.levelname}"
        self.evidence.add("log record", where, f"{self.format(record)} {record.args!r}")
        if record.exc_info and record.exc_info[1] is not None:
            request = getattr(record, "request", None)
            reporter = ExceptionReporter(
                request if isinstance(request, HttpRequest) else None, *record.exc_info, is_email=True
            )
            self.evidence.add("exception report", where, reporter.get_traceback_text())
            # The HTML one (an error e-mail with include_html, the DEBUG page) shows each frame's variables too.
            self.evidence.add("exception report", f"{where}, html", reporter.get_traceback_html())


@contextlib.contextmanager
def recording(evidence: Evidence) -> Iterator[None]:
    """Log records at DEBUG, with every SQL statement and its parameters; Celery tasks as they are published."""
    recorder = Recorder(evidence)
    root, sql = logging.getLogger(), logging.getLogger("django.db.backends")
    saved = (root.level, sql.level, db.force_debug_cursor)
    handler_levels = {handler: handler.level for handler in root.handlers}
    for handler in handler_levels:  # the console stays as it was, not flooded with SQL
        handler.setLevel(max(handler.level, root.level))
    root.addHandler(recorder)
    root.setLevel(logging.DEBUG)
    sql.setLevel(logging.DEBUG)
    db.force_debug_cursor = True

    def published(body: Any = None, headers: Any = None, routing_key: Any = None, **kwargs: Any) -> None:
        task = (headers or {}).get("task", "?")
        evidence.add("task message", task, f"body={body!r} headers={headers!r} routing_key={routing_key!r}")

    before_task_publish.connect(published, weak=False)
    try:
        yield
    finally:
        before_task_publish.disconnect(published)
        root.removeHandler(recorder)
        for handler, level in handler_levels.items():
            handler.setLevel(level)
        root.setLevel(saved[0])
        sql.setLevel(saved[1])
        db.force_debug_cursor = saved[2]


class RecordingClient(Client):
    """The test client, recording every response it gets (redirects followed included)."""

    def __init__(self, evidence: Evidence, user=None, **defaults: Any) -> None:  # type: ignore[no-untyped-def]
        super().__init__(**defaults)
        self.evidence = evidence
        if user is not None:
            self.force_login(user)

    def request(self, **request: Any):  # type: ignore[no-untyped-def]
        response = super().request(**request)
        query = request.get("QUERY_STRING")
        where = f"{request.get('REQUEST_METHOD')} {request.get('PATH_INFO')}{'?' + query if query else ''}"
        self.evidence.response(f"{where} -> {response.status_code}", response)
        return response


# --- searching ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Secret:
    name: str
    value: str
    kind: str  # "API key" or "inbound token"


def needles(secrets: list[Secret], site_ids: Sequence[str]) -> Iterator[tuple[Secret, str, str]]:
    """(secret, which form, text) for every form of every secret that must not be found."""
    for secret in secrets:
        yield secret, "plaintext", secret.value
        if secret.kind == "API key":
            for site in site_ids:
                basic = base64.b64encode(f"{site}:{secret.value}".encode()).decode()
                yield secret, f"Basic credentials with {site}", basic
            # More than the last 4 characters: any 6 in a row, and the last 5.
            for start in range(len(secret.value) - 5):
                yield secret, "a fragment", secret.value[start : start + 6]
            yield secret, "its last 5 characters", secret.value[-(API_KEY_SHOWN + 1) :]
        else:
            # More than the prefix the admin shows: any 9 characters in a row.
            for start in range(len(secret.value) - TOKEN_SHOWN):
                yield secret, "a fragment", secret.value[start : start + TOKEN_SHOWN + 1]


def findings(evidence: Evidence, secrets: list[Secret], site_ids: Sequence[str] = ()) -> list[str]:
    """Where each secret was found, in any form (the first form found per text), with an excerpt."""
    forms = list(needles(secrets, site_ids))
    found = []
    for where, text in evidence.texts:
        for secret, form, needle in forms:
            if needle in text:
                at = text.index(needle)
                excerpt = text[max(0, at - 80) : at + len(needle) + 40].replace("\n", "⏎")
                found.append(f"{secret.name} ({form} {needle!r}) in {where}: …{excerpt}…")
                break
    return found
