"""Deleting a room from the admin of one worker reaches its subscribers on every worker."""

import asyncio
import json

import pytest
import websockets
from channels.db import database_sync_to_async
from django.urls import reverse

from chat import services
from chat.models import Message, Room
from tests.support.admin_http import admin_action, superuser_session
from tests.support.frames import recv_until

pytestmark = pytest.mark.django_db(transaction=True)

ROOMS_URL = reverse("admin:chat_room_changelist")


async def subscribed_socket(server, room: str):
    ws = await websockets.connect(f"{server.ws_url}/ws/chat/", origin=server.http_url)
    await recv_until(ws, "welcome", 5)
    await ws.send(json.dumps({"type": "subscribe", "room": room}))
    await recv_until(ws, "subscribed", 5)
    return ws


async def test_deleting_a_room_in_the_admin_of_one_worker_unsubscribes_sockets_on_the_other(
    daphne, redis_url
):
    admin_worker, other_worker = daphne(REDIS_URL=redis_url), daphne(REDIS_URL=redis_url)
    key = await database_sync_to_async(superuser_session)("mod")

    def make_rooms() -> Room:
        doomed = services.room_get_or_create(slug="doomed")
        for i in range(3):
            services.message_store(room=doomed, author="x", user_id=None, body=f"m{i}", client_id=f"m{i}")
        services.room_get_or_create(slug="bystander")
        return doomed

    doomed = await database_sync_to_async(make_rooms)()
    far = await subscribed_socket(other_worker, "doomed")
    near = await subscribed_socket(admin_worker, "doomed")
    bystander = await subscribed_socket(other_worker, "bystander")
    try:
        status, page = await asyncio.to_thread(
            admin_action,
            admin_worker.http_url,
            ROOMS_URL,
            session_key=key,
            action="delete_rooms",
            ids=[doomed.pk],
        )
        assert status == 200 and "Delete the rooms" in page, page[:2000]  # the confirmation page
        assert await database_sync_to_async(Room.objects.filter(pk=doomed.pk).exists)()

        status, page = await asyncio.to_thread(
            admin_action,
            admin_worker.http_url,
            ROOMS_URL,
            session_key=key,
            action="delete_rooms",
            ids=[doomed.pk],
            apply="1",
        )
        assert status == 302, page[:2000]
        for ws in (far, near):
            ended = await recv_until(ws, "unsubscribed", 2.0)
            assert ended == {"type": "unsubscribed", "room": "doomed", "ref": None, "reason": "room_deleted"}
        assert not await database_sync_to_async(Room.objects.filter(slug="doomed").exists)()
        assert not await database_sync_to_async(Message.objects.filter(room_id=doomed.pk).exists)()

        # The other room is untouched; subscribing to the deleted name makes a new, empty room.
        await bystander.send(
            json.dumps({"type": "message", "room": "bystander", "body": "hi", "client_id": "b1"})
        )
        assert (await recv_until(bystander, "ack", 2.0))["seq"] == 1
        await far.send(json.dumps({"type": "subscribe", "room": "doomed"}))
        fresh = await recv_until(far, "subscribed", 5)
        assert (fresh["last_seq"], fresh["messages"]) == (0, [])
        assert '"room_delete"' in admin_worker.output()
    finally:
        for ws in (far, near, bystander):
            await ws.close()
