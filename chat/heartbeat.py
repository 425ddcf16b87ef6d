"""Liveness: one sweeper task per process pings the quiet sockets and closes the silent ones.

Each connection records when it last heard from its client (``last_seen``) and when its
next ping may go. The sweeper wakes a few times per timeout, so 10,000 idle sockets cost one
task, not 10,000 timers. It looks at a socket only when that socket may be due: each one sits
in the slot of the tick at which it could first need a ping or a close if nothing arrived
meanwhile; a tick takes its own slot only, and a socket that did hear from its client moves
to a later slot. ``last_seen`` only ever moves later, so no socket is looked at late. With
every socket pinging every interval, each is looked at about once an interval (a pass over
them all, four times an interval, held the loop ~12 ms at 10,000 sockets). A socket quiet for
interval + timeout / 2 gets a ``ping`` (at most one per interval); one silent for interval +
timeout is closed with 4408. A client that pings on its own every interval (the bundled one
does) is never pinged: its pings already prove both directions, and an idle socket costs two
frames per interval instead of four.
"""

from __future__ import annotations

import asyncio
import heapq
import logging
import math
import time
from typing import Protocol
from weakref import WeakKeyDictionary

from django.conf import settings

logger = logging.getLogger(__name__)

# Scope key: where the server offers to answer a watched socket's plain pings itself
# (``offer(socket, open_state)``; chat/daphne_pings.py under daphne, absent elsewhere). The
# socket's ``last_seen`` still moves with every ping, so the sweep below sees no difference.
TRANSPORT_PINGS = "ripple.transport_pings"


class Watched(Protocol):
    """What the sweeper needs from a connection."""

    last_seen: float

    async def heartbeat_ping(self) -> None: ...

    async def heartbeat_expired(self) -> None: ...


class HeartbeatMonitor:
    """Pings and expires the connections of one event loop."""

    def __init__(self, *, interval_s: float, timeout_s: float) -> None:
        self.interval_s = interval_s
        self.timeout_s = timeout_s
        # A few sweeps per timeout: a silent peer is closed at most a quarter timeout late.
        self.tick_s = max(0.02, min(1.0, interval_s / 4, timeout_s / 4))
        # Quiet this long, a socket is pinged; the pong then has timeout / 2 before expiry.
        self.ping_after_s = interval_s + timeout_s / 2
        # Maps each connection to the monotonic time before which it is not pinged again.
        self.next_ping: dict[Watched, float] = {}
        # Maps each connection to the tick (monotonic time / tick_s) of the slot it is in.
        self._slot_of: dict[Watched, int] = {}
        # The slots: connections by tick (an ordered set each: a connection that goes leaves
        # its slot at once, so none is held after its socket closed), and a heap of their ticks.
        self._slots: dict[int, dict[Watched, None]] = {}
        self._ticks: list[int] = []
        self._task: asyncio.Task | None = None

    def register(self, conn: Watched) -> None:
        now = conn.last_seen = time.monotonic()
        self.next_ping[conn] = now
        self._place(conn, self._due_at(now, now), after_tick=-1)
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._sweep(), name="ripple-heartbeat")

    def unregister(self, conn: Watched) -> None:
        self.next_ping.pop(conn, None)
        tick = self._slot_of.pop(conn, None)
        if tick is not None:
            self._slots.get(tick, {}).pop(conn, None)
        if not self.next_ping:
            self._slots.clear()
            self._ticks.clear()
            if self._task is not None:
                self._task.cancel()
                self._task = None

    def _due_at(self, last_seen: float, ping_at: float) -> float:
        """The earliest moment a connection left alone may need something: its close, or its
        ping (not before ``ping_at``, nor before it has been quiet long enough)."""
        return min(last_seen + self.interval_s + self.timeout_s, max(ping_at, last_seen + self.ping_after_s))

    def _place(self, conn: Watched, due_at: float, *, after_tick: int) -> None:
        """Put ``conn`` in the slot of the first tick at or after ``due_at``, and after ``after_tick``
        (the tick being swept: a socket looked at is never looked at again in the same pass)."""
        tick = max(math.ceil(due_at / self.tick_s), after_tick + 1)
        previous = self._slot_of.get(conn)
        if previous is not None and previous != tick:  # its slot, unless a sweep took it already
            self._slots.get(previous, {}).pop(conn, None)
        self._slot_of[conn] = tick
        slot = self._slots.get(tick)
        if slot is None:
            slot = self._slots[tick] = {}
            heapq.heappush(self._ticks, tick)
        slot[conn] = None

    def _take_due(self, now: float) -> tuple[list[Watched], list[Watched]]:
        """The connections of every slot up to ``now``: those to close, those to ping; the rest
        go to the slot of their new due time."""
        silent_s, ping_after_s = self.interval_s + self.timeout_s, self.ping_after_s
        current = math.floor(now / self.tick_s)
        expired: list[Watched] = []
        due: list[Watched] = []
        ticks, slots, slot_of, next_ping = self._ticks, self._slots, self._slot_of, self.next_ping
        while ticks and ticks[0] <= current:
            tick = heapq.heappop(ticks)
            for conn in slots.pop(tick):
                seen, ping_at = conn.last_seen, next_ping[conn]
                if now - seen >= silent_s:
                    del slot_of[conn]
                    expired.append(conn)
                elif now >= ping_at and now - seen >= ping_after_s:
                    # Pinged now: its next ping waits an interval.
                    next_ping[conn] = now + self.interval_s
                    self._place(conn, self._due_at(seen, now + self.interval_s), after_tick=current)
                    due.append(conn)
                else:
                    self._place(conn, self._due_at(seen, ping_at), after_tick=current)
        return expired, due

    async def _sweep(self) -> None:
        while self.next_ping:
            await asyncio.sleep(self.tick_s)
            expired, due = self._take_due(time.monotonic())
            for conn in expired:
                self.next_ping.pop(conn, None)
                await self._call(conn.heartbeat_expired)
            for conn in due:
                if conn in self.next_ping:
                    await self._call(conn.heartbeat_ping)
        self._task = None

    @staticmethod
    async def _call(action) -> None:
        try:
            await action()
        except Exception:  # one broken socket must not stop the sweep for the others
            logger.debug("heartbeat action failed", exc_info=True)


_monitors: WeakKeyDictionary[asyncio.AbstractEventLoop, HeartbeatMonitor] = WeakKeyDictionary()


def get_monitor() -> HeartbeatMonitor:
    loop = asyncio.get_running_loop()
    monitor = _monitors.get(loop)
    if monitor is None:
        monitor = _monitors[loop] = HeartbeatMonitor(
            interval_s=settings.RIPPLE_HEARTBEAT_INTERVAL_S, timeout_s=settings.RIPPLE_HEARTBEAT_TIMEOUT_S
        )
    return monitor
