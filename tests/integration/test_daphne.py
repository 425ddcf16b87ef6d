"""A real daphne process on a free port, driven with the websockets client."""

import asyncio
import json

import pytest
import websockets

from tests.support.frames import recv_json, recv_until
from tests.support.origins import same_origin

pytestmark = pytest.mark.django_db(transaction=True)


async def test_chat_over_a_real_daphne(daphne):
    server = daphne()
    url = f"{server.ws_url}/ws/chat/"
    async with (
        websockets.connect(url, origin=same_origin(url)) as ann,
        websockets.connect(url, origin=same_origin(url)) as bob,
    ):
        assert (await recv_json(ann))["type"] == "welcome"
        assert (await recv_json(bob))["type"] == "welcome"
        for ws in (ann, bob):
            await ws.send(json.dumps({"type": "subscribe", "room": "live"}))
            assert (await recv_until(ws, "subscribed"))["last_seq"] == 0
        await ann.send(json.dumps({"type": "message", "room": "live", "body": "over TCP", "client_id": "a1"}))
        ack = await recv_until(ann, "ack")
        message = await recv_until(bob, "message")
        assert (ack["seq"], message["seq"], message["body"]) == (1, 1, "over TCP")
        await bob.send(json.dumps({"type": "ping", "t": 5}))
        assert await recv_until(bob, "pong") == {"type": "pong", "t": 5, "ref": None}

    # A new connection resumes from what it saw.
    async with websockets.connect(url, origin=same_origin(url)) as late:
        await recv_json(late)
        await late.send(json.dumps({"type": "subscribe", "room": "live", "since": 0}))
        subscribed = await recv_until(late, "subscribed")
        assert [m["body"] for m in subscribed["messages"]] == ["over TCP"]


async def test_a_bad_origin_is_refused_at_the_handshake(daphne):
    server = daphne()
    with pytest.raises(websockets.InvalidStatus) as refused:
        async with websockets.connect(f"{server.ws_url}/ws/chat/", origin="http://evil.example"):
            pass
    assert refused.value.response.status_code == 403


async def test_silent_client_is_closed_with_4408_by_a_real_daphne(daphne):
    server = daphne(RIPPLE_HEARTBEAT_INTERVAL_S="0.3", RIPPLE_HEARTBEAT_TIMEOUT_S="0.3")
    async with websockets.connect(
        f"{server.ws_url}/ws/chat/", origin=same_origin(f"{server.ws_url}/ws/chat/")
    ) as ws:
        welcome = await recv_json(ws)
        assert welcome["heartbeat_interval_ms"] == 300
        loop = asyncio.get_running_loop()
        started = loop.time()
        with pytest.raises(websockets.ConnectionClosed) as closed:
            async with asyncio.timeout(5):
                while True:
                    await ws.recv()  # reads the server's pings, never answers them
        waited = loop.time() - started
    assert closed.value.rcvd.code == 4408
    assert 0.5 <= waited < 2.0


async def test_echo_endpoint_over_a_real_daphne(daphne):
    server = daphne()
    # Without an Origin the guard refuses it, as it refuses every endpoint's (HTTP 403).
    with pytest.raises(websockets.InvalidStatus) as refused:
        await websockets.connect(f"{server.ws_url}/ws/echo/")
    assert refused.value.response.status_code == 403
    async with websockets.connect(f"{server.ws_url}/ws/echo/", origin=same_origin(server.ws_url)) as ws:
        assert await asyncio.wait_for(ws.recv(), 5) == "Hello Client"
        await ws.send("ping me")
        assert await asyncio.wait_for(ws.recv(), 5) == "received: ping me(From Server)"


async def test_an_oversized_frame_gets_an_error_and_the_socket_stays(daphne):
    server = daphne(RIPPLE_MAX_FRAME_CHARS="1000")
    async with websockets.connect(
        f"{server.ws_url}/ws/chat/", origin=same_origin(f"{server.ws_url}/ws/chat/")
    ) as ws:
        await recv_json(ws)
        await ws.send("x" * 5000)
        assert (await recv_until(ws, "error"))["code"] == "frame_too_large"
        await ws.send(json.dumps({"type": "ping"}))
        assert (await recv_until(ws, "pong"))["type"] == "pong"
