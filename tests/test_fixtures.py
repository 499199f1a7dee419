"""The vendored outside definitions are the ones recorded when they were vendored (tests/fixtures/README.md)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from cio_standin import contract

FIXTURES = Path(__file__).resolve().parent / "fixtures"
STANDIN_PREFIX = "standin:"


def recorded() -> list[tuple[str, str]]:
    lines = (FIXTURES / "checksums.sha256").read_text().splitlines()
    return [(name, digest) for digest, name in (line.split(None, 1) for line in lines if line.strip())]


def vendored_path(name: str) -> Path:
    if name.startswith(STANDIN_PREFIX):
        return contract.OPENAPI_PATH.with_name(name.removeprefix(STANDIN_PREFIX))
    return FIXTURES / name


@pytest.mark.parametrize(("name", "digest"), recorded())
def test_each_vendored_file_is_the_one_recorded(name: str, digest: str) -> None:
    assert hashlib.sha256(vendored_path(name).read_bytes()).hexdigest() == digest


def test_every_vendored_file_is_recorded() -> None:
    on_disk = {
        str(path.relative_to(FIXTURES))
        for path in (FIXTURES / "mparticle-firehose").rglob("*") if path.is_file()
    }
    assert on_disk == {name for name, _ in recorded() if not name.startswith(STANDIN_PREFIX)}
