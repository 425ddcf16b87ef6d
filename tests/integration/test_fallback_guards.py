"""The HTTP fallback's guards against a client from outside, against real daphne processes:
the per-stream token on POSTs, hostile request headers, and a resume of many rooms."""

import asyncio
import json

import pytest
from channels.db import database_sync_to_async
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chat import services
from chat.models import Message, Room
from chat.sse import parse_last_event_id
from tests.support.guests import guest_session
from tests.support.sse_client import STREAM_TOKENS, SseStream, page_credentials, post_frame

pytestmark = pytest.mark.django_db(transaction=True)


async def credentials_without_session(server) -> dict[str, str]:
    """A client with no session at all: only the CSRF cookie and token of a page load."""
    credentials = await asyncio.to_thread(page_credentials, server.http_url, None)
    cookies = [c for c in credentials["cookie"].split("; ") if not c.startswith("sessionid=")]
    return {**credentials, "cookie": "; ".join(cookies)}


async def open_stream(server, credentials, last_event_id: str | None = None, encoding: str = "utf-8"):
    stream = SseStream("127.0.0.1", server.port, credentials["cookie"], last_event_id=last_event_id)
    stream.header_encoding = encoding
    status = await stream.open()
    return stream, status


async def post(server, connection_id, credentials, frame, **kwargs):
    return await asyncio.to_thread(
        post_frame, server.http_url, connection_id, frame, credentials, server.http_url, **kwargs
    )


async def next_frame_answers_a_ping(server, stream, credentials, t) -> dict:
    """POST a ping of its own; the stream's next frame (whatever it is) is returned."""
    assert (await post(server, stream.connection_id, credentials, {"type": "ping", "t": t}))[0] == 202
    frame = await stream.frame()
    assert frame is not None, f"the stream ended (close {stream.close_code})"
    return frame


def stored(slug: str) -> tuple[bool, list[str]]:
    return Room.objects.filter(slug=slug).exists(), list(
        Message.objects.filter(room__slug=slug).values_list("body", flat=True)
    )


async def test_a_stranger_who_knows_a_cookieless_streams_id_cannot_drive_it(daphne):
    server = daphne()
    owner = await credentials_without_session(server)
    assert "sessionid" not in owner["cookie"]
    stream, status = await open_stream(server, owner)
    try:
        assert status == 200
        assert (await stream.frame())["type"] == "welcome"
        token = STREAM_TOKENS[stream.connection_id]
        assert len(token) >= 32 and token != stream.connection_id
        stranger = await credentials_without_session(server)
        assert "sessionid" not in stranger["cookie"]
        # Without the token at all: refused by the POST itself.
        frame = {"type": "subscribe", "room": "taken-over", "ref": "stranger"}
        status, answer = await post(server, stream.connection_id, stranger, frame, stream_token=None)
        assert (status, answer) == (400, {"error": "invalid_stream_token"})
        # With a wrong token of the right shape: accepted for delivery (the POST cannot know
        # the token of a stream on another worker), and dropped by the stream's worker.
        for wrong in ("A" * 43, token[:-1] + ("A" if token[-1] != "A" else "B")):
            for frame in (
                {"type": "subscribe", "room": "taken-over", "ref": "stranger"},
                {"type": "message", "room": "taken-over", "body": "hijack", "client_id": "s1"},
            ):
                assert (await post(server, stream.connection_id, stranger, frame, stream_token=wrong))[
                    0
                ] == 202
        # The owner's token from another client (another session) does not work either.
        other_session = await asyncio.to_thread(
            page_credentials, server.http_url, await database_sync_to_async(guest_session)("other")
        )
        frame = {"type": "subscribe", "room": "taken-over", "ref": "other-session"}
        assert (await post(server, stream.connection_id, other_session, frame, stream_token=token))[0] == 202
        # Frames reach the stream in order: had any of those got through, its answer would
        # come before the pong of this ping.
        assert await next_frame_answers_a_ping(server, stream, owner, "owner") == {
            "type": "pong",
            "t": "owner",
            "ref": None,
        }
        assert await database_sync_to_async(stored)("taken-over") == (False, [])
        # The owner's own frames, with its token, work.
        await post(server, stream.connection_id, owner, {"type": "subscribe", "room": "owned", "ref": 1})
        assert (await stream.frame_of("subscribed"))["ref"] == 1
        frame = {"type": "message", "room": "owned", "body": "mine", "client_id": "o1"}
        await post(server, stream.connection_id, owner, frame)
        assert (await stream.frame_of("ack"))["seq"] == 1
        assert await database_sync_to_async(stored)("owned") == (True, ["mine"])
        assert token not in server.output()  # neither the stream nor the POSTs logged it
    finally:
        await stream.close()


