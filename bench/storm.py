"""The ``storm`` scenario: restart Ripple's workers under many connected clients and time the reconnect storm.

``--clients`` clients connect round-robin to ``--workers`` daphne processes that share one Redis,
each subscribed to one of ``--rooms`` rooms, and one client per room posts ``--messages``
messages. Then the scenario stops one worker or all of them (``--restart``) and starts each again
on the same port as soon as it has exited. ``--stop drain`` (the default) sends SIGTERM to a worker
that drains (``RIPPLE_DRAIN_ON_SIGTERM=1``: every socket closed with 4512 at a random moment within
``RIPPLE_DRAIN_S``, new handshakes refused with HTTP 403, then the process exits); ``--stop term``
sends SIGTERM to a worker that does not (daphne's own shutdown: every socket drops, 1006);
``--stop kill`` sends SIGKILL. Every client that lost its socket reconnects with the policy of
``static/js/ripple-socket.js`` (``StormClient``), straight to its worker or, with ``--route
balancer``, through an emulation of deploy/nginx.conf's upstream (least connections, the next
worker on a refusal or a 403), and re-subscribes with ``since`` = the last seq it saw, while one
client per room posts ``--messages`` more. Measured: when each client saw its socket close (and
with which code), the time from that close to its next ``subscribed`` (percentiles and
histograms), the time until every client is back, attempts per client, handshake failures by
kind and by the restarted worker's state (refused with 403 while it drains and refused while it
is down are expected; failures once it answers /healthz again are errors), subscribe errors,
and messages a client missed or got twice across the resume.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import errno
import json
import random
import secrets
import signal
import subprocess
import threading
import time
from array import array
from collections import Counter, defaultdict
from collections.abc import Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from . import fanout, harness, loadgen, report, servers
from .wsclient import HandshakeError, WsClient, open_socket

HELP = "restart workers under N connected clients (drain or abrupt): close codes, reconnect times, errors"
HOST = "127.0.0.1"

# ripple-socket.js's DEFAULTS, so the storm has the shape the real client gives it.
BACKOFF_BASE_S = 0.5
BACKOFF_MAX_S = 30.0
QUICK_RECONNECT_S = 1.0
MAX_ATTEMPTS = 20
STABLE_AFTER_S = 5.0
CONNECT_TIMEOUT_S = 15.0
# ripple-socket.js's CLOSE codes that change what the client does next.
CLOSE_GOING_AWAY = 1001
CLOSE_ABNORMAL = 1006
CLOSE_POLICY_VIOLATION = 1008
CLOSE_SERVICE_RESTART = 1012
CLOSE_CLIENT_CONNECT_TIMEOUT = 4001
CLOSE_CLIENT_SUBSCRIBE_FAILED = 4002
CLOSE_HEARTBEAT_TIMEOUT = 4408
CLOSE_DRAINING = 4512
# isQuickReconnectClose: reconnect after random() × 1 s, counting no failure.
QUICK_RECONNECT_CODES = frozenset({CLOSE_GOING_AWAY, CLOSE_SERVICE_RESTART, CLOSE_DRAINING})
# What each close code a client may see means (chat/protocol.py, ripple-socket.js), for the report.
CLOSE_NAMES = {
    1000: "normal",
    1001: "going away",
    1006: "dropped, no close frame",
    1011: "internal error",
    1012: "service restart",
    4001: "client: connect timeout",
    4002: "client: subscribe failed",
    4401: "session ended",
    4403: "disconnected by a moderator",
    4408: "heartbeat timeout",
    4409: "too many connections",
    4429: "flooding",
    4503: "try again later",
    4509: "too slow",
    4512: "draining",
}

# --stop: how a restarted worker is stopped, and the RIPPLE_DRAIN_ON_SIGTERM it is started with.
STOP_DRAIN_ON_SIGTERM = {"drain": "1", "term": "0"}
# project/settings.py's RIPPLE_DRAIN_S default, used when --server-env does not set it.
DEFAULT_DRAIN_S = 5.0
# --route balancer follows deploy/nginx.conf: least_conn, and proxy_next_upstream (error, timeout,
# http_502, http_503, http_403) with proxy_next_upstream_tries 2. A connect timeout is not
# retried here: the client's 15 s covers the whole handshake, not nginx's 5 s TCP connect.
BALANCER_TRIES = 2
BALANCER_NEXT_ON = frozenset({"refused", "reset", "closed_in_handshake", "http_403", "http_502", "http_503"})

# Before the storm: parallel first connections, and how long setting up may take.
CONNECT_CONCURRENCY = 50
SETUP_BASE_S = 60.0
SETUP_PER_CLIENT_S = 0.05
SETTLE_S = 30.0
# A signalled worker gets its drain window plus this long to exit before SIGKILL.
WORKER_EXIT_S = 30.0
# After every client is back: how long to wait for the messages posted during the storm.
MESSAGES_WAIT_S = 10.0
STATUS_EVERY_S = 0.25
HISTOGRAM_WIDTH = 50
# Automatic histogram buckets: the smallest of these that needs at most HISTOGRAM_BUCKETS rows.
BUCKET_CHOICES_MS = (100, 250, 500, 1000)
HISTOGRAM_BUCKETS = 30


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--clients", type=fanout.bounded_int(1, 5000), default=1000, help="connected clients (≤ 5000)"
    )
    parser.add_argument(
        "--rooms", type=fanout.bounded_int(1, 1000), default=10, help="rooms; client i joins room i mod rooms"
    )
    parser.add_argument(
        "--workers", type=fanout.bounded_int(1, 16), default=2, help="daphne processes; clients round-robin"
    )
    parser.add_argument(
        "--restart",
        choices=("one", "all"),
        default="all",
        help="restart the first worker only, or every worker at once (a full redeploy or host restart)",
    )
    parser.add_argument(
        "--stop",
        choices=("drain", "term", "kill"),
        default="drain",
        help="drain: SIGTERM to a draining worker (4512 closes over RIPPLE_DRAIN_S, then it exits); "
        "term: SIGTERM with RIPPLE_DRAIN_ON_SIGTERM=0 (daphne drops every socket, 1006); kill: SIGKILL",
    )
    parser.add_argument(
        "--route",
        choices=("direct", "balancer"),
        default="direct",
        help="direct: a client reconnects to its own worker; balancer: like deploy/nginx.conf "
        "(fewest connections, the next worker on a refusal or a 403); needs 2 workers or more",
    )
    parser.add_argument(
        "--messages",
        type=fanout.bounded_int(0, 100),
        default=5,
        help="messages per room posted before the restart, and as many again during the storm",
    )
    parser.add_argument(
        "--timeout",
        type=fanout.bounded_float(5, 300),
        default=60.0,
        help="seconds after the signal to give up waiting for clients to come back",
    )
    parser.add_argument(
        "--bucket-ms",
        type=int,
        choices=BUCKET_CHOICES_MS,
        default=None,
        help=f"histogram bucket; None: per histogram, the smallest with ≤ {HISTOGRAM_BUCKETS} buckets",
    )
    parser.add_argument(
        "--seed", type=int, default=None, help="seed of the clients' jitter; None: a random one"
    )
    # The options every scenario shares: --layer, --json, --database-url, --redis-url, --pin, --server-env.
    harness.add_server_arguments(parser)


def check_arguments(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    harness.check_server_arguments(parser, args)
    if args.layer == "none":
        parser.error("--layer none is one process only; the storm's workers share Redis (pubsub or core)")
    if args.rooms > args.clients:
        parser.error("--rooms must not exceed --clients (every room needs a client)")
    if args.workers > args.clients:
        parser.error("--workers must not exceed --clients (every worker needs a client)")
    if args.route == "balancer" and args.workers < 2:
        parser.error("--route balancer needs --workers 2 or more (a worker to move to)")
    given = dict(item.split("=", 1) for item in args.server_env)
    wanted = STOP_DRAIN_ON_SIGTERM.get(args.stop)
    if wanted is not None:
        if given.get("RIPPLE_DRAIN_ON_SIGTERM", wanted) != wanted:
            parser.error(f"--stop {args.stop} starts the workers with RIPPLE_DRAIN_ON_SIGTERM={wanted}")
        given["RIPPLE_DRAIN_ON_SIGTERM"] = wanted
    try:
        float(given.get("RIPPLE_DRAIN_S", DEFAULT_DRAIN_S))
    except ValueError:
        parser.error("RIPPLE_DRAIN_S must be a number of seconds")
    # Every client comes from 127.0.0.1: the per-address cap (200 by default) must not refuse them.
    given.setdefault("RIPPLE_MAX_CONNECTIONS_PER_IP", str(args.clients + 100))
    args.server_env = [f"{name}={value}" for name, value in given.items()]


def drain_window_s(args: argparse.Namespace) -> float:
    """The workers' RIPPLE_DRAIN_S: from --server-env, else the settings' default."""
    given = dict(item.split("=", 1) for item in args.server_env)
    return float(given.get("RIPPLE_DRAIN_S", DEFAULT_DRAIN_S))


def describe_load(args: argparse.Namespace) -> str:
    restarted = "all workers" if args.restart == "all" else "worker 1"
    stop = {
        "drain": f"drain ({drain_window_s(args):g} s) and restart",
        "term": "SIGTERM without drain and restart",
        "kill": "SIGKILL and restart",
    }[args.stop]
    return (
        f"{args.clients} clients, {args.rooms} rooms, {args.workers} workers ({args.layer}, {args.route}); "
        f"{stop} {restarted}; {args.messages} + {args.messages} messages per room"
    )


# The clients.


def backoff_s(tries: int, rng: random.Random) -> float:
    """``Timer.delayFor(tries)``: full jitter, ``random() × min(max, base × 2 ** tries)``."""
    return rng.random() * min(BACKOFF_MAX_S, BACKOFF_BASE_S * 2 ** max(0, tries))


def is_no_retry_close(code: int) -> bool:
    """``isNoRetryClose``: the server does not want this client back."""
    return code == CLOSE_POLICY_VIOLATION or (4400 <= code <= 4499 and code != CLOSE_HEARTBEAT_TIMEOUT)


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
        owner.storm.open_by_worker[worker] += 1
        # How the TCP connection ended: "eof", or the exception (ConnectionResetError, ...).
        self.lost_because = ""

    def release(self) -> None:
        if self.counted:
            self.counted = False
            self.owner.storm.open_by_worker[self.worker] -= 1

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
                if fallbacks and kind in BALANCER_NEXT_ON:
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


class Storm:
    """What every client shares: the clock of the storm, the workers' state, and the counters."""

    def __init__(self, *, ports: list[int], rng: random.Random, messages: int, route: str) -> None:
        self.ports = ports
        self.urls = [f"ws://{HOST}:{port}/ws/chat/" for port in ports]
        self.rng = rng
        self.messages = messages
        self.route = route
        # The clients' connections per worker, handshakes included (what nginx's least_conn counts).
        self.open_by_worker = [0] * len(ports)
        self.next_turn = 0  # the balancer's round-robin among workers with as few connections
        self.loop = asyncio.get_running_loop()
        self.tasks: set[asyncio.Task[None]] = set()
        self.closing = False
        # Until the signal, at most CONNECT_CONCURRENCY clients are between connect() and their
        # first `subscribed` (or giving up).
        self.setup_gate = asyncio.Semaphore(CONNECT_CONCURRENCY)
        self.holding_gate: set[StormClient] = set()
        self.signal_at: float | None = None
        self.restarting: frozenset[int] = frozenset()
        # Worker index -> perf_counter when it exited, and when it answered /healthz again
        # (written by the restart threads).
        self.exited_at: dict[int, float] = {}
        self.up_at: dict[int, float] = {}
        # Failed connection attempts a client saw, by (phase, kind); phase is setup, stopping
        # (signalled, not exited yet: draining), down (exited, not answering yet) or after_up.
        self.failures: Counter[tuple[str, str]] = Counter()
        # Attempts the balancer moved on to another worker (the client saw no failure), same keys.
        self.reroutes: Counter[tuple[str, str]] = Counter()
        self.failure_examples: list[str] = []
        # Open sockets lost after the signal, by close code, and when (seconds after the signal).
        self.close_codes: Counter[int] = Counter()
        self.close_moments: defaultdict[int, list[float]] = defaultdict(list)
        # Sockets lost without a close frame (1006), by how the TCP connection ended.
        self.abnormal_causes: Counter[str] = Counter()
        self.subscribe_errors: Counter[str] = Counter()
        self.message_errors: Counter[str] = Counter()
        self.room_last: dict[str, int] = {}  # highest acked seq of each room
        self.posters_wanted: set[str] = set()  # rooms whose storm messages nobody posted yet
        self.duplicates = 0
        self.gaps = 0
        self.resets = 0

    def spawn(self, coroutine: Coroutine[Any, Any, None]) -> None:
        task = self.loop.create_task(coroutine)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    def targets(self, client: StormClient) -> list[int]:
        """The workers one attempt may try, in order: its own, or the balancer's picks."""
        if self.route == "direct" or self.signal_at is None:
            return [client.worker]
        count = len(self.ports)
        turn = self.next_turn
        self.next_turn = (turn + 1) % count
        order = sorted(range(count), key=lambda index: (self.open_by_worker[index], (index - turn) % count))
        return order[:BALANCER_TRIES]

    def phase(self, worker: int) -> str:
        if self.signal_at is None:
            return "setup"
        if worker not in self.restarting or worker in self.up_at:
            return "after_up"
        return "down" if worker in self.exited_at else "stopping"

    def expected(self, phase: str, kind: str) -> bool:
        """A failure the restart explains: a draining worker's 403, a stopped worker's refusal."""
        return (phase, kind) in {("stopping", "http_403"), ("stopping", "refused"), ("down", "refused")}

    def handshake_failed(self, worker: int, kind: str, error: BaseException) -> None:
        phase = self.phase(worker)
        self.failures[phase, kind] += 1
        if not self.expected(phase, kind) and len(self.failure_examples) < 10:
            when = "" if self.signal_at is None else f" at +{time.perf_counter() - self.signal_at:.2f} s"
            self.failure_examples.append(
                f"{phase} {kind}{when} {self.urls[worker]}: {type(error).__name__}: {error}"
            )

    def note_abnormal(self, cause: str) -> None:
        if self.signal_at is not None and not self.closing:
            self.abnormal_causes[cause] += 1

    def rerouted(self, worker: int, kind: str) -> None:
        self.reroutes[self.phase(worker), kind] += 1

    def dropped(self, client: StormClient, code: int, was_open: bool) -> None:
        if self.signal_at is None or self.closing:
            return
        now = time.perf_counter()
        if client.dropped_at is None:
            client.dropped_at = now
        if was_open:
            self.close_codes[code] += 1
            self.close_moments[code].append(now - self.signal_at)

    def subscribed(self, client: StormClient, *, fresh: bool) -> None:
        if self.signal_at is None:
            self.released(client)
            return
        if client.dropped_at is not None and fresh:
            client.resubscribed_at = time.perf_counter()
            client.back_on = client.conn.worker if client.conn is not None else None
        if client.room in self.posters_wanted:
            self.posters_wanted.discard(client.room)
            client.post("storm", self.messages)

    def released(self, client: StormClient) -> None:
        """The client's first connection is settled: let the next one in."""
        if client in self.holding_gate:
            self.holding_gate.discard(client)
            self.setup_gate.release()

    def acked(self, room: str, seq: int) -> None:
        if seq > self.room_last.get(room, 0):
            self.room_last[room] = seq


