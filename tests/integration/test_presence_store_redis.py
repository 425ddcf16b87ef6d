"""chat/presence/redis.py against a real Redis: what the refresh script leaves in each room."""

import time
import uuid

import pytest
import redis.asyncio as aioredis

from chat.presence import Member
from chat.presence.redis import RedisPresenceStore, _key


@pytest.fixture
async def store(redis_url):
    store = RedisPresenceStore(redis_url, ttl_s=30.0)
    yield store
    await store.close()


async def test_the_refresh_rescores_every_rooms_entries_and_drops_the_expired(store, redis_url):
    rooms = [f"refresh-{uuid.uuid4().hex[:8]}" for _ in range(3)]
    # One room past what one unpack() can take (8,000 values), so the script must chunk its ZADDs.
    members = {
        rooms[0]: [Member(name=f"m{i}", id=f"g{i}") for i in range(4500)],
        rooms[1]: [Member(name="Zoë 'z' \"q\" \\ 🦊", id="u7")],
        rooms[2]: [Member(name=f"n{i}", id=f"c{i}") for i in range(3)],
    }
    entries = [(room, member) for room, found in members.items() for member in found]
    await store.add("p-live", entries)
    # A dead process's entry, already expired: the refresh drops it.
    client = aioredis.Redis.from_url(redis_url, decode_responses=True)
    try:
        await client.zadd(_key(rooms[2]), {'["p-dead","c9","gone"]': time.time() - 1})
        await client.expire(_key(rooms[0]), 5)
        before = time.time()
        await store.refresh("p-live", entries)
        for room, found in members.items():
            assert await store.members(room) == set(found)
            scores = [score for _, score in await client.zrange(_key(room), 0, -1, withscores=True)]
            assert len(scores) == len(found)  # the expired entry is gone, nothing else
            assert all(before + 30.0 <= score <= time.time() + 30.0 for score in scores)
            assert await client.ttl(_key(room)) > 30  # renewed: twice the TTL, and one second
    finally:
        await client.aclose()


async def test_a_refresh_after_the_scripts_were_flushed_loads_the_script_again(store, redis_url):
    room = f"flushed-{uuid.uuid4().hex[:8]}"
    member = Member(name="ann", id="u1")
    await store.refresh("p1", [(room, member)])
    client = aioredis.Redis.from_url(redis_url)
    try:
        await client.script_flush()  # as after a Redis restart
    finally:
        await client.aclose()
    await store.refresh("p1", [(room, member)])
    assert await store.members(room) == {member}


async def test_removing_an_entry_forgets_its_encoding(store):
    room = f"forget-{uuid.uuid4().hex[:8]}"
    member = Member(name="bob", id="u2")
    await store.add("p1", [(room, member)])
    assert ("p1", member) in store._entries
    await store.remove("p1", [(room, member)])
    assert ("p1", member) not in store._entries and await store.members(room) == set()
