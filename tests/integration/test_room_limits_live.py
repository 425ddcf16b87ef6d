"""Room creation limits against a real daphne: a cookie-less script cannot mass-create rooms."""

import asyncio
import json
import time
import urllib.error
import urllib.request

import pytest
import websockets
from channels.db import database_sync_to_async

from chat import services
from chat.models import Room
from tests.support.frames import recv_matching, recv_until

pytestmark = pytest.mark.django_db(transaction=True)

BURST = 10
ATTEMPTS = 500
# No refill worth counting while a test runs: "at most the burst" can be checked exactly.
SLOW_REFILL = {"RIPPLE_ROOM_CREATE_BURST": str(BURST), "RIPPLE_ROOM_CREATE_PER_MIN": "0.01"}


async def room_count() -> int:
    return await database_sync_to_async(Room.objects.count)()


async def replies_until_closed(ws, expected: int, timeout_s: float) -> tuple[list[dict], int | None]:
    """Direct replies (subscribed, error) until ``expected`` came or the server closed; its close code."""
    replies: list[dict] = []
    async with asyncio.timeout(timeout_s):
        try:
            while len(replies) < expected:
                frame = json.loads(await ws.recv())
                if frame["type"] in ("subscribed", "error"):
                    replies.append(frame)
        except websockets.ConnectionClosed:
            return replies, ws.close_code
    return replies, None


async def subscribe_reply(ws, room: str) -> dict:
    await ws.send(json.dumps({"type": "subscribe", "room": room, "ref": room}))
    return await recv_matching(
        ws, lambda frame: frame["type"] in ("subscribed", "error") and frame.get("ref") == room
    )


async def test_a_cookie_less_script_trying_500_new_rooms_creates_at_most_the_burst(daphne):
    server = daphne(**SLOW_REFILL)
    url = f"{server.ws_url}/ws/chat/"
    started = time.monotonic()
    async with websockets.connect(url, origin=server.http_url) as ws:
        await recv_until(ws, "welcome")
        for i in range(ATTEMPTS):
            await ws.send(json.dumps({"type": "subscribe", "room": f"spam-{i}", "ref": i}))
        replies, code = await replies_until_closed(ws, ATTEMPTS, timeout_s=30)
    took_s = time.monotonic() - started
    created = [reply["room"] for reply in replies if reply["type"] == "subscribed"]
    refused = {reply["code"] for reply in replies if reply["type"] == "error"}
    print(f"{ATTEMPTS} subscribes in {took_s:.2f} s: {len(created)} created, refused {refused}, close {code}")
    assert created == [f"spam-{i}" for i in range(BURST)]
    assert refused == {"rate_limited"}
    # The flood either was answered in full, or ended with the documented "stop flooding" close.
    assert code in (None, 4429)
    assert await room_count() == BURST

    # A new cookie-less socket has a bucket of its own, but the address's is empty; existing
    # rooms are still open to it, and the socket stays usable.
    async with websockets.connect(url, origin=server.http_url) as ws:
        await recv_until(ws, "welcome")
        again = await subscribe_reply(ws, "spam-fresh")
        assert (again["type"], again["code"]) == ("error", "rate_limited")
        assert again["retry_after_ms"] > 60_000
        assert (await subscribe_reply(ws, "spam-0"))["type"] == "subscribed"
        await ws.send(json.dumps({"type": "message", "room": "spam-0", "body": "hi", "client_id": "k1"}))
        assert (await recv_until(ws, "ack"))["seq"] == 1
    assert await room_count() == BURST
    assert "Traceback" not in server.output()


async def test_with_creation_for_users_a_guest_gets_room_not_found_and_the_page_404(daphne):
    server = daphne(RIPPLE_ROOM_CREATION="users")
    await database_sync_to_async(services.room_get_or_create)(slug="lobby")
    async with websockets.connect(f"{server.ws_url}/ws/chat/", origin=server.http_url) as ws:
        await recv_until(ws, "welcome")
        refused = await subscribe_reply(ws, "ghost")
        assert (refused["type"], refused["code"]) == ("error", "room_not_found")
        assert (await subscribe_reply(ws, "lobby"))["type"] == "subscribed"
    with pytest.raises(urllib.error.HTTPError) as missing:
        await asyncio.to_thread(urllib.request.urlopen, f"{server.http_url}/rooms/ghost/", timeout=5)
    assert missing.value.code == 404
    assert await database_sync_to_async(lambda: list(Room.objects.values_list("slug", flat=True)))() == [
        "lobby"
    ]
