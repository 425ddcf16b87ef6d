"""Prometheus metrics for /metrics, read from ``chat.stats.stats`` at scrape time.

The hot path only bumps plain counters in ``chat.stats``; nothing here runs until a scrape.
The collector is registered on a registry of its own, so the default one (with whatever a
library registers there) is not exported, and tests can build a collector over any stats.

Label values are bounded: close codes and error codes come from ``chat.protocol``, frame
types are the protocol's (plus ``binary`` and ``invalid``), and ``room`` covers only rooms
with a subscriber on this process.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

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


def _current_stats() -> ProcessStats:
    return stats_module.stats


class RippleCollector(Collector):
    """Turns a ``ProcessStats`` into metric families, one pass per scrape."""

    def __init__(self, source: Callable[[], ProcessStats] = _current_stats) -> None:
        self.source = source

    def collect(self) -> Iterator[Metric]:
        current = self.source()

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

        members = GaugeMetricFamily(
            "ripple_presence_members",
            "Members in each room with a subscriber on this process (counted across processes).",
            labels=["room"],
        )
        for room, count in sorted(current.presence_sizes.items()):
            members.add_metric([room], count)
        yield members

        yield GaugeMetricFamily(
            "ripple_process_start_time_seconds",
            "Start time of this process since the Unix epoch, in seconds.",
            value=current.started_at,
        )


def _bound(seconds: float) -> str:
    # The exposition format's float formatting: 0.005, 1.0, 2.5.
    return repr(float(seconds))


registry = CollectorRegistry(auto_describe=False)
registry.register(RippleCollector())


def exposition(accept_header: str = "") -> tuple[bytes, str]:
    """The scrape body and its content type: Prometheus text, or OpenMetrics when asked for."""
    encoder, content_type = choose_encoder(accept_header)
    return encoder(registry), content_type
