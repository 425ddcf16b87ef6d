"""Losing access to a private room by a path no signal in the worker sees (another process's
QuerySet.update, raw SQL) ends the subscription on a real daphne within
RIPPLE_ACCESS_RECHECK_S: the worker re-checks its private rooms' subscribers itself."""

import json

import pytest
import websockets
from channels.db import database_sync_to_async
from django.db import connection

from chat.models import Room, RoomMembership
from tests.support.frames import recv_until
from tests.support.sessions import logged_in_session

pytestmark = pytest.mark.django_db(transaction=True)


def private_room(slug: str, *members: int) -> None:
    room = Room.objects.create(slug=slug, private=True, title=slug)
    for user_id in members:
        RoomMembership.objects.create(room=room, user_id=user_id)


def remove_with_raw_sql(user_id: int) -> None:
    with connection.cursor() as cursor:
        cursor.execute(f"DELETE FROM {RoomMembership._meta.db_table} WHERE user_id = %s", [user_id])


async def test_a_membership_removed_behind_the_workers_back_ends_the_subscription(daphne):
    server = daphne(RIPPLE_ACCESS_RECHECK_S="0.5")
    ann_id, ann_key = await database_sync_to_async(logged_in_session)("ann")
    await database_sync_to_async(private_room)("vault", ann_id)
    await database_sync_to_async(Room.objects.create)(slug="lobby", title="Lobby")
    headers = {"Cookie": f"sessionid={ann_key}"}
    url = f"{server.ws_url}/ws/chat/"
    async with (
        websockets.connect(url, origin=server.http_url, additional_headers=headers) as ann,
        websockets.connect(url, origin=server.http_url) as guest,
    ):
        await recv_until(ann, "welcome")
        await recv_until(guest, "welcome")
        await ann.send(json.dumps({"type": "subscribe", "room": "vault"}))
        await recv_until(ann, "subscribed")
        await guest.send(json.dumps({"type": "subscribe", "room": "lobby"}))
        await recv_until(guest, "subscribed")
        await database_sync_to_async(remove_with_raw_sql)(ann_id)
        ended = await recv_until(ann, "unsubscribed", timeout=10)
        assert (ended["room"], ended["reason"]) == ("vault", "access_revoked")
        await database_sync_to_async(Room.objects.filter(slug="lobby").update)(private=True)
        ended = await recv_until(guest, "unsubscribed", timeout=10)
        assert (ended["room"], ended["reason"]) == ("lobby", "access_revoked")
        await guest.send(json.dumps({"type": "message", "room": "lobby", "body": "hi", "client_id": "g1"}))
        assert (await recv_until(guest, "error"))["code"] == "not_subscribed"
