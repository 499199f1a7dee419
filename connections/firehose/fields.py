"""Reading the fields of a decoded Firehose message, each error naming the field's path.

Pure Python (no Django). Every problem is a `MessageError` naming the path of the offending
field, e.g. `user_profiles[3].audiences[0].audience_id: must be a positive integer`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

# The longest values the database holds (connections.models: Audience.name, Profile.*);
# a test holds these equal to the model fields.
AUDIENCE_NAME_MAX = 100
CUSTOMER_ID_MAX = 255
EMAIL_MAX = 254
NAME_MAX = 150
MPID_MAX = 64
MESSAGE_ID_MAX = 64
AUDIENCE_ID_MAX = 2**63 - 1  # a PostgreSQL bigint


class MessageError(ValueError):
    """The message is not one the product can accept; `str()` says what and where."""

    def __init__(self, path: str, problem: str) -> None:
        self.path = path
        self.problem = problem
        super().__init__(f"{path}: {problem}" if path else problem)


def shown(value: str, limit: int = 40) -> str:
    """A value quoted for an error message, cut short: errors never echo a whole body back."""
    return repr(value if len(value) <= limit else value[:limit] + "…")


def json_type(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object"


def check_storable(value: str, path: str) -> None:
    """Refuse what no database can store as text: NUL characters and unpaired surrogates (from `\\ud800`)."""
    if "\x00" in value:
        raise MessageError(path, "must not contain a NUL character (\\u0000)")
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise MessageError(path, "must not contain an unpaired UTF-16 surrogate") from None


class Fields:
    """A JSON object and where it sits in the message, for error messages that name the field."""

    def __init__(self, data: Mapping[str, Any], path: str) -> None:
        self.data = data
        self.path = path

    def at(self, key: str) -> str:
        return f"{self.path}.{key}" if self.path else key

    def raw(self, key: str) -> Any:
        return self.data.get(key)

    def _present(self, key: str, required: bool) -> Any:
        value = self.data.get(key)
        if value is None and required:
            raise MessageError(self.at(key), "is required")
        return value

    def string(self, key: str, required: bool = True, max_length: int | None = None, allow_empty: bool = True) -> Any:
        value = self.data.get(key)
        if value is None:
            if required:
                raise MessageError(self.at(key), "is required")
            return None
        if not isinstance(value, str):
            raise MessageError(self.at(key), f"must be a string, not {json_type(value)}")
        if "\x00" in value or not value.isascii():  # the common case (ASCII, no NUL) needs no path
            check_storable(value, self.at(key))
        if not allow_empty and not value.strip():
            raise MessageError(self.at(key), "must not be empty")
        if max_length is not None and len(value) > max_length:
            raise MessageError(self.at(key), f"is {len(value)} characters long; at most {max_length} are allowed")
        return value

    def integer(self, key: str) -> int:
        value = self._present(key, True)
        if not isinstance(value, int) or isinstance(value, bool):
            raise MessageError(self.at(key), f"must be an integer, not {json_type(value)}")
        return value

    def choice(self, key: str, allowed: tuple[str, ...], what: str = "action", required: bool = True) -> Any:
        value = self.string(key, required=required)
        if value is None:
            return None
        if value not in allowed:
            raise MessageError(self.at(key), f"unknown {what} {shown(value)}; expected one of {', '.join(allowed)}")
        return str(value)

    def object(self, key: str, required: bool = True) -> Fields | None:
        value = self._present(key, required)
        if value is None:
            return None
        if not isinstance(value, dict):
            raise MessageError(self.at(key), f"must be an object, not {json_type(value)}")
        return Fields(value, self.at(key))

    def required_object(self, key: str) -> Fields:
        found = self.object(key)
        assert found is not None  # required: `object` raised otherwise
        return found

    def objects(self, key: str, required: bool = True) -> list[Fields] | None:
        value = self._present(key, required)
        if value is None:
            return None
        if not isinstance(value, list):
            raise MessageError(self.at(key), f"must be an array, not {json_type(value)}")
        items = []
        path = self.at(key)
        for n, item in enumerate(value):
            if not isinstance(item, dict):
                raise MessageError(f"{path}[{n}]", f"must be an object, not {json_type(item)}")
            items.append(Fields(item, f"{path}[{n}]"))
        return items

    def string_map(self, key: str, required: bool = True) -> dict[str, str] | None:
        value = self._present(key, required)
        if value is None:
            return None
        if not isinstance(value, dict):
            raise MessageError(self.at(key), f"must be an object, not {json_type(value)}")
        for name, item in value.items():
            if not isinstance(item, str):
                raise MessageError(f"{self.at(key)}.{name}", f"must be a string, not {json_type(item)}")
            check_storable(name, self.at(key))
            check_storable(item, f"{self.at(key)}.{name}")
        return dict(value)
