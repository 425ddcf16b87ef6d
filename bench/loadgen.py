"""The fan-out load: one publisher per room, N subscribers per room, every delivery timed and checked.

Three targets: Ripple (``/ws/chat/``), the Channels tutorial consumer (``/ws/baseline/<room>/``)
and python-socketio (``/socket.io/``, Engine.IO v4 / Socket.IO v5 on the WebSocket transport).

Every message body starts with ``"<send time ns> <counter> "`` (``time.perf_counter_ns()`` in this
process, which also receives), padded to ``--body-bytes``. A subscriber's latency sample is its
receive time minus that stamp. In open-loop mode the stamp is the *scheduled* send time, so a
load generator that falls behind shows up as latency instead of hiding it.

Window signals (closed loop, at most ``window`` messages in flight per publisher):

- Ripple: the publisher's own ``ack`` (sent once the message is stored and written to the
  worker's own subscribers; the send to the other workers follows).
- Baseline and Socket.IO: the publisher's own copy of the message, which comes back through the
  room like everybody else's (the tutorial protocol has no ack; the Socket.IO room emit is not
  acknowledged).

Loss and duplication: Ripple sockets count each ``seq`` they see per room, baseline and
Socket.IO sockets count each body counter; after the publishers stop, the run waits (bounded)
for stragglers, then every number a socket should have seen and did not is lost, and every
repeat is a duplicate.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import math
import time
from array import array
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from .wsclient import HandshakeError, WsClient, open_socket

FAR = 2**63 - 1
# Parallel handshakes while sockets open.
CONNECT_CONCURRENCY = 50
# A closed-loop publisher stops waiting for a signal after this long and forgets the message.
STALL_S = 5.0
# After the publishers stop, the run waits for what is still on its way: until every socket has
# everything, or nothing at all arrived for DRAIN_IDLE_S (longer than Ripple's 5 s tail check,
# so a loss the hub repairs is not counted), or DRAIN_MAX_S passed (an overloaded server).
DRAIN_IDLE_S = 7.0
DRAIN_MAX_S = 60.0
CLOSE_S = 5.0
PONG = '{"type":"pong"}'
# Upper bound on messages per publisher in closed loop, whatever the duration.
MAX_CLOSED_MESSAGES = 1_000_000


@dataclass
class Plan:
    """One (target, layer) run of the fanout scenario."""

    target: str  # "ripple", "baseline" or "socketio"
    layer: str
    run_id: str
    ports: list[int]  # one per server process
    rooms: int
    subs: int
    mode: str  # "closed" or "open"
    window: int
    rate: float | None
    warmup_s: float
    duration_s: float
    body_bytes: int
    # Sockets opened in rooms of AFTERMATH_ROOM_SIZE and all closed just before the load: the
    # aftermath of a deploy's reconnect storm (0: none).
    aftermath: int = 0
    handshake_timeout_s: float = 10.0
    subscribe_timeout_s: float = 20.0

    def room_name(self, index: int) -> str:
        # Fresh names per run and layer: Ripple rooms start at seq 0, and no group member left
        # behind by an earlier run is addressed.
        if self.target == "ripple":
            return f"bench-{self.run_id}-{self.layer}-{index}"
        return f"bench_{self.run_id}_{self.layer}_{index}"

    def url(self, worker: int, room: str) -> str:
        port = self.ports[worker % len(self.ports)]
        if self.target == "ripple":
            return f"ws://127.0.0.1:{port}/ws/chat/"
        if self.target == "socketio":
            return f"ws://127.0.0.1:{port}/socket.io/?EIO=4&transport=websocket"
        return f"ws://127.0.0.1:{port}/ws/baseline/{room}/"


class Stats:
    """Counters shared by every socket of one run; the measured window is [t0, t1) in perf ns."""

    __slots__ = (
        "deliveries",
        "echoes",
        "latencies_ns",
        "send_lag_ns",
        "sent_ns",
        "t0",
        "t1",
        "window_deliveries",
    )

    def __init__(self) -> None:
        self.t0 = FAR
        self.t1 = FAR
        self.deliveries = 0  # every delivery to a subscriber, warmup and drain included
        self.window_deliveries = 0  # deliveries received inside the window
        self.echoes = 0  # publishers' own copies (not counted as deliveries)
        # Latency of every delivery of a message sent inside the window, whenever it arrived,
        # and (same index) when that message was sent.
        self.latencies_ns = array("q")
        self.sent_ns = array("q")
        # Open loop: how late each message was written after its scheduled time (by that time,
        # its stamp). The latency above counts it (the schedule is the reference, so a load
        # generator that falls behind cannot hide the server's tail); ``write_latencies()``
        # leaves it out, which says how much of a tail is the load generator's own timing.
        self.send_lag_ns: dict[int, int] = {}

    def delivered(self, sent_ns: int, now_ns: int) -> None:
        self.deliveries += 1
        if self.t0 <= now_ns < self.t1:
            self.window_deliveries += 1
        if self.t0 <= sent_ns < self.t1:
            self.latencies_ns.append(now_ns - sent_ns)
            self.sent_ns.append(sent_ns)

    def write_latencies(self) -> array:
        """Every latency less its message's send lag (closed loop: the same), sorted."""
        lags = self.send_lag_ns
        return array(
            "q",
            sorted(
                lat - lags.get(sent, 0) for sent, lat in zip(self.sent_ns, self.latencies_ns, strict=True)
            ),
        )

    def send_lags(self) -> array:
        """The send lag of every message sent inside the window, sorted."""
        return array("q", sorted(lag for sent, lag in self.send_lag_ns.items() if self.t0 <= sent < self.t1))

    def timeline(self) -> list[dict[str, Any]]:
        """Per second of the window (by send time): deliveries, p50, p99 and max latency in ms."""
        seconds: dict[int, list[int]] = {}
        for sent, latency in zip(self.sent_ns, self.latencies_ns, strict=True):
            seconds.setdefault((sent - self.t0) // 1_000_000_000, []).append(latency)
        rows = []
        for second in sorted(seconds):
            latencies = array("q", sorted(seconds[second]))
            rows.append(
                {
                    "second": second,
                    "deliveries": len(latencies),
                    "p50_ms": percentile_ms(latencies, 50),
                    "p99_ms": percentile_ms(latencies, 99),
                    "max_ms": latencies[-1] / 1e6,
                }
            )
        return rows


class Seen:
    """How many times one socket saw each message number (saturating at 255)."""

    __slots__ = ("counts", "distinct")

    def __init__(self) -> None:
        self.counts = bytearray(1024)
        self.distinct = 0

    def add(self, number: int) -> None:
        counts = self.counts
        if number >= len(counts):
            counts.extend(bytes(number + 1024 - len(counts)))
        count = counts[number]
        if count == 0:
            self.distinct += 1
        if count < 255:
            counts[number] = count + 1

    def missing(self, first: int, last: int) -> int:
        """Numbers in [first, last] never seen."""
        if last < first:
            return 0
        if last >= len(self.counts):
            self.counts.extend(bytes(last + 1 - len(self.counts)))
        return self.counts.count(0, first, last + 1)

    def repeats(self) -> int:
        return sum(self.counts) - self.distinct


class InFlight:
    """Messages a publisher sent and has no window signal for yet."""

    def __init__(self, limit: float) -> None:
        self.limit = limit
        self.items: dict[Any, int] = {}  # key -> perf ns when sent
        self.changed = asyncio.Event()
        self.timeouts = 0

    def add(self, key: Any) -> None:
        self.items[key] = time.perf_counter_ns()

    def done(self, key: Any) -> None:
        if self.items.pop(key, None) is not None:
            self.changed.set()

    async def wait_for_room(self, end_ns: int) -> bool:
        """Wait until fewer than ``limit`` are in flight; False once ``end_ns`` passes."""
        while len(self.items) >= self.limit:
            remaining_s = min(STALL_S, (end_ns - time.perf_counter_ns()) / 1e9)
            if remaining_s <= 0:
                return False
            self.changed.clear()
            try:
                async with asyncio.timeout(remaining_s):
                    await self.changed.wait()
            except TimeoutError:
                cutoff = time.perf_counter_ns() - int(STALL_S * 1e9)
                stale = [key for key, sent in self.items.items() if sent <= cutoff]
                for key in stale:
                    del self.items[key]
                self.timeouts += len(stale)
        return True


def make_body(stamp_ns: int, number: int, size: int) -> str:
    head = f"{stamp_ns} {number} "
    return head + "x" * (size - len(head))


class BenchSocket(WsClient):
    """A subscriber, or with ``publisher=True`` the room's publisher (which also receives)."""

    def __init__(self, plan: Plan, stats: Stats, room: str, worker: int, *, publisher: bool) -> None:
        super().__init__(plan.url(worker, room))
        self.port = plan.ports[worker % len(plan.ports)]
        self.stats = stats
        self.room = room
        self.publisher = publisher
        self.seen = Seen()
        self.inflight = InFlight(plan.window if plan.mode == "closed" else math.inf)
        self.sent = 0
        self.errors: Counter[str] = Counter()

    async def ready(self) -> None:
        """After the handshake: whatever the protocol needs before messages flow."""

    def send_message(self, number: int, stamp_ns: int, body_bytes: int) -> None:
        raise NotImplementedError

    def first_expected(self) -> int:
        raise NotImplementedError

    def count_body(self, body: str, now_ns: int) -> None:
        """A delivery numbered by its body's counter (the targets with no ``seq``)."""
        first = body.index(" ")
        number = int(body[first + 1 : body.index(" ", first + 1)])
        self.seen.add(number)
        if self.publisher:
            self.stats.echoes += 1
            self.inflight.done(number)
        else:
            self.stats.delivered(int(body[:first]), now_ns)


class RippleSocket(BenchSocket):
    """A socket on /ws/chat/ subscribed to one room."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        loop = asyncio.get_running_loop()
        self.welcomed: asyncio.Future[None] = loop.create_future()
        self.subscribed: asyncio.Future[int] = loop.create_future()
        self.last_seq = 0  # the room's seq when this socket subscribed
        self.acked = 0
        self.max_seq = 0  # highest seq acked to this publisher

    async def ready(self) -> None:
        await self.welcomed
        self.send_text(json.dumps({"type": "subscribe", "room": self.room}))
        self.last_seq = await self.subscribed

    def first_expected(self) -> int:
        return self.last_seq + 1

    def send_message(self, number: int, stamp_ns: int, body_bytes: int) -> None:
        client_id = f"m{number}"
        frame = {
            "type": "message",
            "room": self.room,
            "body": make_body(stamp_ns, number, body_bytes),
            "client_id": client_id,
        }
        self.inflight.add(client_id)
        self.send_text(json.dumps(frame))
        self.sent += 1

    def on_text(self, data: bytes, now_ns: int) -> None:
        frame = json.loads(data)
        kind = frame.get("type")
        if kind == "message":
            self.seen.add(frame["seq"])
            if self.publisher:
                self.stats.echoes += 1
            else:
                body = frame["body"]
                self.stats.delivered(int(body[: body.index(" ")]), now_ns)
        elif kind == "ack":
            self.acked += 1
            if frame["seq"] > self.max_seq:
                self.max_seq = frame["seq"]
            self.inflight.done(frame["client_id"])
        elif kind == "ping":
            with contextlib.suppress(ConnectionError):  # a closing socket needs no pong
                self.send_text(PONG)
        elif kind == "subscribed":
            if not self.subscribed.done():
                self.subscribed.set_result(frame["last_seq"])
        elif kind == "welcome":
            if not self.welcomed.done():
                self.welcomed.set_result(None)
        elif kind == "error":
            self.errors[frame.get("code", "?")] += 1
            if frame.get("client_id"):
                self.inflight.done(frame["client_id"])
            elif not self.subscribed.done():
                self.subscribed.set_exception(RuntimeError(f"subscribe refused: {frame}"))


class BaselineSocket(BenchSocket):
    """A socket on the tutorial consumer's /ws/baseline/<room>/ (joined to the room by connecting)."""

    def first_expected(self) -> int:
        return 0

    def send_message(self, number: int, stamp_ns: int, body_bytes: int) -> None:
        self.inflight.add(number)
        self.send_text(json.dumps({"message": make_body(stamp_ns, number, body_bytes)}))
        self.sent += 1

    def on_text(self, data: bytes, now_ns: int) -> None:
        self.count_body(json.loads(data)["message"], now_ns)


class SocketIOSocket(BenchSocket):
    """A Socket.IO client on ``/socket.io/`` (WebSocket transport only) that joins one room.

    Engine.IO v4 packets are one text message each, a type digit first: ``0`` open (from the
    server), ``2`` ping (answered with ``3``), ``4`` message. A message carries a Socket.IO v5
    packet, again a type digit first: ``0`` connect (``40`` both ways for the default
    namespace), ``2`` event (``42["name", data]``), ``3`` ack (``43<id>[...]``), ``4`` connect
    error.
    """

    JOIN_ACK_ID = 1

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        loop = asyncio.get_running_loop()
        self.connected: asyncio.Future[None] = loop.create_future()
        self.joined: asyncio.Future[None] = loop.create_future()

    async def ready(self) -> None:
        await self.connected
        self.send_text(f"42{self.JOIN_ACK_ID}" + json.dumps(["join", self.room]))
        await self.joined

    def first_expected(self) -> int:
        return 0

    def send_message(self, number: int, stamp_ns: int, body_bytes: int) -> None:
        self.inflight.add(number)
        event = ["message", {"room": self.room, "message": make_body(stamp_ns, number, body_bytes)}]
        self.send_text("42" + json.dumps(event))
        self.sent += 1

    def on_text(self, data: bytes, now_ns: int) -> None:
        if data.startswith(b"42"):
            name, body = json.loads(data[2:])
            if name == "message":
                self.count_body(body, now_ns)
        elif data == b"2":
            with contextlib.suppress(ConnectionError):  # a closing socket needs no pong
                self.send_text("3")
        elif data.startswith(b"0"):
            self.send_text("40")  # connect to the default namespace
        elif data.startswith(b"40"):
            if not self.connected.done():
                self.connected.set_result(None)
        elif data.startswith(b"43%d[" % self.JOIN_ACK_ID):
            if not self.joined.done():
                self.joined.set_result(None)
        elif data.startswith(b"44"):
            self.errors["connect_error"] += 1
            if not self.connected.done():
                self.connected.set_exception(RuntimeError(f"connect refused: {data[2:]!r}"))
        else:
            self.errors[f"packet {data[:2].decode(errors='replace')}"] += 1


SOCKET_CLASSES: dict[str, type[BenchSocket]] = {
    "ripple": RippleSocket,
    "baseline": BaselineSocket,
    "socketio": SocketIOSocket,
}


@dataclass
class Connected:
    sockets: list[BenchSocket]
    failures: Counter[str] = field(default_factory=Counter)
    failure_examples: list[str] = field(default_factory=list)


async def connect_all(plan: Plan, sockets: list[BenchSocket]) -> Connected:
    """Open every socket, at most CONNECT_CONCURRENCY handshakes at a time; keep the ones that work."""
    gate = asyncio.Semaphore(CONNECT_CONCURRENCY)
    result = Connected([])

    def failed(kind: str, sock: BenchSocket, error: BaseException) -> None:
        result.failures[kind] += 1
        if len(result.failure_examples) < 5:
            result.failure_examples.append(f"{kind} {sock.url}: {type(error).__name__}: {error}")
        sock.abort()

    async def one(sock: BenchSocket) -> None:
        async with gate:
            try:
                await open_socket(sock, host="127.0.0.1", port=sock.port, timeout_s=plan.handshake_timeout_s)
            except (OSError, TimeoutError, HandshakeError) as error:
                failed("handshake", sock, error)
                return
            try:
                async with asyncio.timeout(plan.subscribe_timeout_s):
                    await sock.ready()
            except (OSError, TimeoutError, RuntimeError) as error:
                failed("subscribe", sock, error)
                return
            result.sockets.append(sock)

    await asyncio.gather(*(one(sock) for sock in sockets))
    return result


# The open loop's pacing: the event loop's timers wake up to ~1 ms late (libuv's and epoll's
# millisecond resolution: p90 0.9 ms here), and that lag counted as latency for every target.
# The last PRECISE_NS before a send are slept in a thread of the pacer's own (time.sleep wakes
# within ~0.1 ms), which then wakes the loop.
PRECISE_NS = 2_000_000


def sleep_until_ns(due_ns: int) -> None:
    delay_ns = due_ns - time.perf_counter_ns()
    if delay_ns > 0:
        time.sleep(delay_ns / 1e9)


class Pacer:
    """Waits until a moment (``perf_counter_ns``) closer than the event loop's timers can."""

    def __init__(self, publishers: int) -> None:
        # One thread per publisher: each waits for its own next send.
        self.threads = ThreadPoolExecutor(max_workers=max(1, publishers), thread_name_prefix="bench-pacer")

    async def until(self, due_ns: int) -> None:
        coarse_ns = due_ns - PRECISE_NS - time.perf_counter_ns()
        if coarse_ns > 0:
            await asyncio.sleep(coarse_ns / 1e9)
        if due_ns > time.perf_counter_ns():
            await asyncio.get_running_loop().run_in_executor(self.threads, sleep_until_ns, due_ns)

    def close(self) -> None:
        self.threads.shutdown(wait=False, cancel_futures=True)


async def publish(
    plan: Plan, pub: BenchSocket, start_ns: int, end_ns: int, offset_ns: int, pacer: Pacer
) -> dict[str, Any]:
    """Send until ``end_ns``; closed loop waits for window signals, open loop keeps a schedule
    (each send's lag in ``pub.stats.send_lag_ns``)."""
    number = 0
    try:
        if plan.mode == "closed":
            while number < MAX_CLOSED_MESSAGES:
                if not await pub.inflight.wait_for_room(end_ns):
                    break
                now = time.perf_counter_ns()
                if now >= end_ns:
                    break
                pub.send_message(number, now, plan.body_bytes)
                number += 1
        else:
            assert plan.rate
            interval_ns = 1e9 / plan.rate
            limit = math.ceil((end_ns - start_ns) / interval_ns) + 1
            while number < limit:
                due = start_ns + offset_ns + int(number * interval_ns)
                if due >= end_ns:
                    break
                await pacer.until(due)
                pub.stats.send_lag_ns[due] = time.perf_counter_ns() - due
                pub.send_message(number, due, plan.body_bytes)
                number += 1
    except ConnectionError:
        pub.errors["publisher_socket_closed"] += 1
    return {"sent": number}


def percentile_ms(sorted_ns: array, pct: float) -> float | None:
    if not sorted_ns:
        return None
    rank = max(1, math.ceil(pct / 100 * len(sorted_ns)))
    return sorted_ns[rank - 1] / 1e6


def summary_ms(sorted_ns: array) -> dict[str, Any]:
    return {
        "p50": percentile_ms(sorted_ns, 50),
        "p90": percentile_ms(sorted_ns, 90),
        "p99": percentile_ms(sorted_ns, 99),
        "max": sorted_ns[-1] / 1e6 if sorted_ns else None,
        "samples": len(sorted_ns),
    }


CpuSnapshot = Callable[[], dict[str, Any]]
ProgressFn = Callable[[str, float, int], None]


AFTERMATH_ROOM_SIZE = 10


async def mass_close(plan: Plan, socket_class: type[BenchSocket]) -> dict[str, Any]:
    """Open ``plan.aftermath`` sockets in rooms of 10 (round-robin over the workers), close them all."""
    throwaway = Stats()
    rooms = [f"{plan.room_name(0)}_gone_{index // AFTERMATH_ROOM_SIZE}" for index in range(plan.aftermath)]
    sockets = [socket_class(plan, throwaway, room, i, publisher=False) for i, room in enumerate(rooms)]
    opened_at = time.perf_counter()
    connected = await connect_all(plan, sockets)
    open_s = time.perf_counter() - opened_at
    closed_at = time.perf_counter()
    await close_all(connected.sockets)
    return {
        "sockets": len(connected.sockets),
        "failures": sum(connected.failures.values()),
        "open_s": round(open_s, 3),
        "close_s": round(time.perf_counter() - closed_at, 3),
    }


async def run_fanout(plan: Plan, *, cpu_snapshot: CpuSnapshot, progress: ProgressFn) -> dict[str, Any]:
    """Connect, warm up, measure, drain, close; returns this run's figures."""
    stats = Stats()
    socket_class = SOCKET_CLASSES[plan.target]
    rooms = [plan.room_name(index) for index in range(plan.rooms)]
    subscribers: list[BenchSocket] = []
    publishers: list[BenchSocket] = []
    slot = 0  # subscribers go round-robin over the workers; room i's publisher to worker i
    for room in rooms:
        for _ in range(plan.subs):
            subscribers.append(socket_class(plan, stats, room, slot, publisher=False))
            slot += 1
    for index, room in enumerate(rooms):
        publishers.append(socket_class(plan, stats, room, index, publisher=True))

    connect_started = time.perf_counter()
    every = subscribers + publishers
    pub_tasks: list[asyncio.Task] = []
    # Its threads start with the open loop's first precise wait (the closed loop has none).
    pacer = Pacer(len(publishers))
    try:
        async with asyncio.timeout(120 + 0.5 * len(every)):
            connected = await connect_all(plan, subscribers)
            connected_pubs = await connect_all(plan, publishers)
        connect_s = time.perf_counter() - connect_started
        live_subs = connected.sockets
        live_pubs = connected_pubs.sockets
        failures = connected.failures + connected_pubs.failures
        examples = connected.failure_examples + connected_pubs.failure_examples
        sockets_info = {
            "wanted": len(every),
            "open": len(live_subs) + len(live_pubs),
            "handshake_failures": failures["handshake"],
            "subscribe_failures": failures["subscribe"],
            "failure_examples": examples,
            "connect_s": round(connect_s, 3),
        }
        if not live_pubs or not live_subs:
            raise RuntimeError(f"no usable sockets: {sockets_info}")
        # After the load's own sockets are in: the warmup and window then start at a fixed
        # time after the mass close, whatever the close left the worker doing.
        aftermath = await mass_close(plan, socket_class) if plan.aftermath else None
        gc.collect()
        gc.freeze()

        start_ns = time.perf_counter_ns()
        t0_ns = start_ns + int(plan.warmup_s * 1e9)
        end_ns = t0_ns + int(plan.duration_s * 1e9)
        spacing_ns = int(1e9 / plan.rate / len(live_pubs)) if plan.rate else 0
        pub_tasks.extend(
            asyncio.create_task(publish(plan, pub, start_ns, end_ns, index * spacing_ns, pacer))
            for index, pub in enumerate(live_pubs)
        )

        async def sleep_until(deadline_ns: int, phase: str) -> None:
            while True:
                now = time.perf_counter_ns()
                progress(phase, (now - start_ns) / 1e9, stats.deliveries)
                if now >= deadline_ns:
                    return
                await asyncio.sleep(min(0.25, (deadline_ns - now) / 1e9))

        await sleep_until(t0_ns, "warmup")
        cpu_start = cpu_snapshot()
        loadgen_start = time.process_time()
        stats.t0 = time.perf_counter_ns()
        await sleep_until(end_ns, "measure")
        cpu_end = cpu_snapshot()
        loadgen_end = time.process_time()
        stats.t1 = time.perf_counter_ns()
        measured_s = (stats.t1 - stats.t0) / 1e9
        window_deliveries = stats.window_deliveries

        async with asyncio.timeout(STALL_S + 5):
            pub_results = await asyncio.gather(*pub_tasks)

        # Drain: wait for what is on its way (bounded), then count what never came.
        def expected_last(pub: BenchSocket) -> int:
            if isinstance(pub, RippleSocket):
                return pub.max_seq
            return pub.sent - 1

        def complete() -> bool:
            if any(pub.inflight.items for pub in live_pubs):
                return False
            lasts = {pub.room: expected_last(pub) for pub in live_pubs}
            return all(
                sock.seen.distinct >= lasts[sock.room] - sock.first_expected() + 1
                for sock in live_subs + live_pubs
                if sock.room in lasts
            )

        def activity() -> int:
            return stats.deliveries + stats.echoes + sum(len(pub.inflight.items) for pub in live_pubs)

        drain_start = time.perf_counter_ns()
        last_change, last_activity = drain_start, activity()
        drain_ended = "complete"
        while not complete():
            now = time.perf_counter_ns()
            if activity() != last_activity:
                last_change, last_activity = now, activity()
            if now - last_change > DRAIN_IDLE_S * 1e9:
                drain_ended = "idle"
                break
            if now - drain_start > DRAIN_MAX_S * 1e9:
                drain_ended = "cut"
                break
            progress("drain", (now - start_ns) / 1e9, stats.deliveries)
            await asyncio.sleep(0.1)
        drain_s = (time.perf_counter_ns() - drain_start) / 1e9
        unconfirmed = sum(len(pub.inflight.items) for pub in live_pubs)

        lasts = {pub.room: expected_last(pub) for pub in live_pubs}
        lost = duplicated = 0
        for sock in live_subs + live_pubs:
            if sock.room not in lasts:
                continue  # the room's publisher never connected: nothing was expected
            lost += sock.seen.missing(sock.first_expected(), lasts[sock.room])
            duplicated += sock.seen.repeats()
    finally:
        gc.unfreeze()
        for task in pub_tasks:
            task.cancel()
        pacer.close()
        await close_all(every)

    latencies = array("q", sorted(stats.latencies_ns))
    server_cpu_s = sum(cpu_end["server_s"].values()) - sum(cpu_start["server_s"].values())
    redis_cpu_s = cpu_end["redis_s"] - cpu_start["redis_s"]
    sent = sum(result["sent"] for result in pub_results)
    errors = Counter[str]()
    for sock in live_subs + live_pubs:
        errors.update(sock.errors)
    result: dict[str, Any] = {
        "target": plan.target,
        "layer": plan.layer,
        "workers": len(plan.ports),
        "rooms": plan.rooms,
        "subs_per_room": plan.subs,
        "mode": plan.mode,
        "window": plan.window if plan.mode == "closed" else None,
        "rate_per_publisher": plan.rate if plan.mode == "open" else None,
        "window_signal": ("ack" if plan.target == "ripple" else "own copy")
        if plan.mode == "closed"
        else None,
        "sockets": sockets_info,
        "aftermath": aftermath,
        "measured_s": round(measured_s, 4),
        "messages_sent": sent,
        "deliveries": window_deliveries,
        "deliveries_per_s": window_deliveries / measured_s if measured_s > 0 else 0.0,
        "deliveries_total": stats.deliveries,
        "publisher_echoes": stats.echoes,
        "latency_ms": summary_ms(latencies),
        "latency_timeline": stats.timeline(),
        # The same deliveries measured from when each message was written, not when it was due
        # (open loop; in the closed loop the two are one), and the lag between the two.
        "latency_from_write_ms": summary_ms(stats.write_latencies()),
        "send_lag_ms": summary_ms(stats.send_lags()),
        "lost": lost,
        "duplicated": duplicated,
        # "complete": every socket got everything; "idle": nothing more came for DRAIN_IDLE_S
        # (what is missing is lost); "cut": still arriving after DRAIN_MAX_S (overload: "lost"
        # then includes late deliveries, and latency percentiles leave out the latest ones).
        "drain": {"seconds": round(drain_s, 3), "ended": drain_ended},
        # Messages sent with no ack (Ripple) or own copy (baseline, socketio) by the end of the drain.
        "messages_unconfirmed": unconfirmed,
        "window_timeouts": sum(pub.inflight.timeouts for pub in live_pubs),
        # Of every message, the warmup's too (``send_lag_ms`` is the window's).
        "max_send_lag_ms": max(stats.send_lag_ns.values(), default=0) / 1e6,
        "frame_errors": dict(errors),
        "server_cpu_s": server_cpu_s,
        "server_cpu_s_by_pid": {
            pid: cpu_end["server_s"][pid] - cpu_start["server_s"][pid] for pid in cpu_end["server_s"]
        },
        "redis_cpu_s": redis_cpu_s,
        "cpu_us_per_delivery": (server_cpu_s + redis_cpu_s) / window_deliveries * 1e6
        if window_deliveries
        else None,
        "loadgen_cpu_s": loadgen_end - loadgen_start,
        # Busy CPU seconds of the whole machine (and per CPU) in the window; with the figures
        # above, "other_cpu_s" is what processes outside this run used (it should be near 0).
        "machine_busy_s": {
            cpu: round(cpu_end["machine_busy_s"][cpu] - cpu_start["machine_busy_s"][cpu], 3)
            for cpu in cpu_end["machine_busy_s"]
        },
        "other_cpu_s": cpu_end["machine_busy_s"]["all"]
        - cpu_start["machine_busy_s"]["all"]
        - server_cpu_s
        - redis_cpu_s
        - (loadgen_end - loadgen_start),
        "loadgen_cpu_share": (loadgen_end - loadgen_start) / measured_s if measured_s > 0 else None,
    }
    if plan.mode == "open" and plan.rate:
        result["offered_deliveries_per_s"] = plan.rate * len(live_pubs) * plan.subs
    return result


async def close_all(sockets: list[BenchSocket]) -> None:
    """Close every socket that opened; whatever has not closed within CLOSE_S is dropped."""
    opened = [sock for sock in sockets if sock.transport is not None]
    for sock in opened:
        try:
            sock.close()
        except Exception:  # a half-dead socket still gets aborted below
            sock.abort()
    waiting = [sock.closed for sock in opened if not sock.closed.done()]
    if waiting:
        await asyncio.wait(waiting, timeout=CLOSE_S)
    for sock in opened:
        sock.abort()