# The storm.


def restart_worker(
    storm: Storm, index: int, worker: servers.BenchDaphne, abandon: threading.Event, exit_wait_s: float
) -> dict[str, Any]:
    """In a thread: wait until the signalled worker exits (SIGKILL after ``exit_wait_s``), start it again."""
    assert worker.proc is not None and storm.signal_at is not None
    timing: dict[str, Any] = {"port": worker.port, "pid_before": worker.pid, "killed_after_wait": False}
    try:
        timing["exit_code"] = worker.proc.wait(timeout=exit_wait_s)
    except subprocess.TimeoutExpired:
        worker.proc.kill()
        timing["killed_after_wait"] = True
        timing["exit_code"] = worker.proc.wait(timeout=WORKER_EXIT_S)
    storm.exited_at[index] = time.perf_counter()
    timing["exited_s"] = round(storm.exited_at[index] - storm.signal_at, 3)
    if abandon.is_set():
        return timing
    # Same object, same argv: the same port, and the log goes on in the same file.
    worker.start()
    storm.up_at[index] = time.perf_counter()
    timing["pid_after"] = worker.pid
    timing["up_s"] = round(storm.up_at[index] - storm.signal_at, 3)
    return timing


async def run_storm(
    args: argparse.Namespace,
    workers: list[servers.BenchDaphne],
    *,
    redis_cpu_s: Callable[[], float],
    progress: StormProgress,
) -> dict[str, Any]:
    """Connect, post, restart, wait for every client to come back, drain, close; returns the figures."""
    seed = args.seed if args.seed is not None else secrets.randbits(32)
    storm = Storm(
        ports=[worker.port for worker in workers],
        rng=random.Random(seed),
        messages=args.messages,
        route=args.route,
    )
    run_id = secrets.token_hex(3)
    rooms = [f"storm-{run_id}-{index}" for index in range(args.rooms)]
    clients = [
        StormClient(storm, room=rooms[index % len(rooms)], worker=index % len(workers))
        for index in range(args.clients)
    ]
    restarted = range(len(workers)) if args.restart == "all" else range(1)
    started = time.perf_counter()
    outcome: dict[str, Any] = {"seed": seed, "rooms": f"storm-{run_id}-0 … storm-{run_id}-{len(rooms) - 1}"}
    try:
        outcome["setup"] = await set_up(storm, clients, rooms, args, progress, started)
        if outcome["setup"]["subscribed"] == 0:
            raise RuntimeError(f"no client could subscribe: {outcome['setup']}")
        outcome.update(
            await restart_and_wait(storm, clients, workers, restarted, args, progress, redis_cpu_s)
        )
        outcome["messages"] = await wait_for_messages(storm, clients, progress, args.messages)
        # Before closing: the sockets closed below would count as lost.
        outcome.update(summarize(storm, clients, restarted, args))
    finally:
        storm.closing = True
        for client in clients:
            client.cancel_timers()
        await loadgen.close_all([client.conn for client in clients if client.conn is not None])
        for task in list(storm.tasks):
            task.cancel()
        if storm.tasks:
            await asyncio.wait(list(storm.tasks), timeout=5)
    return outcome


