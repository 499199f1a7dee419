"""Reading membership files (CSV or JSON Lines) line by line, in constant memory.

A file holds one person per line: `customer_id,email,first_name,last_name,action`
(`add` / `delete`); in JSON Lines, objects with the same keys. Surrounding whitespace is
removed; an empty (or absent, or null) email or name means "not given": the stored value is kept.

Nothing here keeps more than one line (and one batch, when applying) in memory: lines are
read with a bounded length, and a line too long to be valid is skipped over, not loaded.
The first pass keeps the rows it checked in a `RowSpool` (a temporary file, one JSON array
per batch), so the second pass applies exactly what was checked without parsing the file again.
"""

from __future__ import annotations

import csv
import json
import tempfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import IO, Any

from connections.json_nesting import nesting_problem
from connections.models import Audience, Profile
from connections.services.imports import pg_copy as import_copy
from connections.services.ingest.memberships import ApplyResult, ProfileChange, ProfileInput, apply_changes

COLUMNS = ("customer_id", "email", "first_name", "last_name", "action")
ACTIONS = {"add": True, "delete": False}
MAX_LINE_BYTES = 64 * 1024  # a valid line is under 2 KB; JSON escapes can multiply that
LIMITS = {name: Profile._meta.get_field(name).max_length for name in COLUMNS[:4]}


@dataclass(frozen=True)
class Row:
    line: int
    customer_id: str
    email: str | None
    first_name: str | None
    last_name: str | None
    is_member: bool


@dataclass(frozen=True)
class BadLine:
    line: int
    reason: str


class BadHeader(ValueError):
    """The CSV header is not the expected one: nothing in the file can be read."""


class LineSource:
    """The lines of a binary stream with their numbers (from 1), each at most MAX_LINE_BYTES.

    A longer line is skipped over in chunks and yielded as None. Every byte read is
    reported to `on_bytes` (for a progress bar).
    """

    def __init__(self, stream: IO[bytes], on_bytes: Callable[[int], object] = lambda n: None) -> None:
        self.stream = stream
        self.on_bytes = on_bytes

    def _read(self) -> bytes:
        return self.stream.readline(MAX_LINE_BYTES + 1)

    def __iter__(self) -> Iterator[tuple[int, bytes | None]]:
        number = 0
        pending = 0
        while chunk := self._read():
            number += 1
            pending += len(chunk)
            if len(chunk) > MAX_LINE_BYTES and not chunk.endswith(b"\n"):
                while (more := self._read()) and not more.endswith(b"\n"):
                    pending += len(more)
                pending += len(more)
                yield number, None
            else:
                yield number, chunk
            if pending >= 1 << 20:
                self.on_bytes(pending)
                pending = 0
        self.on_bytes(pending)


def _decode(number: int, raw: bytes) -> str:
    text = raw.decode("utf-8")
    return text.removeprefix("\ufeff") if number == 1 else text


def csv_rows(source: LineSource) -> Iterator[Row | BadLine]:
    """Rows of a CSV file with a header line naming the five columns (in any order)."""
    problems: dict[int, str] = {}  # bad physical lines of the record being read

    def text_lines() -> Iterator[str]:
        for number, raw in source:
            if raw is None:
                problems[number] = f"the line is longer than {MAX_LINE_BYTES} bytes"
                yield "\n"
                continue
            try:
                yield _decode(number, raw)
            except UnicodeDecodeError as exc:
                problems[number] = f"not valid UTF-8 (byte {exc.start + 1} of the line)"
                yield raw.decode("utf-8", "replace")

    reader = csv.reader(text_lines(), strict=True)
    header: list[str] | None = None
    end = 0
    while True:
        try:
            fields = next(reader)
            error = None
        except StopIteration:
            break
        except csv.Error as exc:
            fields, error = [], f"not valid CSV: {exc}"
        start, end = end + 1, reader.line_num
        if problems:
            first = min(problems)
            error = problems[first]
            start = first
            problems.clear()
        if header is None:
            if error:
                raise BadHeader(f"line {start}: {error}")
            header = [name.strip() for name in fields]
            if sorted(header) != sorted(COLUMNS):
                expected = ",".join(COLUMNS)
                raise BadHeader(f"line 1: the header must name the columns {expected}, not {','.join(header)!r}")
            continue
        if error:
            yield BadLine(start, error)
        elif fields == []:
            continue  # a blank line
        elif len(fields) != len(header):
            yield BadLine(start, f"{len(fields)} columns; expected {len(header)} ({','.join(header)})")
        else:
            yield validate(start, dict(zip(header, fields, strict=True)))
    if header is None:
        raise BadHeader(f"the file is empty; expected a header line: {','.join(COLUMNS)}")


