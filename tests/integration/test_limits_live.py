"""Hostile input against a real daphne: frame sizes, floods, slow readers, connection caps."""

import asyncio
import base64
import json
import os
import re
import socket
import struct

import pytest
import websockets
from channels.db import database_sync_to_async

from chat.models import Message
from project.serving import MAX_WEBSOCKET_FRAME_BYTES
from tests.support.frames import recv_until
from tests.support.origins import same_origin
from tests.support.processes import wait_until

pytestmark = pytest.mark.django_db(transaction=True)


async def close_code(ws, timeout: float = 10) -> int | None:
    """Read until the server closes; its close code (None: the connection just dropped)."""
    async with asyncio.timeout(timeout):
        try:
            while True:
                await ws.recv()
        except websockets.ConnectionClosed:
            return ws.close_code if ws.close_code != 1006 else None


def events(output: str, name: str) -> list[dict]:
    """The JSON event lines (chat/logs.py) named ``name`` in a daphne log."""
    found = []
    for line in output.splitlines():
        start = line.find('{"')
        if start >= 0 and f'"event": "{name}"' in line:
            found.append(json.loads(line[start:]))
    return found


async def test_frames_over_the_app_limit_get_an_error_and_over_daphnes_limit_are_dropped(daphne):
    server = daphne()
    url = f"{server.ws_url}/ws/chat/"
    async with websockets.connect(url, origin=same_origin(url), max_size=None) as ws:
        await recv_until(ws, "welcome")
        await ws.send(json.dumps({"type": "ping", "pad": "x" * 20_000}))
        error = await recv_until(ws, "error")
        assert error["code"] == "frame_too_large"
        await ws.send(json.dumps({"type": "subscribe", "room": "big"}))
        await recv_until(ws, "subscribed")
        body = "y" * 4001
        await ws.send(json.dumps({"type": "message", "room": "big", "body": body, "client_id": "too-long"}))
        assert (await recv_until(ws, "error"))["code"] == "body_too_long"
        await ws.send(json.dumps({"type": "ping", "t": 1}))
        assert (await recv_until(ws, "pong"))["t"] == 1  # both answered, the socket stays
    async with websockets.connect(url, origin=same_origin(url), max_size=None) as ws:
        await recv_until(ws, "welcome")
        await ws.send("z" * (MAX_WEBSOCKET_FRAME_BYTES + 1))
        assert await close_code(ws) in (None, 1009)  # daphne drops it; nothing reaches the app
    assert await database_sync_to_async(Message.objects.count)() == 0


async def test_a_flood_is_refused_before_the_database_and_closed_with_4429(daphne):
    server = daphne(
        RIPPLE_RATE_MESSAGES_PER_S="5", RIPPLE_RATE_MESSAGES_BURST="20", RIPPLE_FLOOD_STRIKES="30"
    )
    url = f"{server.ws_url}/ws/chat/"
    async with (
        websockets.connect(url, origin=same_origin(url)) as flooder,
        websockets.connect(url, origin=same_origin(url)) as calm,
    ):
        for ws, room in ((flooder, "flooded"), (calm, "quiet")):
            await recv_until(ws, "welcome")
            await ws.send(json.dumps({"type": "subscribe", "room": room}))
            await recv_until(ws, "subscribed")
        flood = [
            json.dumps({"type": "message", "room": "flooded", "body": f"spam {i}", "client_id": f"f{i}"})
            for i in range(2000)
        ]

        async def send_flood() -> None:
            try:
                for frame in flood:
                    await flooder.send(frame)
            except websockets.ConnectionClosed:
                pass

        flooding = asyncio.create_task(send_flood())
        # Meanwhile a client in another room keeps chatting and is answered.
        for i in range(5):
            await calm.send(
                json.dumps({"type": "message", "room": "quiet", "body": "hi", "client_id": f"c{i}"})
            )
            assert (await recv_until(calm, "ack"))["seq"] == i + 1
        assert await close_code(flooder) == 4429
        await flooding
    stored = await database_sync_to_async(
        lambda: list(Message.objects.filter(room__slug="flooded").values_list("client_id", flat=True))
    )()
    # The burst, and whatever the bucket refilled at 5/s in the second or so the flood lasted.
    assert 20 <= len(stored) <= 40, len(stored)
    assert stored == [f"f{i}" for i in range(len(stored))]
    assert len(events(server.output(), "flooding")) == 1