async def set_up(
    storm: Storm,
    clients: list[StormClient],
    rooms: list[str],
    args: argparse.Namespace,
    progress: StormProgress,
    started: float,
) -> dict[str, Any]:
    """Connect every client (no more than CONNECT_CONCURRENCY at once) and post the first messages."""
    limit_s = SETUP_BASE_S + SETUP_PER_CLIENT_S * len(clients)

    in_time = True
    try:
        async with asyncio.timeout(limit_s):
            for count, client in enumerate(clients, 1):
                await storm.setup_gate.acquire()
                storm.holding_gate.add(client)
                client.connect()
                progress.status(f"connecting {count - len(storm.holding_gate):>5}/{len(clients)}")
            while storm.holding_gate:
                progress.status(f"connecting {len(clients) - len(storm.holding_gate):>5}/{len(clients)}")
                await asyncio.sleep(STATUS_EVERY_S)
    except TimeoutError:
        in_time = False
    connect_s = time.perf_counter() - started
    for client in clients:
        if not client.active:
            client.left_out = True
            client.gave_up = client.gave_up or "not subscribed within the setup time"
            client.cancel_timers()
            if client.conn is not None:
                client.conn.abort()
    live = [client for client in clients if client.active]
    # The first client of each room posts; everyone waits until all of it arrived.
    for room in rooms:
        poster = next((client for client in live if client.room == room), None)
        if poster is not None:
            poster.post("before", args.messages)
    settle_deadline = time.perf_counter() + SETTLE_S
    while not caught_up(storm, live) and time.perf_counter() < settle_deadline:
        progress.status("posting before the restart")
        await asyncio.sleep(0.05)
    failures = {kind: count for (phase, kind), count in storm.failures.items() if phase == "setup"}
    return {
        "wanted": len(clients),
        "subscribed": len(live),
        "failed": len(clients) - len(live),
        "why": dict(Counter(client.gave_up for client in clients if client.left_out)),
        "within_time": in_time,
        "connect_s": round(connect_s, 3),
        "handshake_failures": failures,
        "failure_examples": list(storm.failure_examples),
        "caught_up_before_restart": caught_up(storm, live),
        "room_last_seq_before": dict(storm.room_last),
    }


