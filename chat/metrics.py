"""Prometheus metrics for /metrics, read from ``chat.stats.stats`` at scrape time.

The hot path only bumps plain counters in ``chat.stats``; nothing here runs until a scrape.
The registry is Ripple's own: the standard ``process_*``, ``python_info`` and ``python_gc_*``
collectors plus ``RippleCollector``, and nothing a library may register on the default one;
tests can build a collector over any stats.

Label values are bounded: close codes and error codes come from ``chat.protocol``, frame
types are the protocol's (plus ``binary`` and ``invalid``), and ``room`` names at most
``RIPPLE_METRICS_MAX_ROOMS`` public rooms (the most members first) with a subscriber on this
process; every other room, and every private one, is only in the ``room="_other"`` sum (no
slug starts with ``_``). A room leaves the export when its last subscriber here leaves.
"""

from __future__ import annotations

import asyncio
import heapq
from collections.abc import Callable, Iterator

from django.conf import settings
from prometheus_client import GCCollector, PlatformCollector, ProcessCollector
from prometheus_client.exposition import choose_encoder
from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector, CollectorRegistry

from . import stats as stats_module
from .stats import LATENCY_BUCKETS_S, ProcessStats

# The ``room`` label of everything not named: room slugs start with [a-z0-9] (protocol.ROOM_SLUG_RE).
OTHER_ROOMS = "_other"


def _current_stats() -> ProcessStats:
    return stats_module.stats


def running_loop_name() -> str | None:
    """The package of the running event loop's class ("uvloop", "asyncio"); None off a loop."""
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        return None
    return type(loop).__module__.partition(".")[0]


class RippleCollector(Collector):
    """Turns a ``ProcessStats`` into metric families, one pass per scrape."""

    def __init__(
        self, source: Callable[[], ProcessStats] = _current_stats, *, max_rooms: int | None = None
    ) -> None:
        self.source = source
        # None: RIPPLE_METRICS_MAX_ROOMS, read at each scrape.
        self.max_rooms = max_rooms

    def collect(self) -> Iterator[Metric]:
        current = self.source()

        loop = running_loop_name()
        if loop is not None:
            info = GaugeMetricFamily(
                "ripple_event_loop_info",
                "The event loop this process serves on (project/serve.py), by name: always 1.",
                labels=["loop"],
            )
            info.add_metric([loop], 1)
            yield info

        yield GaugeMetricFamily(
            "ripple_open_sockets", "Chat WebSockets open on this process.", value=current.open_sockets
        )
        yield CounterMetricFamily(
            "ripple_connects", "Chat WebSockets accepted.", value=current.connects_total
        )

        closes = CounterMetricFamily(
            "ripple_closes", "Chat WebSockets closed, by close code.", labels=["code"]
        )
        for code, count in sorted(current.closes_total.items()):
            closes.add_metric([str(code)], count)
        yield closes

        frames_in = CounterMetricFamily(
            "ripple_frames_in", "Frames received from clients, by frame type.", labels=["type"]
        )
        for frame_type, count in sorted(current.frames_in.items()):
            frames_in.add_metric([frame_type], count)
        yield frames_in

        frames_out = CounterMetricFamily(
            "ripple_frames_out", "Frames sent to clients, by frame type.", labels=["type"]
        )
        for frame_type, count in sorted(current.frames_out.items()):
            frames_out.add_metric([frame_type], count)
        yield frames_out

        yield CounterMetricFamily(
            "ripple_heartbeat_timeouts",
            "Sockets closed for heartbeat silence (4408).",
            value=current.heartbeat_timeouts_total,
        )
        yield CounterMetricFamily(
            "ripple_handshakes_rejected",
            "WebSocket handshakes refused by the application.",
            value=current.handshakes_rejected_total,
        )

        errors = CounterMetricFamily("ripple_errors", "Error frames sent, by error code.", labels=["code"])
        for error_code, count in sorted(current.errors_total.items()):
            errors.add_metric([error_code], count)
        yield errors

        # Prometheus buckets are cumulative; the stats keep one count per bucket plus overflow.
        buckets: list[tuple[str, float]] = []
        cumulative = 0
        for bound, count in zip(LATENCY_BUCKETS_S, current.latency_counts, strict=False):
            cumulative += count
            buckets.append((_bound(bound), cumulative))
        total = sum(current.latency_counts)
        buckets.append(("+Inf", total))
        yield HistogramMetricFamily(
            "ripple_fanout_latency_seconds",
            "Seconds from a message being stored to its frame being written to this process's sockets.",
            buckets=buckets,
            sum_value=current.latency_sum_s,
        )

        yield from self._rooms(current)

    def _rooms(self, current: ProcessStats) -> Iterator[Metric]:
        max_rooms = settings.RIPPLE_METRICS_MAX_ROOMS if self.max_rooms is None else self.max_rooms
        # The scrape runs on the event loop: pick the top N without sorting every room.
        public = heapq.nsmallest(
            max_rooms,
            (
                (slug, count)
                for slug, count in current.presence_sizes.items()
                if slug not in current.private_rooms
            ),
            key=lambda item: (-item[1], item[0]),
        )
        named = [(slug, count) for slug, count in public if count > 0]
        members = GaugeMetricFamily(
            "ripple_presence_members",
            "Members (across processes) of the public rooms with the most members among those with a"
            ' subscriber on this process; room="_other" sums every other room, private ones included.',
            labels=["room"],
        )
        for slug, count in named:
            members.add_metric([slug], count)
        members.add_metric([OTHER_ROOMS], sum(current.presence_sizes.values()) - sum(c for _, c in named))
        yield members

        rooms = GaugeMetricFamily(
            "ripple_presence_rooms", "Rooms with a subscriber on this process.", labels=["visibility"]
        )
        private = sum(1 for slug in current.presence_sizes if slug in current.private_rooms)
        rooms.add_metric(["public"], len(current.presence_sizes) - private)
        rooms.add_metric(["private"], private)
        yield rooms


def _bound(seconds: float) -> str:
    # The exposition format's float formatting: 0.005, 1.0, 2.5.
    return repr(float(seconds))


registry = CollectorRegistry(auto_describe=False)
# process_* (CPU, memory, open files, start time) from /proc, python_info, python_gc_*.
ProcessCollector(registry=registry)
PlatformCollector(registry=registry)
GCCollector(registry=registry)
registry.register(RippleCollector())


def exposition(accept_header: str = "") -> tuple[bytes, str]:
    """The scrape body and its content type: Prometheus text, or OpenMetrics when asked for."""
    encoder, content_type = choose_encoder(accept_header)
    return encoder(registry), content_type
