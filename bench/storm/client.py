"""The storm's clients: one browser tab each, connecting and reconnecting like ripple-socket.js."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import json
import time
from typing import TYPE_CHECKING, Any

from ..wsclient import HandshakeError, WsClient, open_socket
from .balancer import Balancer
from .policy import (
    CLOSE_ABNORMAL,
    CLOSE_CLIENT_CONNECT_TIMEOUT,
    CLOSE_CLIENT_SUBSCRIBE_FAILED,
    CONNECT_TIMEOUT_S,
    MAX_ATTEMPTS,
    QUICK_RECONNECT_CODES,
    QUICK_RECONNECT_S,
    STABLE_AFTER_S,
    backoff_s,
    is_no_retry_close,
)
from .state import HOST

if TYPE_CHECKING:
    from .state import Storm


def failure_kind(error: BaseException, conn: Connection) -> str:
    """A short name for a failed connection attempt: refused, timeout, http_500, reset, ..."""
    if isinstance(error, TimeoutError):
        return "timeout"
    if isinstance(error, HandshakeError):
        status = conn.http_status()
        return f"http_{status}" if status is not None else "closed_in_handshake"
    if isinstance(error, ConnectionRefusedError) or getattr(error, "errno", None) == errno.ECONNREFUSED:
        return "refused"
    if isinstance(error, ConnectionResetError):
        return "reset"
    code = getattr(error, "errno", None)
    return errno.errorcode.get(code, type(error).__name__).lower() if code else type(error).__name__


class Connection(WsClient):
    """One socket of a ``StormClient`` to one worker: frames and the end of the socket go to its owner."""

    def __init__(self, owner: StormClient, worker: int) -> None:
        super().__init__(owner.storm.urls[worker])
        self.owner = owner
        self.worker = worker
        # Counted in the storm's connections per worker (the balancer's least_conn) until released.
        self.counted = True
        owner.storm.balancer.opened(worker)
        # How the TCP connection ended: "eof", or the exception (ConnectionResetError, ...).
        self.lost_because = ""

    def release(self) -> None:
        if self.counted:
            self.counted = False
            self.owner.storm.balancer.closed(self.worker)

    def on_text(self, data: bytes, now_ns: int) -> None:
        self.owner.on_frame(self, json.loads(data))

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost_because = "eof" if exc is None else type(exc).__name__
        super().connection_lost(exc)
        self.release()
        self.owner.on_lost(self)

    def close_code(self) -> int:
        received = self.ws.close_rcvd
        return received.code if received is not None else CLOSE_ABNORMAL

    def http_status(self) -> int | None:
        response = getattr(self.ws.handshake_exc, "response", None)
        return getattr(response, "status_code", None)


class StormClient:
    """One browser tab subscribed to one room, connecting and reconnecting like ripple-socket.js.

    Mirrored: one socket at a time; after a drop, a reconnect delayed by full-jitter backoff
    (``backoff_s(failures - 1)``), or by ``random() × 1 s`` without counting a failure after
    1001/1012/4512; no reconnect after 1008 or 4400–4499 other than 4408 (4401, 4409, 4429, ...);
    a failed handshake (HTTP 403 from a draining worker included: a browser sees only 1006)
    counts a failure, and so do 4503 and 4509; give up after 20
    consecutive failures, which reset once a socket stays up 5 s; a 15 s connect timeout;
    ``subscribe`` sent on open with ``since`` = the last seq seen; messages at or below it
    dropped, a gap answered with unsubscribe + subscribe; unacknowledged messages sent again
    after the re-subscribe. Not mirrored: the client's own heartbeat pings (on loopback a dead
    worker's sockets close at once), presence bookkeeping and the online/visibility events.
    """

    def __init__(self, storm: Storm, *, room: str, worker: int) -> None:
        self.storm = storm
        self.room = room
        self.worker = worker  # its first worker: the storm is about the clients of restarted ones
        self.conn: Connection | None = None
        self.open = False  # the current socket finished its handshake
        self.active = False  # ... and the room's `subscribed` came on it
        self.failures = 0  # consecutive failed attempts, as the JS client counts them
        self.last_seq: int | None = None
        self.refs = 0
        self.ref = ""  # ref of the subscribe in flight
        self.outbox: dict[str, str] = {}  # client_id -> encoded message frame, until acked
        self.reconnect: asyncio.TimerHandle | None = None
        self.stable: asyncio.TimerHandle | None = None
        self.gave_up: str | None = None
        self.left_out = False  # never subscribed before the restart: not part of the storm
        self.fresh = False  # no `subscribed` yet on the current socket
        # What the storm measures, in perf_counter seconds.
        self.dropped_at: float | None = None  # first drop after the restart signal
        self.resubscribed_at: float | None = None  # latest `subscribed` after that drop
        self.attempts = 0  # connection attempts after that drop
        self.handshake_s: float | None = None  # the latest successful attempt's duration
        self.back_on: int | None = None  # the worker of the socket it re-subscribed on

    @property
    def back(self) -> bool:
        """Subscribed again after losing its socket in the storm."""
        return self.active and self.dropped_at is not None and self.resubscribed_at is not None

    @property
    def waiting(self) -> bool:
        """The storm is not over for this client: its worker was restarted, or it lost its socket anyway."""
        if self.gave_up or self.back:
            return False
        return self.worker in self.storm.restarting or self.dropped_at is not None

    def connect(self) -> None:
        """``#connect()``: a no-op while a socket exists (the reconnect lock)."""
        if self.conn is not None or self.gave_up or self.storm.closing:
            return
        self.cancel_timers()
        targets = self.storm.targets(self)
        conn = Connection(self, targets[0])
        self.conn = conn
        if self.dropped_at is not None:
            self.attempts += 1
        self.storm.spawn(self.attempt(conn, targets[1:]))

    async def attempt(self, conn: Connection, fallbacks: list[int]) -> None:
        """One connection attempt; through the balancer, a refusal moves it on to the next worker."""
        started = time.perf_counter()
        while True:
            try:
                await open_socket(
                    conn, host=HOST, port=self.storm.ports[conn.worker], timeout_s=CONNECT_TIMEOUT_S
                )
                break
            except (OSError, TimeoutError, HandshakeError) as error:
                conn.release()
                if conn is not self.conn:
                    return
                kind = failure_kind(error, conn)
                if fallbacks and Balancer.moves_on(kind):
                    # What nginx does before answering the browser: the client sees nothing.
                    self.storm.rerouted(conn.worker, kind)
                    conn = self.conn = Connection(self, fallbacks.pop(0))
                    continue
                self.storm.handshake_failed(conn.worker, kind, error)
                self.drop(CLOSE_CLIENT_CONNECT_TIMEOUT if kind == "timeout" else CLOSE_ABNORMAL)
                return
        if conn is not self.conn:
            conn.abort()
            return
        if conn.closed.done():  # lost between the handshake and this line
            self.drop(conn.close_code())
            return
        self.handshake_s = time.perf_counter() - started
        self.open = self.fresh = True
        # Only a socket that stays up proves the server is back.
        self.stable = self.storm.loop.call_later(STABLE_AFTER_S, self.reset_failures)
        self.send_subscribe()

    def reset_failures(self) -> None:
        self.failures = 0

    def on_lost(self, conn: Connection) -> None:
        if conn is self.conn and self.open:
            code = conn.close_code()
            if code == CLOSE_ABNORMAL:
                self.storm.note_abnormal(conn.lost_because)
            self.drop(code)

    def drop(self, code: int) -> None:
        """``#drop`` and ``#afterDrop``: forget the socket, then schedule what comes next."""
        conn, self.conn = self.conn, None
        was_open, self.open, self.active = self.open, False, False
        self.cancel_timers()
        if conn is not None:
            conn.release()
            if was_open:
                conn.close()
            else:
                conn.abort()
        self.storm.dropped(self, code, was_open)
        if self.storm.closing or self.gave_up:
            return
        rng = self.storm.rng
        if is_no_retry_close(code):
            self.gave_up = f"close {code}"
            self.storm.released(self)
            return
        if code in QUICK_RECONNECT_CODES:
            delay_s = rng.random() * QUICK_RECONNECT_S
        else:
            self.failures += 1
            if self.failures >= MAX_ATTEMPTS:
                self.gave_up = f"{MAX_ATTEMPTS} failed attempts"
                self.storm.released(self)
                return
            delay_s = backoff_s(self.failures - 1, rng)
        self.reconnect = self.storm.loop.call_later(delay_s, self.connect)

    def cancel_timers(self) -> None:
        for handle in (self.reconnect, self.stable):
            if handle is not None:
                handle.cancel()
        self.reconnect = self.stable = None

    def send(self, frame: dict[str, Any] | str) -> None:
        if self.conn is None or not self.open:
            return
        # A closing socket raises: connection_lost follows and drops it.
        with contextlib.suppress(ConnectionError):
            self.conn.send_text(frame if isinstance(frame, str) else json.dumps(frame))

    def send_subscribe(self) -> None:
        self.refs += 1
        self.ref = f"s{self.refs}"
        frame: dict[str, Any] = {"type": "subscribe", "room": self.room, "ref": self.ref}
        if self.last_seq is not None:
            frame["since"] = self.last_seq
        self.send(frame)

    def resubscribe(self) -> None:
        """A gap in seq: leave and join again from the last seq seen; the reply fills the gap."""
        self.active = False
        self.send({"type": "unsubscribe", "room": self.room})
        self.send_subscribe()

    def post(self, label: str, count: int) -> None:
        for number in range(count):
            client_id = f"{label}-{number}"
            frame = {
                "type": "message",
                "room": self.room,
                "body": f"storm {label} {number}",
                "client_id": client_id,
            }
            self.outbox[client_id] = json.dumps(frame)
            if self.active:
                self.send(self.outbox[client_id])

    def on_frame(self, conn: Connection, frame: dict[str, Any]) -> None:
        if conn is not self.conn:
            return
        kind = frame.get("type")
        if kind == "message":
            self.on_message(frame)
        elif kind == "ping":
            self.send({"type": "pong", "t": frame.get("t")})
        elif kind == "subscribed":
            self.on_subscribed(frame)
        elif kind == "ack":
            if self.outbox.pop(frame.get("client_id", ""), None) is not None:
                self.storm.acked(self.room, frame["seq"])
        elif kind == "error":
            self.on_error(frame)

    def on_subscribed(self, frame: dict[str, Any]) -> None:
        if self.active or frame.get("ref") != self.ref:
            return
        self.active = True
        if frame.get("complete") is False:
            self.storm.resets += 1
            self.last_seq = None
        for message in frame.get("messages", []):
            seq = message.get("seq")
            if isinstance(seq, int) and (self.last_seq is None or seq > self.last_seq):
                self.last_seq = seq
        last = frame.get("last_seq")
        if isinstance(last, int) and (self.last_seq is None or last > self.last_seq):
            self.last_seq = last
        self.storm.subscribed(self, fresh=self.fresh)
        self.fresh = False
        for text in self.outbox.values():
            self.send(text)

    def on_message(self, frame: dict[str, Any]) -> None:
        seq = frame.get("seq")
        if not self.active or not isinstance(seq, int):
            return
        if self.last_seq is not None:
            if seq <= self.last_seq:
                self.storm.duplicates += 1
                return
            if seq > self.last_seq + 1:
                self.storm.gaps += 1
                self.resubscribe()
                return
        self.last_seq = seq

    def on_error(self, frame: dict[str, Any]) -> None:
        code = str(frame.get("code", "?"))
        if frame.get("client_id") in self.outbox:
            del self.outbox[frame["client_id"]]
            self.storm.message_errors[code] += 1
            return
        if frame.get("ref") != self.ref or self.active:
            return
        self.storm.subscribe_errors[code] += 1
        if code == "already_subscribed":
            self.resubscribe()
        elif code == "server_error":
            self.drop(CLOSE_CLIENT_SUBSCRIBE_FAILED)
        else:
            self.gave_up = f"subscribe refused: {code}"
            self.storm.released(self)