def caught_up(storm: Storm, clients: list[StormClient]) -> bool:
    """Every posted message acked or refused, and every subscribed client has each room's last one."""
    return all(
        not client.outbox and (client.last_seq or 0) >= storm.room_last.get(client.room, 0)
        for client in clients
        if client.active
    )


async def restart_and_wait(
    storm: Storm,
    clients: list[StormClient],
    workers: list[servers.BenchDaphne],
    restarted: range,
    args: argparse.Namespace,
    progress: StormProgress,
    redis_cpu_s: Callable[[], float],
) -> dict[str, Any]:
    """Signal the workers, restart them in threads, and wait until every client is back or time is up."""
    survivors = [worker.pid for index, worker in enumerate(workers) if index not in restarted]
    cpu_before = {pid: servers.process_cpu_s(pid) for pid in survivors}
    redis_before = redis_cpu_s()
    loadgen_before = time.process_time()
    machine_before = servers.cpu_busy_s()["all"]
    storm.restarting = frozenset(restarted)
    storm.posters_wanted = {client.room for client in clients if client.active}
    signum = signal.SIGKILL if args.stop == "kill" else signal.SIGTERM
    # A draining worker exits after its window (and chat/hub.py's 2 s grace for the last closes).
    exit_wait_s = WORKER_EXIT_S + (drain_window_s(args) if args.stop == "drain" else 0.0)
    storm.signal_at = time.perf_counter()
    for index in restarted:
        workers[index].signal(signum)
    # Rooms with a client on a worker that keeps running post at once: the others miss it all.
    for client in clients:
        if client.worker not in storm.restarting and client.active and client.room in storm.posters_wanted:
            storm.posters_wanted.discard(client.room)
            client.post("storm", args.messages)
    abandon = threading.Event()
    pool = ThreadPoolExecutor(max_workers=len(restarted), thread_name_prefix="restart")
    futures = [
        storm.loop.run_in_executor(pool, restart_worker, storm, index, workers[index], abandon, exit_wait_s)
        for index in restarted
    ]
    timed_out = False
    try:
        while True:
            now = time.perf_counter()
            elapsed_s = now - storm.signal_at
            restarts_done = all(future.done() for future in futures)
            if restarts_done and any(future.exception() for future in futures):
                break
            waiting = [client for client in clients if client.waiting]
            if restarts_done and not waiting:
                break
            if elapsed_s > args.timeout:
                timed_out = True
                break
            back = sum(1 for client in clients if client.back)
            dropped = sum(1 for client in clients if client.dropped_at is not None)
            expected = sum(n for (phase, kind), n in storm.failures.items() if storm.expected(phase, kind))
            after_up = sum(count for (phase, _), count in storm.failures.items() if phase == "after_up")
            workers_up = f"{len(storm.exited_at)}/{len(restarted)} exited, {len(storm.up_at)} up"
            progress.status(
                f"storm {elapsed_s:5.1f} s  {workers_up}  back {back:>5}/{dropped:<5} "
                f"waiting {len(waiting):>5}  refused while restarting {expected:>6}  after up {after_up}"
            )
            await asyncio.sleep(STATUS_EVERY_S / 5)
    finally:
        abandon.set()
        # Bounded by the worker exit wait and daphne's start timeout; no process is left behind.
        await asyncio.gather(*futures, return_exceptions=True)
        pool.shutdown(wait=True)
    ended_s = time.perf_counter() - storm.signal_at
    failed = [
        f"port {workers[index].port}: {type(future.exception()).__name__}: {future.exception()}"
        for index, future in zip(restarted, futures, strict=True)
        if future.exception() is not None
    ]
    if failed:
        raise RuntimeError(f"restarting a worker failed: {'; '.join(failed)}")
    cpu_s = {
        str(worker.port): servers.process_cpu_s(worker.pid) - cpu_before.get(worker.pid, 0.0)
        for worker in workers
        if worker.alive()
    }
    used_s = sum(cpu_s.values()) + redis_cpu_s() - redis_before + time.process_time() - loadgen_before
    return {
        "workers_restarted": [future.result() for future in futures],
        "timed_out": timed_out,
        "storm_s": round(ended_s, 3),
        # CPU from the signal until every client was back: a restarted worker's includes its start.
        "server_cpu_s_by_port": cpu_s,
        "redis_cpu_s": redis_cpu_s() - redis_before,
        "loadgen_cpu_s": time.process_time() - loadgen_before,
        # Busy CPU of the machine not used by the above: the stopped workers' shutdown, and
        # whatever else runs on the machine (near 0 on a quiet one).
        "other_cpu_s": servers.cpu_busy_s()["all"] - machine_before - used_s,
    }


