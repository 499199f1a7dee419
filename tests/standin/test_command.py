"""`manage.py cio_standin`, run as operators and `make demo` run it: a real subprocess."""

from __future__ import annotations

import os
import queue
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import requests

REPO_ROOT = Path(__file__).resolve().parents[2]
SECRET = "cmd-secret-key-9f8e"

pytestmark = pytest.mark.skipif(
    not (REPO_ROOT / "manage.py").exists() or not (REPO_ROOT / "cioaudience" / "settings.py").exists(),
    reason="manage.py and the Django settings are not there yet",
)


def command_env(**extra: str) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if key != "CIO_STANDIN_WORKSPACES"}
    env["DJANGO_SETTINGS_MODULE"] = "tests.settings"  # test keys, no .env needed
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


def manage(*args: str) -> list[str]:
    return [sys.executable, "manage.py", "cio_standin", *args]


@dataclass
class Running:
    process: subprocess.Popen[str]
    url: str
    lines: list[str] = field(default_factory=list)


@contextmanager
def running(*args: str, preexec_fn=None, **env: str) -> Iterator[Running]:  # type: ignore[no-untyped-def]
    process = subprocess.Popen(
        manage("--port", "0", *args),
        cwd=REPO_ROOT,
        env=command_env(**env),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        preexec_fn=preexec_fn,  # only to start the child as a parent might leave it
    )
    lines: queue.Queue[str | None] = queue.Queue()

    def read() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            lines.put(line)
        lines.put(None)

    threading.Thread(target=read, daemon=True).start()
    seen: list[str] = []
    try:
        while True:
            line = lines.get(timeout=60)
            if line is None:
                pytest.fail("cio_standin exited early:\n" + "".join(seen))
            seen.append(line)
            if match := re.search(r"listening on (http://\S+)", line):
                break
        while not seen[-1].startswith("Quit with Ctrl-C"):
            line = lines.get(timeout=10)
            assert line is not None
            seen.append(line)
        result = Running(process, match.group(1), seen)
        yield result
        if process.poll() is None:
            process.send_signal(signal.SIGINT)  # Ctrl-C
        assert process.wait(timeout=10) == 0
        while (line := lines.get(timeout=10)) is not None:
            seen.append(line)
        result.lines = seen
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_it_serves_the_stand_in_until_ctrl_c_and_never_prints_the_key() -> None:
    with running("--workspace", f"site1:{SECRET}:eu:50") as standin:
        region = requests.get(f"{standin.url}/api/v1/accounts/region", auth=("site1", SECRET), timeout=5)
        assert region.json()["region"] == "eu"
        assert requests.put(
            f"{standin.url}/api/v1/customers/42", json={"a": "1"}, auth=("site1", SECRET), timeout=5
        ).status_code == 200
        people = requests.get(f"{standin.url}/_standin/people", params={"site_id": "site1"}, timeout=5).json()
        assert people["people"] == {"42": {"a": "1"}}

    output = "".join(standin.lines)
    assert f"Control API: {standin.url}/_standin/" in output
    assert "workspace site1 (eu, 50 requests/s)" in output
    assert "Stopped after 2 requests." in output
    assert SECRET not in output


def test_it_stops_cleanly_on_sigterm() -> None:
    with running("--workspace", f"site1:{SECRET}") as standin:
        standin.process.send_signal(signal.SIGTERM)
        assert standin.process.wait(timeout=10) == 0


def ignore_and_block_ctrl_c() -> None:
    """What a parent may hand down: SIGINT ignored (a shell's background job) and blocked."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})


def test_ctrl_c_stops_it_even_when_started_with_ctrl_c_ignored_and_blocked() -> None:
    with running("--workspace", f"site1:{SECRET}", preexec_fn=ignore_and_block_ctrl_c) as standin:
        assert requests.get(f"{standin.url}/_standin/health", timeout=5).status_code == 200

    assert "Stopped after" in "".join(standin.lines)


def test_it_reads_workspaces_from_the_environment() -> None:
    with running(CIO_STANDIN_WORKSPACES=f"a:{SECRET}, b:{SECRET}-b:eu") as standin:
        for auth in (("a", SECRET), ("b", f"{SECRET}-b")):
            assert requests.get(f"{standin.url}/api/v1/accounts/region", auth=auth, timeout=5).status_code == 200
    assert SECRET not in "".join(standin.lines)


def test_it_reads_workspaces_from_a_file(tmp_path: Path) -> None:
    specs = tmp_path / "workspaces"
    specs.write_text(f"filed:{SECRET}\n")
    with running("--workspaces-file", str(specs)) as standin:
        assert requests.get(f"{standin.url}/api/v1/accounts/region", auth=("filed", SECRET), timeout=5).ok


def test_it_fails_clearly_without_a_workspace() -> None:
    result = subprocess.run(
        manage("--port", "0"), cwd=REPO_ROOT, env=command_env(), capture_output=True, text=True, timeout=60
    )

    assert result.returncode != 0
    assert "no workspace given" in result.stderr and "CIO_STANDIN_WORKSPACES" in result.stderr


def test_a_bad_workspace_fails_clearly_without_echoing_the_key() -> None:
    result = subprocess.run(
        manage("--port", "0", "--workspace", f"site1:{SECRET}:mars"),
        cwd=REPO_ROOT, env=command_env(), capture_output=True, text=True, timeout=60,
    )

    assert result.returncode != 0
    assert "region must be 'us' or 'eu'" in result.stderr and SECRET not in result.stderr + result.stdout
