"""The per-process room hub: fan-out that costs one channel-layer delivery per process.

Each process (each event loop) joins a room's channel-layer group once, with one channel of
its own, however many of its sockets subscribe to the room. A stored message is sent to the
group once; the hub of every process receives it once and writes the frame, encoded once by
the sender, to each local subscriber.

The hub also restores order and fills holes. It hands out a room's messages strictly by
``seq``: an early arrival waits (``RIPPLE_GAP_FILL_S``) for the ones before it, after which
they are read from the database; and every ``RIPPLE_TAIL_CHECK_S`` it compares each room's
last delivered ``seq`` with the database, so a message the channel layer dropped (it is
at-most-once) still reaches every subscriber, once and in order.

Presence rides on the same memberships: the hub writes its sockets' members to the presence
store (see ``chat.presence``), tells the room's group when that changed, and every hub re-reads
the room and pushes the difference to its subscribers as one ``presence`` frame.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import random
import time
from collections import Counter, deque
from typing import Any
from weakref import WeakKeyDictionary

from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from django.conf import settings

from . import dashboard, drain, protocol, selectors
from .logs import log_event
from .presence import Member, PresenceStore, presence_store
from .stats import stats

logger = logging.getLogger(__name__)

EVENT_MESSAGE = "room.message"
# "The room's presence changed somewhere": each hub re-reads the room's members (debounced).
EVENT_PRESENCE = "room.presence"
# Moderation, per room: messages deleted, room closed.
EVENT_DELETED = "room.deleted"
EVENT_CLOSED = "room.closed"
# A private room's members changed (or the room became private): re-check every subscriber.
EVENT_ACCESS = "room.access"
# A moderator deleted the room and its messages (services.room_delete): every subscriber leaves.
EVENT_ROOM_DELETED = "room.removed"
# Process-wide control events, sent to every hub through CONTROL_GROUP.
CONTROL_GROUP = "ripple.control"
EVENT_DISCONNECT_USER = "control.disconnect_user"
# A session ended (logout): its sockets close with 4401.
EVENT_END_SESSION = "control.end_session"
# A client frame POSTed to any worker for the HTTP fallback stream it belongs to (chat/sse.py).
EVENT_CONNECTION_FRAME = "conn.frame"
# manage.py drain: the named processes (or all) send their sockets away (chat/drain.py).
EVENT_DRAIN = "control.drain"
# After the drain window, sockets still open are given this long to finish closing.
DRAIN_GRACE_S = 2.0


class Draining(Exception):
    """This process is draining: the socket should go to another worker (4512)."""


# How many encoded frames each room keeps for subscribers that attach mid-burst.
RECENT_FRAMES = 512
# Presence batching stretches in large rooms (see presence_batch_s).
PRESENCE_BATCH_MEMBERS = 100
PRESENCE_BATCH_MAX_FACTOR = 10.0
# The channel layer forgets group members after a day unless they are added again.
GROUP_REFRESH_S = 3600.0
# Redis must answer a PING within this, or the hub sends its sockets away with 4503.
HEALTH_TIMEOUT_S = 2.0


def room_group(slug: str) -> str:
    return f"room.{slug}"


class Subscription:
    """One socket's subscription to a room on this process."""

    __slots__ = ("mark", "member")

    def __init__(self, mark: int, member: Member) -> None:
        # The seq the socket had when it attached: it is sent every message above that, and
        # since deliveries only go up, the mark never needs moving.
        self.mark = mark
        self.member = member


def presence_batch_s(members: int) -> float:
    """How long a room's presence changes are gathered before they go out as one frame.

    ``RIPPLE_PRESENCE_BATCH_S`` up to ``PRESENCE_BATCH_MEMBERS`` members, then longer in
    proportion (at most ``PRESENCE_BATCH_MAX_FACTOR`` times): every member gets every frame, so
    a fixed window made a mass connect cost members x joins frames (bench capacity: 10,000
    sockets in 10 rooms connected at ~30/s, the worker busy sending presence frames).
    """
    factor = min(PRESENCE_BATCH_MAX_FACTOR, max(1.0, members / PRESENCE_BATCH_MEMBERS))
    return settings.RIPPLE_PRESENCE_BATCH_S * factor


