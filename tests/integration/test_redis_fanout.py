"""Two daphne processes on one Redis: the hub's fan-out across processes."""

import asyncio
import json

import pytest
import websockets

from tests.support.frames import recv_until
from tests.support.origins import same_origin

pytestmark = pytest.mark.django_db(transaction=True)

# The tail check would deliver a message the layer lost within 5 s; these tests must see the
# layer itself deliver, so it is pushed out of reach.
LAYER_ONLY = {"RIPPLE_TAIL_CHECK_S": "600"}


@pytest.fixture(params=["core", "pubsub"])
def layer(request):
    """Both channels-redis layers carry the hubs' traffic."""
    return {**LAYER_ONLY, "RIPPLE_CHANNEL_LAYER": request.param}


async def test_messages_cross_processes_once_and_in_order(daphne, redis_url, layer):
    first = daphne(REDIS_URL=redis_url, **layer)
    second = daphne(REDIS_URL=redis_url, **layer)
    room = "across"
    async with (
        websockets.connect(f"{first.ws_url}/ws/chat/", origin=same_origin(f"{first.ws_url}/ws/chat/")) as ann,
        websockets.connect(
            f"{second.ws_url}/ws/chat/", origin=same_origin(f"{second.ws_url}/ws/chat/")
        ) as bob,
    ):
        for ws in (ann, bob):
            await recv_until(ws, "welcome")
            await ws.send(json.dumps({"type": "subscribe", "room": room}))
            await recv_until(ws, "subscribed")
        # Both write at once, from both processes.
        for i in range(20):
            await ann.send(
                json.dumps({"type": "message", "room": room, "body": f"a{i}", "client_id": f"a{i}"})
            )
            await bob.send(
                json.dumps({"type": "message", "room": room, "body": f"b{i}", "client_id": f"b{i}"})
            )
        seen = {}
        for name, ws in (("ann", ann), ("bob", bob)):
            messages = []
            try:
                async with asyncio.timeout(10):
                    while len(messages) < 40:
                        frame = json.loads(await ws.recv())
                        if frame["type"] == "message":
                            messages.append(frame)
            except TimeoutError:
                pytest.fail(f"{name} got only seqs {[m['seq'] for m in messages]}")
            seen[name] = [(m["seq"], m["body"]) for m in messages]
        assert [seq for seq, _ in seen["ann"]] == list(range(1, 41))
        assert seen["ann"] == seen["bob"]

    # A client that moves to the other process resumes with no gap.
    async with websockets.connect(
        f"{second.ws_url}/ws/chat/", origin=same_origin(f"{second.ws_url}/ws/chat/")
    ) as moved:
        await recv_until(moved, "welcome")
        await moved.send(json.dumps({"type": "subscribe", "room": room, "since": 35}))
        subscribed = await recv_until(moved, "subscribed")
        assert [m["seq"] for m in subscribed["messages"]] == [36, 37, 38, 39, 40]


async def test_idle_sockets_survive_past_the_redis_read_timeout(daphne, redis_url, layer):
    """redis-py 8 defaults to a 5 s socket timeout that kills idle layer reads (STACK-FACTS)."""
    server = daphne(REDIS_URL=redis_url, **layer)
    other = daphne(REDIS_URL=redis_url, **layer)
    async with (
        websockets.connect(
            f"{server.ws_url}/ws/chat/", origin=same_origin(f"{server.ws_url}/ws/chat/")
        ) as idle,
        websockets.connect(
            f"{other.ws_url}/ws/chat/", origin=same_origin(f"{other.ws_url}/ws/chat/")
        ) as talker,
    ):
        for ws in (idle, talker):
            await recv_until(ws, "welcome")
            await ws.send(json.dumps({"type": "subscribe", "room": "idle"}))
            await recv_until(ws, "subscribed")
        # Wait out the 5 s read timeout on a socket that hears nothing about messages (pings
        # are every 20 s; the talker's arrival is announced, nothing else).
        loop = asyncio.get_running_loop()
        quiet_until = loop.time() + 7
        while (left := quiet_until - loop.time()) > 0:
            try:
                frame = json.loads(await asyncio.wait_for(idle.recv(), timeout=left))
            except TimeoutError:
                break
            assert frame["type"] == "presence", frame
        await talker.send(
            json.dumps({"type": "message", "room": "idle", "body": "still there?", "client_id": "x"})
        )
        message = await recv_until(idle, "message")
        assert message["body"] == "still there?"
