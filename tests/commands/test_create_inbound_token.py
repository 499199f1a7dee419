"""`manage.py create_inbound_token --name NAME` prints a token once; the endpoint accepts it."""

import io
import re

import pytest
from django.core.management import call_command, execute_from_command_line
from django.core.management.base import CommandError

from connections.models import InboundToken
from connections.services.ingest import tokens
from tests.support.factories import ConnectionFactory

pytestmark = pytest.mark.django_db


def create(name: str) -> str:
    out = io.StringIO()
    call_command("create_inbound_token", "--name", name, stdout=out)
    return out.getvalue()


def test_it_prints_a_working_token_once_with_how_to_use_it():
    output = create("mParticle production")

    token = re.search(r"Authorization: Token (\S+)", output).group(1)
    assert output.count(token) == 2  # on its own, and in the header to send
    assert tokens.authenticate(token).name == "mParticle production"


def test_it_stores_only_a_hash_of_the_token():
    token = re.search(r"Authorization: Token (\S+)", create("mParticle")).group(1)

    stored = InboundToken.objects.get()
    assert stored.token_hash == tokens.hash_token(token)
    assert token not in (stored.token_hash, stored.name)


def test_the_endpoint_accepts_the_printed_token(client):
    token = re.search(r"Authorization: Token (\S+)", create("mParticle")).group(1)
    key = ConnectionFactory().connection_key
    body = (
        '{"type": "audience_membership_change_request", "id": "1317071d-3342-4e1e-a691-84bd7e762bda",'
        ' "timestamp_ms": 1, "firehose_version": "3.2.0",'
        f' "account": {{"account_id": 1, "account_settings": {{"connectionKey": "{key}"}}}}}}'
    )

    response = client.post(
        "/api/mparticle/firehose", data=body, content_type="application/json", HTTP_AUTHORIZATION=f"Token {token}"
    )

    assert response.status_code == 200


def test_a_duplicate_name_is_a_clear_error_with_a_non_zero_exit():
    create("mParticle")

    with pytest.raises(CommandError, match="named 'mParticle' already exists"):
        create("mParticle")
    assert InboundToken.objects.count() == 1


def test_the_command_exits_non_zero_on_a_duplicate_name(capsys):
    create("mParticle")

    with pytest.raises(SystemExit) as exit_info:
        execute_from_command_line(["manage.py", "create_inbound_token", "--name", "mParticle"])

    assert exit_info.value.code != 0
    assert "already exists" in capsys.readouterr().err


def test_an_empty_name_is_refused():
    with pytest.raises(CommandError, match="must not be empty"):
        create("   ")
    assert InboundToken.objects.count() == 0