async def test_connections_over_the_per_address_cap_are_closed_with_4409(daphne):
    server = daphne(RIPPLE_MAX_CONNECTIONS_PER_IP="3")
    url = f"{server.ws_url}/ws/chat/"
    opened = [await websockets.connect(url, origin=same_origin(url)) for _ in range(3)]
    try:
        for ws in opened:
            await recv_until(ws, "welcome")
        async with websockets.connect(url, origin=same_origin(url)) as extra:
            assert await close_code(extra) == 4409
        await opened[0].close()
        async with websockets.connect(url, origin=same_origin(url)) as replacement:
            await recv_until(replacement, "welcome")  # a freed place can be taken again
    finally:
        for ws in opened:
            await ws.close()


def _client_frame(text: str) -> bytes:
    """One masked text frame, as a browser sends it (RFC 6455 5.2)."""
    payload = text.encode()
    mask = os.urandom(4)
    header = bytearray([0x81])
    if len(payload) < 126:
        header.append(0x80 | len(payload))
    else:
        header.append(0x80 | 126)
        header += struct.pack("!H", len(payload))
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return bytes(header) + mask + masked


def _open_stalled_socket(port: int, room: str) -> socket.socket:
    """A socket that subscribes to ``room`` and then never reads: a tiny receive buffer."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.settimeout(5)
    sock.connect(("127.0.0.1", port))
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall(
        (
            f"GET /ws/chat/ HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
            f"Origin: http://127.0.0.1:{port}\r\n\r\n"
        ).encode()
    )
    response = b""
    while b"\r\n\r\n" not in response:
        response += sock.recv(1)
    assert response.startswith(b"HTTP/1.1 101"), response
    sock.sendall(_client_frame(json.dumps({"type": "subscribe", "room": room})))
    return sock


def _read_all(sock: socket.socket, timeout_s: float) -> bytes:
    """Everything the server sent, until it closes the connection."""
    sock.settimeout(timeout_s)
    data = bytearray()
    try:
        while chunk := sock.recv(65536):
            data += chunk
    except (ConnectionResetError, TimeoutError):
        pass
    return bytes(data)


async def test_a_reader_that_stalls_is_closed_past_the_outbound_limit_and_resumes(daphne):
    limit = 256 * 1024
    server = daphne(
        RIPPLE_MAX_OUTBOUND_BYTES=str(limit),
        RIPPLE_RATE_MESSAGES_PER_S="100000",
        RIPPLE_RATE_MESSAGES_BURST="100000",
        RIPPLE_RATE_USER_MESSAGES_PER_S="100000",
        RIPPLE_RATE_USER_MESSAGES_BURST="100000",
        RIPPLE_RATE_FRAMES_PER_S="100000",
        RIPPLE_RATE_FRAMES_BURST="100000",
        RIPPLE_RESUME_LIMIT="5000",
    )
    stalled = await asyncio.to_thread(_open_stalled_socket, server.port, "firehose")
    try:
        async with websockets.connect(
            f"{server.ws_url}/ws/chat/", origin=same_origin(f"{server.ws_url}/ws/chat/")
        ) as poster:
            await recv_until(poster, "welcome")
            await poster.send(json.dumps({"type": "subscribe", "room": "firehose"}))
            await recv_until(poster, "subscribed")
            body = "m" * 3900
            sent = 0
            # Bounded: at most 3,000 messages (~12 MB to the stalled reader), stopping as soon
            # as the server reports the stalled socket closed.
            while sent < 3000 and not events(server.output(), "too_slow"):
                for _ in range(50):
                    sent += 1
                    frame = {"type": "message", "room": "firehose", "body": body, "client_id": f"p{sent}"}
                    await poster.send(json.dumps(frame))
                for _ in range(50):
                    await recv_until(poster, "ack", timeout=10)
        too_slow = events(server.output(), "too_slow")
        assert len(too_slow) == 1, f"no too_slow close after {sent} messages"
        # The backlog stopped growing at the limit: plus the largest frame, and no more.
        assert limit < too_slow[0]["buffered"] <= limit + 2 * 4096

        def disconnected() -> list[dict]:
            connection = too_slow[0]["connection"]
            return [e for e in events(server.output(), "disconnect") if e["connection"] == connection]

        # The close frame waits behind the backlog the peer never reads; daphne gives the
        # closing handshake its timeout and then drops the connection, freeing the backlog.
        gone = await asyncio.to_thread(
            wait_until, disconnected, timeout_s=20, what="the stalled socket to go"
        )
        print("stalled socket's disconnect:", gone)
        received = await asyncio.to_thread(_read_all, stalled, 10)
    finally:
        stalled.close()
    # What the stalled client did get, it can resume from: every later message arrives.
    seqs = [int(s) for s in re.findall(rb'"type":"message","room":"firehose","seq":(\d+)', received)]
    last = max(seqs, default=0)
    async with websockets.connect(
        f"{server.ws_url}/ws/chat/", origin=same_origin(f"{server.ws_url}/ws/chat/"), max_size=None
    ) as back:
        await recv_until(back, "welcome")
        await back.send(json.dumps({"type": "subscribe", "room": "firehose", "since": last}))
        resumed = await recv_until(back, "subscribed", timeout=20)
    # Up to RIPPLE_MAX_HISTORY_BYTES (512 KiB) of it in one frame: the newest, and
    # complete=false when that cut the resume short.
    seqs = [m["seq"] for m in resumed["messages"]]
    assert seqs == list(range(sent - len(seqs) + 1, sent + 1))
    assert resumed["complete"] is (seqs[:1] == [last + 1])
    # Measured as the server counts it: compact JSON, in bytes.
    assert len(json.dumps(resumed["messages"], separators=(",", ":")).encode()) <= 512 * 1024


async def test_a_socket_is_closed_with_4401_when_its_session_expires(daphne):
    from datetime import timedelta

    from django.contrib.sessions.models import Session
    from django.utils import timezone

    from tests.support.sessions import logged_in_session

    server = daphne()
    _, key = await database_sync_to_async(logged_in_session)("gus")
    soon = timezone.now() + timedelta(seconds=2)
    await database_sync_to_async(Session.objects.filter(session_key=key).update)(expire_date=soon)
    headers = {"Cookie": f"sessionid={key}"}
    async with websockets.connect(
        f"{server.ws_url}/ws/chat/",
        origin=same_origin(f"{server.ws_url}/ws/chat/"),
        additional_headers=headers,
    ) as ws:
        assert (await recv_until(ws, "welcome"))["user"] == {"name": "gus", "authenticated": True}
        assert await close_code(ws, timeout=10) == 4401


async def test_a_users_sockets_share_a_cap_and_a_message_bucket(daphne):
    from tests.support.sessions import logged_in_session

    server = daphne(
        RIPPLE_MAX_CONNECTIONS_PER_USER="2",
        RIPPLE_RATE_USER_MESSAGES_BURST="3",
        RIPPLE_RATE_USER_MESSAGES_PER_S="0.1",
        RIPPLE_MAX_SUBSCRIPTIONS="2",
    )
    _, key = await database_sync_to_async(logged_in_session)("hal")
    url = f"{server.ws_url}/ws/chat/"
    headers = {"Cookie": f"sessionid={key}"}
    async with (
        websockets.connect(url, origin=same_origin(url), additional_headers=headers) as first,
        websockets.connect(url, origin=same_origin(url), additional_headers=headers) as second,
    ):
        for ws in (first, second):
            await recv_until(ws, "welcome")
            await ws.send(json.dumps({"type": "subscribe", "room": "shared"}))
            await recv_until(ws, "subscribed")
        async with websockets.connect(url, origin=same_origin(url), additional_headers=headers) as third:
            assert await close_code(third) == 4409  # a third socket for the same user
        # Three messages from the user's two sockets empty the user's bucket.
        for i, ws in enumerate((first, second, first)):
            await ws.send(
                json.dumps({"type": "message", "room": "shared", "body": "x", "client_id": f"u{i}"})
            )
            assert (await recv_until(ws, "ack"))["client_id"] == f"u{i}"
        await second.send(json.dumps({"type": "message", "room": "shared", "body": "x", "client_id": "u3"}))
        refused = await recv_until(second, "error")
        assert (refused["code"], refused["client_id"]) == ("rate_limited", "u3")
        # Subscriptions per socket.
        await first.send(json.dumps({"type": "subscribe", "room": "second"}))
        await recv_until(first, "subscribed")
        await first.send(json.dumps({"type": "subscribe", "room": "third"}))
        assert (await recv_until(first, "error"))["code"] == "too_many_subscriptions"
    stored = await database_sync_to_async(
        lambda: list(Message.objects.filter(room__slug="shared").values_list("client_id", flat=True))
    )()
    assert sorted(stored) == ["u0", "u1", "u2"]