async def test_the_stream_token_is_only_on_its_own_stream(daphne):
    server = daphne()
    credentials = await credentials_without_session(server)
    stream, _ = await open_stream(server, credentials)
    try:
        first = await stream.event()
        assert first is not None and first[0] == "stream"
        token = json.loads(first[1])["token"]
        kind, data = await stream.event()
        assert kind == "message" and json.loads(data)["type"] == "welcome"
        assert token not in data
        assert token not in server.output()
    finally:
        await stream.close()


HOSTILE_LAST_EVENT_IDS = {
    "superscript two": ("room:²", "latin1"),
    "digit then superscript": ("room:1²", "latin1"),
    "superscript as utf-8": ("room:1²", "utf-8"),
    "negative": ("room:-1", "utf-8"),
    "no seq": ("room:", "utf-8"),
    "no room": (":1", "utf-8"),
    "huge seq": ("room:" + "9" * 40, "utf-8"),
    "huge header": ("room:1," * 1400, "utf-8"),
    "arabic-indic digits": ("room:١٢", "utf-8"),
    "fullwidth digits": ("room:１", "utf-8"),
    "non-ascii room": ("café:1", "latin1"),
    "cyrillic room": ("комната:1", "utf-8"),
    "control characters": ("room:1\x01\x7f\x1b", "latin1"),
    "tab inside": ("room:\t1", "latin1"),
    "200 rooms": (",".join(f"r{i}:0" for i in range(200)), "utf-8"),
    "duplicate separators": ("room:1,,room2:2", "utf-8"),
    "double colon": ("room:1:2", "utf-8"),
    "upper case room": ("Room:1", "utf-8"),
}


@pytest.mark.parametrize("name", sorted(HOSTILE_LAST_EVENT_IDS))
async def test_a_hostile_last_event_id_starts_a_fresh_stream(daphne, name):
    value, encoding = HOSTILE_LAST_EVENT_IDS[name]
    server = daphne()
    credentials = await credentials_without_session(server)
    stream, status = await open_stream(server, credentials, last_event_id=value, encoding=encoding)
    try:
        assert status == 200, server.output()[-2000:]
        assert (await stream.frame())["type"] == "welcome"
        # No rooms resumed: the next frame answers the client's own ping.
        assert (await next_frame_answers_a_ping(server, stream, credentials, 1))["type"] == "pong"
    finally:
        await stream.close()


async def test_hostile_origin_headers_are_refused_not_crashed(daphne):
    server = daphne()
    credentials = await credentials_without_session(server)
    for origin in ("http://[::1", "http://[zz]", "http://a:99999", "\x01"):
        stream = SseStream("127.0.0.1", server.port, credentials["cookie"], origin=origin)
        try:
            assert await stream.open() == 403, origin
        finally:
            await stream.close()


# Last-Event-ID texts: anything a header can carry (read as latin-1), and lists of positions
# whose seqs mix ASCII digits with digits of other kinds.
LAST_EVENT_IDS = st.one_of(
    st.text(st.characters(min_codepoint=0x20, max_codepoint=0xFF, blacklist_characters="\x7f"), max_size=300),
    st.lists(
        st.tuples(
            st.from_regex(r"[a-z0-9][a-z0-9_-]{0,8}", fullmatch=True), st.text("0123456789²¹³١１", max_size=4)
        ),
        max_size=6,
    ).map(lambda pairs: ",".join(f"{room}:{seq}" for room, seq in pairs)),
)


