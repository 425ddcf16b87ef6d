from __future__ import annotations

import json
import time

import redis.asyncio as aioredis

from .base import Member

KEY_PREFIX = "ripple:presence:"


def _key(room: str) -> str:
    return f"{KEY_PREFIX}{room}"


def _entry(process: str, member: Member) -> str:
    return json.dumps([process, member.id, member.name], separators=(",", ":"), ensure_ascii=False)


# Refreshes the entries of many rooms in one command. KEYS: the rooms' keys. ARGV: the new
# expiry, now, the key's TTL, and the rooms' entries as one JSON array of arrays, in the order
# of KEYS (one argument: redis-py builds each argument in Python, the script decodes in C).
# Each room: its entries re-scored (ZADD), the expired ones dropped, the key's TTL renewed.
_REFRESH_SCRIPT = """
local expires, now, key_ttl = ARGV[1], ARGV[2], ARGV[3]
local rooms = cjson.decode(ARGV[4])
for i, key in ipairs(KEYS) do
  local scored = {}
  for j, entry in ipairs(rooms[i]) do
    scored[2 * j - 1] = expires
    scored[2 * j] = entry
  end
  for first = 1, #scored, 1000 do  -- unpack() has a limit: at most 500 entries a ZADD
    redis.call('ZADD', key, unpack(scored, first, math.min(first + 999, #scored)))
  end
  redis.call('ZREMRANGEBYSCORE', key, '-inf', now)
  redis.call('EXPIRE', key, key_ttl)
end
return #KEYS
"""


def _members(entries: list) -> set[Member]:
    found = set()
    for entry in entries:
        _, member_id, name = json.loads(str(entry))
        found.add(Member(name=name, id=member_id))
    return found


class RedisPresenceStore:
    """Presence across processes: one sorted set per room, scored by each entry's expiry time."""

    def __init__(self, url: str, *, ttl_s: float) -> None:
        self.ttl_s = ttl_s
        # A blocking pool: a burst of subscribes (a reconnect storm) waits up to 5 s for one of
        # the 50 connections instead of failing with "Too many connections" (bench storm saw
        # 11-21 % of 1,000 re-subscribes fail that way with a plain pool of 50).
        pool = aioredis.BlockingConnectionPool.from_url(
            url,
            max_connections=50,
            timeout=5,
            socket_timeout=5,
            socket_connect_timeout=5,
            decode_responses=True,
        )
        self.redis = aioredis.Redis.from_pool(pool)  # closing the client closes the pool
        self._refresh = self.redis.register_script(_REFRESH_SCRIPT)
        # Each member's entry as stored, by (process, member): the refresh writes every local
        # entry every RIPPLE_PRESENCE_TTL_S / 3, and encoding them was a third of its cost.
        self._entries: dict[tuple[str, Member], str] = {}

    async def add(self, process: str, entries: list[tuple[str, Member]]) -> None:
        # The refresh's script: a batch of arrivals in many rooms is one command, not two a room.
        await self.refresh(process, entries)

    async def remove(self, process: str, entries: list[tuple[str, Member]]) -> None:
        by_room: dict[str, list[str]] = {}
        for room, member in entries:
            # Forgotten here even if the member is still in another room: encoded again then.
            entry = self._entries.pop((process, member), None) or _entry(process, member)
            by_room.setdefault(room, []).append(entry)
        async with self.redis.pipeline(transaction=False) as pipe:
            for room, names in by_room.items():
                pipe.zrem(_key(room), *names)
            await pipe.execute()

    async def members(self, room: str) -> set[Member]:
        entries = await self.redis.zrangebyscore(_key(room), time.time(), "+inf")
        return _members(entries)

    async def members_many(self, rooms: list[str]) -> dict[str, set[Member]]:
        now = time.time()
        async with self.redis.pipeline(transaction=False) as pipe:
            for room in rooms:
                pipe.zrangebyscore(_key(room), now, "+inf")
            results = await pipe.execute()
        return {room: _members(entries) for room, entries in zip(rooms, results, strict=True)}

    async def refresh(self, process: str, entries: list[tuple[str, Member]]) -> None:
        """Score ``entries`` to expire a TTL from now, drop their rooms' expired entries, and
        renew the rooms' keys, in one script call for all of their rooms.

        At 10,000 idle sockets in 1,000 rooms a pipeline of three commands a room cost the worker
        ~0.3 s every 20 s, most of it redis-py building and reading commands (docs/benchmarks.md).
        """
        now = time.time()
        by_room: dict[str, list[str]] = {}
        for room, member in entries:
            by_room.setdefault(room, []).append(self._entry(process, member))
        groups = json.dumps(list(by_room.values()), separators=(",", ":"), ensure_ascii=False)
        await self._refresh(
            keys=[_key(room) for room in by_room], args=[now + self.ttl_s, now, self._key_ttl(), groups]
        )

    def _entry(self, process: str, member: Member) -> str:
        entry = self._entries.get((process, member))
        if entry is None:
            entry = self._entries[(process, member)] = _entry(process, member)
        return entry

    def _key_ttl(self) -> int:
        # A room whose every process died is forgotten a while after its entries expired.
        return int(self.ttl_s * 2) + 1

    async def ping(self) -> None:
        await self.redis.ping()

    async def close(self) -> None:
        await self.redis.aclose()
