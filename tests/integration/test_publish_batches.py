"""Group sends batched while Redis is busy (chat/hub/publisher.py), on a real Redis."""

import asyncio
import socket

import pytest
import redis.asyncio
from channels_redis.pubsub import RedisPubSubChannelLayer

from chat.hub import publisher, receiving
from chat.hub.events import EVENT_MESSAGE, room_group


def pubsub_layer(url: str) -> RedisPubSubChannelLayer:
    return RedisPubSubChannelLayer(hosts=[{"address": url, "socket_timeout": None}])


def shard_of(layer: RedisPubSubChannelLayer, room: str):
    """The shard (of this loop's layer) that the room's group is sent on."""
    loop_layer = layer._get_layer()
    return loop_layer._get_shard(loop_layer._get_group_channel_name(room_group(room)))


async def test_the_installed_channels_redis_is_batched_and_the_others_are_not(redis_url):
    """If an upgrade of channels_redis moved what the batching reads, this fails (no silent fallback)."""
    layer = pubsub_layer(redis_url)
    try:
        assert publisher.batched(layer)
    finally:
        await layer.flush()

    class OtherLayer:
        async def group_send(self, group, message):
            self.sent = (group, message)

    other = OtherLayer()
    assert not publisher.batched(other)
    await publisher.group_send(other, "room.x", {"type": "x"})
    assert other.sent == ("room.x", {"type": "x"})


async def test_a_burst_goes_in_few_round_trips_and_arrives_whole_and_in_order(redis_url):
    layer = pubsub_layer(redis_url)
    try:
        channel = await layer.new_channel()
        await layer.group_add(room_group("burst"), channel)
        count = 60
        sends = [
            publisher.group_send(layer, room_group("burst"), {"type": EVENT_MESSAGE, "seq": seq})
            for seq in range(1, count + 1)
        ]
        await asyncio.wait_for(asyncio.gather(*sends), 10)
        received = [(await asyncio.wait_for(layer.receive(channel), 5))["seq"] for _ in range(count)]
        assert received == list(range(1, count + 1))

        shard = shard_of(layer, "burst")
        sent_by = publisher.shard_publisher(shard)
        assert sent_by.sent == count
        # The first goes alone; the rest queue behind it and go together.
        assert sent_by.round_trips <= 3, sent_by.round_trips
        assert not sent_by.in_flight and not sent_by.queued

        # A lone send afterwards goes at once, on its own.
        await publisher.group_send(layer, room_group("burst"), {"type": EVENT_MESSAGE, "seq": count + 1})
        assert (await asyncio.wait_for(layer.receive(channel), 5))["seq"] == count + 1
        assert sent_by.round_trips <= 4 and sent_by.sent == count + 1
    finally:
        await layer.flush()


@pytest.fixture
async def layer_and_admin(redis_url):
    """A pub/sub layer on the test's Redis, and a plain client to see and kill its connections;
    both closed when the test ends."""
    layer = pubsub_layer(redis_url)
    admin = redis.asyncio.Redis.from_url(redis_url)
    try:
        yield layer, admin
    finally:
        await admin.aclose()
        await layer.flush()


async def test_sends_go_on_one_held_connection_and_survive_it_being_killed(layer_and_admin):
    layer, admin = layer_and_admin
    channel = await layer.new_channel()
    await layer.group_add(room_group("held"), channel)
    await publisher.group_send(layer, room_group("held"), {"type": EVENT_MESSAGE, "seq": 1})
    shard = shard_of(layer, "held")
    sent_by = publisher.shard_publisher(shard)
    _, held = sent_by._held
    for seq in (2, 3):
        await publisher.group_send(layer, room_group("held"), {"type": EVENT_MESSAGE, "seq": seq})
    assert sent_by._held[1] is held  # the same connection every time
    # Redis drops it (a restart, a proxy, CLIENT KILL): the next send goes on a new one.
    killed = await admin.execute_command("CLIENT", "KILL", "ID", await held_client_id(admin, held))
    assert killed == 1
    await asyncio.wait_for(
        publisher.group_send(layer, room_group("held"), {"type": EVENT_MESSAGE, "seq": 4}), 10
    )
    received = [(await asyncio.wait_for(layer.receive(channel), 5))["seq"] for _ in range(4)]
    assert received == [1, 2, 3, 4]
    assert sent_by.sent == 4


