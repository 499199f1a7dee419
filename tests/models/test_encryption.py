import pytest
from cryptography.fernet import Fernet
from django.db import connection as db

from connections.crypto import EncryptionError
from connections.models import Connection
from tests.support.factories import ConnectionFactory

pytestmark = pytest.mark.django_db


def raw_api_key_column(pk: int) -> str:
    with db.cursor() as cursor:
        cursor.execute("SELECT api_key FROM connections_connection WHERE id = %s", [pk])
        return cursor.fetchone()[0]


def test_the_api_key_round_trips():
    conn = ConnectionFactory(api_key="sk-live-abcdef123456")
    assert Connection.objects.get(pk=conn.pk).api_key == "sk-live-abcdef123456"


def test_the_database_column_never_holds_the_plaintext():
    conn = ConnectionFactory(api_key="sk-live-abcdef123456")
    raw = raw_api_key_column(conn.pk)
    assert "sk-live-abcdef123456" not in raw
    assert raw.startswith("gAAAA")  # a Fernet token


def test_saving_other_fields_keeps_the_same_ciphertext():
    conn = ConnectionFactory(api_key="sk-live-abcdef123456")
    before = raw_api_key_column(conn.pk)
    loaded = Connection.objects.get(pk=conn.pk)
    loaded.name = "Renamed"
    loaded.save()
    assert raw_api_key_column(conn.pk) == before


def test_it_shows_only_the_last_four_characters():
    conn = ConnectionFactory(api_key="sk-live-abcdef123456")
    assert Connection.objects.get(pk=conn.pk).masked_api_key == "…3456"


def test_a_second_key_still_decrypts_after_rotation(settings):
    old = settings.ENCRYPTION_KEYS[0]
    conn = ConnectionFactory(api_key="sk-live-rotate-me")
    settings.ENCRYPTION_KEYS = [Fernet.generate_key().decode(), old]
    assert Connection.objects.get(pk=conn.pk).api_key == "sk-live-rotate-me"


def test_a_wrong_key_raises_instead_of_returning_ciphertext(settings):
    conn = ConnectionFactory(api_key="sk-live-abcdef123456")
    settings.ENCRYPTION_KEYS = [Fernet.generate_key().decode()]
    loaded = Connection.objects.get(pk=conn.pk)  # loading rows needs no key
    with pytest.raises(EncryptionError, match="cannot be decrypted"):
        _ = loaded.api_key


def test_a_missing_key_raises_a_clear_error(settings):
    conn = ConnectionFactory(api_key="sk-live-abcdef123456")
    settings.ENCRYPTION_KEYS = []
    with pytest.raises(EncryptionError, match="ENCRYPTION_KEYS is not set"):
        _ = Connection.objects.get(pk=conn.pk).api_key
