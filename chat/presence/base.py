from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True, slots=True, order=True)
class Member:
    """One person in a room: an opaque stable ``id`` and a display ``name``."""

    name: str
    id: str

    def as_json(self) -> dict[str, str]:
        # ids are identity.Identity.member_id: "u<user id>" for accounts, g/c for guests.
        return {"id": self.id, "name": self.name, "kind": "user" if self.id.startswith("u") else "guest"}


class PresenceStore(Protocol):
    """Where each process writes its rooms' members and reads everyone's."""

    async def add(self, process: str, entries: list[tuple[str, Member]]) -> None:
        """Write this process's ``(room, member)`` entries, all in one round trip."""
        ...

    async def remove(self, process: str, entries: list[tuple[str, Member]]) -> None:
        """Drop this process's ``(room, member)`` entries, all in one round trip."""
        ...

    async def members(self, room: str) -> set[Member]:
        """The room's live members, from every process."""
        ...

    async def members_many(self, rooms: list[str]) -> dict[str, set[Member]]:
        """``members`` for several rooms in one round trip."""
        ...

    async def refresh(self, process: str, entries: list[tuple[str, Member]]) -> None:
        """Keep this process's entries alive for another TTL; drop expired ones."""
        ...

    async def ping(self) -> None:
        """Raise unless the store (Redis) answers."""
        ...

    async def close(self) -> None: ...