async def held_client_id(admin, held) -> int:
    """The Redis client id of the publisher's connection, found by its local port."""
    port = held._writer.get_extra_info("sockname")[1]
    for line in (await admin.execute_command("CLIENT", "LIST")).decode().splitlines():
        fields = dict(field.split("=", 1) for field in line.split(" ") if "=" in field)
        if fields["addr"].endswith(f":{port}"):
            return int(fields["id"])
    raise AssertionError(f"no client on local port {port}")


async def test_the_receive_loop_waits_without_a_timer_and_reads_again_after_its_connection_is_killed(
    layer_and_admin,
):
    assert receiving.installed_layer_fits()
    layer, admin = layer_and_admin
    channel = await layer.new_channel()
    await layer.group_add(room_group("recv"), channel)
    await publisher.group_send(layer, room_group("recv"), {"type": EVENT_MESSAGE, "seq": 1})
    assert (await asyncio.wait_for(layer.receive(channel), 5))["seq"] == 1
    shard = shard_of(layer, "recv")
    assert shard._receive_task.get_coro().__name__ == "receive_without_timer"
    # Waiting for the next message arms no timer (channels_redis' own loop did, every 0.1 s).
    await asyncio.sleep(0.3)
    loop = asyncio.get_running_loop()
    assert not [handle for handle in loop._scheduled if not handle.cancelled()]  # type: ignore[attr-defined]
    await publisher.group_send(layer, room_group("recv"), {"type": EVENT_MESSAGE, "seq": 2})
    assert (await asyncio.wait_for(layer.receive(channel), 5))["seq"] == 2
    # Redis drops the subscriber's connection: the loop reads again on a new one, subscribed
    # again. (One receive for all the tries: a cancelled receive unsubscribes its channel.)
    assert await admin.execute_command("CLIENT", "KILL", "TYPE", "pubsub") >= 1
    received = asyncio.ensure_future(layer.receive(channel))
    for seq in range(100, 150):
        await publisher.group_send(layer, room_group("recv"), {"type": EVENT_MESSAGE, "seq": seq})
        done, _ = await asyncio.wait([received], timeout=0.2)
        if done:
            break
    assert received.done(), "nothing arrived in 10 s after the subscriber's connection was killed"
    assert received.result()["seq"] >= 100


async def test_when_redis_is_away_every_queued_send_fails_and_none_waits_forever():
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    layer = pubsub_layer(f"redis://127.0.0.1:{port}/0")
    try:
        sends = [publisher.group_send(layer, room_group("away"), {"type": "x", "n": n}) for n in range(20)]
        results = await asyncio.wait_for(asyncio.gather(*sends, return_exceptions=True), 10)
        assert len(results) == 20
        assert all(isinstance(result, Exception) for result in results), results
        shard = shard_of(layer, "away")
        sent_by = publisher.shard_publisher(shard)
        assert not sent_by.in_flight and not sent_by.queued and sent_by.sent == 0
    finally:
        await layer.flush()


@pytest.mark.parametrize("cancel_one", [False, True])
async def test_a_send_cancelled_while_queued_does_not_stop_the_others(redis_url, cancel_one):
    layer = pubsub_layer(redis_url)
    try:
        channel = await layer.new_channel()
        await layer.group_add(room_group("cancel"), channel)
        first = asyncio.ensure_future(
            publisher.group_send(layer, room_group("cancel"), {"type": "x", "n": 1})
        )
        await asyncio.sleep(0)  # the first is in flight now
        queued = [
            asyncio.ensure_future(publisher.group_send(layer, room_group("cancel"), {"type": "x", "n": n}))
            for n in range(2, 6)
        ]
        await asyncio.sleep(0)
        if cancel_one:
            queued[0].cancel()
        await asyncio.wait_for(asyncio.gather(first, *queued, return_exceptions=True), 10)
        received = [(await asyncio.wait_for(layer.receive(channel), 5))["n"] for _ in range(5)]
        # A cancelled caller's message was already handed over: it still goes, in its place.
        assert received == [1, 2, 3, 4, 5]
    finally:
        await layer.flush()
