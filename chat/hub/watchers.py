"""The sockets here that wait for a closed room to reopen, and the identities a moderator removed.

A room's watchers are the sockets that were subscribed to it when it closed, and those whose
``subscribe`` was refused because it is closed. When a moderator reopens the room
(``services.room_reopen``), every process sends its watchers of that room ``room_reopened``
and forgets them; the bundled client then subscribes again from its last seq. A watcher is
forgotten when its socket closes; a socket watches at most ``RIPPLE_MAX_SUBSCRIPTIONS`` rooms.
"""

from __future__ import annotations

from django.conf import settings

from .. import protocol
from ..logs import log_event
from ..stats import stats
from .stream import fan_out
from .subscriber import Subscriber


class Watchers:
    """Maps a closed room's slug to the sockets here waiting for it to reopen."""

    def __init__(self) -> None:
        self._by_room: dict[str, set[Subscriber]] = {}
        # The same, by socket: what to forget when it closes, and its cap.
        self._by_socket: dict[Subscriber, set[str]] = {}

    def watch(self, subscriber: Subscriber, slug: str) -> None:
        rooms = self._by_socket.setdefault(subscriber, set())
        if slug in rooms or len(rooms) >= settings.RIPPLE_MAX_SUBSCRIPTIONS:
            return
        rooms.add(slug)
        self._by_room.setdefault(slug, set()).add(subscriber)

    def unwatch(self, subscriber: Subscriber, slug: str) -> None:
        rooms = self._by_socket.get(subscriber)
        if rooms is None or slug not in rooms:
            return
        rooms.discard(slug)
        if not rooms:
            del self._by_socket[subscriber]
        room = self._by_room.get(slug)
        if room is not None:
            room.discard(subscriber)
            if not room:
                del self._by_room[slug]

    def forget(self, subscriber: Subscriber) -> None:
        """The socket closed."""
        for slug in list(self._by_socket.get(subscriber, ())):
            self.unwatch(subscriber, slug)

    def count(self, slug: str) -> int:
        return len(self._by_room.get(slug, ()))

    async def reopened(self, slug: str) -> int:
        """Send every watcher of ``slug`` here ``room_reopened``, encoded once; how many."""
        watchers = list(self._by_room.get(slug, ()))
        for subscriber in watchers:
            self.unwatch(subscriber, slug)
        sent = await fan_out(watchers, protocol.room_reopened(room=slug))
        stats.frame_out(protocol.ROOM_REOPENED, sent)
        return sent


async def remove_members(connections: set[Subscriber], keys: set[str]) -> None:
    """Close every socket here that speaks for one of ``keys`` (member ids) with 4403."""
    for subscriber in list(connections):
        if subscriber.identity.member_id in keys:
            log_event("moderator_remove", connection=subscriber.connection_id, user=subscriber.identity.name)
            await subscriber.close(code=protocol.CLOSE_DISCONNECTED_BY_MODERATOR, reason="removed")
