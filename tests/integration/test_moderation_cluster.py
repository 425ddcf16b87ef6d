"""Moderation done by one process reaches sockets on another within a second."""

import asyncio
import json

import pytest
import websockets

from chat.models import Message
from tests.support.frames import recv_until
from tests.support.moderate import moderate, moderation_env
from tests.support.origins import same_origin
from tests.support.sessions import logged_in_session

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def worker_env(live_database_url, redis_url):
    return moderation_env(live_database_url, redis_url)


async def subscribed_socket(url: str, room: str, headers=None):
    ws = await websockets.connect(url, origin=same_origin(url), additional_headers=headers)
    await recv_until(ws, "welcome", 5)
    await ws.send(json.dumps({"type": "subscribe", "room": room}))
    await recv_until(ws, "subscribed", 5)
    return ws


async def test_each_moderation_action_reaches_another_process_within_a_second(daphne, worker_env):
    server = daphne(REDIS_URL=worker_env["REDIS_URL"])
    url = f"{server.ws_url}/ws/chat/"
    watcher = await subscribed_socket(url, "moderated")
    try:
        await watcher.send(
            json.dumps({"type": "message", "room": "moderated", "body": "oops", "client_id": "w1"})
        )
        await recv_until(watcher, "ack", 1.0)
        pk = await asyncio.to_thread(lambda: Message.objects.get(client_id="w1").pk)

        await asyncio.to_thread(moderate, "delete", str(pk), worker_env)
        assert (await recv_until(watcher, "deleted", 1.0))["seqs"] == [1]

        await asyncio.to_thread(moderate, "announce", "moderated", worker_env)
        announcement = await recv_until(watcher, "message", 1.0)
        assert (announcement["system"], announcement["seq"]) == (True, 2)

        await asyncio.to_thread(moderate, "close", "moderated", worker_env)
        closed = await recv_until(watcher, "room_closed", 1.0)
        assert closed["reason"] == "closed for the night"
    finally:
        await watcher.close()


async def test_disconnecting_a_user_reaches_their_socket_on_another_process(daphne, worker_env):
    user_id, key = await asyncio.to_thread(logged_in_session, "spammer")
    server = daphne(REDIS_URL=worker_env["REDIS_URL"])
    ws = await subscribed_socket(f"{server.ws_url}/ws/chat/", "lobby", headers={"Cookie": f"sessionid={key}"})
    await asyncio.to_thread(moderate, "disconnect", str(user_id), worker_env)
    with pytest.raises(websockets.ConnectionClosed) as closed:
        async with asyncio.timeout(1.0):
            while True:
                await ws.recv()
    assert closed.value.rcvd.code == 4403


async def test_losing_a_private_rooms_membership_ends_subscriptions_on_every_worker(daphne, worker_env):
    from chat.models import Room, RoomMembership

    eve_id, eve_key = await asyncio.to_thread(logged_in_session, "eve")
    fay_id, fay_key = await asyncio.to_thread(logged_in_session, "fay")

    def make_room() -> None:
        room = Room.objects.create(slug="board", private=True)
        for user_id in (eve_id, fay_id):
            RoomMembership.objects.create(room=room, user_id=user_id)

    await asyncio.to_thread(make_room)
    workers = [daphne(REDIS_URL=worker_env["REDIS_URL"]), daphne(REDIS_URL=worker_env["REDIS_URL"])]
    sockets = []
    try:
        # eve on both workers, fay on the second.
        for worker, key in ((workers[0], eve_key), (workers[1], eve_key), (workers[1], fay_key)):
            url = f"{worker.ws_url}/ws/chat/"
            sockets.append(await subscribed_socket(url, "board", headers={"Cookie": f"sessionid={key}"}))
        await asyncio.to_thread(moderate, "revoke", f"board:{eve_id}", worker_env)
        for ws in sockets[:2]:
            ended = await recv_until(ws, "unsubscribed", 2.0)
            assert ended["reason"] == "access_revoked"
        fay = sockets[2]
        await fay.send(
            json.dumps({"type": "message", "room": "board", "body": "eve is gone", "client_id": "f1"})
        )
        assert (await recv_until(fay, "ack"))["seq"] == 1
        await sockets[0].send(json.dumps({"type": "subscribe", "room": "board"}))
        assert (await recv_until(sockets[0], "error"))["code"] == "forbidden"
    finally:
        for ws in sockets:
            await ws.close()
