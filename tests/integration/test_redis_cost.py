"""Redis work per message does not grow with the number of subscribers (INFO commandstats)."""

import asyncio
import json

import pytest
import redis
import websockets

from tests.support.frames import recv_matching, recv_until
from tests.support.origins import same_origin

pytestmark = pytest.mark.django_db(transaction=True)


def command_calls(client: redis.Redis) -> dict[str, int]:
    stats = client.info("commandstats")
    return {name.removeprefix("cmdstat_"): value["calls"] for name, value in stats.items()}


async def subscribe_many(url: str, room: str, count: int) -> list:
    sockets = []
    for _ in range(count):
        ws = await websockets.connect(url, origin=same_origin(url))
        sockets.append(ws)
        await ws.recv()  # welcome
        await ws.send(json.dumps({"type": "subscribe", "room": room}))
    for ws in sockets:
        await recv_until(ws, "subscribed", 10)
    return sockets


async def drain_presence(sockets, quiet_s: float = 0.5) -> None:
    """Read until every socket has been quiet for ``quiet_s`` (presence frames settle)."""

    async def drain(ws):
        while True:
            try:
                await asyncio.wait_for(ws.recv(), quiet_s)
            except TimeoutError:
                return

    await asyncio.gather(*(drain(ws) for ws in sockets))


