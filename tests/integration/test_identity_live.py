"""Identities that cannot be forged, against a real daphne: client_ids owned by identity,
author kinds on every message frame, and a guest name registered since not used."""

import json

import pytest
import websockets
from channels.db import database_sync_to_async
from django.contrib.auth.models import User

from tests.support.frames import post_message, recv_until
from tests.support.guests import guest_session
from tests.support.sessions import logged_in_session

pytestmark = pytest.mark.django_db(transaction=True)


def socket_options(server, session_key: str) -> dict:
    """Connect as a browser of the site with this session would."""
    return {"origin": server.http_url, "additional_headers": {"Cookie": f"sessionid={session_key}"}}


async def subscribed(ws, room: str) -> dict:
    await recv_until(ws, "welcome")
    await ws.send(json.dumps({"type": "subscribe", "room": room}))
    return await recv_until(ws, "subscribed")


async def send(ws, room: str, client_id: str, body: str = "hi") -> dict:
    """The direct reply to a message frame: its ack or its error (the own copy read too)."""
    reply, _ = await post_message(ws, room, client_id, body)
    return reply


async def test_a_guest_with_the_same_name_cannot_claim_anothers_client_id(daphne):
    server = daphne()
    url = f"{server.ws_url}/ws/chat/"
    first_key = await database_sync_to_async(guest_session)("Ann")
    second_key = await database_sync_to_async(guest_session)("Ann")
    async with websockets.connect(url, **socket_options(server, first_key)) as first:
        await subscribed(first, "same-name")
        ack, delivered = await post_message(first, "same-name", "ann-1")
        assert (ack["type"], ack["seq"], ack["duplicate"]) == ("ack", 1, False)
        assert delivered is not None
        assert (delivered["author"], delivered["author_kind"]) == ("Ann", "guest")
    async with websockets.connect(url, **socket_options(server, second_key)) as second:
        welcome_history = await subscribed(second, "same-name")
        assert [m["author_kind"] for m in welcome_history["messages"]] == ["guest"]
        reply = await send(second, "same-name", "ann-1", body="not yours")
        assert (reply["type"], reply["code"]) == ("error", "client_id_conflict")
        assert "seq" not in reply
    # The real sender re-sending (a new socket, the same session) still gets its duplicate.
    async with websockets.connect(url, **socket_options(server, first_key)) as again:
        await subscribed(again, "same-name")
        ack = await send(again, "same-name", "ann-1")
        assert (ack["type"], ack["seq"], ack["duplicate"]) == ("ack", 1, True)


async def test_message_frames_and_members_say_user_or_guest(daphne):
    server = daphne()
    url = f"{server.ws_url}/ws/chat/"
    _, user_key = await database_sync_to_async(logged_in_session)("alice")
    guest_key = await database_sync_to_async(guest_session)("Bob")
    async with (
        websockets.connect(url, **socket_options(server, user_key)) as alice,
        websockets.connect(url, **socket_options(server, guest_key)) as bob,
    ):
        await subscribed(alice, "kinds")
        members = (await subscribed(bob, "kinds"))["members"]
        assert {(m["name"], m["kind"]) for m in members} >= {("Bob", "guest")}
        _, own = await post_message(alice, "kinds", "a1")
        await send(bob, "kinds", "b1")
        # Read from alice: bob's reads up to his ack may have passed alice's message by.
        assert own is not None
        seen = {own["author"]: own["author_kind"]}
        frame = await recv_until(alice, "message")
        seen[frame["author"]] = frame["author_kind"]
        assert seen == {"alice": "user", "Bob": "guest"}


async def test_a_guest_name_registered_since_is_not_used_on_the_socket(daphne):
    server = daphne()
    url = f"{server.ws_url}/ws/chat/"
    key = await database_sync_to_async(guest_session)("dave")
    async with websockets.connect(url, **socket_options(server, key)) as ws:
        assert (await recv_until(ws, "welcome"))["user"] == {"name": "dave", "authenticated": False}
    await database_sync_to_async(User.objects.create_user)("Dave", password="pw-long-enough-1")
    async with websockets.connect(url, **socket_options(server, key)) as ws:
        welcome = await recv_until(ws, "welcome")
        assert welcome["user"]["authenticated"] is False
        assert welcome["user"]["name"].startswith("guest-")
        await ws.send(json.dumps({"type": "subscribe", "room": "taken"}))
        members = (await recv_until(ws, "subscribed"))["members"]
        assert [m["name"] for m in members] == [welcome["user"]["name"]]
