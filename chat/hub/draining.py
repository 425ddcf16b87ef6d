"""Sending this process's sockets away: each closed with 4512 at a random moment of a window.

The process-wide switch (refuse new sockets, SIGTERM, ``/readyz``) is chat/drain.py; this is
the hub's part, the sockets it holds.
"""

from __future__ import annotations

import asyncio
import contextlib
import random

from .. import drain, protocol
from ..logs import log_event
from .subscriber import Subscriber, close_quietly

# After the drain window, sockets still open are given this long to finish closing.
DRAIN_GRACE_S = 2.0


class Draining(Exception):
    """This process is draining: the socket should go to another worker (4512)."""


class SocketDrain:
    """Closes every socket of the hub over a window and waits for the last one to leave."""

    def __init__(self, connections: set[Subscriber]) -> None:
        # The hub's own set of sockets (shared, not copied).
        self.connections = connections
        # Sockets out of the set whose leaving (the hub's part of it) is not over yet.
        self._leaving = 0
        # Set when the last socket has left, while a drain waits for that.
        self._emptied: asyncio.Event | None = None

    def socket_leaving(self) -> None:
        """Called by the hub as a socket leaves its set, before the hub's share of the cleanup."""
        self._leaving += 1

    def socket_left(self) -> None:
        """Called by the hub once a socket's leaving is over (``socket_leaving`` came first)."""
        self._leaving -= 1
        if not self._busy() and self._emptied is not None:
            self._emptied.set()

    def _busy(self) -> bool:
        return bool(self.connections) or self._leaving > 0

    async def drain(self, window_s: float) -> None:
        """Close every socket here with 4512, at random moments spread over ``window_s``.

        Returns when they are all gone, or ``DRAIN_GRACE_S`` after the window.
        """
        drain.begin()
        subscribers = list(self.connections)
        log_event("drain_started", sockets=len(subscribers), window_s=window_s)
        loop = asyncio.get_running_loop()
        started = loop.time()

        async def close_later(subscriber: Subscriber, delay: float) -> None:
            await asyncio.sleep(delay)
            await close_quietly(subscriber, protocol.CLOSE_DRAINING)

        await asyncio.gather(*(close_later(s, random.uniform(0, window_s)) for s in subscribers))  # noqa: S311 - jitter
        # Until every socket is gone and done leaving: the server may stop the process next,
        # and a cleanup still under way (the last socket's stops the hub) would be cut short.
        if self._busy():
            self._emptied = asyncio.Event()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout_at(started + window_s + DRAIN_GRACE_S):
                    await self._emptied.wait()
        log_event("drain_finished", left_open=len(self.connections), took_s=round(loop.time() - started, 3))
