"""Encryption at rest for Customer.io API keys.

`ENCRYPTION_KEYS` is a list of Fernet keys, newest first: the first encrypts, every key
decrypts (cryptography's MultiFernet), so keys can be rotated without downtime. A missing
or wrong key is a loud `EncryptionError`: ciphertext is never handed on as if it were a key.
"""

from __future__ import annotations

from functools import lru_cache

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings
from django.db import models
from django.db.models.query_utils import DeferredAttribute
from django.views.decorators.debug import sensitive_variables


class EncryptionError(Exception):
    """The encryption keys are missing, malformed, or cannot decrypt a stored value."""


class Ciphertext(str):
    """A value as stored in the database: a Fernet token, never a usable secret."""


@lru_cache(maxsize=4)
def _multifernet(keys: tuple[str, ...]) -> MultiFernet:
    if not keys:
        raise EncryptionError(
            "ENCRYPTION_KEYS is not set: API keys cannot be encrypted or decrypted. "
            "Generate one with `python -c 'from cryptography.fernet import Fernet; "
            "print(Fernet.generate_key().decode())'`."
        )
    try:
        return MultiFernet([Fernet(key.encode()) for key in keys])
    except ValueError as exc:
        raise EncryptionError(f"ENCRYPTION_KEYS holds a malformed Fernet key ({exc}).") from None


def current_fernet() -> MultiFernet:
    return _multifernet(tuple(k.strip() for k in settings.ENCRYPTION_KEYS if k.strip()))


@sensitive_variables("plaintext")  # kept out of error reports
def encrypt(plaintext: str) -> Ciphertext:
    return Ciphertext(current_fernet().encrypt(plaintext.encode()).decode())


def decrypt(token: str) -> str:
    try:
        return current_fernet().decrypt(token.encode()).decode()
    except InvalidToken:
        raise EncryptionError(
            "A stored API key cannot be decrypted with any key in ENCRYPTION_KEYS "
            "(wrong key, or the key it was encrypted with was removed)."
        ) from None


def reencrypt(token: str) -> Ciphertext:
    """Re-encrypt a stored token under the newest key (for key rotation)."""
    try:
        return Ciphertext(current_fernet().rotate(token.encode()).decode())
    except InvalidToken:
        raise EncryptionError(
            "A stored API key cannot be decrypted with any key in ENCRYPTION_KEYS, so it cannot be re-encrypted."
        ) from None


class _DecryptingAttribute(DeferredAttribute):
    """Decrypts on attribute access, so loading rows (lists, filters) never needs the key."""

    def __get__(self, instance, cls=None):  # type: ignore[no-untyped-def]
        value = super().__get__(instance, cls)
        if isinstance(value, Ciphertext):
            return decrypt(value)
        return value

    def __set__(self, instance, value):  # type: ignore[no-untyped-def]
        # Defining __set__ makes this a data descriptor, so __get__ runs even though the
        # value lives in the instance's __dict__.
        instance.__dict__[self.field.attname] = value


class EncryptedTextField(models.TextField):
    """A text column that only ever holds Fernet ciphertext.

    Reading the attribute returns the plaintext (or raises `EncryptionError`);
    `value_from_object` (forms, serializers) only ever sees the ciphertext.
    """

    descriptor_class = _DecryptingAttribute

    def from_db_value(self, value, expression, connection):  # type: ignore[no-untyped-def]
        return Ciphertext(value) if value else value

    def pre_save(self, model_instance, add):  # type: ignore[no-untyped-def]
        # The raw value: an unchanged key is written back as the same ciphertext.
        return model_instance.__dict__.get(self.attname)

    @sensitive_variables("value")
    def get_prep_value(self, value):  # type: ignore[no-untyped-def]
        if value is None or value == "" or isinstance(value, Ciphertext):
            return None if value is None else str(value)
        return str(encrypt(str(value)))

    def value_from_object(self, obj):  # type: ignore[no-untyped-def]
        value = obj.__dict__.get(self.attname)
        if value and not isinstance(value, Ciphertext):
            return encrypt(value)
        return value
