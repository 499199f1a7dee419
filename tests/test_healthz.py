"""`/healthz`: database and broker, 200 or 503, no login, no HTTPS redirect, nothing secret."""

import pytest

from cioaudience.celery import app

pytestmark = pytest.mark.django_db

UNREACHABLE_BROKER = "redis://:hunter2-secret@127.0.0.1:1/0"  # port 1: connection refused at once


def test_it_answers_200_when_the_database_and_broker_are_up(client):
    response = client.get("/healthz")

    assert response.status_code == 200
    assert response.json() == {"status": "ok", "database": "ok", "broker": "ok"}
    assert "no-cache" in response["Cache-Control"]


def test_it_answers_503_naming_the_broker_when_it_is_unreachable(client, monkeypatch, caplog):
    # app.conf, not Django's settings: the Celery app read CELERY_BROKER_URL at start-up.
    monkeypatch.setitem(app.conf, "broker_write_url", UNREACHABLE_BROKER)
    monkeypatch.delenv("CELERY_BROKER_WRITE_URL", raising=False)

    response = client.get("/healthz")

    assert response.status_code == 503
    assert response.json() == {"status": "unavailable", "database": "ok", "broker": "unavailable"}
    assert "hunter2" not in response.content.decode() and "127.0.0.1:1" not in response.content.decode()
    assert "check=broker failed" in caplog.text and "hunter2" not in caplog.text


def test_it_needs_no_login_and_is_not_redirected_to_https(client, settings):
    settings.SECURE_SSL_REDIRECT = True

    assert client.get("/healthz").status_code == 200
    assert client.get("/admin/").status_code == 301  # everything else is


def test_it_only_answers_reads(client):
    assert client.post("/healthz").status_code == 405


def test_a_load_balancer_probing_by_ip_gets_an_answer(client, settings):
    settings.ALLOWED_HOSTS = ["cioaudience.example.com"]

    response = client.get("/healthz", HTTP_HOST="10.0.3.17:8000")

    assert response.status_code == 200
    assert response.json()["status"] == "ok"


def test_the_rest_of_the_site_still_refuses_hosts_not_allowed(client, settings):
    settings.ALLOWED_HOSTS = ["cioaudience.example.com"]

    assert client.get("/admin/", HTTP_HOST="10.0.3.17:8000").status_code == 400
    assert client.get("/admin/login/", HTTP_HOST="10.0.3.17").status_code == 400
    assert client.get("/healthz/", HTTP_HOST="10.0.3.17").status_code == 400  # only the exact path is exempt
    assert client.get("/admin/login/", HTTP_HOST="cioaudience.example.com").status_code == 200


def test_a_probe_by_ip_is_still_only_a_read(client, settings):
    settings.ALLOWED_HOSTS = ["cioaudience.example.com"]

    assert client.post("/healthz", HTTP_HOST="10.0.3.17").status_code == 405
