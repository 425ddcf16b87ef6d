"""This process's numbers: what /metrics exports and what the admin dashboard shows.

Plain counters bumped on the hot path (an integer add, no locks: one event loop per process);
``chat.metrics`` turns them into Prometheus metrics at scrape time, and the dashboard reporter
publishes a snapshot every second.
"""

from __future__ import annotations

import bisect
import os
import secrets
import socket
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Any

# Upper bounds (seconds) of the stored -> sent latency histogram.
LATENCY_BUCKETS_S = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
# Seconds of per-second traffic kept for the dashboard chart.
TRAFFIC_WINDOW_S = 300


@dataclass
class ProcessStats:
    """Counters of one server process."""

    host: str = field(default_factory=socket.gethostname)
    pid: int = field(default_factory=os.getpid)
    process_id: str = ""
    started_at: float = field(default_factory=time.time)
    open_sockets: int = 0
    connects_total: int = 0
    closes_total: Counter[int] = field(default_factory=Counter)
    frames_in: Counter[str] = field(default_factory=Counter)
    frames_out: Counter[str] = field(default_factory=Counter)
    errors_total: Counter[str] = field(default_factory=Counter)
    heartbeat_timeouts_total: int = 0
    handshakes_rejected_total: int = 0
    # Fan-out latency, stored -> written to the sockets, one observation per message per process.
    latency_counts: list[int] = field(default_factory=lambda: [0] * (len(LATENCY_BUCKETS_S) + 1))
    latency_sum_s: float = 0.0
    # Maps room slug to its member count, for rooms with subscribers on this process; the hub
    # sets an entry only while the room's stream is live here (room_members / room_gone).
    presence_sizes: dict[str, int] = field(default_factory=dict)
    # The slugs in ``presence_sizes`` of private rooms: /metrics never names them.
    private_rooms: set[str] = field(default_factory=set)
    # Recent connects and disconnects, newest last.
    recent: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=50))
    # Per-second traffic: (unix second, messages in, messages out), oldest first.
    traffic: deque[list[int]] = field(default_factory=lambda: deque(maxlen=TRAFFIC_WINDOW_S))

    def __post_init__(self) -> None:
        if not self.process_id:
            self.process_id = f"{self.host}:{self.pid}:{secrets.token_hex(3)}"

    def _second(self) -> list[int]:
        now = int(time.time())
        if not self.traffic or self.traffic[-1][0] != now:
            self.traffic.append([now, 0, 0])
        return self.traffic[-1]

    def frame_in(self, frame_type: str) -> None:
        self.frames_in[frame_type] += 1
        if frame_type == "message":
            self._second()[1] += 1

    def frame_out(self, frame_type: str, count: int = 1) -> None:
        self.frames_out[frame_type] += count
        if frame_type == "message":
            self._second()[2] += count

    def error(self, code: str) -> None:
        self.errors_total[code] += 1

    def connected(self, *, connection_id: str, user: str) -> dict[str, Any]:
        """Count a connect; returns its recent event, whose ``rooms`` the socket fills as it joins."""
        self.connects_total += 1
        self.open_sockets += 1
        event = {"t": time.time(), "event": "connect", "id": connection_id, "user": user, "rooms": []}
        self.recent.append(event)
        return event

    def disconnected(
        self, *, connection_id: str, user: str, code: int, duration_s: float, rooms: list[str] | None = None
    ) -> None:
        self.open_sockets -= 1
        self.closes_total[code] += 1
        self.recent.append(
            {
                "t": time.time(),
                "event": "disconnect",
                "id": connection_id,
                "user": user,
                "code": code,
                "duration_s": round(duration_s, 3),
                "rooms": (rooms or [])[:RECENT_ROOMS],
            }
        )

    def room_members(self, slug: str, *, members: int, private: bool) -> None:
        """A live room's member count as last read, and whether it is private."""
        self.presence_sizes[slug] = members
        if private:
            self.private_rooms.add(slug)
        else:
            self.private_rooms.discard(slug)

    def room_gone(self, slug: str) -> None:
        """The room's last subscriber here left: it is no longer reported."""
        self.presence_sizes.pop(slug, None)
        self.private_rooms.discard(slug)

    def observe_latency(self, seconds: float) -> None:
        self.latency_counts[bisect.bisect_left(LATENCY_BUCKETS_S, seconds)] += 1
        self.latency_sum_s += seconds

    def snapshot(self) -> dict[str, Any]:
        """JSON-ready numbers for the dashboard."""
        now = int(time.time())
        return {
            "process_id": self.process_id,
            "host": self.host,
            "pid": self.pid,
            "started_at": self.started_at,
            "uptime_s": round(time.time() - self.started_at, 1),
            "reported_at": time.time(),
            "open_sockets": self.open_sockets,
            "connects_total": self.connects_total,
            "closes_total": {str(code): n for code, n in self.closes_total.items()},
            "messages_in_total": self.frames_in["message"],
            "messages_out_total": self.frames_out["message"],
            "heartbeat_timeouts_total": self.heartbeat_timeouts_total,
            "errors_total": dict(self.errors_total),
            "rooms": dict(self.presence_sizes),
            "recent": list(self.recent),
            "traffic": [row for row in self.traffic if row[0] > now - TRAFFIC_WINDOW_S],
        }


# Rooms named per recent connect or disconnect event (the dashboard's "Rooms" column).
RECENT_ROOMS = 3

# One per process: daphne runs every socket of a process on one event loop.
stats = ProcessStats()