class RoomStream:
    """One room as this process sees it: local subscribers and the ordered message stream."""

    def __init__(self, slug: str, room_id: int, *, private: bool = True) -> None:
        self.slug = slug
        self.room_id = room_id
        # Whether the room is private, as its subscribers' Room rows (and room.access events)
        # said: /metrics never names a private room (chat/metrics.py).
        self.private = private
        self.subscribers: dict[Any, Subscription] = {}
        # The room's members across all processes, as last read and told to subscribers here.
        self.members: set[Member] = set()
        # ``members`` as sent in a ``subscribed`` frame, built once per change of the set.
        self._members_json: tuple[set[Member], list[dict[str, str]]] | None = None
        self.presence_timer: asyncio.TimerHandle | None = None
        # Newest seq handed to subscribers here; None until the group is joined.
        self.delivered: int | None = None
        # Frames that arrived ahead of a hole, by seq.
        self.pending: dict[int, str] = {}
        # The last RECENT_FRAMES delivered (seq, frame text) pairs, oldest first.
        self.recent: deque[tuple[int, str]] = deque(maxlen=RECENT_FRAMES)
        self.lock = asyncio.Lock()
        self.joined = asyncio.Event()
        self.join_error: BaseException | None = None
        # Attaches in progress: the stream stays joined while one is running.
        self.attaching = 0
        self.fill_timer: asyncio.TimerHandle | None = None

    def members_json(self, including: Member) -> list[dict[str, str]]:
        """The members for a newcomer's ``subscribed``: everyone known here, and the newcomer."""
        cached = self._members_json
        if cached is None or cached[0] is not self.members:
            cached = self._members_json = (self.members, [m.as_json() for m in sorted(self.members)])
        return cached[1] if including in self.members else [*cached[1], including.as_json()]

    def recent_after(self, seq: int) -> list[tuple[int, str]] | None:
        """Delivered frames above ``seq``, or None when the ring no longer reaches back that far."""
        if not self.recent or self.recent[0][0] > seq + 1:
            return None
        return [item for item in self.recent if item[0] > seq]


