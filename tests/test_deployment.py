"""Production settings: safe by default, and Django's deployment checks pass."""

import os
import re
import secrets
import signal
import socket
import subprocess
import sys
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent


def python(*args: str, **env: str) -> subprocess.CompletedProcess:
    """Python in the repository, with none of the test run's settings: only `env`."""
    clean = {k: v for k, v in os.environ.items() if k not in {"DEBUG", "SECRET_KEY", "DJANGO_SETTINGS_MODULE"}}
    clean.update(env)
    return subprocess.run([sys.executable, *args], cwd=ROOT, env=clean, capture_output=True, text=True, timeout=60)


def manage(*args: str, **env: str) -> subprocess.CompletedProcess:
    return python("manage.py", *args, **env)


def test_debug_is_off_unless_set_and_then_a_secret_key_is_required():
    result = manage("check", "--deploy")
    assert result.returncode != 0
    assert "SECRET_KEY must be set" in result.stderr


def test_the_web_process_refuses_to_start_without_a_secret_key():
    result = python("-c", "import cioaudience.wsgi")
    assert result.returncode != 0
    assert "SECRET_KEY must be set" in result.stderr


def test_the_migration_check_needs_no_secret_key():
    result = manage("makemigrations", "--check", "--dry-run")
    assert result.returncode == 0, result.stderr
    assert "No changes detected" in result.stdout


def test_firehose_apply_takes_request_or_worker_and_refuses_anything_else():
    for mode in ("request", "worker"):
        assert manage("check", DEBUG="1", FIREHOSE_APPLY=mode).returncode == 0
    result = manage("check", DEBUG="1", FIREHOSE_APPLY="later")
    assert result.returncode != 0
    assert "FIREHOSE_APPLY must be 'request' or 'worker', not 'later'" in result.stderr


def test_the_deployment_checks_pass_with_production_settings():
    result = manage(
        "check", "--deploy", "--fail-level", "WARNING", DEBUG="0", SECRET_KEY=secrets.token_urlsafe(60)
    )
    assert result.returncode == 0, result.stderr
    assert "no issues" in result.stdout


# A request that claims HTTPS through X-Forwarded-Proto, then a plain one, seen by production
# settings; prints the two status codes.
PROXY_PROBE = """
from django.test import Client
c = Client()
claimed = c.get('/admin/', HTTP_X_FORWARDED_PROTO='https').status_code
plain = c.get('/admin/').status_code
print(claimed, plain)
"""


def production(**env: str) -> dict[str, str]:
    return {"DEBUG": "0", "SECRET_KEY": secrets.token_urlsafe(60), "ALLOWED_HOSTS": "testserver", **env}


def test_x_forwarded_proto_is_not_trusted_unless_the_operator_says_a_proxy_sets_it():
    env = production()
    env.pop("TRUST_X_FORWARDED_PROTO", None)
    result = manage("shell", "--no-imports", "-c", PROXY_PROBE, **env)

    assert result.returncode == 0, result.stderr
    # A client reaching gunicorn directly cannot claim HTTPS: both are redirected to https://.
    assert result.stdout.split() == ["301", "301"]


def test_behind_a_proxy_that_sets_x_forwarded_proto_https_requests_are_served():
    result = manage("shell", "--no-imports", "-c", PROXY_PROBE, **production(TRUST_X_FORWARDED_PROTO="1"))

    assert result.returncode == 0, result.stderr
    # Trusted: the HTTPS request reaches the admin (login redirect); plain HTTP is still sent to https://.
    assert result.stdout.split() == ["302", "301"]


def test_the_deployment_checks_pass_behind_a_proxy_too():
    result = manage("check", "--deploy", "--fail-level", "WARNING", **production(TRUST_X_FORWARDED_PROTO="1"))
    assert result.returncode == 0, result.stderr


def test_make_demo_refuses_to_start_beside_something_on_its_ports():
    # A demo left running kept port 8025: a new demo forwarded to the old stand-in, which
    # rejected the new demo's key and faulted its connection. Now it refuses, before starting anything.
    with socket.socket() as listener:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            listener.bind(("127.0.0.1", 8025))
            listener.listen()
        except OSError:
            pass  # something listens there already: the demo must refuse just the same
        demo = subprocess.Popen(
            ["bash", "scripts/demo.sh"], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            start_new_session=True,
        )
        try:
            _, stderr = demo.communicate(timeout=30)
        finally:
            if demo.poll() is None:  # it started after all: stop everything it started
                os.killpg(demo.pid, signal.SIGINT)
                demo.wait(timeout=30)
    assert demo.returncode == 1
    assert "is already in use" in stderr and "make demo" in stderr


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_make_demo_ends_with_the_admin_address_the_credentials_and_the_stand_in(tmp_path):
    # The credentials used to scroll away under some 80 lines of Celery banners: now the worker and
    # beat write to log files, and a short block with what a person needs comes last, once the worker is ready.
    admin_port, standin_port = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if k not in {"DEBUG", "SECRET_KEY", "DJANGO_SETTINGS_MODULE"}}
    env.update(
        DEMO_PORT=str(admin_port), DEMO_STANDIN_PORT=str(standin_port), DEMO_DIR=str(tmp_path), VENV=sys.prefix
    )
    demo = subprocess.Popen(
        ["bash", "scripts/demo.sh"], cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True, start_new_session=True,
    )
    lines: list[str] = []
    try:
        for line in demo.stdout:  # type: ignore[union-attr]
            lines.append(line.rstrip("\n"))
            if "Ctrl-C stops everything." in line:
                break
        last = [line.strip() for line in lines[-12:]]
        username, password = re.search(r"^Superuser: (\S+) / password: (\S+)$", "\n".join(lines), re.M).groups()

        assert f"Admin:      http://127.0.0.1:{admin_port}/admin/" in last
        assert f"Log in as:  {username} / password: {password}" in last
        assert f"Stand-in:   http://127.0.0.1:{standin_port}/_standin/people?site_id=demo-site" in last
        assert not any("celery@" in line or "[tasks]" in line for line in lines)  # the banners went to the log
        assert " ready." in (tmp_path / "worker.log").read_text()
        # The credentials shown open the admin.
        session = requests.Session()
        login = f"http://127.0.0.1:{admin_port}/admin/login/"
        session.get(login, timeout=10)
        form = {"username": username, "password": password, "next": "/admin/"}
        answer = session.post(
            login, {**form, "csrfmiddlewaretoken": session.cookies["csrftoken"]}, timeout=10
        )
        assert answer.url.endswith("/admin/") and "Log out" in answer.text
    finally:
        os.killpg(demo.pid, signal.SIGINT)
        demo.wait(timeout=60)
