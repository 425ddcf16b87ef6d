"""Presence: who is in each room, across every process.

Each process writes the members of its own sockets (one entry per room, process and member,
however many tabs the member has open there) and reads the room's union. Entries carry an
expiry that their process keeps pushing forward; a process that dies without cleanup
(kill -9) stops doing so, and its members fall out within ``RIPPLE_PRESENCE_TTL_S``.

Backends: ``memory`` (one process, no Redis) and ``redis`` (any number of processes).
Each event loop has one store (``loop_store``), the one its hub writes to (chat/hub/roster.py);
this package knows nothing of the hub.
"""

import asyncio
from weakref import WeakKeyDictionary

from django.conf import settings

from .base import Member, PresenceStore

# Maps each event loop to its open store: a store's connections belong to the loop that made
# them, and without Redis the store is the only record of the process's members.
_stores: WeakKeyDictionary[asyncio.AbstractEventLoop, PresenceStore] = WeakKeyDictionary()


def presence_store() -> PresenceStore:
    """A new store, by configuration."""
    if settings.REDIS_URL:
        from .redis import RedisPresenceStore

        return RedisPresenceStore(settings.REDIS_URL, ttl_s=settings.RIPPLE_PRESENCE_TTL_S)
    from .memory import MemoryPresenceStore

    return MemoryPresenceStore()


def loop_store() -> PresenceStore:
    """The running event loop's store, opened on first use."""
    loop = asyncio.get_running_loop()
    store = _stores.get(loop)
    if store is None:
        store = _stores[loop] = presence_store()
    return store


async def close_loop_store() -> None:
    """Close the running loop's store (its Redis pool); the next ``loop_store()`` opens another."""
    store = _stores.pop(asyncio.get_running_loop(), None)
    if store is not None:
        await store.close()


def room_members(slugs: list[str]) -> dict[str, set[Member]]:
    """Who is in each room now, for sync code (admin, views): one round trip for all rooms.

    Without Redis this is the serving process's own presence, so it sees members only when
    called inside the daphne process that holds the sockets.
    """
    from asgiref.sync import async_to_sync

    async def read() -> dict[str, set[Member]]:
        # Inside the server, the loop's own store; elsewhere (a fresh loop) one for this read.
        store = _stores.get(asyncio.get_running_loop())
        if store is not None:
            return await store.members_many(slugs)
        store = presence_store()
        try:
            return await store.members_many(slugs)
        finally:
            await store.close()

    return async_to_sync(read)()


__all__ = ["Member", "PresenceStore", "close_loop_store", "loop_store", "presence_store", "room_members"]
