"""Presence across two daphne processes on one Redis, and what a kill -9 leaves behind."""

import asyncio
import json
import signal

import pytest
import websockets

from tests.support.frames import recv_until
from tests.support.origins import same_origin

pytestmark = pytest.mark.django_db(transaction=True)

FAST_PRESENCE = {
    "RIPPLE_PRESENCE_TTL_S": "1.5",
    "RIPPLE_PRESENCE_GRACE_S": "0.2",
    "RIPPLE_PRESENCE_BATCH_S": "0.1",
    "RIPPLE_CHANNEL_LAYER": "pubsub",
}


async def join(url: str, room: str):
    ws = await websockets.connect(url, origin=same_origin(url))
    welcome = await recv_until(ws, "welcome")
    await ws.send(json.dumps({"type": "subscribe", "room": room}))
    subscribed = await recv_until(ws, "subscribed")
    return ws, welcome["user"]["name"], subscribed


async def test_members_on_both_processes_are_listed_and_a_killed_process_drops_out(daphne, redis_url):
    survivor = daphne(REDIS_URL=redis_url, **FAST_PRESENCE)
    doomed = daphne(REDIS_URL=redis_url, **FAST_PRESENCE)
    here, here_name, _ = await join(f"{survivor.ws_url}/ws/chat/", "presence-lobby")
    there, there_name, subscribed = await join(f"{doomed.ws_url}/ws/chat/", "presence-lobby")
    try:
        # The newcomer on the second process sees the member on the first one: in its
        # `subscribed`, or (when the first one's arrival was still in its batch window, 20 ms)
        # in the presence frame that announces it.
        seen = {m["name"] for m in subscribed["members"]}
        async with asyncio.timeout(5):
            while here_name not in seen:
                seen |= {m["name"] for m in (await recv_until(there, "presence"))["joins"]}
        assert seen == {here_name, there_name}
        # ...and the first one is told of the newcomer.
        joined = await recv_until(here, "presence")
        assert there_name in {m["name"] for m in joined["joins"]}

        doomed.signal(signal.SIGKILL)
        loop = asyncio.get_running_loop()
        killed_at = loop.time()
        while True:
            frame = await recv_until(here, "presence", timeout=6)
            if there_name in {m["name"] for m in frame["leaves"]}:
                break
        dropped_after = loop.time() - killed_at
        # Within the TTL plus one refresh period (TTL / 3) and a batch window.
        assert dropped_after < 1.5 + 0.5 + 0.1 + 1.0

        # The survivor keeps serving.
        await here.send(
            json.dumps({"type": "message", "room": "presence-lobby", "body": "still here", "client_id": "s1"})
        )
        assert (await recv_until(here, "ack"))["seq"] == 1
    finally:
        await here.close()
        await there.close()
