"""Rate limits, flood closes, connection caps and session ends, on in-process sockets."""

import json
from datetime import timedelta

import pytest
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from django.contrib.sessions.backends.db import SessionStore
from django.contrib.sessions.models import Session
from django.utils import timezone

from chat import limits, services
from chat.identity import session_tag
from chat.models import Message
from project.asgi import application
from tests.conftest import ORIGIN_HEADERS
from tests.support.sessions import logged_in_session

pytestmark = pytest.mark.django_db(transaction=True)


async def frames_until_close(client, timeout: float = 5) -> tuple[list[dict], int]:
    """Every frame the socket gets until the server closes it, and the close code."""
    frames = []
    while True:
        output = await client.communicator.receive_output(timeout=timeout)
        if output["type"] == "websocket.close":
            return frames, output.get("code", 1000)
        frames.append(json.loads(output["text"]))


async def stored_client_ids(slug: str) -> list[str]:
    return await database_sync_to_async(
        lambda: list(
            Message.objects.filter(room__slug=slug).order_by("seq").values_list("client_id", flat=True)
        )
    )()


def test_token_bucket_refills_at_its_rate_up_to_its_burst():
    bucket = limits.TokenBucket(rate=2.0, burst=3, now=100.0)
    assert [bucket.take(100.0) for _ in range(3)] == [0.0, 0.0, 0.0]
    assert bucket.take(100.0) == pytest.approx(0.5)  # one token needs half a second
    assert bucket.take(100.5) == 0.0
    assert bucket.take(200.0) == 0.0  # a long pause refills at most to the burst...
    assert [bucket.take(200.0) for _ in range(3)] == [0.0, 0.0, pytest.approx(0.5)]  # ...of 3


def test_take_all_takes_from_every_bucket_or_from_none():
    roomy, empty = limits.TokenBucket(1.0, 5, now=0.0), limits.TokenBucket(1.0, 1, now=0.0)
    assert limits.take_all((roomy, empty), 0.0) == 0.0
    assert limits.take_all((roomy, empty), 0.0) == pytest.approx(1.0)
    assert roomy.tokens == 4.0  # the refusal took nothing from the bucket that had tokens


async def test_messages_over_the_burst_are_refused_before_the_database(ws_client, settings):
    settings.RIPPLE_RATE_MESSAGES_BURST = 3
    settings.RIPPLE_RATE_MESSAGES_PER_S = 0.1
    async with ws_client() as client:
        assert client.welcome["limits"]["messages_burst"] == 3
        await client.subscribe("calm")
        for i in range(5):
            await client.send(
                {"type": "message", "room": "calm", "body": f"m{i}", "client_id": f"c{i}", "ref": i}
            )
        replies = [await client.recv_type(kind) for kind in ("ack", "ack", "ack", "error", "error")]
    assert [r["client_id"] for r in replies[:3]] == ["c0", "c1", "c2"]
    for refused, client_id in zip(replies[3:], ["c3", "c4"], strict=True):
        assert refused["code"] == "rate_limited"
        assert (refused["client_id"], refused["room"]) == (client_id, "calm")
        assert 9000 <= refused["retry_after_ms"] <= 10000  # 1 token at 0.1/s
    assert await stored_client_ids("calm") == ["c0", "c1", "c2"]


async def test_a_users_sockets_share_one_message_bucket(ws_client, settings):
    settings.RIPPLE_RATE_MESSAGES_BURST = 3
    settings.RIPPLE_RATE_USER_MESSAGES_BURST = 4
    settings.RIPPLE_RATE_USER_MESSAGES_PER_S = 0.1
    _, key = await database_sync_to_async(logged_in_session)("ann")
    async with ws_client(session_cookie=key) as first, ws_client(session_cookie=key) as second:
        for client in (first, second):
            await client.subscribe("shared")
        for i in range(3):
            await first.send({"type": "message", "room": "shared", "body": "x", "client_id": f"f{i}"})
            await first.recv_type("ack")
        await second.send({"type": "message", "room": "shared", "body": "x", "client_id": "s0"})
        assert (await second.recv_type("ack"))["client_id"] == "s0"
        await second.send({"type": "message", "room": "shared", "body": "x", "client_id": "s1"})
        refused = await second.recv_type("error")
    assert (refused["code"], refused["client_id"]) == ("rate_limited", "s1")
    assert await stored_client_ids("shared") == ["f0", "f1", "f2", "s0"]


async def test_a_client_that_keeps_flooding_is_closed_with_4429(ws_client, settings):
    settings.RIPPLE_RATE_FRAMES_BURST = 5
    settings.RIPPLE_RATE_FRAMES_PER_S = 0.1
    settings.RIPPLE_FLOOD_STRIKES = 3
    async with ws_client() as client:
        for i in range(50):
            await client.send({"type": "ping", "t": i})
        frames, code = await frames_until_close(client)
    assert code == 4429
    assert [f["type"] for f in frames] == ["pong"] * 5 + ["error"] * 3
    assert {f["code"] for f in frames[5:]} == {"rate_limited"}


async def test_invalid_frames_count_against_the_frame_bucket(ws_client, settings):
    settings.RIPPLE_RATE_FRAMES_BURST = 2
    settings.RIPPLE_RATE_FRAMES_PER_S = 0.1
    async with ws_client() as client:
        for _ in range(3):
            await client.communicator.send_to(text_data="not json")
        codes = [(await client.recv())["code"] for _ in range(3)]
    assert codes == ["invalid_json", "invalid_json", "rate_limited"]


