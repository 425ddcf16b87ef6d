"""The ``dashboard`` frame: process snapshots merged into totals, rooms, events and traffic.

One frame a second per dashboard socket: per process, totals, the busiest rooms, recent
connects and disconnects, and the traffic of the last minutes summed across processes.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from .. import stats as stats_module
from ..stats import TRAFFIC_WINDOW_S
from .store import processes

logger = logging.getLogger(__name__)

# Messages per second are averaged over the last complete seconds of the traffic series.
RATE_WINDOW_S = 5
BUSIEST_ROOMS = 10
RECENT_EVENTS = 30
# The chart's span: the whole traffic window the processes keep.
CHART_WINDOW_S = TRAFFIC_WINDOW_S


def _rate(traffic: list[list[int]], column: int, now: int) -> float:
    """Messages per second over the last RATE_WINDOW_S complete seconds."""
    total = sum(row[column] for row in traffic if now - RATE_WINDOW_S <= row[0] < now)
    return round(total / RATE_WINDOW_S, 2)


def build_frame(snapshots: list[dict[str, Any]], *, now: float | None = None) -> dict[str, Any]:
    """The dashboard frame for a list of process snapshots."""
    now = time.time() if now is None else now
    second = int(now)
    rows = []
    rooms: dict[str, int] = {}
    recent: list[dict[str, Any]] = []
    # Maps unix second to [messages in, messages out] across processes.
    traffic: dict[int, list[int]] = {}
    closes: dict[str, int] = {}
    errors: dict[str, int] = {}
    for snapshot in snapshots:
        series = snapshot.get("traffic", [])
        process = f"{snapshot['host']}:{snapshot['pid']}"
        rows.append(
            {
                "process_id": snapshot["process_id"],
                "host": snapshot["host"],
                "pid": snapshot["pid"],
                "uptime_s": snapshot["uptime_s"],
                "open_sockets": snapshot["open_sockets"],
                "connects_total": snapshot["connects_total"],
                "messages_in_per_s": _rate(series, 1, second),
                "messages_out_per_s": _rate(series, 2, second),
                "heartbeat_timeouts_total": snapshot["heartbeat_timeouts_total"],
                "reported_at": snapshot["reported_at"],
                "age_s": round(max(0.0, now - snapshot["reported_at"]), 1),
            }
        )
        # Member counts are global (presence spans processes): a room seen by two processes
        # has the same members on both, so take the larger, never the sum.
        for slug, members in snapshot.get("rooms", {}).items():
            rooms[slug] = max(rooms.get(slug, 0), members)
        recent.extend({**event, "process": process} for event in snapshot.get("recent", []))
        for unix_s, messages_in, messages_out in series:
            summed = traffic.setdefault(unix_s, [0, 0])
            summed[0] += messages_in
            summed[1] += messages_out
        for code, count in snapshot.get("closes_total", {}).items():
            closes[code] = closes.get(code, 0) + count
        for code, count in snapshot.get("errors_total", {}).items():
            errors[code] = errors.get(code, 0) + count
    recent.sort(key=lambda event: event["t"], reverse=True)
    busiest = sorted(rooms.items(), key=lambda item: (-item[1], item[0]))[:BUSIEST_ROOMS]
    return {
        "type": "dashboard",
        "t": now,
        "processes": rows,
        "totals": {
            "processes": len(rows),
            "open_sockets": sum(row["open_sockets"] for row in rows),
            "connects_total": sum(row["connects_total"] for row in rows),
            "messages_in_per_s": round(sum(row["messages_in_per_s"] for row in rows), 2),
            "messages_out_per_s": round(sum(row["messages_out_per_s"] for row in rows), 2),
            "heartbeat_timeouts_total": sum(row["heartbeat_timeouts_total"] for row in rows),
            "closes_total": closes,
            "errors_total": errors,
        },
        "rooms": [{"room": slug, "members": members} for slug, members in busiest],
        "recent": recent[:RECENT_EVENTS],
        # Every second of the window, oldest first, zeros where nothing was sent.
        "traffic": [
            [unix_s, *traffic.get(unix_s, (0, 0))] for unix_s in range(second - CHART_WINDOW_S, second)
        ],
    }


async def current_frame() -> dict[str, Any]:
    """The frame as this process sees it now: the store's snapshots with its own fresh one."""
    own = stats_module.stats.snapshot()
    warning = ""
    try:
        snapshots = await processes()
    except Exception as error:
        logger.warning("reading the dashboard snapshots failed", exc_info=True)
        snapshots = []
        warning = f"other processes unavailable: {type(error).__name__}"
    # This process is always shown, and with its numbers of this instant, even while its
    # hub is idle and not reporting.
    snapshots = [snapshot for snapshot in snapshots if snapshot["process_id"] != own["process_id"]]
    frame = build_frame([own, *snapshots])
    frame["warning"] = warning
    return frame
