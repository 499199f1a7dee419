"""``manage.py rotate_encryption_key``: re-encrypt every stored API key under the newest key."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from connections.crypto import EncryptionError
from connections.services.connection.key_rotation import rotate_api_keys


class Command(BaseCommand):
    help = (
        "Re-encrypt every connection's API key under the newest (first) key in ENCRYPTION_KEYS, in one "
        "transaction. To rotate: put a new key first in ENCRYPTION_KEYS (keep the old ones after it), restart, "
        "run this, then remove the old keys. If any key cannot be decrypted, nothing is changed."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            count = rotate_api_keys()
        except EncryptionError as error:
            raise CommandError(str(error)) from None
        keys = [k for k in settings.ENCRYPTION_KEYS if k.strip()]
        self.stdout.write(self.style.SUCCESS(f"Re-encrypted {count} API keys under the newest encryption key."))
        if len(keys) > 1:
            self.stdout.write(
                f"ENCRYPTION_KEYS still holds {len(keys) - 1} older keys; once every process runs with the new "
                "key first, they can be removed."
            )