async def test_connections_over_the_per_user_cap_are_closed_with_4409(ws_client, settings):
    settings.RIPPLE_MAX_CONNECTIONS_PER_USER = 2
    _, key = await database_sync_to_async(logged_in_session)("bob")
    async with ws_client(session_cookie=key), ws_client(session_cookie=key):
        extra = WebsocketCommunicator(
            application, "/ws/chat/", headers=[*ORIGIN_HEADERS, (b"cookie", f"sessionid={key}".encode())]
        )
        connected, _ = await extra.connect()
        assert connected  # accepted, so that the client learns why it is refused
        assert await extra.receive_output(timeout=3) == {"type": "websocket.close", "code": 4409}
        await extra.wait()
    # The two sockets closed: the user may connect again.
    async with ws_client(session_cookie=key) as again:
        assert again.welcome["user"]["name"] == "bob"


async def test_connections_over_the_per_address_cap_are_closed_with_4409(ws_client, settings):
    settings.RIPPLE_MAX_CONNECTIONS_PER_IP = 1

    def from_address(address: str) -> WebsocketCommunicator:
        communicator = WebsocketCommunicator(application, "/ws/chat/", headers=ORIGIN_HEADERS)
        communicator.scope["client"] = (address, 50000)
        return communicator

    first, second, other = from_address("10.0.0.1"), from_address("10.0.0.1"), from_address("10.0.0.2")
    try:
        for communicator in (first, second, other):
            assert (await communicator.connect())[0]
        assert json.loads((await first.receive_output(timeout=3))["text"])["type"] == "welcome"
        assert await second.receive_output(timeout=3) == {"type": "websocket.close", "code": 4409}
        assert json.loads((await other.receive_output(timeout=3))["text"])["type"] == "welcome"
    finally:
        for communicator in (first, second, other):
            await communicator.disconnect()
    assert limits.connections_per_address.count("10.0.0.1") == 0


async def test_ending_a_session_closes_its_sockets_with_4401(ws_client):
    _, key = await database_sync_to_async(logged_in_session)("cat")
    _, other_key = await database_sync_to_async(logged_in_session)("dan")
    async with ws_client(session_cookie=key) as cat, ws_client(session_cookie=other_key) as dan:
        await database_sync_to_async(services.session_end)(tag=session_tag(SessionStore(session_key=key)))
        _, code = await frames_until_close(cat)
        assert code == 4401
        await dan.send({"type": "ping", "t": 1})
        assert (await dan.recv_type("pong"))["t"] == 1  # another session's socket stays


async def test_a_socket_closes_with_4401_when_its_session_expires(ws_client):
    _, key = await database_sync_to_async(logged_in_session)("eve")
    soon = timezone.now() + timedelta(seconds=1)
    await database_sync_to_async(Session.objects.filter(session_key=key).update)(expire_date=soon)
    async with ws_client(session_cookie=key) as eve:
        _, code = await frames_until_close(eve, timeout=5)
    assert code == 4401


async def test_an_extended_session_keeps_its_socket(ws_client):
    _, key = await database_sync_to_async(logged_in_session)("fay")
    soon = timezone.now() + timedelta(seconds=1)
    await database_sync_to_async(Session.objects.filter(session_key=key).update)(expire_date=soon)
    async with ws_client(session_cookie=key) as fay:
        later = timezone.now() + timedelta(hours=1)
        await database_sync_to_async(Session.objects.filter(session_key=key).update)(expire_date=later)
        # Past the first expiry the socket checks again, finds the new date and stays open.
        await fay.communicator.receive_nothing(timeout=2)
        await fay.send({"type": "ping", "t": 2})
        assert (await fay.recv_type("pong"))["t"] == 2


def test_history_keeps_the_newest_messages_that_fit_its_byte_budget():
    from chat import selectors

    room = services.room_get_or_create(slug="wordy")
    for i in range(10):
        services.message_post(room=room, author="ann", body=f"{i}" * 1000, client_id=f"w{i}")
    common = {"room_id": room.pk, "room_slug": "wordy", "history_size": 50, "resume_limit": 500}
    first_load = selectors.message_history(since=None, max_bytes=3500, **common)
    assert [m["seq"] for m in first_load.messages] == [8, 9, 10]
    assert first_load.complete  # a first load never promised everything
    resumed = selectors.message_history(since=2, max_bytes=3500, **common)
    assert [m["seq"] for m in resumed.messages] == [8, 9, 10]
    assert not resumed.complete  # 3..7 are missing: the client must reload
    roomy = selectors.message_history(since=7, max_bytes=3500, **common)
    assert ([m["seq"] for m in roomy.messages], roomy.complete) == ([8, 9, 10], True)


def test_manage_py_drain_refuses_clearly_without_redis_or_with_a_bad_window(settings):
    from django.core.management import CommandError, call_command

    settings.REDIS_URL = ""
    with pytest.raises(CommandError, match="REDIS_URL is not set"):
        call_command("drain", "--all")
    settings.REDIS_URL = "redis://127.0.0.1:1/0"
    with pytest.raises(CommandError, match="--window must be 0 or more"):
        call_command("drain", "--all", "--window", "-1")
