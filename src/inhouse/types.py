"""Small value types shared across the package. Imports nothing from the package."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

Role = Literal["admin", "member"]


@dataclass(frozen=True)
class Actor:
    """Who is calling: resolved from an API key at the edge, passed explicitly to every core call."""

    key_id: str
    name: str
    role: Role = "member"
    user_id: str | None = None
    groups: frozenset[str] = field(default_factory=frozenset)
    # The actions a scoped key is limited to (e.g. {"apps:support"} for an embedded widget); None: no limit.
    scopes: frozenset[str] | None = None

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"


# Used only when the server runs with --allow-unauthenticated on loopback.
ANONYMOUS_ADMIN = Actor(key_id="key_anonymous", name="anonymous (unauthenticated loopback)", role="admin")
