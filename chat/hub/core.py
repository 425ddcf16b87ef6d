"""The per-process room hub: fan-out that costs one channel-layer delivery per process.

Each process (each event loop) joins a room's channel-layer group once, with one channel of
its own, however many of its sockets subscribe to the room. A stored message is sent to the
group once; the hub of every process receives it once and writes the frame, encoded once by
the sender, to each local subscriber.

``RoomHub`` composes the parts, one module each: the room streams (``stream``: ordering, gap
fill, fan-out), presence (``roster``), the periodic duties (``janitor``), moderation
(``moderation``), the fallback's streams (``fallback``) and the drain (``draining``). It owns
what ties them together: the registry of sockets, attach/detach, the channel-layer
memberships and the reader task that dispatches every event.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any
from weakref import WeakKeyDictionary

from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from django.conf import settings

from .. import drain, protocol, selectors
from ..logs import log_event
from ..models import Room
from ..presence import Member, PresenceStore
from ..stats import stats
from . import events, moderation
from .draining import Draining, SocketDrain
from .fallback import FallbackRoutes
from .janitor import HEALTH_TIMEOUT_S, Janitor
from .roster import Roster
from .stream import RoomStream, Subscription
from .subscriber import Subscriber
from .tasks import TaskSet
from .watchers import Watchers, remove_members

logger = logging.getLogger(__name__)


class RoomHub:
    """This event loop's room memberships and the tasks that feed them.

    About 300 lines, earned: what is left here is the ordering that spans the parts (one
    membership lock for every group add/discard, start and stop, a stream's join and its
    release, who owns an arrival while a subscribe is half done); split further, each piece
    would need the others' locks and dicts passed in.
    """

    def __init__(self, layer: Any) -> None:
        self.layer = layer
        self.channel: str | None = None
        self.rooms: dict[str, RoomStream] = {}
        # Every socket of this event loop, subscribed or not (for control events).
        self.connections: set[Subscriber] = set()
        # Orders group_add/group_discard calls, so a leave and a quick re-join never swap.
        self._membership = asyncio.Lock()
        self._reader: asyncio.Task | None = None
        self._janitor: asyncio.Task | None = None
        self._tasks = TaskSet()
        self.process_id = stats.process_id
        self.roster = Roster(rooms=self.rooms, layer=layer, process_id=self.process_id, tasks=self._tasks)
        # False from a failed health check (Redis away) until one succeeds again.
        self.healthy = True
        self._drain = SocketDrain(self.connections)
        self._fallback = FallbackRoutes()
        # Sockets here waiting for a closed room to reopen (chat/hub/watchers.py).
        self.watchers = Watchers()

    @property
    def presence(self) -> PresenceStore:
        return self.roster.store

    # Connections.

    async def connect(self, consumer: Subscriber) -> None:
        """Count a socket in; the first one starts this loop's channel and tasks.

        Raises when Redis does not answer (the socket is then closed with 4503): when this
        starts the hub, and while the health check finds Redis away.
        """
        if drain.is_draining():
            raise Draining()
        if self.channel is None or not self.healthy:
            async with asyncio.timeout(HEALTH_TIMEOUT_S):
                await self.presence.ping()
        drain.install_sigterm_handler(asyncio.get_running_loop(), self.drain)
        self.connections.add(consumer)
        try:
            await self._ensure_started()
        except BaseException:
            self.connections.discard(consumer)
            raise

    async def disconnect(self, consumer: Subscriber) -> None:
        """Count a socket out (after detaching its rooms); the last one stops everything.

        A drain hears that the socket left only once that is done: it lets the server stop the
        process next, and the hub's stop (the presence departures, the Redis pools) would be
        cancelled half way, and the socket's own ``disconnect`` never logged.
        """
        self.connections.discard(consumer)
        self.watchers.forget(consumer)
        self._drain.socket_leaving()
        try:
            if not self.connections and not self.rooms:
                await self._stop()
        finally:
            self._drain.socket_left()

    async def drain(self, window_s: float) -> None:
        """Send every socket here away with 4512 over ``window_s`` (chat/hub/draining.py)."""
        await self._drain.drain(window_s)

    # Subscribers.

    async def attach(
        self,
        consumer: Subscriber,
        *,
        slug: str,
        room_id: int,
        since: int | None,
        ref: Any,
        member: Member,
        private: bool = True,
    ) -> None:
        """Send ``consumer`` the ``subscribed`` frame, then every later message of the room."""
        self.watchers.unwatch(consumer, slug)
        stream = self.rooms.get(slug)
        first = stream is None
        if stream is None:
            stream = self.rooms[slug] = RoomStream(slug, room_id, tasks=self._tasks, private=private)
        else:
            # Only ever made private here (a Room row read before the room became private
            # must not undo a room.access event); made public again on the next join.
            stream.private = stream.private or private
        stream.attaching += 1
        arrived = False
        try:
            if first:
                await self._join(stream)
            else:
                await stream.joined.wait()
                if stream.join_error is not None:
                    raise RuntimeError(f"joining room {slug} failed") from stream.join_error
            await self.roster.arrive(slug, member)
            arrived = True
            limits = {
                "history_size": settings.RIPPLE_HISTORY_SIZE,
                "resume_limit": settings.RIPPLE_RESUME_LIMIT,
                "max_bytes": settings.RIPPLE_MAX_HISTORY_BYTES,
            }
            # A room live here usually has its history in the ring: no database read. (A look
            # without the lock: it is taken again below, where the answer counts.)
            history = None
            version = stream.recent_version
            if stream.history(since, **limits) is None:
                history = await database_sync_to_async(selectors.message_history)(
                    room_id=room_id, room_slug=slug, since=since, **limits
                )
            async with stream.lock:
                assert stream.delivered is not None
                remembered = stream.history(since, **limits) if history is None else None
                if history is None and remembered is None:
                    # The ring moved on meanwhile (or was emptied): read the database after all.
                    version = stream.recent_version
                    history = await database_sync_to_async(selectors.message_history)(
                        room_id=room_id, room_slug=slug, since=since, **limits
                    )
                if history is not None:
                    start = history.last_seq
                    behind = await stream.delivered_after(start)
                    stream.seed_recent(history, version)
                else:
                    assert remembered is not None
                    start, behind = stream.delivered, []
                # The newcomer gets the list this process's subscribers have, itself added; the
                # next batched sync (other arrivals in this batch window included) goes to all
                # of them alike, as a difference.
                # Only the room's first subscriber here reads the store: with 1,000 members a
                # read per subscribe made a mass connect quadratic (bench capacity).
                if not stream.subscribers:
                    # With the newcomer, whose arrival may not be written yet (roster.py).
                    stream.members = await self.presence.members(slug) | {member}
                stream.subscribers[consumer] = Subscription(max(start, stream.delivered), member)
                arrived = False  # the subscription owns the arrival now; detach undoes it
                members = stream.members_json(including=member)
                if history is not None:
                    subscribed = protocol.subscribed(
                        room=slug,
                        messages=history.messages,
                        last_seq=start,
                        complete=history.complete,
                        members=members,
                        ref=ref,
                    )
                else:
                    assert remembered is not None
                    subscribed = protocol.subscribed(
                        room=slug,
                        message_texts=remembered[0],
                        last_seq=start,
                        complete=remembered[1],
                        members=members,
                        ref=ref,
                    )
                await stream.send_subscribed(consumer, subscribed, behind)
        finally:
            stream.attaching -= 1
            if arrived:
                await self.roster.depart(slug, member)
            await self._maybe_leave(stream)

    async def detach(self, consumer: Subscriber, slug: str) -> None:
        stream = self.rooms.get(slug)
        if stream is None:
            return
        subscription = stream.subscribers.pop(consumer, None)
        if subscription is not None:
            await self.roster.depart(slug, subscription.member)
        await self._maybe_leave(stream)

    async def find_room(self, slug: str) -> Room | None:
        """The room's row (None: no such room), for a subscribe.

        A room live here keeps the row it read after joining the group, until a moderation event
        or the access re-check lets it go (``RoomStream.forget_row``): no database read then.
        Its ``last_seq`` is not kept up to date.
        """
        stream = self.rooms.get(slug)
        if stream is None or stream.delivered is None:
            return await database_sync_to_async(selectors.room_find)(slug=slug)
        if stream.row is not None:
            return stream.row
        version = stream.row_version
        row = await database_sync_to_async(selectors.room_find)(slug=slug)
        if row is not None:
            stream.keep_row(row, version)
        return row

    async def offer(self, slug: str, seq: int, text: str, stored_at: float | None = None) -> None:
        """Take one message frame from the channel layer (or this process) for delivery."""
        stream = self.rooms.get(slug)
        if stream is not None:
            await stream.offer(seq, text, stored_at)

    # The HTTP fallback's streams (chat/sse.py).

    async def register_stream(
        self, connection_id: str, session_tag: str, token: str, inbox: asyncio.Queue[dict[str, Any]]
    ) -> bool:
        """Route frames POSTed for ``connection_id`` (on any worker) to ``inbox``; False if the hub
        is not running, so there is no channel to route them to."""
        if self.channel is None:
            return False
        self._fallback.add(connection_id, session_tag, token, inbox)
        await self.layer.group_add(events.connection_group(connection_id), self.channel)
        return True

    async def unregister_stream(self, connection_id: str) -> None:
        self._fallback.remove(connection_id)
        if self.channel is not None:
            try:
                await self.layer.group_discard(events.connection_group(connection_id), self.channel)
            except Exception:
                logger.debug("leaving a fallback stream's group failed", exc_info=True)

    # Moderation.

    async def access_changed(self, stream: RoomStream) -> None:
        """Send away the subscribers the room no longer allows (chat/selectors.room_allows)."""
        private, members = await database_sync_to_async(selectors.room_member_ids)(room_id=stream.room_id)
        stream.private = private
        if stream.live:
            stats.room_members(stream.slug, members=len(stream.members), private=private)
        if not private:
            return
        await self._end_subscriptions(
            stream, await moderation.revoke_access(stream, members), "access_revoked"
        )

    async def _end_subscriptions(
        self, stream: RoomStream, ended: moderation.Ended, event: str | None
    ) -> None:
        """Let go of subscriptions a moderation event ended, then of the room if none is left."""
        for consumer, subscription in ended:
            consumer.forget_room(stream.slug)
            if event is not None:
                log_event(
                    event, connection=consumer.connection_id, user=consumer.identity.name, room=stream.slug
                )
            await self.roster.depart(stream.slug, subscription.member)
        await self._maybe_leave(stream)

    # Membership and the tasks behind it.

    async def _join(self, stream: RoomStream) -> None:
        try:
            await self._ensure_started()
            async with self._membership:
                assert self.channel is not None
                await self.layer.group_add(events.room_group(stream.slug), self.channel)
            # Read after joining the group: a moderation event from here on reaches the stream
            # (forget_row), so the row kept for later subscribes is never older than the last one.
            version = stream.row_version
            row = await database_sync_to_async(selectors.room_row)(room_id=stream.room_id)
            if row is not None:
                stream.keep_row(row, version)
            async with stream.lock:
                stream.delivered = stream.recent_from = row.last_seq if row is not None else 0
                await stream.release_ready()
        except BaseException as error:
            stream.join_error = error
            stream.joined.set()
            if self.rooms.get(stream.slug) is stream:
                del self.rooms[stream.slug]
                stream.retire()
                await self._leave(stream.slug)
            raise
        stream.joined.set()

    async def _maybe_leave(self, stream: RoomStream) -> None:
        if stream.subscribers or stream.attaching or self.rooms.get(stream.slug) is not stream:
            return
        del self.rooms[stream.slug]
        stream.retire()
        await self._leave(stream.slug)

    async def _leave(self, slug: str) -> None:
        """Drop this process from the room's group."""
        async with self._membership:
            if slug not in self.rooms and self.channel is not None:
                try:
                    await self.layer.group_discard(events.room_group(slug), self.channel)
                except Exception:
                    logger.warning("leaving room %s failed", slug, exc_info=True)
        if slug not in self.rooms:  # not a new stream of the same room, joined meanwhile
            stats.room_gone(slug)
        if not self.connections and not self.rooms:
            await self._stop()

    async def _ensure_started(self) -> None:
        async with self._membership:
            if self.channel is not None:
                return
            self.channel = await self.layer.new_channel()
            await self.layer.group_add(events.CONTROL_GROUP, self.channel)
            self.roster.keep_open()
            loop = asyncio.get_running_loop()
            self._reader = loop.create_task(self._read(), name="ripple-hub-reader")
            self._janitor = loop.create_task(Janitor(self).run(), name="ripple-hub-janitor")

    async def _stop(self) -> None:
        async with self._membership:
            if self.channel is not None:
                try:
                    await self.layer.group_discard(events.CONTROL_GROUP, self.channel)
                except Exception:
                    logger.warning("leaving the control group failed", exc_info=True)
            tasks = [
                task for task in (self._reader, self._janitor, *self._tasks.running()) if task is not None
            ]
            self._reader = self._janitor = None
            # A cancelled receive ends the channel's life in some layers (the pub/sub layer
            # drops it), so the next start takes a new one.
            self.channel = None
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            # The presence store's connections (a Redis pool) close with the hub, once the
            # departures still in their grace period are written.
            await self.roster.close()

    async def _read(self) -> None:
        """Receive this process's channel: one event per message per room joined here."""
        assert self.channel is not None
        while True:
            try:
                event = await self.layer.receive(self.channel)
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.warning("channel layer receive failed; retrying in 1 s", exc_info=True)
                await asyncio.sleep(1.0)
                continue
            try:
                await self._dispatch(event)
            except Exception:
                logger.exception("handling a %s event failed", event.get("type"))

    async def _dispatch(self, event: dict[str, Any]) -> None:
        kind = event.get("type")
        if kind == events.EVENT_MESSAGE:
            await self.offer(event["room"], event["seq"], event["text"], event.get("stored_at"))
        elif kind == events.EVENT_DISCONNECT_USER:
            await moderation.disconnect_user(self.connections, event["user_id"])
        elif kind == events.EVENT_CONNECTION_FRAME:
            self._fallback.route(event)
        elif kind == events.EVENT_DRAIN:
            if event.get("process") in (None, self.process_id):
                log_event("drain_requested", signal="manage.py drain", window_s=event["window_s"])
                asyncio.get_running_loop().create_task(self.drain(event["window_s"]))
        elif kind == events.EVENT_END_SESSION:
            await moderation.end_session(self.connections, event["session"])
        elif kind == events.EVENT_REOPENED:
            if (reopened := self.rooms.get(event["room"])) is not None:
                reopened.forget_row()
            await self.watchers.reopened(event["room"])
        elif kind == events.EVENT_REMOVE_MEMBERS:
            await remove_members(self.connections, set(event["keys"]))
        elif (stream := self.rooms.get(event.get("room", ""))) is not None:
            await self._dispatch_room(stream, kind, event)

    async def _dispatch_room(self, stream: RoomStream, kind: str | None, event: dict[str, Any]) -> None:
        if kind in events.ROW_EVENTS:
            stream.forget_row()
        if kind == events.EVENT_PRESENCE:
            if not self.roster.announced_here(event):
                self.roster.schedule_sync(stream)
        elif kind == events.EVENT_DELETED:
            await moderation.delete_messages(stream, event["seqs"])
        elif kind == events.EVENT_TYPING:
            await stream.send_others(event["text"], protocol.TYPING, event["sender"])
        elif kind == events.EVENT_CLOSED:
            ended = await moderation.close_room(stream, event.get("reason", ""))
            # They learn of a reopen without a reload (chat/hub/watchers.py).
            for consumer, _ in ended:
                self.watchers.watch(consumer, stream.slug)
            await self._end_subscriptions(stream, ended, None)
        elif kind == events.EVENT_ACCESS:
            await self.access_changed(stream)
        elif kind == events.EVENT_ROOM_DELETED:
            await self._end_subscriptions(stream, await moderation.remove_room(stream), "room_deleted")


# One hub per event loop: daphne runs every socket of a process on one loop, and each test
# gets a loop of its own.
_hubs: WeakKeyDictionary[asyncio.AbstractEventLoop, RoomHub] = WeakKeyDictionary()


def get_hub() -> RoomHub:
    loop = asyncio.get_running_loop()
    hub = _hubs.get(loop)
    if hub is None:
        hub = _hubs[loop] = RoomHub(get_channel_layer())
        events.local_hubs[loop] = hub
    return hub