async def wait_for_messages(
    storm: Storm, clients: list[StormClient], progress: StormProgress, messages: int
) -> dict[str, Any]:
    """Wait (at most MESSAGES_WAIT_S) until every client that is back has every message of its room."""
    started = time.perf_counter()
    ended = "complete"
    while not caught_up(storm, clients):
        if time.perf_counter() - started > MESSAGES_WAIT_S:
            ended = "cut"
            break
        progress.status("waiting for the messages posted during the storm")
        await asyncio.sleep(0.05)
    back = [client for client in clients if client.active]
    return {
        "per_room_before_restart": messages,
        "per_room_during_storm": messages,
        "rooms_posted_during_storm": len({client.room for client in clients}) - len(storm.posters_wanted),
        "acked": sum(storm.room_last.values()),
        "unacked": sum(len(client.outbox) for client in clients),
        "refused": dict(storm.message_errors),
        # Messages up to each room's last acked seq that a client that is back never saw.
        "missing": sum(max(0, storm.room_last.get(c.room, 0) - (c.last_seq or 0)) for c in back),
        "duplicated": storm.duplicates,
        "gaps": storm.gaps,
        "resets": storm.resets,
        "wait": {"seconds": round(time.perf_counter() - started, 3), "ended": ended},
    }


def seconds_to_ns(values: list[float]) -> array:
    return array("q", sorted(int(value * 1e9) for value in values))


def distribution_ms(values_s: list[float]) -> dict[str, float | int | None]:
    ordered = seconds_to_ns(values_s)
    return {
        "p10": loadgen.percentile_ms(ordered, 10),
        "p50": loadgen.percentile_ms(ordered, 50),
        "p90": loadgen.percentile_ms(ordered, 90),
        "p99": loadgen.percentile_ms(ordered, 99),
        "max": ordered[-1] / 1e6 if ordered else None,
        "samples": len(ordered),
    }


