"""Testing code against Ripple with Channels' WebsocketCommunicator: the docs/testing.md example."""

import pytest
from channels.testing import WebsocketCommunicator

from project.asgi import application

pytestmark = pytest.mark.asyncio

# Ripple refuses a handshake whose Origin is not allowed, and one without an Origin: a browser
# always sends one, a test client has to say it.
HEADERS = [(b"origin", b"http://localhost"), (b"host", b"localhost")]


async def connect() -> WebsocketCommunicator:
    """A chat socket, past its handshake and welcome frame."""
    communicator = WebsocketCommunicator(application, "/ws/chat/", headers=HEADERS)
    connected, _ = await communicator.connect()
    assert connected
    assert (await communicator.receive_json_from())["type"] == "welcome"
    return communicator


async def receive_type(communicator: WebsocketCommunicator, frame_type: str) -> dict:
    """The next frame of ``frame_type``: presence and ping frames may come in between."""
    while True:
        frame = await communicator.receive_json_from(timeout=2)
        if frame["type"] == frame_type:
            return frame


# Subscribing and posting read and write the database from the consumer's threads, outside
# any test transaction: such tests need transaction=True.
@pytest.mark.django_db(transaction=True)
async def test_a_message_reaches_every_subscriber():
    ann, bob = await connect(), await connect()
    for client in (ann, bob):
        await client.send_json_to({"type": "subscribe", "room": "lobby"})
        assert (await receive_type(client, "subscribed"))["last_seq"] == 0
    await ann.send_json_to({"type": "message", "room": "lobby", "body": "hi", "client_id": "m1"})
    ack = await receive_type(ann, "ack")
    assert (ack["seq"], ack["duplicate"]) == (1, False)
    message = await receive_type(bob, "message")
    assert (message["seq"], message["body"], message["client_id"]) == (1, "hi", "m1")
    await ann.disconnect()
    await bob.disconnect()


# A test that touches no table needs no django_db mark, even after one that did.
async def test_ping_is_answered_with_its_t_and_ref():
    communicator = await connect()
    await communicator.send_json_to({"type": "ping", "t": 1, "ref": "p1"})
    assert await communicator.receive_json_from() == {"type": "pong", "t": 1, "ref": "p1"}
    await communicator.disconnect()


async def test_a_bad_frame_gets_an_error_frame_and_the_socket_stays_open():
    communicator = await connect()
    await communicator.send_to(text_data="not json")
    error = await communicator.receive_json_from()
    assert (error["type"], error["code"]) == ("error", "invalid_json")
    await communicator.send_json_to({"type": "ping"})
    assert (await communicator.receive_json_from())["type"] == "pong"
    await communicator.disconnect()