class RoomHub:
    """This event loop's room memberships and the tasks that feed them."""

    def __init__(self, layer: Any) -> None:
        self.layer = layer
        self.channel: str | None = None
        self.rooms: dict[str, RoomStream] = {}
        # Orders group_add/group_discard calls, so a leave and a quick re-join never swap.
        self._membership = asyncio.Lock()
        self._reader: asyncio.Task | None = None
        self._janitor: asyncio.Task | None = None
        self._fills: set[asyncio.Task] = set()
        # When the last dashboard-report failure was logged (monotonic seconds).
        self._report_warned = -1e9
        # Presence: this process's entry name, and how many local sockets each member has
        # in each room (entries leave the store a grace period after their count hits 0).
        self.process_id = stats.process_id
        # Every socket of this event loop, subscribed or not (for control events).
        self.connections: set[Any] = set()
        self._presence: PresenceStore | None = None
        self._local: Counter[tuple[str, Member]] = Counter()
        self._departing: dict[tuple[str, Member], asyncio.TimerHandle] = {}
        # False from a failed health check (Redis away) until one succeeds again.
        self.healthy = True
        # Set when the last socket leaves, while a drain waits for that.
        self._emptied: asyncio.Event | None = None
        # The HTTP fallback streams here (chat/sse.py), by connection id: the session tag that
        # opened each, its secret token, and the queue its consumer reads client frames from.
        self.streams: dict[str, tuple[str, str, asyncio.Queue[dict[str, Any]]]] = {}

    # Connections.

    async def connect(self, consumer: Any) -> None:
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

    async def disconnect(self, consumer: Any) -> None:
        """Count a socket out (after detaching its rooms); the last one stops everything."""
        self.connections.discard(consumer)
        if not self.connections and self._emptied is not None:
            self._emptied.set()
        if not self.connections and not self.rooms:
            await self._stop()

    # Subscribers.

    async def attach(
        self,
        consumer: Any,
        *,
        slug: str,
        room_id: int,
        since: int | None,
        ref: Any,
        member: Member,
        private: bool = True,
    ) -> None:
        """Send ``consumer`` the ``subscribed`` frame, then every later message of the room."""
        stream = self.rooms.get(slug)
        first = stream is None
        if stream is None:
            stream = self.rooms[slug] = RoomStream(slug, room_id, private=private)
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
            await self._arrive(slug, member)
            arrived = True
            history = await database_sync_to_async(selectors.message_history)(
                room_id=room_id,
                room_slug=slug,
                since=since,
                history_size=settings.RIPPLE_HISTORY_SIZE,
                resume_limit=settings.RIPPLE_RESUME_LIMIT,
                max_bytes=settings.RIPPLE_MAX_HISTORY_BYTES,
            )
            async with stream.lock:
                assert stream.delivered is not None
                start = history.last_seq
                behind: list[tuple[int, str]] = []
                if stream.delivered > start:
                    # Delivered here while the history was read: send those after it.
                    recent = stream.recent_after(start)
                    if recent is None:
                        recent = await database_sync_to_async(selectors.message_range)(
                            room_id=room_id, room_slug=slug, after=start, upto=stream.delivered
                        )
                    behind = recent
                # The newcomer gets the list this process's subscribers have, itself added; the
                # next batched sync (other arrivals in this batch window included) goes to all
                # of them alike, as a difference.
                # Only the room's first subscriber here reads the store: with 1,000 members a
                # read per subscribe made a mass connect quadratic (bench capacity).
                if not stream.subscribers:
                    stream.members = await self.presence.members(slug)
                stream.subscribers[consumer] = Subscription(max(start, stream.delivered), member)
                arrived = False  # the subscription owns the arrival now; detach undoes it
                await consumer.base_send(
                    {
                        "type": "websocket.send",
                        "text": protocol.subscribed(
                            room=slug,
                            messages=history.messages,
                            last_seq=start,
                            complete=history.complete,
                            members=stream.members_json(including=member),
                            ref=ref,
                        ),
                    }
                )
                for _, text in behind:
                    await consumer.base_send({"type": "websocket.send", "text": text})
                stats.frame_out(protocol.SUBSCRIBED)
                stats.frame_out(protocol.MESSAGE, len(behind))
        finally:
            stream.attaching -= 1
            if arrived:
                await self._depart(slug, member)
            await self._maybe_leave(stream)

    async def detach(self, consumer: Any, slug: str) -> None:
        stream = self.rooms.get(slug)
        if stream is None:
            return
        subscription = stream.subscribers.pop(consumer, None)
        if subscription is not None:
            await self._depart(slug, subscription.member)
        await self._maybe_leave(stream)

    def subscriber_count(self) -> int:
        return sum(len(stream.subscribers) for stream in self.rooms.values())

    # Messages.

    async def offer(self, slug: str, seq: int, text: str, stored_at: float | None = None) -> None:
        """Take one message frame from the channel layer (or this process) for delivery."""
        stream = self.rooms.get(slug)
        if stream is None:
            return
        async with stream.lock:
            if stream.delivered is not None and seq <= stream.delivered:
                return
            if stream.delivered is None or seq > stream.delivered + 1:
                stream.pending[seq] = text
                if stream.delivered is not None:
                    self._arm_fill(stream)
                return
            await self._deliver(stream, seq, text)
            if stored_at is not None:
                stats.observe_latency(time.time() - stored_at)
            await self._drain(stream)

    async def _deliver(self, stream: RoomStream, seq: int, text: str) -> None:
        stream.delivered = seq
        stream.recent.append((seq, text))
        # One event dict for every recipient: the server only reads it.
        event = {"type": "websocket.send", "text": text}
        sent = 0
        for consumer, subscription in list(stream.subscribers.items()):
            if seq > subscription.mark:
                sent += 1
                try:
                    await consumer.base_send(event)
                except Exception:  # a socket that closed meanwhile must not stop the room
                    logger.debug("send to a closing socket failed", exc_info=True)
        stats.frame_out("message", sent)

    async def _drain(self, stream: RoomStream) -> None:
        """Deliver pending frames that are now next in line."""
        assert stream.delivered is not None
        for seq in [seq for seq in stream.pending if seq <= stream.delivered]:
            del stream.pending[seq]
        while stream.pending:
            text = stream.pending.pop(stream.delivered + 1, None)
            if text is None:
                self._arm_fill(stream)
                return
            await self._deliver(stream, stream.delivered + 1, text)
        if stream.fill_timer is not None:
            stream.fill_timer.cancel()
            stream.fill_timer = None

    def _arm_fill(self, stream: RoomStream) -> None:
        if stream.fill_timer is None:
            loop = asyncio.get_running_loop()
            stream.fill_timer = loop.call_later(settings.RIPPLE_GAP_FILL_S, self._start_fill, stream, None)

    def _start_fill(self, stream: RoomStream, upto: int | None) -> None:
        if stream.fill_timer is not None:
            stream.fill_timer.cancel()  # harmless when this call is that timer firing
            stream.fill_timer = None
        task = asyncio.get_running_loop().create_task(self._fill(stream, upto))
        self._fills.add(task)
        task.add_done_callback(self._fills.discard)

    async def _fill(self, stream: RoomStream, upto: int | None) -> None:
        """Read the messages up to ``upto`` (default: the newest pending) from the database."""
        try:
            async with stream.lock:
                if upto is None:
                    upto = max(stream.pending, default=0)
                if stream.delivered is None or upto <= stream.delivered:
                    return
                rows = await database_sync_to_async(selectors.message_range)(
                    room_id=stream.room_id, room_slug=stream.slug, after=stream.delivered, upto=upto
                )
                for seq, text in rows:
                    if seq > stream.delivered:
                        stream.pending.pop(seq, None)
                        await self._deliver(stream, seq, text)
                # Numbers with no row (deleted messages) are passed over.
                stream.delivered = max(stream.delivered, upto)
                await self._drain(stream)
        except Exception:
            logger.exception("filling room %s from the database failed; retrying", stream.slug)
            if self.rooms.get(stream.slug) is stream:
                self._arm_fill(stream)

    # Presence.

    @property
    def presence(self) -> PresenceStore:
        if self._presence is None:
            self._presence = presence_store()
        return self._presence

    async def _arrive(self, slug: str, member: Member) -> None:
        key = (slug, member)
        self._local[key] += 1
        if self._local[key] > 1:
            return
        departing = self._departing.pop(key, None)
        if departing is not None:
            departing.cancel()  # back within the grace period: the entry never left
            return
        await self.presence.add(slug, self.process_id, member)
        await self._announce(slug)

    async def _depart(self, slug: str, member: Member) -> None:
        key = (slug, member)
        self._local[key] -= 1
        if self._local[key] > 0:
            return
        del self._local[key]
        grace_s = settings.RIPPLE_PRESENCE_GRACE_S
        if grace_s <= 0:
            await self._remove_member(key)
            return
        # Leaving is announced only if the member stays away a moment: a reload or a
        # reconnect (to this process or another) does not flap leave/join.
        loop = asyncio.get_running_loop()
        self._departing[key] = loop.call_later(grace_s, self._start_removal, key)

    def _start_removal(self, key: tuple[str, Member]) -> None:
        self._departing.pop(key, None)
        task = asyncio.get_running_loop().create_task(self._remove_member(key))
        self._fills.add(task)
        task.add_done_callback(self._fills.discard)

    async def _remove_member(self, key: tuple[str, Member]) -> None:
        slug, member = key
        try:
            await self.presence.remove(slug, self.process_id, member)
            await self._announce(slug)
        except Exception:
            logger.warning(
                "removing %s from room %s failed; it expires by itself", member.id, slug, exc_info=True
            )

    async def _announce(self, slug: str) -> None:
        """Tell every process (this one too) that the room's presence changed."""
        stream = self.rooms.get(slug)
        if stream is not None:
            self._schedule_sync(stream)
        try:
            await self.layer.group_send(room_group(slug), {"type": EVENT_PRESENCE, "room": slug})
        except Exception:
            logger.warning("announcing presence in room %s failed", slug, exc_info=True)

    def _schedule_sync(self, stream: RoomStream) -> None:
        """Re-read the room's members soon; changes within the batch window go out together."""
        if stream.presence_timer is None:
            loop = asyncio.get_running_loop()
            stream.presence_timer = loop.call_later(
                presence_batch_s(len(stream.members)), self._start_sync, stream
            )

    def _start_sync(self, stream: RoomStream) -> None:
        stream.presence_timer = None
        if self.rooms.get(stream.slug) is not stream:
            return
        task = asyncio.get_running_loop().create_task(self._sync_members_locked(stream))
        self._fills.add(task)
        task.add_done_callback(self._fills.discard)

    async def _sync_members_locked(self, stream: RoomStream) -> None:
        try:
            async with stream.lock:
                await self._sync_members(stream)
        except Exception:
            logger.warning("reading presence of room %s failed", stream.slug, exc_info=True)

    async def _sync_members(self, stream: RoomStream) -> None:
        """Read the room's members and send what changed to this process's subscribers.

        Called with ``stream.lock`` held, so no ``presence`` frame overtakes a ``subscribed``.
        """
        current = await self.presence.members(stream.slug)
        joins, leaves = current - stream.members, stream.members - current
        stream.members = current
        # Only while the stream is live: a read that lands after the room's last subscriber
        # here left must not export the room again (it stayed on /metrics until the next join).
        if self.rooms.get(stream.slug) is stream:
            stats.room_members(stream.slug, members=len(current), private=stream.private)
        if not (joins or leaves) or not stream.subscribers:
            return
        event = {
            "type": "websocket.send",
            "text": protocol.presence(
                room=stream.slug,
                joins=[m.as_json() for m in sorted(joins)],
                leaves=[m.as_json() for m in sorted(leaves)],
            ),
        }
        for consumer in list(stream.subscribers):
            try:
                await consumer.base_send(event)
            except Exception:
                logger.debug("send to a closing socket failed", exc_info=True)
        stats.frame_out("presence", len(stream.subscribers))

    async def _refresh_presence(self) -> None:
        """Keep this process's entries alive and notice members whose process died."""
        entries = list(self._local) + list(self._departing)
        await self.presence.refresh(self.process_id, entries)
        for stream in list(self.rooms.values()):
            if stream.delivered is not None:
                await self._sync_members_locked(stream)

    # Membership and the tasks behind it.

    async def _join(self, stream: RoomStream) -> None:
        try:
            await self._ensure_started()
            async with self._membership:
                assert self.channel is not None
                await self.layer.group_add(room_group(stream.slug), self.channel)
            last_seqs = await database_sync_to_async(selectors.room_last_seqs)(room_ids=[stream.room_id])
            async with stream.lock:
                stream.delivered = last_seqs.get(stream.room_id, 0)
                await self._drain(stream)
        except BaseException as error:
            stream.join_error = error
            stream.joined.set()
            if self.rooms.get(stream.slug) is stream:
                del self.rooms[stream.slug]
                await self._leave(stream.slug)
            raise
        stream.joined.set()

    async def _maybe_leave(self, stream: RoomStream) -> None:
        if stream.subscribers or stream.attaching or self.rooms.get(stream.slug) is not stream:
            return
        del self.rooms[stream.slug]
        for timer in (stream.fill_timer, stream.presence_timer):
            if timer is not None:
                timer.cancel()
        stream.fill_timer = stream.presence_timer = None
        await self._leave(stream.slug)

    async def _leave(self, slug: str) -> None:
        """Drop this process from the room's group."""
        async with self._membership:
            if slug not in self.rooms and self.channel is not None:
                try:
                    await self.layer.group_discard(room_group(slug), self.channel)
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
            await self.layer.group_add(CONTROL_GROUP, self.channel)
            loop = asyncio.get_running_loop()
            self._reader = loop.create_task(self._read(), name="ripple-hub-reader")
            self._janitor = loop.create_task(self._check_tails(), name="ripple-hub-janitor")

    async def _stop(self) -> None:
        async with self._membership:
            if self.channel is not None:
                try:
                    await self.layer.group_discard(CONTROL_GROUP, self.channel)
                except Exception:
                    logger.warning("leaving the control group failed", exc_info=True)
            tasks = [task for task in (self._reader, self._janitor, *self._fills) if task is not None]
            self._reader = self._janitor = None
            # A cancelled receive ends the channel's life in some layers (the pub/sub layer
            # drops it), so the next start takes a new one.
            self.channel = None
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

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
        if kind == EVENT_MESSAGE:
            await self.offer(event["room"], event["seq"], event["text"], event.get("stored_at"))
            return
        if kind == EVENT_DISCONNECT_USER:
            await self._disconnect_user(event["user_id"])
            return
        if kind == EVENT_CONNECTION_FRAME:
            self._connection_frame(event)
            return
        if kind == EVENT_DRAIN:
            if event.get("process") in (None, self.process_id):
                log_event("drain_requested", signal="manage.py drain", window_s=event["window_s"])
                asyncio.get_running_loop().create_task(self.drain(event["window_s"]))
            return
        if kind == EVENT_END_SESSION:
            for consumer in list(self.connections):
                if consumer.session_tag == event["session"]:
                    await consumer.end_session("logout")
            return
        stream = self.rooms.get(event.get("room", ""))
        if stream is None:
            return
        if kind == EVENT_PRESENCE:
            self._schedule_sync(stream)
        elif kind == EVENT_DELETED:
            await self._deleted(stream, event["seqs"])
        elif kind == EVENT_CLOSED:
            await self._closed(stream, event.get("reason", ""))
        elif kind == EVENT_ACCESS:
            await self._access_changed(stream)
        elif kind == EVENT_ROOM_DELETED:
            await self._room_deleted(stream)

    # Moderation.

    async def _deleted(self, stream: RoomStream, seqs: list[int]) -> None:
        async with stream.lock:
            # The ring may hold their bodies; late attaches read the database instead.
            stream.recent.clear()
            await self._send_all(stream, protocol.deleted(room=stream.slug, seqs=seqs), "deleted")

    async def _closed(self, stream: RoomStream, reason: str) -> None:
        async with stream.lock:
            await self._send_all(stream, protocol.room_closed(room=stream.slug, reason=reason), "room_closed")
            subscribers = list(stream.subscribers.items())
            stream.subscribers.clear()
        for consumer, subscription in subscribers:
            consumer.forget_room(stream.slug)
            await self._depart(stream.slug, subscription.member)
        await self._maybe_leave(stream)

    async def _room_deleted(self, stream: RoomStream) -> None:
        """Send every subscriber here ``unsubscribed`` (room_deleted) and let go of the room."""
        text = protocol.unsubscribed(room=stream.slug, ref=None, reason=protocol.REASON_ROOM_DELETED)
        async with stream.lock:
            await self._send_all(stream, text, protocol.UNSUBSCRIBED)
            subscribers = list(stream.subscribers.items())
            stream.subscribers.clear()
            # Frames of the deleted room must not reach a new room of the same name.
            stream.recent.clear()
            stream.pending.clear()
        for consumer, subscription in subscribers:
            consumer.forget_room(stream.slug)
            log_event(
                "room_deleted",
                connection=consumer.connection_id,
                user=consumer.identity.name,
                room=stream.slug,
            )
            await self._depart(stream.slug, subscription.member)
        await self._maybe_leave(stream)

    async def _access_changed(self, stream: RoomStream) -> None:
        """Send away the subscribers the room no longer allows (chat/selectors.room_allows)."""
        private, members = await database_sync_to_async(selectors.room_member_ids)(room_id=stream.room_id)
        stream.private = private
        if self.rooms.get(stream.slug) is stream:
            stats.room_members(stream.slug, members=len(stream.members), private=private)
        if not private:
            return
        text = protocol.unsubscribed(room=stream.slug, ref=None, reason=protocol.REASON_ACCESS_REVOKED)
        async with stream.lock:
            revoked = [
                (consumer, subscription)
                for consumer, subscription in stream.subscribers.items()
                if consumer.identity.user_id not in members
            ]
            for consumer, _ in revoked:
                del stream.subscribers[consumer]
                try:
                    await consumer.base_send({"type": "websocket.send", "text": text})
                except Exception:
                    logger.debug("send to a closing socket failed", exc_info=True)
        for consumer, subscription in revoked:
            consumer.forget_room(stream.slug)
            log_event(
                "access_revoked",
                connection=consumer.connection_id,
                user=consumer.identity.name,
                room=stream.slug,
            )
            await self._depart(stream.slug, subscription.member)
        stats.frame_out(protocol.UNSUBSCRIBED, len(revoked))
        await self._maybe_leave(stream)

    async def _disconnect_user(self, user_id: int) -> None:
        for consumer in list(self.connections):
            if consumer.identity.user_id == user_id:
                log_event(
                    "moderator_disconnect", connection=consumer.connection_id, user=consumer.identity.name
                )
                await consumer.close(code=protocol.CLOSE_DISCONNECTED_BY_MODERATOR)

    async def _send_all(self, stream: RoomStream, text: str, frame_type: str) -> None:
        """One frame, encoded once, to every subscriber of the room here."""
        event = {"type": "websocket.send", "text": text}
        for consumer in list(stream.subscribers):
            try:
                await consumer.base_send(event)
            except Exception:
                logger.debug("send to a closing socket failed", exc_info=True)
        stats.frame_out(frame_type, len(stream.subscribers))

    async def _check_tails(self) -> None:
        """Fetch what the channel layer may have dropped; keep presence entries alive."""
        tail_every = settings.RIPPLE_TAIL_CHECK_S
        presence_every = settings.RIPPLE_PRESENCE_TTL_S / 3
        report_every = settings.RIPPLE_DASHBOARD_REPORT_S
        # Once a second at most: the dashboard report is per second by default.
        tick = min(1.0, tail_every, presence_every, report_every)
        now = time.monotonic()
        audit_every = settings.RIPPLE_ACCESS_RECHECK_S
        tailed = presenced = refreshed = reported = audited = now
        while True:
            await asyncio.sleep(tick)
            await self._check_health()
            now = time.monotonic()
            if now - audited >= audit_every - tick / 2:
                audited = now
                await self._audit_access()
            if now - reported >= report_every - tick / 2:
                reported = now
                await self._report()
            if now - tailed >= tail_every - tick / 2:
                tailed = now
                await self._tail_check()
            if now - presenced >= presence_every - tick / 2:
                presenced = now
                try:
                    await self._refresh_presence()
                except Exception:
                    logger.warning("presence refresh failed", exc_info=True)
            if now - refreshed > GROUP_REFRESH_S and self.channel is not None:
                refreshed = now
                for slug in list(self.rooms):
                    try:
                        await self.layer.group_add(room_group(slug), self.channel)
                    except Exception:
                        logger.warning("refreshing room %s failed", slug, exc_info=True)

    async def _audit_access(self) -> None:
        """Re-check who may stay in private rooms, whatever changed them.

        Model signals (chat/signals.py) end subscriptions at once when a membership or a room
        changes through the ORM; a change no signal sees (``QuerySet.update``, raw SQL, another
        client of the database) is caught here within ``RIPPLE_ACCESS_RECHECK_S``. One query for
        every room with subscribers here, then one per private room.
        """
        streams = [stream for stream in self.rooms.values() if stream.subscribers]
        if not streams:
            return
        try:
            private = await database_sync_to_async(selectors.private_room_ids)(
                room_ids=[stream.room_id for stream in streams]
            )
            for stream in streams:
                if stream.room_id in private or stream.private:
                    await self._access_changed(stream)
        except Exception:
            logger.warning("re-checking private rooms' subscribers failed", exc_info=True)

    def _connection_frame(self, event: dict[str, Any]) -> None:
        """Hand a POSTed frame to its fallback stream's consumer, if that stream is here."""
        found = self.streams.get(event["connection"])
        if found is None:
            return
        session, token, inbox = found
        # Only from the session that opened the stream and with the stream's own token: its id
        # alone is not enough, nor is an empty session tag, which every cookie-less client has.
        sent = str(event.get("token") or "").encode()
        if session == event["session"] and hmac.compare_digest(token.encode(), sent):
            inbox.put_nowait({"type": "websocket.receive", "text": event["text"]})

    async def drain(self, window_s: float) -> None:
        """Close every socket here with 4512, at random moments spread over ``window_s``.

        Returns when they are all gone, or ``DRAIN_GRACE_S`` after the window.
        """
        drain.begin()
        consumers = list(self.connections)
        log_event("drain_started", sockets=len(consumers), window_s=window_s)
        loop = asyncio.get_running_loop()
        started = loop.time()

        async def close_later(consumer: Any, delay: float) -> None:
            await asyncio.sleep(delay)
            try:
                await consumer.close(code=protocol.CLOSE_DRAINING)
            except Exception:
                logger.debug("closing a socket failed", exc_info=True)

        await asyncio.gather(*(close_later(c, random.uniform(0, window_s)) for c in consumers))  # noqa: S311 - jitter
        if self.connections:
            self._emptied = asyncio.Event()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout_at(started + window_s + DRAIN_GRACE_S):
                    await self._emptied.wait()
        log_event("drain_finished", left_open=len(self.connections), took_s=round(loop.time() - started, 3))

    async def _check_health(self) -> None:
        """Every tick: when Redis stops answering, send every socket here away with 4503.

        Without Redis, messages would still be stored, but they would reach other processes
        only through the tail check and presence would be frozen: a clear "try again later"
        lets clients back off and resume once Redis is back, on whichever worker they reach.
        """
        try:
            # asyncio.timeout, not wait_for: on Python 3.11 wait_for can swallow a cancellation
            # that arrives as the ping completes, and this task would outlive the hub's _stop.
            async with asyncio.timeout(HEALTH_TIMEOUT_S):
                await self.presence.ping()
        except Exception as error:
            if self.healthy:
                self.healthy = False
                logger.warning(
                    "Redis does not answer (%r); closing %d sockets with 4503", error, len(self.connections)
                )
                log_event("layer_unavailable", sockets=len(self.connections), error=repr(error))
                for consumer in list(self.connections):
                    try:
                        await consumer.close(code=protocol.CLOSE_TRY_AGAIN_LATER)
                    except Exception:
                        logger.debug("closing a socket failed", exc_info=True)
            return
        if not self.healthy:
            self.healthy = True
            log_event("layer_available")

    async def _report(self) -> None:
        """This process's numbers for the live dashboard (chat/dashboard.py)."""
        try:
            await dashboard.report(stats.snapshot())
        except Exception:
            # Once a second while Redis is away would bury every other line: once a minute.
            now = time.monotonic()
            if now - self._report_warned > 60:
                self._report_warned = now
                logger.warning("dashboard report failed (repeats are muted for 60 s)", exc_info=True)

    async def _tail_check(self) -> None:
        joined = [stream for stream in self.rooms.values() if stream.delivered is not None]
        if not joined:
            return
        try:
            last_seqs = await database_sync_to_async(selectors.room_last_seqs)(
                room_ids=[stream.room_id for stream in joined]
            )
        except Exception:
            logger.warning("tail check failed", exc_info=True)
            return
        for stream in joined:
            newest = last_seqs.get(stream.room_id, 0)
            if stream.delivered is not None and newest > stream.delivered:
                self._start_fill(stream, newest)


