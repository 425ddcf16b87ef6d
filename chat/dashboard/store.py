"""The dashboard's store: each process's latest snapshot, kept until it expires.

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
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any, cast
from weakref import WeakKeyDictionary

import redis.asyncio as aioredis
from django.conf import settings
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

KEY_PREFIX = "ripple:dash:proc:"
INDEX_KEY = "ripple:dash:procs"
DEFAULT_EXPIRY_S = 5.0
# Redis calls made for the dashboard: a report must never hold up the hub's janitor.
REDIS_TIMEOUT_S = 1.0


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


# The last ``rooms`` of a snapshot encoded, and its JSON (``encode``).
_rooms_encoded: tuple[dict[str, int], str] | None = None


def encode(snapshot: dict[str, Any]) -> str:
    """``json.dumps(snapshot)``, with its ``rooms`` encoded again only when they changed.

    A process with 1,000 rooms reports the same sizes second after second while its sockets
    are idle, and encoding them was most of the report's cost (a tenth of an idle worker's
    CPU at 10,000 sockets, docs/benchmarks.md).
    """
    global _rooms_encoded
    rooms = snapshot.get("rooms")
    rest = {key: value for key, value in snapshot.items() if key != "rooms"}
    if not isinstance(rooms, dict) or not rest:
        return json.dumps(snapshot)
    if _rooms_encoded is None or _rooms_encoded[0] != rooms:
        _rooms_encoded = (dict(rooms), json.dumps(rooms))
    return f'{json.dumps(rest)[:-1]}, "rooms": {_rooms_encoded[1]}}}'


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
            pipe.set(KEY_PREFIX + process_id, encode(snapshot), px=max(1, round(expiry * 1000)))
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
