"""The HTTP fallback (Server-Sent Events down, POST up) against real daphne processes."""

import asyncio
import json
import signal

import pytest
import websockets
from channels.db import database_sync_to_async

from chat import services
from chat.models import Message
from tests.support.frames import recv_until
from tests.support.guests import guest_session
from tests.support.sse_client import SseStream, page_credentials, post_bytes, post_frame

pytestmark = pytest.mark.django_db(transaction=True)


async def open_stream(server, session: str | None = None) -> tuple[SseStream, dict[str, str]]:
    credentials = await asyncio.to_thread(page_credentials, server.http_url, session)
    stream = SseStream("127.0.0.1", server.port, credentials["cookie"])
    assert await stream.open() == 200
    welcome = await stream.frame()
    assert welcome is not None and welcome["type"] == "welcome"
    return stream, credentials


async def post(server, stream: SseStream, credentials, frame, origin: str | None = None):
    origin = origin or server.http_url
    return await asyncio.to_thread(
        post_frame, server.http_url, stream.connection_id, frame, credentials, origin
    )


async def test_a_fallback_client_and_a_socket_chat_both_ways_in_order(daphne):
    server = daphne()
    stream, credentials = await open_stream(server)
    try:
        assert await post(server, stream, credentials, {"type": "subscribe", "room": "mixed", "ref": 1}) == (
            202,
            {"accepted": True},
        )
        assert (await stream.frame_of("subscribed"))["ref"] == 1
        async with websockets.connect(f"{server.ws_url}/ws/chat/", origin=server.http_url) as ws:
            await recv_until(ws, "welcome")
            await ws.send(json.dumps({"type": "subscribe", "room": "mixed"}))
            await recv_until(ws, "subscribed")
            for i in range(3):
                frame = {"type": "message", "room": "mixed", "body": f"http {i}", "client_id": f"h{i}"}
                assert (await post(server, stream, credentials, frame))[0] == 202
                await ws.send(
                    json.dumps({"type": "message", "room": "mixed", "body": f"ws {i}", "client_id": f"w{i}"})
                )
            seen_by_ws = [(await recv_until(ws, "message"))["body"] for _ in range(6)]
            seen_by_stream = [(await stream.frame_of("message"))["body"] for _ in range(6)]
        stored = await database_sync_to_async(
            lambda: list(
                Message.objects.filter(room__slug="mixed").order_by("seq").values_list("body", flat=True)
            )
        )()
        assert seen_by_ws == seen_by_stream == stored  # the same order everywhere: the database's
        assert sorted(stored) == sorted([f"http {i}" for i in range(3)] + [f"ws {i}" for i in range(3)])
        await post(server, stream, credentials, {"type": "ping", "t": 7, "ref": "p"})
        assert await stream.frame_of("pong") == {"type": "pong", "t": 7, "ref": "p"}
    finally:
        await stream.close()


async def test_a_post_reaches_the_stream_through_any_worker(daphne, redis_url):
    first, second = daphne(REDIS_URL=redis_url), daphne(REDIS_URL=redis_url)
    stream, credentials = await open_stream(first)
    try:
        # The frames go to the second worker; the stream lives on the first (no sticky sessions).
        await post(second, stream, credentials, {"type": "subscribe", "room": "anywhere"})
        await stream.frame_of("subscribed")
        await post(
            second,
            stream,
            credentials,
            {"type": "message", "room": "anywhere", "body": "x", "client_id": "a1"},
        )
        assert (await stream.frame_of("ack"))["seq"] == 1
    finally:
        await stream.close()


async def test_the_post_endpoint_refuses_what_a_socket_would_refuse(daphne):
    server = daphne(RIPPLE_RATE_FRAMES_BURST="5", RIPPLE_RATE_FRAMES_PER_S="0.1")
    stream, credentials = await open_stream(server)
    try:
        no_token = {**credentials, "token": "wrong"}
        assert (await post(server, stream, no_token, {"type": "ping"}))[0] == 403  # CSRF
        assert (await post(server, stream, credentials, {"type": "ping"}, origin="http://evil.example"))[
            0
        ] == 403
        status, answer = await post(server, stream, credentials, "x" * 70_000)
        assert (status, answer) == (413, {"error": "frame_too_large"})
        # The stream's consumer checks the frames themselves, as on a socket.
        await post(server, stream, credentials, "not json")
        assert (await stream.frame_of("error"))["code"] == "invalid_json"
        for i in range(6):
            await post(server, stream, credentials, {"type": "ping", "t": i})
        replies = [await stream.frame() for _ in range(5)]
        assert [r["type"] for r in replies] == ["pong"] * 4 + ["error"]
        assert replies[-1]["code"] == "rate_limited"
        # Another session cannot drive this stream by knowing its id.
        stranger = await asyncio.to_thread(
            page_credentials, server.http_url, await database_sync_to_async(guest_session)("x")
        )
        assert (await post(server, stream, stranger, {"type": "ping", "t": "stranger"}))[0] == 202
        await post(server, stream, credentials, {"type": "unsubscribe", "room": "none"})
        # The next frame on the stream answers that unsubscribe: the stranger's ping got no pong.
        assert (await stream.frame())["type"] == "error"
    finally:
        await stream.close()


