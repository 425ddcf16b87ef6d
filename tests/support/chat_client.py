"""A resilient asyncio chat client for fault tests: what static/js/ripple-socket.js does, in Python.

One room per client. It connects to each URL of its list in turn (rotating on every
reconnect), resumes the room from the last ``seq`` it saw, keeps every message it sent in an
outbox until acknowledged and re-sends it with its original ``client_id`` after each
reconnect, records every ``message`` frame by ``seq`` (once), notices gaps, answers server
pings, sends its own pings and gives up on a socket that stops answering them.

Like the bundled client it obeys the server's limits: messages go out no faster than the
message bucket ``welcome.limits`` names (full again on every socket), and a frame refused with
``rate_limited`` is sent again after ``retry_after_ms`` with every later message behind it.

Everything it learns is kept for the test to assert on: ``seen``, ``acked``, ``closes``,
``gaps``, ``holes``, ``redelivered``, ``errors``, ``log``. Every wait takes a timeout;
``stop()`` cancels every task it started.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import random
import re
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import websockets
from websockets.asyncio.client import ClientConnection, connect
from websockets.typing import Origin

from tests.support.origins import same_origin

# Close codes as the client records them (docs/protocol.md).
CLOSE_ABNORMAL = 1006
CLOSE_POLICY_VIOLATION = 1008
CLOSE_HEARTBEAT_TIMEOUT = 4408
# Recorded when this client abandons a socket (the same codes as static/js/ripple/constants.js;
# tests/unit/test_protocol_sync.py checks every copy).
CLOSE_CLIENT_HEARTBEAT_TIMEOUT = 4000
CLOSE_CLIENT_CONNECT_TIMEOUT = 4001
CLOSE_CLIENT_SUBSCRIBE_FAILED = 4002

# A rate_limited error without a usable retry_after_ms waits this long (as the bundled client).
RETRY_AFTER_DEFAULT_S = 1.0
RETRY_AFTER_MAX_S = 60.0
# server_error on a message: nothing was stored and the frame may be sent again, after this.
SERVER_ERROR_RETRY_S = 0.25

_CLIENT_ID_UNSAFE = re.compile(r"[^A-Za-z0-9_.:-]+")


def is_no_retry_close(code: int) -> bool:
    """4400-4499 except 4408 (and 1008): the server does not want this client back."""
    return code == CLOSE_POLICY_VIOLATION or (4400 <= code <= 4499 and code != CLOSE_HEARTBEAT_TIMEOUT)


def retry_after_s(frame: dict[str, Any]) -> float:
    ms = frame.get("retry_after_ms")
    if not isinstance(ms, int | float) or ms < 0:
        return RETRY_AFTER_DEFAULT_S
    return min(ms / 1000, RETRY_AFTER_MAX_S)


class ClientGaveUp(Exception):
    """The server closed with a "do not come back" code, ended the room, or attempts ran out."""


@dataclass
class OutboxEntry:
    """One message waiting for its ack."""

    body: str
    # Number of the socket it was last sent on; None: owed on the current one.
    sent_on: int | None = None
    sends: int = 0


@dataclass
class _Connection:
    """What one socket knows: its number, heartbeat settings and whether the room is live."""

    number: int
    url: str
    ws: ClientConnection
    opened_at: float
    interval_s: float = 20.0
    timeout_s: float = 10.0
    # Set once the welcome (with the heartbeat settings) is read.
    welcomed: asyncio.Event = field(default_factory=asyncio.Event)
    # Set on every frame received; the heartbeat clears it before each ping.
    heard: asyncio.Event = field(default_factory=asyncio.Event)
    # The room's subscribe was answered on this socket; live messages count from then on.
    active: bool = False
    subscribe_ref: str | None = None
    # Loop time at which a subscribe refused by a rate limit goes out again.
    subscribe_due: float | None = None
    # The close code this client chose when it abandoned the socket itself.
    abandoned_with: int | None = None


class ChatClient:
    """One reconnecting chat participant in one room (see the module docstring)."""

    def __init__(
        self,
        urls: list[str],
        *,
        room: str,
        name: str,
        session_cookie: str | None = None,
        origin: str | None = None,
        since: int | None = 0,
        backoff_base_s: float = 0.05,
        backoff_max_s: float = 1.0,
        stable_after_s: float = 2.0,
        max_attempts: int | None = None,
        connect_timeout_s: float = 5.0,
        send_rate_per_s: float | None = None,
        send_burst: int | None = None,
    ) -> None:
        """``urls`` are ws:// bases (``/ws/chat/`` is added) or full socket URLs.

        ``session_cookie`` is a Django session key: a guest name in it (or a login) keeps the
        author the same across reconnects, as a browser's cookie does. ``since`` is the last
        seq already known (None: start from the room's recent history). ``send_rate_per_s``
        and ``send_burst`` pace sends instead of ``welcome.limits``.
        """
        if not urls:
            raise ValueError("at least one URL")
        self.urls = list(urls)
        self.room = room
        self.name = name
        self.session_cookie = session_cookie
        self.origin = origin
        self.backoff_base_s = backoff_base_s
        self.backoff_max_s = backoff_max_s
        self.stable_after_s = stable_after_s
        self.max_attempts = max_attempts
        self.connect_timeout_s = connect_timeout_s
        self.send_rate_per_s = send_rate_per_s
        self.send_burst = send_burst

        # Newest seq seen with nothing missing below it (from ``since``); None: no history yet.
        self.last_seq: int | None = since
        # Maps seq to (author, body, client_id) of every message frame seen, once.
        self.seen: dict[int, tuple[str, str, str]] = {}
        # Live message frames whose seq was already seen (a socket must not send one twice).
        self.redelivered: list[int] = []
        # (expected seq, received seq) each time a live message skipped ahead; the client then
        # subscribes again from its last seq, as docs/protocol.md says.
        self.gaps: list[tuple[int, int]] = []
        # (first, last) seqs a complete ``subscribed`` should have listed and did not: lost.
        self.holes: list[tuple[int, int]] = []
        # ``subscribed`` frames with complete=false: the server could not resume.
        self.resets: list[dict[str, Any]] = []
        # Every client_id this client sent, with its body, in send order.
        self.sent: dict[str, str] = {}
        # Messages not acknowledged yet: maps client_id to its entry, in send order.
        self.outbox: dict[str, OutboxEntry] = {}
        # Maps client_id to the seq its ack carried.
        self.acked: dict[str, int] = {}
        # client_ids acknowledged with duplicate=true (a re-send of something already stored).
        self.duplicate_acks: list[str] = []
        # Error frames that ended one of our messages (e.g. client_id_conflict), by client_id.
        self.failed: dict[str, dict[str, Any]] = {}
        # Every error frame received, rate_limited included.
        self.errors: list[dict[str, Any]] = []
        # Every close code seen, in order (1006: the connection dropped without a close frame).
        self.closes: list[int] = []
        # Connection attempts that never opened: (url, error text).
        self.connect_failures: list[tuple[str, str]] = []
        # Every welcome frame, one per socket opened.
        self.welcomes: list[dict[str, Any]] = []
        # Timeline for reports and failure messages: (loop time, event, detail).
        self.log: list[tuple[float, str, str]] = []
        self.pings_sent = 0
        self.pongs_received = 0
        self.server_pings = 0
        self.gave_up: str | None = None

        self._counter = itertools.count(1)
        self._id_prefix = f"{_CLIENT_ID_UNSAFE.sub('-', name)[:28]}.{secrets.token_hex(3)}"
        self._url_index = 0
        self._numbers = itertools.count(1)
        self._refs = itertools.count(1)
        self._conn: _Connection | None = None
        self._task: asyncio.Task | None = None
        self._stopping = False
        # Replaced on every notification: waiters wake, then wait on the new one.
        self._changed = asyncio.Event()
        self._wake_sender = asyncio.Event()
        # The client's copy of the server's message bucket: (rate, burst) or None (unpaced).
        self._pace: tuple[float, float] | None = None
        self._tokens = 0.0
        self._tokens_at = 0.0
        # Loop time before which no message goes out (a rate limit's wait).
        self._hold_until = 0.0

    # Public API.

    @property
    def connected(self) -> bool:
        """A socket is open and the room is subscribed on it."""
        return self._conn is not None and self._conn.active

    @property
    def url(self) -> str | None:
        """The URL of the open socket, if any."""
        return self._conn.url if self._conn is not None else None

    async def start(self, timeout: float = 10.0) -> None:
        """Connect and wait until the room is subscribed."""
        if self._task is not None:
            raise RuntimeError("already started")
        self._task = asyncio.get_running_loop().create_task(self._run(), name=f"chat-client-{self.name}")
        await self.wait_connected(timeout)

    async def send(self, body: str, *, client_id: str | None = None) -> str:
        """Put a message in the outbox and return its client_id; it goes out (again) until acked."""
        client_id = client_id or f"{self._id_prefix}.{next(self._counter)}"
        if client_id in self.sent:
            raise ValueError(f"client_id {client_id} already used")
        self.sent[client_id] = body
        self.outbox[client_id] = OutboxEntry(body=body)
        self._event("queued", client_id)
        self._wake_sender.set()
        return client_id

    async def wait_connected(self, timeout: float) -> None:
        await self._wait_for(lambda: self.connected, timeout, "the room to be subscribed")

    async def wait_acked(self, timeout: float) -> None:
        """Until the outbox is empty: every message sent is stored and acknowledged."""
        await self._wait_for(
            lambda: not self.outbox, timeout, "every message to be acked", refused_fails=True
        )

    async def wait_seen(self, seq: int, timeout: float) -> None:
        """Until every message up to ``seq`` has been seen, with nothing missing in between."""
        await self._wait_for(
            lambda: self.last_seq is not None and self.last_seq >= seq, timeout, f"seq {seq}"
        )

    async def wait_for(self, predicate: Callable[[], bool], timeout: float, what: str) -> None:
        """Until ``predicate()`` holds; checked after every change this client notices."""
        await self._wait_for(predicate, timeout, what)

    async def stop(self) -> None:
        """Close the socket (1000) and cancel every task this client started."""
        self._stopping = True
        task, self._task = self._task, None
        conn = self._conn
        if conn is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(conn.ws.close(), timeout=1.0)
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    def describe(self) -> str:
        """One line about this client's state, for failure messages."""
        return (
            f"{self.name}: url={self.url} connected={self.connected} last_seq={self.last_seq} "
            f"seen={len(self.seen)} outbox={len(self.outbox)} acked={len(self.acked)} "
            f"closes={self.closes} gaps={self.gaps} holes={self.holes} failed={list(self.failed)} "
            f"gave_up={self.gave_up}"
        )

    def reconnect_times(self) -> list[float]:
        """Seconds from each close this client saw to the next ``subscribed``."""
        times: list[float] = []
        closed_at: float | None = None
        for at, kind, _ in self.log:
            if kind == "closed" and closed_at is None:
                closed_at = at
            elif kind == "subscribed" and closed_at is not None:
                times.append(at - closed_at)
                closed_at = None
        return times

    # Waiting.

    def _notify(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    async def _wait_for(
        self, predicate: Callable[[], bool], timeout: float, what: str, *, refused_fails: bool = False
    ) -> None:
        try:
            async with asyncio.timeout(timeout):
                while not predicate():
                    if self.gave_up is not None:
                        raise ClientGaveUp(f"{self.describe()} (waiting for {what})")
                    if refused_fails and self.failed:
                        raise AssertionError(f"{self.name}: messages refused: {self.failed}")
                    await self._changed.wait()
        except TimeoutError:
            raise TimeoutError(f"timed out after {timeout} s waiting for {what}; {self.describe()}") from None

    # The connection loop.

    def _now(self) -> float:
        return asyncio.get_running_loop().time()

    def _event(self, kind: str, detail: str = "") -> None:
        self.log.append((self._now(), kind, detail))

    async def _run(self) -> None:
        failures = 0
        while not self._stopping:
            url = self.urls[self._url_index % len(self.urls)]
            self._url_index += 1
            opened_for = await self._connect_once(url)
            if self._stopping or self.gave_up is not None:
                break
            # Only a socket that stayed up a while proves the server is back.
            if opened_for is not None and opened_for >= self.stable_after_s:
                failures = 0
            failures += 1
            if self.max_attempts is not None and failures >= self.max_attempts:
                self.gave_up = f"{failures} attempts failed"
                self._notify()
                break
            # Full jitter, bounded: random() * min(max, base * 2 ** tries).
            delay = random.random() * min(self.backoff_max_s, self.backoff_base_s * 2 ** (failures - 1))
            self._event("backoff", f"{delay:.3f}s")
            await asyncio.sleep(delay)

    async def _connect_once(self, url: str) -> float | None:
        """One socket's life; returns how long it stayed open, or None if it never opened."""
        headers = [("Cookie", f"sessionid={self.session_cookie}")] if self.session_cookie else []
        self._event("connecting", url)
        try:
            ws = await connect(
                url if "/ws/" in url else f"{url.rstrip('/')}/ws/chat/",
                # A page's own origin, as a browser sends it (unless the test chose another).
                origin=Origin(self.origin or same_origin(url)),
                additional_headers=headers,
                open_timeout=self.connect_timeout_s,
                # A browser answers protocol pings but never sends them: liveness is the
                # application heartbeat's job.
                ping_interval=None,
                close_timeout=1.0,
            )
        except Exception as error:  # refused, reset, timed out, HTTP 403/500...
            self.connect_failures.append((url, f"{type(error).__name__}: {error}"))
            self._event("connect_failed", f"{url}: {error}")
            self._notify()
            return None
        conn = _Connection(number=next(self._numbers), url=url, ws=ws, opened_at=self._now())
        self._conn = conn
        self._event("open", f"{url} #{conn.number}")
        tasks = [
            asyncio.create_task(self._read(conn), name=f"{self.name}-read"),
            asyncio.create_task(self._heartbeat(conn), name=f"{self.name}-heartbeat"),
            asyncio.create_task(self._sender(conn), name=f"{self.name}-sender"),
        ]
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in tasks:
                task.cancel()
            results = await asyncio.gather(*tasks, return_exceptions=True)
            self._conn = None
            conn.active = False
        if not self._stopping:
            unexpected = [
                r
                for r in results
                if isinstance(r, Exception) and not isinstance(r, websockets.ConnectionClosed)
            ]
            if unexpected:
                self._event("client_error", repr(unexpected[0]))
            code = self._close_code(conn, results)
            self.closes.append(code)
            self._event("closed", f"{url} #{conn.number} code={code}")
            if is_no_retry_close(code):
                self.gave_up = f"closed with {code}"
        self._notify()
        return self._now() - conn.opened_at

    def _close_code(self, conn: _Connection, results: list[Any]) -> int:
        if conn.abandoned_with is not None:
            return conn.abandoned_with
        for result in results:
            if isinstance(result, websockets.ConnectionClosed):
                return result.rcvd.code if result.rcvd is not None else CLOSE_ABNORMAL
        # A failure of this client's own while the socket was up: drop the socket.
        conn.ws.transport.abort()
        return CLOSE_ABNORMAL

    def _abandon(self, conn: _Connection, code: int) -> None:
        """Give up on a socket this client no longer trusts (no close handshake with a dead peer)."""
        if conn.abandoned_with is None:
            conn.abandoned_with = code
            self._event("abandon", f"{conn.url} #{conn.number} code={code}")
        conn.ws.transport.abort()

    def _abandon_unless_active(self, conn: _Connection, code: int) -> None:
        if not conn.active:
            self._abandon(conn, code)

    # Per-socket tasks: reader, heartbeat, sender. The first to end ends the socket.

    async def _send_frame(self, conn: _Connection, frame: dict[str, Any]) -> None:
        await conn.ws.send(json.dumps(frame))

    async def _read(self, conn: _Connection) -> None:
        try:
            text = await asyncio.wait_for(conn.ws.recv(), timeout=self.connect_timeout_s)
        except TimeoutError:
            self._abandon(conn, CLOSE_CLIENT_CONNECT_TIMEOUT)
            return
        conn.heard.set()
        self._on_welcome(conn, json.loads(text))
        await self._subscribe(conn)
        # The first subscribe must be answered in time; the socket's life is not bounded.
        deadline = asyncio.get_running_loop().call_later(
            self.connect_timeout_s, self._abandon_unless_active, conn, CLOSE_CLIENT_CONNECT_TIMEOUT
        )
        try:
            while True:
                text = await conn.ws.recv()  # raises ConnectionClosed, whatever the code
                conn.heard.set()
                await self._on_frame(conn, json.loads(text))
                self._notify()
        finally:
            deadline.cancel()

    async def _heartbeat(self, conn: _Connection) -> None:
        await conn.welcomed.wait()
        while True:
            await asyncio.sleep(conn.interval_s)
            conn.heard.clear()
            await self._send_frame(conn, {"type": "ping", "t": int(time.time() * 1000)})
            self.pings_sent += 1
            try:
                # Any frame at all proves the socket alive, not only the pong.
                await asyncio.wait_for(conn.heard.wait(), timeout=conn.timeout_s)
            except TimeoutError:
                self._event("heartbeat_timeout", conn.url)
                self._abandon(conn, CLOSE_CLIENT_HEARTBEAT_TIMEOUT)
                return

    async def _sender(self, conn: _Connection) -> None:
        """Send what this socket owes: a subscribe refused by a rate limit, then the outbox."""
        while True:
            self._wake_sender.clear()
            now = self._now()
            waits: list[float] = []
            if conn.subscribe_due is not None:
                if conn.subscribe_due <= now:
                    conn.subscribe_due = None
                    await self._subscribe(conn)
                else:
                    waits.append(conn.subscribe_due - now)
            if conn.active and self._hold_until > now:
                waits.append(self._hold_until - now)
            elif conn.active:
                for client_id, entry in list(self.outbox.items()):
                    if not conn.active or self._hold_until > self._now():
                        break  # a gap's re-subscribe, or a refusal that arrived meanwhile
                    if self.outbox.get(client_id) is not entry or entry.sent_on == conn.number:
                        continue
                    token_wait = self._take_token(self._now())
                    if token_wait > 0:
                        waits.append(token_wait)
                        break
                    entry.sent_on = conn.number
                    entry.sends += 1
                    if entry.sends > 1:
                        self._event("resend", f"{client_id} #{conn.number}")
                    frame = {"type": "message", "room": self.room, "body": entry.body, "client_id": client_id}
                    await self._send_frame(conn, frame)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake_sender.wait(), timeout=min(waits, default=None))

    def _take_token(self, now: float) -> float:
        """0 when a message may go now (a token is taken), else the seconds until one may."""
        if self._pace is None:
            return 0.0
        rate, burst = self._pace
        self._tokens = min(burst, self._tokens + max(0.0, now - self._tokens_at) * rate)
        self._tokens_at = now
        # The epsilon absorbs rounding in the refill, so one interval's wait is enough.
        if self._tokens >= 1 - 1e-9:
            self._tokens = max(0.0, self._tokens - 1)
            return 0.0
        return (1 - self._tokens) / rate

    # Frames.

    def _on_welcome(self, conn: _Connection, frame: dict[str, Any]) -> None:
        if frame.get("type") != "welcome":
            raise RuntimeError(f"expected welcome, got {frame}")
        self.welcomes.append(frame)
        if frame.get("heartbeat_interval_ms"):
            conn.interval_s = frame["heartbeat_interval_ms"] / 1000
        if frame.get("heartbeat_timeout_ms"):
            conn.timeout_s = frame["heartbeat_timeout_ms"] / 1000
        limits = frame.get("limits") or {}
        rate = self.send_rate_per_s or limits.get("messages_per_s")
        burst = self.send_burst or limits.get("messages_burst") or 1
        self._pace = (float(rate), float(max(1, int(burst)))) if rate and rate > 0 else None
        # Every socket starts with a full bucket on the server.
        self._tokens, self._tokens_at = (self._pace[1] if self._pace else 0.0), self._now()
        conn.welcomed.set()

    async def _subscribe(self, conn: _Connection) -> None:
        conn.active = False
        conn.subscribe_ref = f"s{next(self._refs)}"
        frame: dict[str, Any] = {"type": "subscribe", "room": self.room, "ref": conn.subscribe_ref}
        if self.last_seq is not None:
            frame["since"] = self.last_seq
        self._event("subscribe", f"since={self.last_seq}")
        await self._send_frame(conn, frame)

    async def _on_frame(self, conn: _Connection, frame: dict[str, Any]) -> None:
        kind = frame.get("type")
        if kind == "ping":
            self.server_pings += 1
            await self._send_frame(conn, {"type": "pong", "t": frame.get("t")})
        elif kind == "pong":
            self.pongs_received += 1
        elif kind == "subscribed":
            self._on_subscribed(conn, frame)
        elif kind == "message":
            await self._on_message(conn, frame)
        elif kind == "ack":
            self._on_ack(frame)
        elif kind == "error":
            await self._on_error(conn, frame)
        elif (
            kind in ("unsubscribed", "room_closed") and frame.get("room") == self.room and frame.get("reason")
        ):
            # The server stopped serving the room (access revoked, closed by a moderator).
            self.gave_up = f"{kind}: {frame['reason']}"
            self._event("room_ended", self.gave_up)
        # presence, deleted, and our own unsubscribed: nothing to keep.

    def _on_subscribed(self, conn: _Connection, frame: dict[str, Any]) -> None:
        if frame.get("room") != self.room or frame.get("ref") != conn.subscribe_ref:
            return
        if frame.get("complete") is False:
            self.resets.append(frame)
            self._event("reset", f"last_seq={frame.get('last_seq')}")
            self.last_seq = None
        for message in frame.get("messages", []):
            if message.get("seq") not in self.seen:
                self._take_message(message)
        last_seq = frame.get("last_seq")
        if isinstance(last_seq, int) and (self.last_seq is None or last_seq > self.last_seq):
            if self.last_seq is not None and frame.get("complete") is not False:
                # A complete resume lists every message up to last_seq: these never will come.
                self.holes.append((self.last_seq + 1, last_seq))
                self._event("hole", f"{self.last_seq + 1}..{last_seq}")
            self.last_seq = last_seq
        conn.active = True
        self._event("subscribed", f"{conn.url} #{conn.number} last_seq={last_seq}")
        self._wake_sender.set()

    def _take_message(self, message: dict[str, Any]) -> None:
        seq = message["seq"]
        self.seen[seq] = (message.get("author", ""), message.get("body", ""), message.get("client_id", ""))
        if self.last_seq is None or seq == self.last_seq + 1:
            self.last_seq = seq
            # Messages seen ahead of a gap that is now filled.
            while self.last_seq + 1 in self.seen:
                self.last_seq += 1

    async def _on_message(self, conn: _Connection, frame: dict[str, Any]) -> None:
        seq = frame.get("seq")
        if frame.get("room") != self.room or not conn.active or not isinstance(seq, int):
            return
        if seq in self.seen:
            self.redelivered.append(seq)
            self._event("redelivered", str(seq))
            return
        self._take_message(frame)
        if self.last_seq is not None and seq > self.last_seq:
            # Kept, and the hole filled by subscribing again from the last seq with nothing missing.
            self.gaps.append((self.last_seq + 1, seq))
            self._event("gap", f"expected {self.last_seq + 1}, got {seq}")
            await self._send_frame(conn, {"type": "unsubscribe", "room": self.room})
            await self._subscribe(conn)

    def _on_ack(self, frame: dict[str, Any]) -> None:
        client_id = frame.get("client_id")
        if frame.get("room") != self.room or client_id not in self.sent:
            return
        self.acked[client_id] = frame["seq"]
        if frame.get("duplicate"):
            self.duplicate_acks.append(client_id)
        if self.outbox.pop(client_id, None) is not None:
            self._event("acked", f"{client_id} seq={frame['seq']} duplicate={frame.get('duplicate')}")

    async def _on_error(self, conn: _Connection, frame: dict[str, Any]) -> None:
        self.errors.append(frame)
        code = frame.get("code")
        client_id = frame.get("client_id")
        client_id = client_id if isinstance(client_id, str) else ""
        entry = self.outbox.get(client_id)
        now = self._now()
        if entry is not None and code == "rate_limited":
            # Nothing stored: the message goes again after the wait with every later one behind
            # it, then at the bucket's pace (the server's bucket is empty), not in a burst.
            delay_s = retry_after_s(frame)
            entry.sent_on = None
            self._hold_until = max(self._hold_until, now + delay_s)
            self._tokens, self._tokens_at = 0.0, now
            self._event("rate_limited", f"{client_id} retry in {delay_s:.3f}s")
            self._wake_sender.set()
        elif entry is not None and code == "server_error":
            entry.sent_on = None
            self._hold_until = max(self._hold_until, now + SERVER_ERROR_RETRY_S)
            self._event("server_error", client_id)
            self._wake_sender.set()
        elif entry is not None:
            del self.outbox[client_id]
            self.failed[client_id] = frame
            self._event("failed", f"{client_id} {code}")
        elif frame.get("ref") is not None and frame.get("ref") == conn.subscribe_ref and not conn.active:
            await self._on_subscribe_error(conn, frame)

    async def _on_subscribe_error(self, conn: _Connection, frame: dict[str, Any]) -> None:
        code = frame.get("code")
        self._event("subscribe_error", str(code))
        if code == "already_subscribed":
            # The server still holds the old subscription: leave it and join again.
            await self._send_frame(conn, {"type": "unsubscribe", "room": self.room})
            await self._subscribe(conn)
        elif code == "rate_limited":
            conn.subscribe_due = self._now() + retry_after_s(frame)
            self._wake_sender.set()
        elif code == "server_error":
            # Transient (e.g. the database is down): a new socket retries with backoff.
            self._abandon(conn, CLOSE_CLIENT_SUBSCRIBE_FAILED)
        else:
            # Refused for good (forbidden, room_closed, invalid_room...).
            self.gave_up = f"subscribe refused: {code}"
