"""Moderation acts live on open sockets (in-process; tests/integration has the cross-process run)."""

import pytest
from channels.db import database_sync_to_async

from chat import services
from chat.models import Message, Room
from tests.support.sessions import logged_in_session

pytestmark = pytest.mark.django_db(transaction=True)


async def test_deleted_messages_are_removed_live_and_resume_hides_their_bodies(ws_client):
    async with ws_client() as writer, ws_client() as reader:
        await writer.subscribe("mod")
        await reader.subscribe("mod")
        for i in range(3):
            await writer.post("mod", f"m{i}", f"c{i}")
        for _ in range(3):
            await reader.recv_type("message")
        pk = await database_sync_to_async(lambda: Message.objects.get(room__slug="mod", seq=2).pk)()
        result = await database_sync_to_async(services.message_delete)(message_ids=[pk])
        assert result == {"mod": [2]}
        assert await reader.recv_type("deleted") == {"type": "deleted", "room": "mod", "seqs": [2]}
        async with ws_client() as late:
            history = (await late.subscribe("mod", since=0))["messages"]
    assert [m["seq"] for m in history] == [1, 2, 3]
    assert (history[1]["deleted"], history[1]["body"], history[1]["author"]) == (True, "", "")
    assert "deleted" not in history[0]
    # The row is kept, with its body, for the record.
    assert await database_sync_to_async(lambda: Message.objects.get(pk=pk).body)() == "m1"


async def test_announcement_is_a_sequenced_system_message(ws_client):
    async with ws_client() as reader:
        await reader.subscribe("news")
        room = await database_sync_to_async(Room.objects.get)(slug="news")
        await database_sync_to_async(services.room_announce)(rooms=[room], body="Deploy at noon")
        message = await reader.recv_type("message")
    assert (message["seq"], message["system"], message["author"], message["body"]) == (
        1,
        True,
        "announcement",
        "Deploy at noon",
    )


async def test_closing_a_room_unsubscribes_everyone_and_refuses_until_reopened(ws_client):
    async with ws_client() as client:
        await client.subscribe("closing")
        room = await database_sync_to_async(Room.objects.get)(slug="closing")
        await database_sync_to_async(services.room_close)(room=room, reason="night")
        closed = await client.recv_type("room_closed")
        assert closed == {"type": "room_closed", "room": "closing", "reason": "night"}
        await client.send({"type": "message", "room": "closing", "body": "hi", "client_id": "x"})
        assert (await client.recv_type("error"))["code"] == "not_subscribed"
        await client.send({"type": "subscribe", "room": "closing"})
        assert (await client.recv_type("error"))["code"] == "room_closed"
        await database_sync_to_async(services.room_reopen)(room=room)
        assert (await client.subscribe("closing"))["room"] == "closing"
    assert await database_sync_to_async(Message.objects.count)() == 0


async def test_a_message_racing_a_close_is_refused_and_not_stored(db):
    room = await database_sync_to_async(services.room_get_or_create)(slug="race")
    await database_sync_to_async(Room.objects.filter(pk=room.pk).update)(closed_at="2026-01-01T00:00:00Z")
    with pytest.raises(services.RoomClosed):
        await database_sync_to_async(services.message_store)(
            room=room, author="a", user_id=None, body="late", client_id="late"
        )
    assert await database_sync_to_async(Message.objects.count)() == 0


async def test_disconnecting_a_user_closes_their_sockets_with_4403(ws_client):
    user_id, key = await database_sync_to_async(logged_in_session)("troll")
    async with ws_client(session_cookie=key) as troll, ws_client() as bystander:
        await database_sync_to_async(services.user_disconnect)(user_id=user_id)
        while True:
            output = await troll.communicator.receive_output(timeout=2)
            if output["type"] == "websocket.close":
                break
        assert output["code"] == 4403
        await bystander.send({"type": "ping"})
        assert (await bystander.recv_type("pong"))["type"] == "pong"
