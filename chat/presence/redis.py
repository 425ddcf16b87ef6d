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

    async def add(self, process: str, entries: list[tuple[str, Member]]) -> None:
        expires = time.time() + self.ttl_s
        by_room: dict[str, dict[str, float]] = {}
        for room, member in entries:
            by_room.setdefault(room, {})[_entry(process, member)] = expires
        async with self.redis.pipeline(transaction=False) as pipe:
            for room, scored in by_room.items():
                pipe.zadd(_key(room), scored)
                pipe.expire(_key(room), self._key_ttl())
            await pipe.execute()

    async def remove(self, process: str, entries: list[tuple[str, Member]]) -> None:
        by_room: dict[str, list[str]] = {}
        for room, member in entries:
            by_room.setdefault(room, []).append(_entry(process, member))
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
        # One ZADD per room with all of its entries: at 10,000 idle sockets a command per entry
        # made the refresh as costly as every ping the sockets sent (docs/benchmarks.md).
        now = time.time()
        expires = now + self.ttl_s
        by_room: dict[str, dict[str, float]] = {}
        for room, member in entries:
            by_room.setdefault(room, {})[_entry(process, member)] = expires
        async with self.redis.pipeline(transaction=False) as pipe:
            for room, scored in by_room.items():
                pipe.zadd(_key(room), scored)
                pipe.zremrangebyscore(_key(room), "-inf", now)
                pipe.expire(_key(room), self._key_ttl())
            await pipe.execute()

    def _key_ttl(self) -> int:
        # A room whose every process died is forgotten a while after its entries expired.
        return int(self.ttl_s * 2) + 1

    async def ping(self) -> None:
        await self.redis.ping()

    async def close(self) -> None:
        await self.redis.aclose()
