"""Who is in each room, as this process tells it: arrivals, departures after a grace, sync.

The hub writes its sockets' members to the presence store (``chat.presence``), tells the
room's group when that changed, and every hub re-reads the room and pushes the difference to
its subscribers as one ``presence`` frame, batched over ``presence_batch_s``.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import logging
import uuid
from collections import Counter
from typing import Any

from django.conf import settings

from .. import presence, protocol
from ..presence import Member, PresenceStore
from ..stats import stats
from .events import EVENT_PRESENCE, room_group
from .publisher import group_send
from .stream import RoomStream
from .tasks import TaskSet

logger = logging.getLogger(__name__)

# Arrivals within this long of each other are written together (a reconnect storm: thousands).
ARRIVAL_BATCH_S = 0.02
# Departures whose grace ends within this long of each other are written together.
DEPARTURE_SWEEP_S = 0.1
# A batch writes and announces this many rooms, then lets the event loop run other work: a step
# of 50 held the loop ~4 ms (the departures of 5,000 sockets, bench fanout --aftermath 5000).
ROOMS_PER_STEP = 10
# The periodic refresh writes this many entries per round trip.
REFRESH_ENTRIES_PER_STEP = 250
# Presence batching stretches in large rooms (see presence_batch_s).
PRESENCE_BATCH_MEMBERS = 100
PRESENCE_BATCH_MAX_FACTOR = 10.0


def presence_batch_s(members: int) -> float:
    """How long a room's presence changes are gathered before they go out as one frame.

    ``RIPPLE_PRESENCE_BATCH_S`` up to ``PRESENCE_BATCH_MEMBERS`` members, then longer in
    proportion (at most ``PRESENCE_BATCH_MAX_FACTOR`` times): every member gets every frame, so
    a fixed window made a mass connect cost members x joins frames (bench capacity: 10,000
    sockets in 10 rooms connected at ~30/s, the worker busy sending presence frames).
    """
    factor = min(PRESENCE_BATCH_MAX_FACTOR, max(1.0, members / PRESENCE_BATCH_MEMBERS))
    return settings.RIPPLE_PRESENCE_BATCH_S * factor


class Roster:
    """This process's members in each room, and the presence frames its subscribers get."""

    def __init__(self, *, rooms: dict[str, RoomStream], layer: Any, process_id: str, tasks: TaskSet) -> None:
        # The hub's own map of room slug to stream (shared, not copied).
        self.rooms = rooms
        self.layer = layer
        # This process's entry name in the store.
        self.process_id = process_id
        # Marks this roster's presence announcements (one per event loop, so not process_id).
        self.origin = uuid.uuid4().hex[:12]
        self._tasks = tasks
        # How many local sockets each member has in each room; entries leave the store a grace
        # period after their count hits 0.
        self._local: Counter[tuple[str, Member]] = Counter()
        # Members whose last socket here left, with when (loop time) they leave the store; one
        # timer (at the earliest) sweeps all that are due.
        self._departing: dict[tuple[str, Member], float] = {}
        # The same departures as a heap of (when, order, key), so a sweep takes only what is due
        # (a scan of every pending departure per sweep held the loop for ms after a mass
        # disconnect). Entries that no longer match ``_departing`` (back within the grace) are
        # dropped as they come to the top.
        self._departures: list[tuple[float, int, tuple[str, Member]]] = []
        self._departure_order = itertools.count()
        self._sweep: asyncio.TimerHandle | None = None
        # Members whose first socket here arrived and who are not written to the store yet (an
        # ordered set); one timer writes them all.
        self._arriving: dict[tuple[str, Member], None] = {}
        self._arrivals: asyncio.TimerHandle | None = None
        # Set while the hub is stopped: the store closes once the last departure is written.
        self._closing = False

    @property
    def store(self) -> PresenceStore:
        """This event loop's presence store (chat.presence), opened on first use."""
        return presence.loop_store()

    # Arrivals and departures.

    async def arrive(self, slug: str, member: Member) -> None:
        key = (slug, member)
        self._local[key] += 1
        if self._local[key] > 1:
            return
        if self._departing.pop(key, None) is not None:
            return  # back within the grace period: the entry never left
        # Written (and announced) with the other arrivals of the next ARRIVAL_BATCH_S: a mass
        # connect costs a pipeline and an announcement per room, not two round trips a socket.
        # The newcomer's own `subscribed` lists it whether or not the write is done.
        self._arriving[key] = None
        if self._arrivals is None:
            self._arrivals = asyncio.get_running_loop().call_later(ARRIVAL_BATCH_S, self._start_arrivals)

    def _start_arrivals(self) -> None:
        self._arrivals = None
        keys, self._arriving = list(self._arriving), {}
        self._tasks.start(self._write(keys, adding=True))

    async def depart(self, slug: str, member: Member) -> None:
        key = (slug, member)
        self._local[key] -= 1
        if self._local[key] > 0:
            return
        del self._local[key]
        if key in self._arriving:
            del self._arriving[key]
            return  # gone before its arrival was written: nobody heard of it
        grace_s = settings.RIPPLE_PRESENCE_GRACE_S
        if grace_s <= 0:
            await self._write([key], adding=False)
            return
        # Leaving is announced only if the member stays away a moment: a reload or a
        # reconnect (to this process or another) does not flap leave/join.
        loop = asyncio.get_running_loop()
        at = loop.time() + grace_s
        self._departing[key] = at
        heapq.heappush(self._departures, (at, next(self._departure_order), key))
        if self._sweep is None or at < self._sweep.when():
            self._sweep_at(at)

    def _sweep_at(self, at: float) -> None:
        if self._sweep is not None:
            self._sweep.cancel()
        self._sweep = asyncio.get_running_loop().call_at(at, self._start_sweep)

    def _start_sweep(self) -> None:
        """Take every departure that is due (or nearly) and write them as one batch.

        After a mass disconnect (a deploy, a network blip) thousands of graces end in the same
        instant; one task per member (a ZREM and a PUBLISH each, all at once) held the event
        loop for over a second while messages waited (bench fanout --aftermath 5000).
        """
        self._sweep = None
        horizon = asyncio.get_running_loop().time() + DEPARTURE_SWEEP_S
        departures, departing = self._departures, self._departing
        due: list[tuple[str, Member]] = []
        while departures and departures[0][0] <= horizon:
            at, _, key = heapq.heappop(departures)
            if departing.get(key) == at:
                del departing[key]
                due.append(key)
        while departures and departing.get(departures[0][2]) != departures[0][0]:
            heapq.heappop(departures)  # back within its grace, or due again later
        if departures:
            self._sweep_at(departures[0][0])
        if due:
            self._tasks.start(self._write(due, adding=False))

    async def _write(self, keys: list[tuple[str, Member]], *, adding: bool) -> None:
        """Add or remove ``keys`` in the store and announce their rooms, a step of rooms at a time."""
        by_room: dict[str, list[tuple[str, Member]]] = {}
        for key in keys:
            by_room.setdefault(key[0], []).append(key)
        rooms = list(by_room)
        for start in range(0, len(rooms), ROOMS_PER_STEP):
            step = rooms[start : start + ROOMS_PER_STEP]
            entries = [key for slug in step for key in by_room[slug]]
            try:
                if adding:
                    await self.store.add(self.process_id, entries)
                else:
                    await self.store.remove(self.process_id, entries)
            except Exception:
                # Arrivals are written again by the next refresh; departures expire.
                logger.warning(
                    "%s %d members in %d rooms failed",
                    "adding" if adding else "removing",
                    len(entries),
                    len(step),
                    exc_info=True,
                )
                continue
            # At once: the publisher (chat/hub/publisher.py) sends them in one pipeline.
            await asyncio.gather(*(self._announce(slug, by_room[slug], adding) for slug in step))
            await asyncio.sleep(0)  # messages waiting on this loop go first
        await self._close_if_idle()

    async def _announce(self, slug: str, keys: list[tuple[str, Member]], adding: bool) -> None:
        """Tell every other process that the room's presence changed, and this one what changed.

        Arrivals written here are added to the room's members as they are: no read of the store
        (a connect storm read every room back once per batch). A departure is read back, since
        the member may still be in the room through another process.
        """
        stream = self.rooms.get(slug)
        if stream is not None:
            if adding:
                stream.arrived.update(member for _, member in keys)
            self.schedule_sync(stream, read=not adding)
        try:
            await group_send(
                self.layer, room_group(slug), {"type": EVENT_PRESENCE, "room": slug, "origin": self.origin}
            )
        except Exception:
            logger.warning("announcing presence in room %s failed", slug, exc_info=True)

    def announced_here(self, event: dict[str, Any]) -> bool:
        """Whether a presence event is this roster's own, already applied by ``_announce``."""
        return event.get("origin") == self.origin

    # Telling subscribers.

    def schedule_sync(self, stream: RoomStream, *, read: bool = True) -> None:
        """Send the room's presence changes soon; changes within the batch window go out together.

        ``read``: the members must be read from the store (otherwise the sync adds the arrivals
        written here to what the stream knows).
        """
        stream.read_due = stream.read_due or read
        if stream.presence_timer is None:
            loop = asyncio.get_running_loop()
            stream.presence_timer = loop.call_later(
                presence_batch_s(len(stream.members)), self._start_sync, stream
            )

    def _start_sync(self, stream: RoomStream) -> None:
        stream.presence_timer = None
        if stream.live:
            self._tasks.start(self.sync_locked(stream))

    async def sync_locked(self, stream: RoomStream) -> None:
        try:
            async with stream.lock:
                await self._sync(stream)
        except Exception:
            logger.warning("reading presence of room %s failed", stream.slug, exc_info=True)

    async def _sync(self, stream: RoomStream) -> None:
        """Read the room's members and send what changed to this process's subscribers.

        Called with ``stream.lock`` held, so no ``presence`` frame overtakes a ``subscribed``.
        """
        # Taken first: arrivals announced during the read wait for the next sync.
        arrived, read, stream.arrived, stream.read_due = stream.arrived, stream.read_due, set(), False
        try:
            current = await self.store.members(stream.slug) if read else stream.members | arrived
        except BaseException:
            stream.arrived |= arrived  # for the next sync (the refresh's, at the latest)
            stream.read_due = True
            raise
        joins, leaves = current - stream.members, stream.members - current
        stream.members = current
        # Only while the stream is live: a read that lands after the room's last subscriber
        # here left must not export the room again (it stayed on /metrics until the next join).
        if stream.live:
            stats.room_members(stream.slug, members=len(current), private=stream.private)
        if not (joins or leaves) or not stream.subscribers:
            return
        text = protocol.presence(
            room=stream.slug,
            joins=[m.as_json() for m in sorted(joins)],
            leaves=[m.as_json() for m in sorted(leaves)],
        )
        await stream.send_all(text, "presence")

    async def refresh(self) -> None:
        """Keep this process's entries alive and notice members whose process died."""
        # In steps, each its own round trip: one pipeline of 5,000 entries took the event loop
        # for 50-120 ms to build, a stall every refresh that messages waited behind.
        entries = sorted([*self._local, *self._departing], key=lambda key: key[0])
        for start in range(0, len(entries), REFRESH_ENTRIES_PER_STEP):
            await self.store.refresh(self.process_id, entries[start : start + REFRESH_ENTRIES_PER_STEP])
        # Read back the rooms where someone is in through another process: that process may
        # have died, and its entries expired meanwhile. A room whose every member is this
        # process's own has nothing to learn (another process's arrival is announced), and at
        # 10,000 idle sockets in 1,000 rooms a read of each was half the refresh's cost.
        local = self._local
        for stream in list(self.rooms.values()):
            if stream.delivered is None:
                continue
            slug = stream.slug
            if all((slug, member) in local for member in stream.members):
                continue
            stream.read_due = True
            await self.sync_locked(stream)

    # The store's lifetime.

    def keep_open(self) -> None:
        """The hub started (again): the store stays open, whatever a stop asked before."""
        self._closing = False

    async def close(self) -> None:
        """The hub stopped: close the store (its Redis pool) once no departure is left to write."""
        self._closing = True
        await self._close_if_idle()

    async def _close_if_idle(self) -> None:
        if self._closing and not self._local and not self._departing and not self._arriving:
            self._closing = False
            await presence.close_loop_store()
