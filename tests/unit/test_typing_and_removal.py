"""Typing (ephemeral fan-out), reopening a room for open sockets, and removing a guest or user."""

from __future__ import annotations

import pytest
from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from channels.testing import WebsocketCommunicator

from chat import removal, services
from chat.models import Message, Removal, Room
from project.asgi import application
from tests.conftest import ORIGIN_HEADERS
from tests.support.guests import guest_session

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def fresh_removals():
    removal.forget_all()
    yield
    removal.forget_all()


def count_group_sends(monkeypatch) -> list[str]:
    """The channel-layer group sends made from now on, by event type."""
    layer = get_channel_layer()
    sent: list[str] = []
    original = layer.group_send

    async def group_send(group, message):
        sent.append(message["type"])
        await original(group, message)

    monkeypatch.setattr(layer, "group_send", group_send)
    return sent


async def test_typing_reaches_the_others_once_not_the_sender_and_is_never_stored(ws_client, monkeypatch):
    async with ws_client() as ann, ws_client() as bob, ws_client() as cy:
        for client in (ann, bob, cy):
            await client.subscribe("tea")
        sent = count_group_sends(monkeypatch)
        await ann.send({"type": "typing", "room": "tea"})
        for other in (bob, cy):
            frame = await other.recv_type("typing")
            assert frame == {
                "type": "typing",
                "room": "tea",
                "name": ann.welcome["user"]["name"],
                "kind": "guest",
            }
        # One channel-layer send for all of them, as a message costs.
        assert sent == ["room.typing"]
        assert await ann.nothing_more(0.2)
    assert await database_sync_to_async(Message.objects.count)() == 0


async def test_typing_faster_than_the_pace_is_dropped_without_an_error(ws_client):
    async with ws_client() as ann, ws_client() as bob:
        await ann.subscribe("tea")
        await bob.subscribe("tea")
        for _ in range(5):
            await ann.send({"type": "typing", "room": "tea"})
        await bob.recv_type("typing")
        assert await bob.nothing_more(0.3)
        assert await ann.nothing_more(0.1)


async def test_typing_in_a_room_not_subscribed_is_refused(ws_client):
    async with ws_client() as ann:
        await ann.send({"type": "typing", "room": "elsewhere", "ref": 7})
        error = await ann.recv_type("error")
    assert (error["code"], error["room"], error["ref"]) == ("not_subscribed", "elsewhere", 7)


async def test_reopening_a_room_tells_the_sockets_that_were_in_it(ws_client):
    async with ws_client() as inside, ws_client() as refused, ws_client() as outsider:
        await inside.subscribe("porch")
        room = await database_sync_to_async(Room.objects.get)(slug="porch")
        await database_sync_to_async(services.room_close)(room=room, reason="rain")
        await inside.recv_type("room_closed")
        await refused.send({"type": "subscribe", "room": "porch"})
        assert (await refused.recv_type("error"))["code"] == "room_closed"
        await outsider.subscribe("lobby")
        await database_sync_to_async(services.room_reopen)(room=room)
        for client in (inside, refused):
            assert await client.recv_type("room_reopened") == {"type": "room_reopened", "room": "porch"}
        assert await outsider.nothing_more(0.2)
        assert (await inside.subscribe("porch"))["room"] == "porch"


async def open_raw(session_key: str) -> WebsocketCommunicator:
    headers = [*ORIGIN_HEADERS, (b"cookie", f"sessionid={session_key}".encode())]
    communicator = WebsocketCommunicator(application, "/ws/chat/", headers=headers)
    connected, _ = await communicator.connect()
    assert connected
    return communicator


async def close_code(communicator: WebsocketCommunicator) -> int:
    while True:
        output = await communicator.receive_output(timeout=2)
        if output["type"] == "websocket.close":
            return output["code"]


async def test_a_removed_guest_is_closed_with_4403_and_kept_out_while_the_removal_lasts(ws_client, settings):
    settings.RIPPLE_REMOVAL_S = 60
    key = await database_sync_to_async(guest_session)("gil")
    async with ws_client(session_cookie=key) as gil, ws_client() as bystander:
        members = (await gil.subscribe("den"))["members"]
        [guest_id] = [m["id"] for m in members if m["name"] == "gil"]
        assert guest_id.startswith("g")
        await bystander.subscribe("den")
        await database_sync_to_async(services.member_remove)(keys=[guest_id], by="mod")
        code = await close_code(gil.communicator)
        assert code == 4403
        await bystander.send({"type": "ping"})
        assert (await bystander.recv_type("pong"))["type"] == "pong"
    # Another worker reads the removal from the database.
    removal.forget_all()
    again = await open_raw(key)
    assert await close_code(again) == 4403
    await again.disconnect()
    # Once it ends, the guest is welcome again.
    await database_sync_to_async(Removal.objects.update)(until="2000-01-01T00:00:00Z")
    removal.forget_all()
    back = await open_raw(key)
    assert (await back.receive_json_from(timeout=2))["type"] == "welcome"
    await back.disconnect()
