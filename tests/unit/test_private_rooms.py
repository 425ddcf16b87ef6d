"""Private rooms: members only, on the socket and the page; losing membership ends open
subscriptions at once."""

import pytest
from channels.db import database_sync_to_async
from django.contrib.auth.models import User

from chat import services
from chat.models import Room, RoomMembership
from tests.support.sessions import logged_in_session

pytestmark = pytest.mark.django_db(transaction=True)


def private_room(slug: str, *members: int) -> Room:
    room = Room.objects.create(slug=slug, private=True)
    for user_id in members:
        RoomMembership.objects.create(room=room, user_id=user_id)
    services.message_post(room=room, author="ann", body="secret plans", client_id="s1")
    return room


async def test_a_non_member_is_refused_and_learns_nothing(ws_client):
    ann_id, ann_key = await database_sync_to_async(logged_in_session)("ann")
    _, bob_key = await database_sync_to_async(logged_in_session)("bob")
    await database_sync_to_async(private_room)("vault", ann_id)
    async with ws_client(session_cookie=ann_key) as ann:
        await ann.subscribe("vault")
        async with ws_client(session_cookie=bob_key) as bob, ws_client() as guest:
            for outsider in (bob, guest):
                await outsider.send({"type": "subscribe", "room": "vault", "ref": "s"})
                refused = await outsider.recv()
                assert refused["type"] == "error" and refused["code"] == "forbidden"
                assert set(refused) == {"type", "code", "message", "ref", "room"}  # no history, no members
                await outsider.send({"type": "message", "room": "vault", "body": "hi", "client_id": "x1"})
                assert (await outsider.recv())["code"] == "not_subscribed"
            # The member saw no one arrive: the refused sockets never joined the room's presence.
            assert await ann.nothing_more(timeout=0.5)
    assert await database_sync_to_async(
        lambda: list(Room.objects.get(slug="vault").messages.values_list("client_id", flat=True))
    )() == ["s1"]


async def test_a_member_reads_and_posts(ws_client):
    ann_id, ann_key = await database_sync_to_async(logged_in_session)("ann")
    await database_sync_to_async(private_room)("vault", ann_id)
    async with ws_client(session_cookie=ann_key) as ann:
        subscribed = await ann.subscribe("vault")
        assert [m["body"] for m in subscribed["messages"]] == ["secret plans"]
        ack = await ann.post("vault", "more plans", "a2")
        assert ack["seq"] == 2


async def test_removing_a_membership_ends_that_users_open_subscription(ws_client):
    ann_id, ann_key = await database_sync_to_async(logged_in_session)("ann")
    bob_id, bob_key = await database_sync_to_async(logged_in_session)("bob")
    await database_sync_to_async(private_room)("vault", ann_id, bob_id)
    async with ws_client(session_cookie=ann_key) as ann, ws_client(session_cookie=bob_key) as bob:
        await ann.subscribe("vault")
        await bob.subscribe("vault")
        await ann.recv_presence()  # bob arrived
        await database_sync_to_async(RoomMembership.objects.filter(user_id=bob_id).delete)()
        ended = await bob.recv_type("unsubscribed")
        assert ended == {"type": "unsubscribed", "room": "vault", "ref": None, "reason": "access_revoked"}
        # Gone from the room: no more messages, no posting, no way back in.
        await ann.post("vault", "bob cannot read this", "a2")
        await bob.send({"type": "message", "room": "vault", "body": "still here?", "client_id": "b1"})
        assert (await bob.recv_type("error"))["code"] == "not_subscribed"
        await bob.send({"type": "subscribe", "room": "vault"})
        assert (await bob.recv_type("error"))["code"] == "forbidden"
        assert all(frame.get("body") != "bob cannot read this" for frame in bob.backlog)
        leaves = await ann.recv_presence(timeout=10)
        assert [m["name"] for m in leaves["leaves"]] == ["bob"]


async def test_making_a_room_private_sends_its_non_members_away(ws_client):
    ann_id, ann_key = await database_sync_to_async(logged_in_session)("ann")
    room = await database_sync_to_async(services.room_get_or_create)(slug="lobby")
    await database_sync_to_async(RoomMembership.objects.create)(room=room, user_id=ann_id)
    async with ws_client(session_cookie=ann_key) as ann, ws_client() as guest:
        await ann.subscribe("lobby")
        await guest.subscribe("lobby")

        def make_private() -> None:
            room.private = True
            room.save()

        await database_sync_to_async(make_private)()
        assert (await guest.recv_type("unsubscribed"))["reason"] == "access_revoked"
        await ann.send({"type": "ping", "t": 1})
        assert (await ann.recv_type("pong"))["t"] == 1
        assert all(frame["type"] != "unsubscribed" for frame in ann.backlog)


def test_the_room_page_and_list_show_a_private_room_to_members_only(client):
    ann = User.objects.create_user("ann", password="pw-long-enough-1")
    User.objects.create_user("bob", password="pw-long-enough-1")
    private_room("vault", ann.pk)
    Room.objects.create(slug="open", title="Open")  # listed: it has a title
    client.login(username="bob", password="pw-long-enough-1")
    page = client.get("/rooms/vault/")
    assert page.status_code == 403 and b"secret plans" not in page.content
    assert b"vault" not in client.get("/").content and b"open" in client.get("/").content
    client.login(username="ann", password="pw-long-enough-1")
    page = client.get("/rooms/vault/")
    assert page.status_code == 200 and b"secret plans" in page.content
    assert b"vault" in client.get("/").content