async def presence_reads_settled(client: redis.Redis, quiet_s: float = 1.0, limit_s: float = 10.0) -> None:
    """Wait until no hub has read a room's members (``ZRANGEBYSCORE``) for ``quiet_s``.

    A hub told of another process's arrivals reads the room once its batch window ends (0.5 s
    at 200 members, chat/hub/roster.py); when nothing changed it sends no frame, so quiet
    sockets do not prove the read is done.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + limit_s
    last, since = command_calls(client).get("zrangebyscore", 0), loop.time()
    while loop.time() - since < quiet_s:
        assert loop.time() < deadline, "presence reads went on for 10 s"
        await asyncio.sleep(0.1)
        calls = command_calls(client).get("zrangebyscore", 0)
        if calls != last:
            last, since = calls, loop.time()


async def nothing_more_presence(ws, quiet_s: float) -> bool:
    """True when no presence frame arrives for ``quiet_s`` (other frames are read and dropped)."""
    try:
        await recv_matching(ws, lambda frame: frame["type"] == "presence", quiet_s)
    except TimeoutError:
        return True
    return False


async def one_message_cost(client, sender, everyone, room: str, client_id: str) -> dict[str, int]:
    before = command_calls(client)
    await sender.send(
        json.dumps({"type": "message", "room": room, "body": "count me", "client_id": client_id})
    )

    async def delivered(ws):
        await recv_matching(
            ws, lambda frame: frame["type"] == "message" and frame["client_id"] == client_id, 10
        )

    await asyncio.gather(*(delivered(ws) for ws in everyone))
    after = command_calls(client)
    used = {name: after.get(name, 0) - before.get(name, 0) for name in after}
    used["info"] -= 1  # the INFO call that read `after`
    return {name: calls for name, calls in used.items() if calls}


@pytest.mark.parametrize("layer", ["pubsub", "core"])
async def test_redis_commands_per_message_do_not_grow_with_subscribers(daphne, redis_url, layer):
    # Periodic work (tail check, presence refresh) pushed out of the measured window.
    env = {
        "REDIS_URL": redis_url,
        "RIPPLE_CHANNEL_LAYER": layer,
        "RIPPLE_TAIL_CHECK_S": "600",
        "RIPPLE_PRESENCE_TTL_S": "600",
        # The dashboard report (a SET and a SADD per process per second) too.
        "RIPPLE_DASHBOARD_REPORT_S": "600",
        "RIPPLE_DASHBOARD_EXPIRY_S": "1800",
    }
    workers = [daphne(**env), daphne(**env)]
    urls = [f"{worker.ws_url}/ws/chat/" for worker in workers]
    client = redis.Redis.from_url(redis_url)
    room = f"cost-{layer}"
    sockets = []
    try:
        sockets += await subscribe_many(urls[0], room, 10)
        sockets += await subscribe_many(urls[1], room, 10)
        await drain_presence(sockets)
        await presence_reads_settled(client)
        small = await one_message_cost(client, sockets[0], sockets, room, "small")

        sockets += await subscribe_many(urls[0], room, 90)
        sockets += await subscribe_many(urls[1], room, 90)
        await drain_presence(sockets)
        await presence_reads_settled(client)
        large = await one_message_cost(client, sockets[0], sockets, room, "large")
    finally:
        await asyncio.gather(*(ws.close() for ws in sockets), return_exceptions=True)
        client.close()
    print(f"{layer}: 20 subscribers {small}; 200 subscribers {large}")
    # The core layer's receive loop (a blocking BZPOPMIN, re-armed on a timer, the Lua clean-up
    # around it, and the ZPOPMIN that empties its backup queue after a message was taken) runs
    # per process, not per message: how many of its rounds fall inside a window depends on
    # timing (once the frames reach the sockets sooner than that ZPOPMIN runs, it falls after
    # the window). It is bounded per process; everything else must not move.
    receive_loop = {"bzpopmin", "eval", "zrange", "del", "zpopmin"} if layer == "core" else set()
    # So does each hub's health check: one PING a second (chat/hub/janitor.py).
    receive_loop.add("ping")
    for window in (small, large):
        for name in receive_loop:
            assert window.get(name, 0) <= (4 if name == "ping" else 2) * len(workers), (name, window)
    steady_small = {name: calls for name, calls in small.items() if name not in receive_loop}
    steady_large = {name: calls for name, calls in large.items() if name not in receive_loop}
    total_large = sum(steady_large.values())
    if layer == "core":
        # The clean-up script puts a message left in the backup queue back with a ZADD, counted
        # as one (commandstats counts a script's commands by name): at most one per process per
        # window, beside the sends' own ZADDs.
        extra = {name: steady_large.pop(name, 0) - steady_small.pop(name, 0) for name in ("zadd",)}
        assert abs(extra["zadd"]) <= len(workers), (small, large)
    assert steady_large == steady_small
    # Measured here: pub/sub 1 PUBLISH; core about 25 commands (its group bookkeeping). The
    # timed loops above are bounded on their own: a health-check PING that falls inside a slow
    # window is not a cost of the message.
    assert total_large <= (1 if layer == "pubsub" else 30), large
    if layer == "pubsub":
        assert steady_large.get("publish", 0) == 1, large


async def test_a_mass_disconnect_is_written_and_announced_once_per_room(daphne, redis_url):
    """60 members leaving 6 rooms together: 6 ZREMs and 6 announcements, not 60 of each.

    One task per departure (a ZREM and a PUBLISH each, all started in the same instant) held
    the event loop for over a second after 5,000 sockets closed (docs/benchmarks.md).
    """
    env = {
        "REDIS_URL": redis_url,
        "RIPPLE_CHANNEL_LAYER": "pubsub",
        "RIPPLE_PRESENCE_GRACE_S": "1",
        "RIPPLE_TAIL_CHECK_S": "600",
        "RIPPLE_PRESENCE_TTL_S": "600",
        "RIPPLE_DASHBOARD_REPORT_S": "600",
        "RIPPLE_DASHBOARD_EXPIRY_S": "1800",
    }
    worker = daphne(**env)
    url = f"{worker.ws_url}/ws/chat/"
    client = redis.Redis.from_url(redis_url)
    rooms = [f"leave-{index}" for index in range(6)]
    leaving, watchers = [], []
    try:
        for room in rooms:
            leaving += await subscribe_many(url, room, 10)
        watchers = await subscribe_many(url, rooms[0], 1)
        await drain_presence(leaving + watchers)
        before = command_calls(client)
        await asyncio.gather(*(ws.close() for ws in leaving))
        left = await recv_matching(watchers[0], lambda frame: frame["type"] == "presence", 10)
        # The other rooms' announcements may still be on their way: wait for all six (or more).
        async with asyncio.timeout(5):
            while (after := command_calls(client)).get("publish", 0) - before.get("publish", 0) < len(rooms):
                await asyncio.sleep(0.05)
        assert await nothing_more_presence(watchers[0], 1.5)
        after = command_calls(client)
    finally:
        await asyncio.gather(*(ws.close() for ws in leaving + watchers), return_exceptions=True)
        client.close()
    assert len(left["leaves"]) == 10 and left["joins"] == [], left
    used = {name: after.get(name, 0) - before.get(name, 0) for name in ("zrem", "publish")}
    assert used == {"zrem": len(rooms), "publish": len(rooms)}, used
