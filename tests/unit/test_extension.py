"""Extension points (docs/extending.md): message validators and the async post service."""

import asyncio

import pytest
from channels.db import database_sync_to_async

from chat import protocol, services
from chat.models import Message
from tests.support import validators

pytestmark = pytest.mark.django_db(transaction=True)

NO_SHOUTING = "tests.support.validators.no_shouting"


@pytest.fixture
def no_shouting(settings):
    settings.RIPPLE_MESSAGE_VALIDATORS = [NO_SHOUTING]


async def stored_bodies(slug: str) -> list[str]:
    return await database_sync_to_async(
        lambda: list(Message.objects.filter(room__slug=slug).order_by("seq").values_list("body", flat=True))
    )()


async def test_a_validator_refuses_a_message_over_the_socket_and_nothing_is_stored(ws_client, no_shouting):
    async with ws_client() as client:
        await client.subscribe("lobby")
        await client.send({"type": "message", "room": "lobby", "body": "HELLO", "client_id": "m1", "ref": 7})
        error = await client.recv_type("error")
        assert error == {
            "type": "error",
            "code": protocol.MESSAGE_REJECTED,
            "message": "please do not shout",
            "ref": 7,
            "room": "lobby",
            "client_id": "m1",
        }
        assert await stored_bodies("lobby") == []
        # The refusal took no sequence number, and the socket carries on.
        ack = await client.post("lobby", "hello", "m2")
        assert (ack["seq"], ack["duplicate"]) == (1, False)
    assert await stored_bodies("lobby") == ["hello"]


async def test_amessage_post_stores_sequences_and_fans_out_to_a_subscriber(ws_client):
    room = await database_sync_to_async(services.room_get_or_create)(slug="news")
    async with ws_client() as client:
        await client.subscribe("news")
        first = await services.amessage_post(room=room, author="system", body="one", client_id="d1")
        second = await services.amessage_post(room=room, author="system", body="two", client_id="d2")
        again = await services.amessage_post(room=room, author="system", body="one", client_id="d1")
        assert (first.message.seq, second.message.seq) == (1, 2)
        assert first.created and second.created and not again.created and again.message.seq == 1
        delivered = [await client.recv_type("message") for _ in range(2)]
        assert [(m["seq"], m["body"], m["author"]) for m in delivered] == [
            (1, "one", "system"),
            (2, "two", "system"),
        ]
        assert await client.nothing_more(), "a re-send is not fanned out again"
    assert await stored_bodies("news") == ["one", "two"]


async def test_amessage_post_leaves_the_event_loop_running_while_it_validates_and_stores(settings):
    settings.RIPPLE_MESSAGE_VALIDATORS = ["tests.support.validators.gate"]
    validators.released.clear()
    room = await database_sync_to_async(services.room_get_or_create)(slug="news")
    posting = asyncio.create_task(services.amessage_post(room=room, author="ann", body="hi", client_id="g1"))
    # Runs only if the post yields the loop; the validator waits for it in the posting thread.
    asyncio.get_running_loop().call_soon(validators.released.set)
    posted = await asyncio.wait_for(posting, timeout=10)
    assert posted.created and posted.message.seq == 1


async def test_amessage_post_runs_the_validators(no_shouting):
    room = await database_sync_to_async(services.room_get_or_create)(slug="news")
    with pytest.raises(services.MessageRejected, match="please do not shout"):
        await services.amessage_post(room=room, author="ann", body="STOP", client_id="s1")
    assert await stored_bodies("news") == []


def test_message_post_runs_the_validators_but_system_messages_skip_them(no_shouting):
    room = services.room_get_or_create(slug="news")
    with pytest.raises(services.MessageRejected, match="please do not shout"):
        services.message_post(room=room, author="ann", body="STOP", client_id="s1")
    assert not Message.objects.filter(room=room).exists()
    (announced,) = services.room_announce(rooms=[room], body="MAINTENANCE AT NOON")
    assert announced.created and announced.message.system


def test_validators_get_room_author_and_body_and_are_imported_once(settings):
    settings.RIPPLE_MESSAGE_VALIDATORS = ["tests.support.validators.record", NO_SHOUTING]
    validators.calls.clear()
    room = services.room_get_or_create(slug="news")
    services.message_post(room=room, author="ann", body="hi", client_id="r1")
    assert validators.calls == [("news", "ann", "hi")]
    assert services.message_validators() is services.message_validators()
    assert [v.__name__ for v in services.message_validators()] == ["record", "no_shouting"]
    settings.RIPPLE_MESSAGE_VALIDATORS = []
    assert services.message_validators() == ()