@settings(max_examples=300, deadline=None)
@given(st.one_of(LAST_EVENT_IDS, st.text(max_size=200)))
def test_parse_last_event_id_never_raises_and_keeps_only_ascii_positions(value):
    positions = parse_last_event_id(value)
    for room, seq in positions.items():
        assert room.isascii() and isinstance(seq, int) and 0 <= seq < 10**15
    assert positions == {} or value.isascii()


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(LAST_EVENT_IDS)
def test_any_last_event_id_text_gets_a_working_stream(daphne_for_hypothesis, value):
    server = daphne_for_hypothesis

    async def check() -> None:
        credentials = server.credentials
        # One byte a character where it fits, as a browser's latin-1 header would arrive.
        encoding = "latin1" if all(ord(c) < 0x100 for c in value) else "utf-8"
        stream, status = await open_stream(
            server, credentials, last_event_id=value.strip(), encoding=encoding
        )
        try:
            assert status == 200
            assert (await stream.frame())["type"] == "welcome"
            while (frame := await next_frame_answers_a_ping(server, stream, credentials, "h"))[
                "type"
            ] != "pong":
                # A valid id resumes its rooms first (creating a room has a limit of its own).
                assert frame["type"] == "subscribed" or frame.get("code") == "rate_limited", frame
        finally:
            await stream.close()

    asyncio.run(check())


@pytest.fixture
def daphne_for_hypothesis(daphne):
    """One worker for every example of a hypothesis test, with a cookie-less page's credentials."""
    server = daphne()
    credentials = page_credentials(server.http_url, None)
    cookies = [c for c in credentials["cookie"].split("; ") if not c.startswith("sessionid=")]
    server.credentials = {**credentials, "cookie": "; ".join(cookies)}
    return server


def create_rooms(slugs: list[str]) -> None:
    for slug in slugs:
        services.room_get_or_create(slug=slug)


async def test_a_last_event_id_naming_max_subscriptions_rooms_resumes_them_all(daphne):
    server = daphne()
    credentials = await credentials_without_session(server)
    rooms = [f"many-{i:03d}" for i in range(100)]  # RIPPLE_MAX_SUBSCRIPTIONS, over the burst of 60
    await database_sync_to_async(create_rooms)(rooms)  # rooms the client was in
    stream, status = await open_stream(server, credentials, last_event_id=",".join(f"{r}:0" for r in rooms))
    try:
        assert status == 200
        assert (await stream.frame())["type"] == "welcome"
        subscribed = set()
        async with asyncio.timeout(60):
            while len(subscribed) < len(rooms):
                frame = await stream.frame(timeout=30)
                assert frame is not None, f"the stream was closed with {stream.close_code}"
                assert frame["type"] == "subscribed", frame
                subscribed.add(frame["room"])
        assert subscribed == set(rooms)
        # Still open, and the client's own frames were not made to pay for the resume.
        for i in range(5):
            assert (await next_frame_answers_a_ping(server, stream, credentials, i))["type"] == "pong"
    finally:
        await stream.close()


async def test_a_resume_of_rooms_that_do_not_exist_is_not_closed_as_a_flood(daphne):
    server = daphne()
    credentials = await credentials_without_session(server)
    rooms = [f"nowhere-{i:03d}" for i in range(100)]
    stream, status = await open_stream(server, credentials, last_event_id=",".join(f"{r}:0" for r in rooms))
    try:
        assert status == 200
        assert (await stream.frame())["type"] == "welcome"
        answers: dict[str, str] = {}
        async with asyncio.timeout(60):
            while len(answers) < len(rooms):
                frame = await stream.frame(timeout=30)
                assert frame is not None, f"the stream was closed with {stream.close_code}"
                answers[frame["room"]] = frame.get("code", frame["type"])
        # Room creation keeps its own limit (a burst of 10), answered per room, never a 4429.
        created = [room for room, answer in answers.items() if answer == "subscribed"]
        assert 0 < len(created) < len(rooms)
        assert set(answers.values()) == {"subscribed", "rate_limited"}
        assert (await next_frame_answers_a_ping(server, stream, credentials, "after"))["type"] == "pong"
    finally:
        await stream.close()
