"""Liveness: one sweeper task per process pings the quiet sockets and closes the silent ones.

Each connection records when it last heard from its client (``last_seen``) and when its
next ping may go. The sweeper wakes a few times per timeout, so 10,000 idle sockets cost one
task, not 10,000 timers; and it passes over them only when one may be due: each pass notes
the earliest moment any socket could need a ping or a close (``horizon``), which ``last_seen``
only ever pushes later, so the ticks before it look at nothing. With every socket pinging
every interval that is a pass every ~5 s instead of every second (at 10,000 sockets a pass
held the loop ~4 ms). A socket quiet for interval + timeout / 2
gets a ``ping`` (at most one per interval); one silent for interval + timeout is closed with
4408. A client that pings on its own every interval (the bundled one does) is never pinged:
its pings already prove both directions, and an idle socket costs two frames per interval
instead of four.
"""

from __future__ import annotations

import asyncio
import logging
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
        # No connection can be due for a ping or a close before this (monotonic).
        self.horizon = 0.0
        self._task: asyncio.Task | None = None

    def register(self, conn: Watched) -> None:
        conn.last_seen = time.monotonic()
        self.next_ping[conn] = conn.last_seen
        self.horizon = min(self.horizon, self._due_at(conn.last_seen, conn.last_seen))
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._sweep(), name="ripple-heartbeat")

    def unregister(self, conn: Watched) -> None:
        self.next_ping.pop(conn, None)
        if not self.next_ping and self._task is not None:
            self._task.cancel()
            self._task = None

    def _due_at(self, last_seen: float, ping_at: float) -> float:
        """The earliest moment a connection left alone may need something: its close, or its
        ping (not before ``ping_at``, nor before it has been quiet long enough)."""
        return min(last_seen + self.interval_s + self.timeout_s, max(ping_at, last_seen + self.ping_after_s))

    async def _sweep(self) -> None:
        silent_s = self.interval_s + self.timeout_s
        ping_after_s = self.ping_after_s
        due_at = self._due_at
        while self.next_ping:
            await asyncio.sleep(self.tick_s)
            now = time.monotonic()
            if now < self.horizon:
                continue
            expired: list[Watched] = []
            due: list[Watched] = []
            horizon = now + silent_s
            for conn, ping_at in self.next_ping.items():
                seen = conn.last_seen
                if now - seen >= silent_s:
                    expired.append(conn)
                elif now >= ping_at and now - seen >= ping_after_s:
                    due.append(conn)
                else:
                    horizon = min(horizon, due_at(seen, ping_at))
            for conn in due:  # pinged now: their next ping waits an interval
                horizon = min(horizon, due_at(conn.last_seen, now + self.interval_s))
            self.horizon = horizon
            for conn in expired:
                self.next_ping.pop(conn, None)
                await self._call(conn.heartbeat_expired)
            for conn in due:
                if conn in self.next_ping:
                    self.next_ping[conn] = now + self.interval_s
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
