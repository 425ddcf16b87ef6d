"""The storm's figures from its clients: percentiles, histograms and the summary the report shows."""

from __future__ import annotations

import argparse
from array import array
from collections import Counter
from typing import Any

from .. import loadgen
from .client import StormClient
from .state import Storm

# Automatic histogram buckets: the smallest of these that needs at most HISTOGRAM_BUCKETS rows.
BUCKET_CHOICES_MS = (100, 250, 500, 1000)
HISTOGRAM_BUCKETS = 30


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
    storm: Storm, clients: list[StormClient], restarted: range, args: argparse.Namespace, *, drain_s: float
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
        "drain_window_s": drain_s if args.stop == "drain" else None,
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
