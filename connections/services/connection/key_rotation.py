"""Re-encrypting every stored API key under the newest key in ENCRYPTION_KEYS (key rotation, SPEC §8).

Works on the stored ciphertext only (`crypto.reencrypt`), so plaintext keys never pass
through here. All or nothing: one key that no configured key can decrypt stops it before
anything is written.
"""

from __future__ import annotations

from django.db import transaction

from connections import crypto
from connections.crypto import EncryptionError
from connections.models import Connection


@transaction.atomic
def rotate_api_keys() -> int:
    """Returns how many keys were re-encrypted; raises EncryptionError naming every key it cannot read."""
    crypto.current_fernet()  # missing or malformed ENCRYPTION_KEYS: fail before touching a row
    rows = Connection.objects.select_for_update().order_by("pk").values_list("pk", "name", "api_key")
    rotated: dict[int, crypto.Ciphertext] = {}
    unreadable: list[str] = []
    for pk, name, token in rows:
        if not token:
            continue
        try:
            rotated[pk] = crypto.reencrypt(token)
        except EncryptionError:
            unreadable.append(f"{name!r} (id {pk})")
    if unreadable:
        raise EncryptionError(
            f"The API key of connection {', '.join(unreadable)} cannot be decrypted with any key in "
            "ENCRYPTION_KEYS (was the key it was encrypted with removed?). Nothing was changed: add that "
            "key back to ENCRYPTION_KEYS, after the new one, and run this again."
        )
    for pk, token in rotated.items():
        # The raw column, through the queryset: the model's attribute would decrypt it.
        Connection.objects.filter(pk=pk).update(api_key=token)
    return len(rotated)
