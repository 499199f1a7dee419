"""`manage.py rotate_encryption_key`: every stored API key re-encrypted under the newest key (SPEC §8)."""

from io import StringIO

import pytest
from cryptography.fernet import Fernet
from django.core.management import call_command
from django.core.management.base import CommandError

from connections.models import Connection
from tests.support.factories import ConnectionFactory

pytestmark = pytest.mark.django_db

KEY_A, KEY_B, KEY_C = (Fernet.generate_key().decode() for _ in range(3))


def raw_api_key(connection):
    return Connection.objects.filter(pk=connection.pk).values_list("api_key", flat=True).get()


def rotate():
    out = StringIO()
    call_command("rotate_encryption_key", stdout=out)
    return out.getvalue()


def test_keys_read_back_under_the_new_key_alone_after_rotation(settings):
    settings.ENCRYPTION_KEYS = [KEY_A]
    connection = ConnectionFactory(name="Main", api_key="sk-live-1234")
    other = ConnectionFactory(name="Other", api_key="sk-live-5678")
    before = raw_api_key(connection)

    settings.ENCRYPTION_KEYS = [KEY_B, KEY_A]
    out = rotate()

    assert "Re-encrypted 2 API keys under the newest encryption key." in out
    settings.ENCRYPTION_KEYS = [KEY_B]
    assert Connection.objects.get(pk=connection.pk).api_key == "sk-live-1234"
    assert Connection.objects.get(pk=other.pk).api_key == "sk-live-5678"
    assert raw_api_key(connection) != before
    assert Fernet(KEY_B.encode()).decrypt(raw_api_key(connection).encode()) == b"sk-live-1234"
    assert Connection.objects.get(pk=connection.pk).api_key_last4 == "1234"


def test_a_key_that_cannot_be_decrypted_changes_nothing_and_names_the_connection(settings):
    settings.ENCRYPTION_KEYS = [KEY_A]
    readable = ConnectionFactory(name="Readable", api_key="sk-live-1234")
    settings.ENCRYPTION_KEYS = [KEY_C]
    lost = ConnectionFactory(name="Lost key", api_key="sk-live-9999")
    raw_before = {c.pk: raw_api_key(c) for c in (readable, lost)}

    settings.ENCRYPTION_KEYS = [KEY_B, KEY_A]
    with pytest.raises(CommandError, match=f"connection 'Lost key' \\(id {lost.pk}\\) cannot be decrypted") as exc:
        rotate()

    assert exc.value.returncode == 1
    assert "sk-live" not in str(exc.value)
    assert {c.pk: raw_api_key(c) for c in (readable, lost)} == raw_before


def test_missing_encryption_keys_are_a_clear_error(settings):
    settings.ENCRYPTION_KEYS = [KEY_A]
    ConnectionFactory()
    settings.ENCRYPTION_KEYS = []

    with pytest.raises(CommandError, match="ENCRYPTION_KEYS is not set"):
        rotate()


def test_no_connections_is_zero_keys(settings):
    settings.ENCRYPTION_KEYS = [KEY_A]
    assert "Re-encrypted 0 API keys" in rotate()
