"""Presence: who is in each room, across every process.

Each process writes the members of its own sockets (one entry per room, process and member,
however many tabs the member has open there) and reads the room's union. Entries carry an
expiry that their process keeps pushing forward; a process that dies without cleanup
(kill -9) stops doing so, and its members fall out within ``RIPPLE_PRESENCE_TTL_S``.

Backends: ``memory`` (one process, no Redis) and ``redis`` (any number of processes).
"""

from django.conf import settings

from .base import Member, PresenceStore


def presence_store() -> PresenceStore:
    """A store for the running event loop's hub, by configuration."""
    if settings.REDIS_URL:
        from .redis import RedisPresenceStore

        return RedisPresenceStore(settings.REDIS_URL, ttl_s=settings.RIPPLE_PRESENCE_TTL_S)
    from .memory import MemoryPresenceStore

    return MemoryPresenceStore()


def room_members(slugs: list[str]) -> dict[str, set[Member]]:
    """Who is in each room now, for sync code (admin, views): one round trip for all rooms.

    Without Redis this is the serving process's own presence, so it sees members only when
    called inside the daphne process that holds the sockets.
    """
    from asgiref.sync import async_to_sync

    from ..hub import get_hub

    async def read() -> dict[str, set[Member]]:
        return await get_hub().presence.members_many(slugs)

    return async_to_sync(read)()


__all__ = ["Member", "PresenceStore", "presence_store", "room_members"]
