from __future__ import annotations

from collections import Counter

from .base import Member


class MemoryPresenceStore:
    """Presence for a single process: nothing to share, nothing expires."""

    def __init__(self) -> None:
        # Maps room slug to how many (process, member) entries name each member.
        self.rooms: dict[str, Counter[Member]] = {}

    async def add(self, process: str, entries: list[tuple[str, Member]]) -> None:
        for room, member in entries:
            self.rooms.setdefault(room, Counter())[member] += 1

    async def remove(self, process: str, entries: list[tuple[str, Member]]) -> None:
        for room, member in entries:
            counts = self.rooms.get(room)
            if counts is None or counts[member] == 0:
                continue
            counts[member] -= 1
            if counts[member] == 0:
                del counts[member]
            if not counts:
                del self.rooms[room]

    async def members(self, room: str) -> set[Member]:
        return set(self.rooms.get(room, ()))

    async def members_many(self, rooms: list[str]) -> dict[str, set[Member]]:
        return {room: set(self.rooms.get(room, ())) for room in rooms}

    async def refresh(self, process: str, entries: list[tuple[str, Member]]) -> None:
        """Nothing expires in one process."""

    async def ping(self) -> None:
        return None

    async def close(self) -> None:
        self.rooms.clear()
