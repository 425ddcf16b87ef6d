"""What every client of the storm shares: its clock, the workers' phases, the balancer and the counters."""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter, defaultdict
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any

from .balancer import Balancer

if TYPE_CHECKING:
    from .client import StormClient

HOST = "127.0.0.1"
# Before the storm: at most this many first connections at once.
CONNECT_CONCURRENCY = 50


class Storm:
    """What every client shares: the clock of the storm, the workers' state, and the counters."""

    def __init__(self, *, ports: list[int], rng: random.Random, messages: int, route: str) -> None:
        self.ports = ports
        self.urls = [f"ws://{HOST}:{port}/ws/chat/" for port in ports]
        self.rng = rng
        self.messages = messages
        self.route = route
        # Counts every client's connections per worker; picks workers only with --route balancer.
        self.balancer = Balancer(len(ports))
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
        return self.balancer.picks()

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