async def test_a_fallback_client_survives_a_worker_kill_and_resumes_exactly(daphne, redis_url):
    doomed, survivor = daphne(REDIS_URL=redis_url), daphne(REDIS_URL=redis_url)
    session = await database_sync_to_async(guest_session)("fallback-fan")
    stream, credentials = await open_stream(doomed, session)
    seen: dict[int, str] = {}
    outbox: dict[str, str] = {}
    try:
        await post(doomed, stream, credentials, {"type": "subscribe", "room": "resilient"})
        await stream.frame_of("subscribed")
        for i in range(5):
            outbox[f"k{i}"] = f"before {i}"
            await post(
                doomed,
                stream,
                credentials,
                {"type": "message", "room": "resilient", "body": f"before {i}", "client_id": f"k{i}"},
            )
        for _ in range(5):
            frame = await stream.frame_of("message")
            seen[frame["seq"]] = frame["body"]
            outbox.pop(frame["client_id"], None)
        # Queued while the worker dies: not acked, so the client sends them again afterwards.
        outbox.update({"k5": "during 5", "k6": "during 6"})
        doomed.signal(signal.SIGKILL)
        await asyncio.to_thread(doomed.proc.wait, 5)
        # The stream ends with the worker; only the last message's ack may come first (a worker
        # writes a message's copies before its ack).
        while (frame := await stream.frame(timeout=5)) is not None:
            assert (frame["type"], frame["client_id"]) == ("ack", "k4"), frame
    finally:
        await stream.close()
    # Back through the other worker: resume from the last seq seen, then re-send the outbox.
    stream, credentials = await open_stream(survivor, session)
    try:
        await post(
            survivor, stream, credentials, {"type": "subscribe", "room": "resilient", "since": max(seen)}
        )
        resumed = await stream.frame_of("subscribed")
        assert resumed["complete"] and resumed["messages"] == []
        for client_id, body in list(outbox.items()):
            await post(
                survivor,
                stream,
                credentials,
                {"type": "message", "room": "resilient", "body": body, "client_id": client_id},
            )
        while outbox:
            frame = await stream.frame_of("message")
            seen[frame["seq"]] = frame["body"]
            outbox.pop(frame["client_id"], None)
    finally:
        await stream.close()
    stored = await database_sync_to_async(
        lambda: dict(Message.objects.filter(room__slug="resilient").values_list("seq", "body"))
    )()
    assert seen == stored and sorted(stored) == list(range(1, 8))


async def test_a_stream_resumes_from_last_event_id(daphne):
    server = daphne()
    stream, credentials = await open_stream(server)
    try:
        await post(server, stream, credentials, {"type": "subscribe", "room": "resume-a"})
        await stream.frame_of("subscribed")
        await post(server, stream, credentials, {"type": "subscribe", "room": "resume-b"})
        await stream.frame_of("subscribed")
        for i in range(3):
            frame = {"type": "message", "room": "resume-a", "body": f"a{i}", "client_id": f"a{i}"}
            await post(server, stream, credentials, frame)
            await stream.frame_of("message")
        # Each event that moves a room carries where the stream stands in all of them.
        assert stream.last_event_id == "resume-a:3,resume-b:0"
    finally:
        await stream.close()
    room = await database_sync_to_async(services.room_get_or_create)(slug="resume-a")
    for i in range(3, 5):  # missed while away
        await database_sync_to_async(services.message_post)(
            room=room, author="x", body=f"a{i}", client_id=f"a{i}"
        )
    # What an EventSource sends when it reconnects by itself: the stream subscribes for it.
    back = SseStream("127.0.0.1", server.port, credentials["cookie"], last_event_id="resume-a:2,resume-b:0")
    assert await back.open() == 200
    try:
        assert (await back.frame())["type"] == "welcome"
        resumed = {}
        for _ in range(2):
            frame = await back.frame_of("subscribed")
            resumed[frame["room"]] = [m["body"] for m in frame["messages"]]
        assert resumed == {"resume-a": ["a2", "a3", "a4"], "resume-b": []}
        assert back.last_event_id == "resume-a:5,resume-b:0"
    finally:
        await back.close()
    # Anything else in Last-Event-ID is ignored: a fresh stream with no rooms.
    odd = SseStream("127.0.0.1", server.port, credentials["cookie"], last_event_id="not an id")
    assert await odd.open() == 200
    try:
        assert (await odd.frame())["type"] == "welcome"
        await post(server, odd, credentials, {"type": "ping", "t": 1})
        assert (await odd.frame())["type"] == "pong"
    finally:
        await odd.close()


async def test_bad_requests_to_the_fallback_are_refused_clearly(daphne):
    server = daphne()
    credentials = await asyncio.to_thread(page_credentials, server.http_url, None)
    # The stream: only GET, only from this site.
    for origin, headers in (("http://evil.example", {}), (None, {"Sec-Fetch-Site": "cross-site"})):
        stream = SseStream("127.0.0.1", server.port, credentials["cookie"], origin=origin)
        stream.extra_headers = headers
        assert await stream.open() == 403
        await stream.close()
    stream, credentials = await open_stream(server)
    try:
        bad_id = SseStream("127.0.0.1", server.port, credentials["cookie"])
        bad_id.connection_id = "not-an-id"
        assert await post(server, bad_id, credentials, {"type": "ping"}) == (
            400,
            {"error": "invalid_connection"},
        )
        status, answer = await asyncio.to_thread(
            post_bytes, server.http_url, stream.connection_id, b"\xff\xfe", credentials
        )
        assert (status, answer) == (400, {"error": "invalid_json"})
        # None of it reached the stream: its next frame answers this ping.
        await post(server, stream, credentials, {"type": "ping", "t": "after"})
        assert await stream.frame() == {"type": "pong", "t": "after", "ref": None}
    finally:
        await stream.close()
