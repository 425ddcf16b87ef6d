"""The live admin dashboard: every process's numbers, merged and pushed once a second.

Each server process reports ``stats.snapshot()`` once a second (the hub's janitor calls
``report``). Snapshots live for ``RIPPLE_DASHBOARD_EXPIRY_S`` (5 s by default): a process that
stops reporting, even one killed with -9, drops off the dashboard on its own.

Where snapshots are kept:

- With ``REDIS_URL``: ``ripple:dash:proc:<process_id>`` holds the JSON, set with an expiry, and
  the set ``ripple:dash:procs`` indexes the process ids. ``processes`` reads the set, fetches
  every key in one ``MGET`` and removes the ids whose key has expired. An index instead of
  ``SCAN``: ``SCAN`` walks the whole keyspace (presence, the channel layer's keys) on every
  tick of every dashboard socket, the set costs one member per live process. A process whose
  id was pruned in the instant between its key expiring and its next report is back a second
  later, when that report adds it again.
- Without Redis (one process): a dict in this module, with the same expiry.

``DashboardConsumer`` (``/ws/admin/dashboard/``, staff only) sends one ``dashboard`` frame a
second: per process, totals, the busiest rooms, recent connects and disconnects, and the
traffic of the last minutes summed across processes.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from typing import Any, cast
from weakref import WeakKeyDictionary

import redis.asyncio as aioredis
from channels.generic.websocket import AsyncWebsocketConsumer
from django.conf import settings
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from . import stats as stats_module
from .logs import log_event
from .stats import TRAFFIC_WINDOW_S

logger = logging.getLogger(__name__)

KEY_PREFIX = "ripple:dash:proc:"
INDEX_KEY = "ripple:dash:procs"
DEFAULT_EXPIRY_S = 5.0
# Redis calls made for the dashboard and /readyz: a report must never hold up the hub's janitor.
REDIS_TIMEOUT_S = 1.0
# Messages per second are averaged over the last complete seconds of the traffic series.
RATE_WINDOW_S = 5
BUSIEST_ROOMS = 10
RECENT_EVENTS = 30
# The chart's span: the whole traffic window the processes keep.
CHART_WINDOW_S = TRAFFIC_WINDOW_S
PUSH_INTERVAL_S = 1.0
# Not a channel-layer alias: a dashboard socket receives nothing from the layer.
NO_CHANNEL_LAYER = "ripple.no-layer"


def expiry_s() -> float:
    return float(getattr(settings, "RIPPLE_DASHBOARD_EXPIRY_S", DEFAULT_EXPIRY_S))


def _monotonic() -> float:
    return time.monotonic()


# Without Redis: maps process id to (monotonic expiry time, snapshot).
_local: dict[str, tuple[float, dict[str, Any]]] = {}

# One Redis client per event loop (a client's connections belong to the loop that made them),
# with the URL it was made for.
_clients: WeakKeyDictionary[asyncio.AbstractEventLoop, tuple[str, aioredis.Redis]] = WeakKeyDictionary()


def redis_client() -> aioredis.Redis:
    """This event loop's client for ``REDIS_URL``, with short timeouts and a single retry."""
    loop = asyncio.get_running_loop()
    url = settings.REDIS_URL
    found = _clients.get(loop)
    if found is not None and found[0] == url:
        return found[1]
    client = aioredis.Redis.from_url(
        url,
        socket_timeout=REDIS_TIMEOUT_S,
        socket_connect_timeout=REDIS_TIMEOUT_S,
        # One retry: enough to replace a pooled connection that died with a Redis restart,
        # few enough that a Redis that is down is reported within the timeout.
        retry=Retry(NoBackoff(), 1),
        decode_responses=True,
    )
    _clients[loop] = (url, client)
    return client


async def close_redis_client() -> None:
    """Close this event loop's client (tests, shutdown)."""
    found = _clients.pop(asyncio.get_running_loop(), None)
    if found is not None:
        await found[1].aclose()


async def report(snapshot: dict[str, Any]) -> None:
    """Publish one process's snapshot; it expires unless reported again in time."""
    expiry = expiry_s()
    process_id = snapshot["process_id"]
    if not settings.REDIS_URL:
        _local[process_id] = (_monotonic() + expiry, snapshot)
        return
    client = redis_client()
    async with asyncio.timeout(REDIS_TIMEOUT_S * 2):
        async with client.pipeline(transaction=False) as pipe:
            pipe.set(KEY_PREFIX + process_id, json.dumps(snapshot), px=max(1, round(expiry * 1000)))
            pipe.sadd(INDEX_KEY, process_id)
            await pipe.execute()


async def processes() -> list[dict[str, Any]]:
    """Every live process's latest snapshot, oldest process first."""
    if not settings.REDIS_URL:
        now = _monotonic()
        for process_id in [pid for pid, (expires, _) in _local.items() if expires <= now]:
            del _local[process_id]
        found = [snapshot for _, snapshot in _local.values()]
    else:
        client = redis_client()
        async with asyncio.timeout(REDIS_TIMEOUT_S * 2):
            # decode_responses: members are str.
            ids: list[str] = sorted(cast("set[str]", await client.smembers(INDEX_KEY)))
            values = await client.mget([KEY_PREFIX + process_id for process_id in ids]) if ids else []
            gone = [process_id for process_id, value in zip(ids, values, strict=True) if value is None]
            if gone:
                await client.srem(INDEX_KEY, *gone)
        found = [json.loads(value) for value in values if value is not None]
    return sorted(found, key=lambda snapshot: (snapshot.get("started_at", 0), snapshot["process_id"]))


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


def _is_staff(user: Any) -> bool:
    return bool(user is not None and user.is_authenticated and user.is_active and user.is_staff)


class DashboardConsumer(AsyncWebsocketConsumer):
    """One staff member's dashboard tab: a ``dashboard`` frame every second."""

    channel_layer_alias = NO_CHANNEL_LAYER

    async def connect(self) -> None:
        self.pusher: asyncio.Task | None = None
        if not _is_staff(self.scope.get("user")):
            stats_module.stats.handshakes_rejected_total += 1
            log_event("handshake_rejected", endpoint="dashboard", reason="not staff")
            # Closing before accepting refuses the handshake: HTTP 403.
            await self.close()
            return
        await self.accept()
        self.pusher = asyncio.get_running_loop().create_task(self._push(), name="ripple-dashboard-push")

    async def disconnect(self, code: int) -> None:
        pusher, self.pusher = getattr(self, "pusher", None), None
        if pusher is not None:
            pusher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await pusher

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        """The dashboard only listens; anything a client sends is ignored."""

    async def _push(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            started = loop.time()
            try:
                frame = await current_frame()
                await self.send(text_data=json.dumps(frame))
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.exception("building the dashboard frame failed")
            await asyncio.sleep(max(0.0, PUSH_INTERVAL_S - (loop.time() - started)))
