"""How Customer.io knows a person: an `id` or an `email` (the client's own type; it imports nothing of ours)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

IdentifierKind = Literal["id", "email"]


@dataclass(frozen=True)
class Identifier:
    """Who a person is to Customer.io: `kind` is the v2 `identifiers` key and the segment
    endpoints' `id_type` ("id" or "email"); `value` is sent as it is stored."""

    kind: IdentifierKind
    value: str

    def __post_init__(self) -> None:
        if self.kind not in ("id", "email"):
            raise ValueError(f"unknown identifier kind {self.kind!r}; expected 'id' or 'email'")