# One hub per event loop: daphne runs every socket of a process on one loop, and each test
# gets a loop of its own.
_hubs: WeakKeyDictionary[asyncio.AbstractEventLoop, RoomHub] = WeakKeyDictionary()


def get_hub() -> RoomHub:
    loop = asyncio.get_running_loop()
    hub = _hubs.get(loop)
    if hub is None:
        hub = _hubs[loop] = RoomHub(get_channel_layer())
    return hub


async def message_publish(*, room_slug: str, seq: int, text: str, stored_at: float | None = None) -> None:
    """Send one stored message to the room on every process; local subscribers get it first."""
    local = _hubs.get(asyncio.get_running_loop())
    if local is not None:
        await local.offer(room_slug, seq, text, stored_at)
    await get_channel_layer().group_send(
        room_group(room_slug),
        {"type": EVENT_MESSAGE, "room": room_slug, "seq": seq, "text": text, "stored_at": stored_at},
    )


async def room_event(slug: str, kind: str, data: dict[str, Any]) -> None:
    """Tell every process with subscribers in the room (moderation events)."""
    await get_channel_layer().group_send(room_group(slug), {"type": kind, "room": slug, **data})


async def control_event(kind: str, data: dict[str, Any]) -> None:
    """Tell every process that has sockets."""
    await get_channel_layer().group_send(CONTROL_GROUP, {"type": kind, **data})


def connection_group(connection_id: str) -> str:
    """The group a fallback stream's process joins, so POSTs on any worker reach it."""
    return f"ripple.conn.{connection_id}"


async def connection_frame(connection_id: str, *, session: str, token: str, text: str) -> None:
    await get_channel_layer().group_send(
        connection_group(connection_id),
        {
            "type": EVENT_CONNECTION_FRAME,
            "connection": connection_id,
            "session": session,
            "token": token,
            "text": text,
        },
    )