def jsonl_rows(source: LineSource) -> Iterator[Row | BadLine]:
    """Rows of a JSON Lines file: one object per line with the five keys (email and names optional)."""
    for number, raw in source:
        if raw is None:
            yield BadLine(number, f"the line is longer than {MAX_LINE_BYTES} bytes")
            continue
        try:
            text = _decode(number, raw)
        except UnicodeDecodeError as exc:
            yield BadLine(number, f"not valid UTF-8 (byte {exc.start + 1} of the line)")
            continue
        if not text.strip():
            continue
        if raw.count(b"[") + raw.count(b"{") > 8 and nesting_problem(raw, 8):
            yield BadLine(number, "not a flat JSON object (nested arrays or objects)")
            continue
        try:
            value = json.loads(text)
        except ValueError as exc:
            yield BadLine(number, f"not valid JSON: {exc}")
            continue
        if not isinstance(value, dict):
            yield BadLine(number, "not a JSON object")
            continue
        unknown = sorted(set(value) - set(COLUMNS))
        if unknown:
            yield BadLine(number, f"unknown key {unknown[0]!r}; the keys are {', '.join(COLUMNS)}")
            continue
        yield validate(number, value)


def validate(line: int, values: dict[str, Any]) -> Row | BadLine:
    """A Row, or why the line is bad."""
    cleaned: dict[str, str] = {}
    for name in COLUMNS:
        value = values.get(name)
        if value is None:
            value = ""
        if not isinstance(value, str):
            return BadLine(line, f"{name} must be a string")
        value = value.strip()
        if "\x00" in value:
            return BadLine(line, f"{name} contains a NUL character")
        if not value.isascii():
            try:
                value.encode("utf-8")
            except UnicodeEncodeError:
                return BadLine(line, f"{name} contains an unpaired UTF-16 surrogate")
        limit = LIMITS.get(name)
        if limit is not None and len(value) > limit:
            return BadLine(line, f"{name} is {len(value)} characters long; at most {limit} fit")
        cleaned[name] = value
    if not cleaned["customer_id"]:
        return BadLine(line, "customer_id is missing")
    if cleaned["action"] not in ACTIONS:
        return BadLine(line, f"unknown action {cleaned['action']!r} (expected add or delete)")
    return Row(
        line=line,
        customer_id=cleaned["customer_id"],
        email=cleaned["email"] or None,
        first_name=cleaned["first_name"] or None,
        last_name=cleaned["last_name"] or None,
        is_member=ACTIONS[cleaned["action"]],
    )


class RowSpool:
    """Checked rows on disk in batches of `batch_size`, to be read back batch by batch (constant memory)."""

    def __init__(self, batch_size: int) -> None:
        self.batch_size = batch_size
        self.file = tempfile.TemporaryFile()  # noqa: SIM115 - closed by close()
        self.rows = 0
        self._batch: list[tuple] = []

    def add(self, row: Row) -> None:
        # A plain tuple: dataclasses.astuple deep-copies every field (a third of the first pass's time).
        self._batch.append((row.line, row.customer_id, row.email, row.first_name, row.last_name, row.is_member))
        self.rows += 1
        if len(self._batch) >= self.batch_size:
            self._flush()

    def _flush(self) -> None:
        if self._batch:
            self.file.write(json.dumps(self._batch, ensure_ascii=False, separators=(",", ":")).encode() + b"\n")
            self._batch = []

    def size(self) -> int:
        """Bytes written (all rows added so far are on disk after this)."""
        self._flush()
        return self.file.tell()

    def batches(self, on_bytes: Callable[[int], object] = lambda n: None) -> Iterator[list[Row]]:
        self._flush()
        self.file.seek(0)
        for line in self.file:
            on_bytes(len(line))
            yield [Row(*values) for values in json.loads(line)]

    def close(self) -> None:
        self.file.close()


def apply_rows(rows: Sequence[Row], audience: Audience) -> ApplyResult:
    """One transaction for a batch of rows; they are forwarded like any change.

    On PostgreSQL, `import_copy` (COPY and set-based statements); elsewhere one `apply_changes` call.
    """
    if import_copy.available():
        return import_copy.apply_rows(rows, audience)
    changes = [
        ProfileChange(
            ProfileInput(customer_id=r.customer_id, email=r.email, first_name=r.first_name, last_name=r.last_name),
            {audience.audience_id: r.is_member},
        )
        for r in rows
    ]
    return apply_changes(changes, {audience.audience_id: audience.name})


class PartitionedSpool:
    """Checked rows in `parts` spools, a person's rows always in the same one (in file order).

    Each part can then be applied by its own connection, in parallel with the others: no two
    parts touch the same profile, and each applies its rows in the order of the file, so the
    last line about a person still wins.
    """

    def __init__(self, batch_size: int, parts: int) -> None:
        self.parts = [RowSpool(batch_size) for _ in range(parts)]

    def add(self, row: Row) -> None:
        # hash() of a str is stable within a process, which is all this needs.
        self.parts[hash(row.customer_id) % len(self.parts) if len(self.parts) > 1 else 0].add(row)

    @property
    def rows(self) -> int:
        return sum(part.rows for part in self.parts)

    def size(self) -> int:
        return sum(part.size() for part in self.parts)

    def close(self) -> None:
        for part in self.parts:
            part.close()
