"""daphne's ``Server`` with a per-connection cost that does not grow with the number of sockets.

daphne gives every connection an ``asyncio.Queue`` (three deques, an event and a dict: about
3.8 KiB) and walks every connection once a second (``application_checker``) and every two
seconds (``timeout_checker``): with 10,000 idle sockets that is 15,000 Python calls a second
for nothing. Here:

- a connection's queue is an ``ApplicationQueue``: a list and the one reader's wakeup (about
  0.2 KiB). It also says whether its reader waits with nothing queued (``idle()``), which is
  when a plain ping may be answered at the transport without passing a frame sent before it
  (chat/daphne_pings.py).
- an application is reaped when it ends or when its connection is lost, not searched for:
  the checker walks only the connections that did one or the other.
- the timeout walk skips sockets whose liveness the application's heartbeat owns
  (chat/heartbeat.py; daphne would only send them protocol pings), except once a minute,
  which keeps daphne's ``--websocket_timeout`` within a minute of its setting.

The ASGI application sees the same messages in the same order; ``install()`` in
chat/daphne_guard.py makes daphne's command line build this server.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from functools import partial
from typing import Any

import daphne.server
from twisted.internet import reactor as _reactor

from .daphne_pings import PingAnswering
from .heartbeat import TRANSPORT_PINGS

# The global reactor daphne runs on (typed: its interface hides callLater's signature).
reactor: Any = _reactor
# How often the timeout walk includes the sockets the heartbeat watches (daphne: every walk).
FULL_TIMEOUT_WALK_S = 60.0
# Items already read are dropped from the front of a queue's list once there are this many.
QUEUE_COMPACT_AT = 64


class ApplicationQueue:
    """What daphne needs of a connection's queue (``put_nowait``, ``get``), for one reader at a time.

    Items are kept in one list read from ``_head`` on (popping the front of a list is linear;
    a flood queues many). More than one reader at once is served in the order they wait.
    """

    __slots__ = ("_head", "_items", "_waiters")

    def __init__(self) -> None:
        self._items: list[Any] = []
        self._head = 0
        # Futures of the readers waiting for an item, oldest first (almost always one or none).
        self._waiters: list[asyncio.Future[None]] = []

    def qsize(self) -> int:
        return len(self._items) - self._head

    def empty(self) -> bool:
        return self._head == len(self._items)

    def idle(self) -> bool:
        """Whether a reader waits and nothing is queued: every item put so far has been handled."""
        if self._head != len(self._items):
            return False
        for waiter in self._waiters:  # noqa: SIM110  once per ping: any() over a generator costs 5x
            if not waiter.done():
                return True
        return False

    def put_nowait(self, item: Any) -> None:
        self._items.append(item)
        self._wake_one()

    async def get(self) -> Any:
        while self._head == len(self._items):
            waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            try:
                await waiter
            except BaseException:
                waiter.cancel()
                self._remove(waiter)
                if self._head != len(self._items):
                    self._wake_one()  # this reader was woken, then cancelled: the next one reads
                raise
            self._remove(waiter)
        item = self._items[self._head]
        self._items[self._head] = None
        self._head += 1
        if self._head == len(self._items):
            self._items.clear()
            self._head = 0
        elif self._head >= QUEUE_COMPACT_AT:
            del self._items[: self._head]
            self._head = 0
        return item

    def _wake_one(self) -> None:
        for waiter in self._waiters:
            if not waiter.done():
                waiter.set_result(None)
                return

    def _remove(self, waiter: asyncio.Future[None]) -> None:
        with contextlib.suppress(ValueError):
            self._waiters.remove(waiter)


class GuardedServer(daphne.server.Server):
    """daphne's server with light queues, reaping on events and a timeout walk of what needs it."""

    def run(self) -> None:
        # Connections whose application ended or whose peer left: all the reaper looks at.
        self.ended: set[Any] = set()
        # Connections whose liveness the application's heartbeat owns (``heartbeat_watches``).
        self.watched: set[Any] = set()
        self._next_full_walk = 0.0
        super().run()

    def heartbeat_watches(self, protocol: Any) -> None:
        """The application's heartbeat watches ``protocol`` from now on (chat/daphne_pings.py)."""
        self.watched.add(protocol)

    def protocol_disconnected(self, protocol: Any) -> None:
        super().protocol_disconnected(protocol)
        self.ended.add(protocol)
        self.watched.discard(protocol)

    def create_application(self, protocol: Any, scope: dict[str, Any]) -> ApplicationQueue | None:
        """daphne's, with an ``ApplicationQueue`` and the socket's ping answering in its scope."""
        details = self.connections.get(protocol)
        if details is None:  # gone already, as daphne checks
            return None
        assert "application_instance" not in details
        queue = ApplicationQueue()
        scope.setdefault("asgi", {"version": "3.0"})
        if isinstance(protocol, PingAnswering):
            scope[TRANSPORT_PINGS] = protocol.answer_pings_for
        instance = self.application(scope=scope, receive=queue.get, send=partial(self.handle_reply, protocol))
        future = asyncio.ensure_future(instance, loop=asyncio.get_event_loop())
        details["application_instance"] = future
        future.add_done_callback(partial(_ended, self.ended, protocol))
        return queue

    def application_checker(self) -> None:
        """daphne's checks, on the connections that ended; the others have nothing to check."""
        now = time.time()
        for protocol in list(self.ended):
            details = self.connections.get(protocol)
            if details is None:
                self.ended.discard(protocol)
                continue
            disconnected = details.get("disconnected")
            instance = details.get("application_instance")
            if instance is not None and not instance.done():
                if disconnected and now - disconnected > self.application_close_timeout:
                    daphne.server.logger.warning(
                        "Application instance %r for connection %s took too long to shut down"
                        " and was killed.",
                        instance,
                        repr(protocol),
                    )
                    instance.cancel()  # its done callback brings it back here
                continue
            if instance is not None:
                self._reap(protocol, instance, disconnected)
                del details["application_instance"]
            if disconnected:
                del self.connections[protocol]
            # Not yet disconnected: protocol_disconnected puts it back when it is.
            self.ended.discard(protocol)
        reactor.callLater(1, self.application_checker)

    def _reap(self, protocol: Any, instance: asyncio.Future[Any], disconnected: Any) -> None:
        if instance.cancelled():
            return
        error = instance.exception()
        if error is None:
            return
        if isinstance(error, KeyboardInterrupt):
            self.stop()  # the application asks the server to exit (tests)
            return
        daphne.server.logger.error("Exception inside application: %s", error, exc_info=error)
        if not disconnected:
            protocol.handle_exception(error)

    def timeout_checker(self) -> None:
        """daphne's timeout walk, leaving out the heartbeat's sockets but once a minute."""
        now = time.monotonic()
        full = now >= self._next_full_walk
        if full:
            self._next_full_walk = now + FULL_TIMEOUT_WALK_S
        # A set difference, not a Python test per connection: at 10,000 sockets the walk that
        # looked at each one held the loop ~5 ms every two seconds.
        for protocol in list(self.connections) if full else self.connections.keys() - self.watched:
            protocol.check_timeouts()
        reactor.callLater(2, self.timeout_checker)


def _ended(ended: set[Any], protocol: Any, _future: asyncio.Future[Any]) -> None:
    ended.add(protocol)