def histogram(values_ms: list[float], bucket_ms: int) -> list[dict[str, int]]:
    """Clients per bucket of ``bucket_ms``, from 0 to the slowest, empty buckets included."""
    if not values_ms:
        return []
    counts = Counter(int(max(0.0, value) // bucket_ms) for value in values_ms)
    return [
        {"from_ms": index * bucket_ms, "to_ms": (index + 1) * bucket_ms, "clients": counts.get(index, 0)}
        for index in range(max(counts) + 1)
    ]


def histogram_of(values_s: list[float], *, measured_from: str, bucket_ms: int | None) -> dict[str, Any]:
    """A histogram with its unit: ``bucket_ms`` or the smallest choice giving at most HISTOGRAM_BUCKETS."""
    values_ms = [value * 1000 for value in values_s]
    if bucket_ms is None:
        slowest = max(values_ms, default=0.0)
        fitting = [ms for ms in BUCKET_CHOICES_MS if slowest // ms < HISTOGRAM_BUCKETS]
        bucket_ms = fitting[0] if fitting else BUCKET_CHOICES_MS[-1]
    return {
        "measured_from": measured_from,
        "bucket_ms": bucket_ms,
        "buckets": histogram(values_ms, bucket_ms),
    }


def summarize(
    storm: Storm, clients: list[StormClient], restarted: range, args: argparse.Namespace
) -> dict[str, Any]:
    signal_at = storm.signal_at
    assert signal_at is not None
    in_storm = [client for client in clients if not client.left_out]
    dropped = [client for client in in_storm if client.dropped_at is not None]
    back = [client for client in dropped if client.back]
    closed_s = [(client.dropped_at or 0.0) - signal_at for client in dropped]
    back_s = [(client.resubscribed_at or 0.0) - signal_at for client in back]
    # From the close each client saw (or its first failed attempt) to its next `subscribed`.
    reconnect_s = [(client.resubscribed_at or 0.0) - (client.dropped_at or 0.0) for client in back]
    # Only for clients back on a restarted worker: elsewhere, its return is no part of theirs.
    after_up_s = [
        (client.resubscribed_at or 0.0) - storm.up_at[client.back_on]
        for client in back
        if client.back_on in storm.up_at
    ]
    attempts = Counter(client.attempts for client in back)
    phases = ("stopping", "down", "after_up")
    by_phase: dict[str, dict[str, int]] = {phase: {} for phase in phases}
    for (phase, kind), count in sorted(storm.failures.items()):
        if phase in by_phase:
            by_phase[phase][kind] = count
    rerouted: dict[str, dict[str, int]] = {phase: {} for phase in phases}
    for (phase, kind), count in sorted(storm.reroutes.items()):
        if phase in rerouted:
            rerouted[phase][kind] = count
    unexplained = {
        f"{phase} {kind}": count
        for phase in ("stopping", "down")
        for kind, count in by_phase[phase].items()
        if not storm.expected(phase, kind)
    }
    attempt_values = sorted(client.attempts for client in back)
    bucket_ms = args.bucket_ms
    return {
        "stop": args.stop,
        "route": args.route,
        "drain_window_s": drain_window_s(args) if args.stop == "drain" else None,
        "clients": len(clients),
        "in_storm": len(in_storm),
        "affected": sum(1 for client in in_storm if client.worker in restarted),
        "dropped": len(dropped),
        # Clients of a worker that was not restarted that lost their socket anyway.
        "unexpected_drops": sum(1 for client in dropped if client.worker not in restarted),
        "reconnected": len(back),
        "not_reconnected": len(dropped) - len(back),
        "back_on_worker": {
            str(storm.ports[w]): n
            for w, n in sorted(Counter(c.back_on for c in back if c.back_on is not None).items())
        },
        "gave_up": dict(Counter(client.gave_up for client in in_storm if client.gave_up)),
        "all_back_s": max(back_s) if back_s and len(back) == len(dropped) else None,
        "closed_after_signal_ms": distribution_ms(closed_s),
        "reconnect_ms": distribution_ms(reconnect_s),
        "back_after_signal_ms": distribution_ms(back_s),
        "after_worker_up_ms": distribution_ms(after_up_s),
        "handshake_ms": distribution_ms([c.handshake_s for c in back if c.handshake_s is not None]),
        "attempts_per_client": {
            "mean": sum(attempt_values) / len(attempt_values) if attempt_values else None,
            "p50": attempt_values[len(attempt_values) // 2] if attempt_values else None,
            "p99": attempt_values[max(0, -(-99 * len(attempt_values) // 100) - 1)]
            if attempt_values
            else None,
            "max": attempt_values[-1] if attempt_values else None,
            "counts": {str(count): attempts[count] for count in sorted(attempts)},
        },
        # Failed attempts the clients saw, by the state of the worker they tried: stopping
        # (signalled, not exited: draining), down (exited, not answering /healthz yet), after_up.
        "handshake_failures": by_phase,
        "refused_while_draining": by_phase["stopping"].get("http_403", 0),
        "refused_while_down": by_phase["stopping"].get("refused", 0) + by_phase["down"].get("refused", 0),
        "other_failures_while_restarting": unexplained,
        "handshake_errors_after_up": sum(by_phase["after_up"].values()),
        # --route balancer: attempts moved on to the next worker; the clients saw nothing of them.
        "rerouted_by_balancer": rerouted,
        "failure_examples": storm.failure_examples,
        "close_codes": {str(code): count for code, count in sorted(storm.close_codes.items())},
        "close_1006_causes": dict(storm.abnormal_causes),
        "close_codes_after_signal_ms": {
            str(code): distribution_ms(moments) for code, moments in sorted(storm.close_moments.items())
        },
        "subscribe_errors": dict(storm.subscribe_errors),
        "subscribe_errors_total": sum(storm.subscribe_errors.values()),
        "histograms": {
            "closed": histogram_of(closed_s, measured_from="the restart signal", bucket_ms=bucket_ms),
            "reconnect": histogram_of(
                reconnect_s, measured_from="the close each client saw", bucket_ms=bucket_ms
            ),
            "back": histogram_of(back_s, measured_from="the restart signal", bucket_ms=bucket_ms),
        },
    }


# Running, printing.


class StormProgress(report.Progress):
    """``report.Progress`` with a free-form status line instead of a delivery counter."""

    LIVE_EVERY_S = 0.1

    def status(self, text: str) -> None:
        now = time.monotonic()
        every_s = self.PLAIN_EVERY_S if self.live is None else self.LIVE_EVERY_S
        if now - self.last_print < every_s:
            return
        self.last_print = now
        if self.live is not None:
            self.live.update(report.Text(f"{self.label}: {text}"), refresh=True)
        else:
            print(f"{self.label}: {text}", flush=True)


def run(args: argparse.Namespace) -> int:
    return harness.run_scenario("storm", args, load=describe_load(args), measure=measure, table=table)


async def measure(session: harness.Session, first: servers.BenchDaphne) -> dict[str, Any]:
    """The harness started Redis, the database and the first worker: start the others, run the storm."""
    args = session.args
    needed = 2 * args.clients + 200
    if session.open_files_limit < needed:
        raise RuntimeError(
            f"{args.clients} clients need an open-files limit of {needed}, not {session.open_files_limit}"
        )
    assert session.probe is not None  # --layer none is refused
    session.result["client_policy"] = {
        "backoff_base_s": BACKOFF_BASE_S,
        "backoff_max_s": BACKOFF_MAX_S,
        "quick_reconnect_s": QUICK_RECONNECT_S,
        "max_attempts": MAX_ATTEMPTS,
        "stable_after_s": STABLE_AFTER_S,
        "connect_timeout_s": CONNECT_TIMEOUT_S,
    }
    # Blocking, on purpose: no task of this loop runs yet, and start_workers stops what it started
    # if it is interrupted, where a thread would leave a worker no cleanup knows of.
    others = start_more_workers(session, first, args.workers - 1)
    workers = [first, *others]
    progress = StormProgress()
    progress.begin("storm")
    try:
        outcome = await run_storm(args, workers, redis_cpu_s=session.probe.cpu_s, progress=progress)
    finally:
        progress.end()
    outcome["worker_processes"] = [{"port": worker.port, "pid": worker.pid} for worker in workers]
    outcome["server_logs"] = {str(worker.port): worker.problems() for worker in workers}
    add_notes(session.result["notes"], outcome, timeout_s=args.timeout)
    return outcome


def start_more_workers(
    session: harness.Session, first: servers.BenchDaphne, count: int
) -> list[servers.BenchDaphne]:
    """``count`` more workers with the first one's environment, stopped when the session ends."""
    if count == 0:
        return []
    assert first.env is not None
    session.progress.note(f"starting {count} more daphne worker(s) with the same environment")
    others = servers.start_workers(
        count, env=first.env, app=servers.RIPPLE_APP, pinning=session.pinning, server=session.args.server
    )
    session.cleanup.callback(servers.stop_all, others)
    return others


def add_notes(notes: list[str], r: dict[str, Any], *, timeout_s: float) -> None:
    """Notes on what went wrong and on anything that makes a figure doubtful."""
    setup = r.get("setup")
    if setup and setup["failed"]:
        notes.append(
            f"{setup['failed']} of {setup['wanted']} clients never subscribed before the restart "
            f"(left out of the storm): {setup['why']}; handshake failures {setup['handshake_failures']}, "
            f"e.g. {setup['failure_examples'][:2]}"
        )
    if setup and not setup["caught_up_before_restart"]:
        notes.append("not every client had the room's messages when the restart began")
    if r["timed_out"]:
        notes.append(
            f"{r['not_reconnected']} of {r['dropped']} clients were not back "
            f"{timeout_s:g} s after the signal (--timeout)"
        )
    if r["gave_up"]:
        notes.append(f"clients that gave up: {r['gave_up']}")
    if r["handshake_errors_after_up"]:
        notes.append(
            f"{r['handshake_errors_after_up']} connection attempts failed after their worker answered "
            f"/healthz again: {r['handshake_failures']['after_up']}, e.g. {r['failure_examples'][:2]}"
        )
    if r["other_failures_while_restarting"]:
        notes.append(
            "failures other than a draining worker's 403 or a stopped worker's refusal while a worker "
            f"was stopping or starting: {r['other_failures_while_restarting']}"
        )
    if r["stop"] == "drain":
        others = {code: n for code, n in r["close_codes"].items() if int(code) != CLOSE_DRAINING}
        if others:
            notes.append(f"--stop drain, yet sockets closed with other codes than 4512: {others}")
        window_ms = (r["drain_window_s"] or 0.0) * 1000
        latest = r["closed_after_signal_ms"]["max"]
        if latest is not None and latest > window_ms + 1000:
            notes.append(
                f"the last socket closed {latest:,.0f} ms after the signal, past a {window_ms:,.0f} ms drain"
            )
    if r["unexpected_drops"]:
        notes.append(f"{r['unexpected_drops']} clients of a worker that kept running lost their socket")
    if r["subscribe_errors"]:
        notes.append(f"subscribe errors: {r['subscribe_errors']}")
    messages = r.get("messages", {})
    if messages.get("missing") or messages.get("duplicated") or messages.get("gaps"):
        notes.append(
            f"across the resume: {messages['missing']} messages missing, {messages['duplicated']} "
            f"duplicated, {messages['gaps']} gaps repaired by re-subscribing"
        )
    if messages.get("resets"):
        notes.append(f"{messages['resets']} re-subscribes came back with complete: false (history reset)")
    if messages.get("refused"):
        notes.append(f"messages refused by the server: {messages['refused']}")
    handshake_max = r["handshake_ms"]["max"]
    if handshake_max is not None and handshake_max >= 1000:
        notes.append(
            f"the slowest successful handshake took {handshake_max:,.0f} ms: a worker busy with the storm, "
            "or a SYN dropped from a full listen backlog (the kernel retries it after 1 s)"
        )
    if r["other_cpu_s"] > 0.25 * r["storm_s"]:
        notes.append(
            f"other processes used {r['other_cpu_s']:.1f} CPU s during the {r['storm_s']:.0f} s storm "
            "(the stopped workers' shutdown included): the machine was not quiet"
        )
    share = r["loadgen_cpu_s"] / r["storm_s"] if r["storm_s"] else 0
    if share > 0.85:
        notes.append(f"the clients used {share:.0%} of their CPU during the storm; they may be the limit")
    # The harness notes the first worker's log; these are the others'.
    count = sum(item["count"] for item in list(r["server_logs"].values())[1:])
    if count:
        notes.append(f"{count} warning/error lines in the other workers' logs (see results.server_logs)")


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:,.0f}"


def _seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f} s"


def _counts(total: int, kinds: dict[str, int]) -> str:
    return f"{total:,} {kinds}" if kinds else f"{total:,}"


PERCENTILES = ("p10", "p50", "p90", "p99", "max")


def table(r: dict[str, Any]) -> harness.Table:
    """One row per figure, then the close codes and the three histograms as text bars."""
    rows = [["clients back / dropped", f"{r['reconnected']:,} / {r['dropped']:,} (of {r['clients']:,})"]]
    rows.append(["all back after (from the signal)", _seconds(r["all_back_s"])])
    for timing in r["workers_restarted"]:
        rows.append(
            [
                f"worker :{timing['port']} exited / answered again",
                f"{timing['exited_s']:.2f} s / {_seconds(timing.get('up_s'))} (exit {timing['exit_code']})",
            ]
        )
    if len(r["back_on_worker"]) > 1 or r["route"] == "balancer":
        rows.append(
            ["clients back on worker", ", ".join(f":{p} {n:,}" for p, n in r["back_on_worker"].items())]
        )
    rows.append([f"ms {' / '.join(PERCENTILES)}", ""])
    for label, key in (
        ("  close seen, from the signal", "closed_after_signal_ms"),
        ("  reconnect: close → subscribed", "reconnect_ms"),
        ("  subscribed again, from the signal", "back_after_signal_ms"),
        ("  subscribed, from the worker's return", "after_worker_up_ms"),
        ("  handshake", "handshake_ms"),
    ):
        rows.append([label, " / ".join(_ms(r[key][p]) for p in PERCENTILES)])
    a = r["attempts_per_client"]
    mean = "-" if a["mean"] is None else f"{a['mean']:.2f}"
    rows.append(["attempts per client mean/p50/p99/max", f"{mean} / {a['p50']} / {a['p99']} / {a['max']}"])
    rows.append(["refused while draining (HTTP 403)", f"{r['refused_while_draining']:,}"])
    rows.append(["refused while down (no listener)", f"{r['refused_while_down']:,}"])
    other = r["other_failures_while_restarting"]
    rows.append(["other failures while restarting", _counts(sum(other.values()), other)])
    up = r["handshake_failures"]["after_up"]
    rows.append(["handshake errors after up", _counts(r["handshake_errors_after_up"], up)])
    if r["route"] == "balancer":
        moved = {
            f"{phase} {kind}": n
            for phase, kinds in r["rerouted_by_balancer"].items()
            for kind, n in kinds.items()
        }
        rows.append(["moved on by the balancer (unseen)", _counts(sum(moved.values()), moved)])
    rows.append(["subscribe errors", _counts(r["subscribe_errors_total"], r["subscribe_errors"])])
    m = r["messages"]
    rows.append(
        [
            "messages acked / missing / dup / gaps",
            f"{m['acked']} / {m['missing']} / {m['duplicated']} / {m['gaps']} (wait {m['wait']['ended']})",
        ]
    )
    cpu_s = (sum(r["server_cpu_s_by_port"].values()), r["redis_cpu_s"], r["loadgen_cpu_s"])
    rows.append(
        [
            "CPU s: workers / redis / clients",
            " / ".join(f"{value:.2f}" for value in cpu_s) + f" in {r['storm_s']:.2f} s",
        ]
    )
    rows.append(["close codes seen", "sockets"])
    codes = r["close_codes"]
    peak = max(codes.values(), default=0)
    for code, count in codes.items():
        rows.append([f"  {code} {CLOSE_NAMES.get(int(code), '')}".rstrip(), bar_cell(count, peak)])
    for title, key in (
        ("socket closed, from the signal", "closed"),
        ("reconnect: close → subscribed", "reconnect"),
        ("subscribed again, from the signal", "back"),
    ):
        hist = r["histograms"][key]
        rows.append([f"{title} ({hist['bucket_ms']} ms)", "clients"])
        rows.extend(histogram_rows(hist["buckets"]))
    return ["measure", "value"], rows


def bar_cell(count: int, peak: int) -> str:
    """A fixed-width text bar and the count, so any alignment shows it."""
    bar = "█" * max(1 if count else 0, round(count / (peak or 1) * HISTOGRAM_WIDTH))
    return f"{bar:<{HISTOGRAM_WIDTH}} {count:>6,}"


def histogram_rows(buckets: list[dict[str, int]]) -> list[list[str]]:
    """A text bar per bucket; three or more empty buckets in a row make one row."""
    if not buckets:
        return []
    peak = max(bucket["clients"] for bucket in buckets)
    rows: list[list[str]] = []
    index = 0
    while index < len(buckets):
        end = index
        while end < len(buckets) and buckets[end]["clients"] == 0:
            end += 1
        if end - index >= 3:
            rows.append(
                [f"  {buckets[index]['from_ms'] / 1000:6.2f}–{buckets[end - 1]['to_ms'] / 1000:6.2f} s", "0"]
            )
            index = end
            continue
        span = f"{buckets[index]['from_ms'] / 1000:6.2f}–{buckets[index]['to_ms'] / 1000:6.2f} s"
        rows.append([f"  {span}", bar_cell(buckets[index]["clients"], peak)])
        index += 1
    return rows
