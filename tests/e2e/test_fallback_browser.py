"""A page without WebSocket chats over the HTTP fallback with a page on a WebSocket."""

import signal

import pytest
from channels.db import database_sync_to_async

from chat import services
from tests.support import room_page
from tests.support.room_page import HEARTBEAT, bodies, send, wait_bodies, wait_state

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True), pytest.mark.timeout(60)]

# Before any of the page's scripts: as in a browser (or behind a proxy) with no WebSocket.
NO_WEBSOCKET = "delete window.WebSocket; window.WebSocket = undefined;"


async def open_room(browser, server, room: str, name: str, *, websocket: bool):
    return await room_page.open_room(
        browser, server, room, name, init_script=None if websocket else NO_WEBSOCKET
    )


async def test_a_page_without_websocket_chats_with_a_websocket_page_both_ways_in_order(browser, daphne):
    server = daphne()
    http_page = await open_room(browser, server, "fallback", "ada", websocket=False)
    ws_page = await open_room(browser, server, "fallback", "bea", websocket=True)
    assert await http_page.evaluate("() => typeof window.WebSocket") == "undefined"
    assert await http_page.get_attribute("#conn-state", "data-transport") == "sse"
    assert await ws_page.get_attribute("#conn-state", "data-transport") == "websocket"

    expected = []
    for i in range(3):
        await send(http_page, f"ada {i}")
        expected.append(f"ada {i}")
        await wait_bodies(ws_page, expected)
        await send(ws_page, f"bea {i}")
        expected.append(f"bea {i}")
        await wait_bodies(http_page, expected)
    await wait_bodies(ws_page, expected)
    assert await bodies(http_page) == await bodies(ws_page) == expected
    assert "POST /sse/chat/send/" in server.output()


async def test_the_fallback_survives_a_server_kill_with_nothing_lost_or_twice(browser, daphne):
    server = daphne(**HEARTBEAT)
    ann = await open_room(browser, server, "fallback-kill", "ann", websocket=False)
    bob = await open_room(browser, server, "fallback-kill", "bob", websocket=True)
    await send(ann, "before")
    await wait_bodies(bob, ["before"])
    server.signal(signal.SIGKILL)
    server.proc.wait(timeout=10)
    await wait_state(ann, "reconnecting")
    # While the server is down: the fallback page queues, and another writer posts.
    await send(ann, "queued while down")
    room = await database_sync_to_async(services.room_get_or_create)(slug="fallback-kill")
    await database_sync_to_async(services.message_store)(
        room=room, author="cron", user_id=None, body="posted while down", client_id="cron-1"
    )
    restarted = daphne(port=server.port, **HEARTBEAT)
    assert restarted.alive()
    expected = ["before", "posted while down", "queued while down"]
    await wait_state(ann, "open", timeout_ms=40_000)
    await wait_bodies(ann, expected, timeout_ms=20_000)
    await wait_bodies(bob, expected, timeout_ms=20_000)
    await send(bob, "after")
    await wait_bodies(ann, [*expected, "after"])
    assert await ann.get_attribute("#conn-state", "data-transport") == "sse"
    assert await bodies(ann) == await bodies(bob) == [*expected, "after"]
