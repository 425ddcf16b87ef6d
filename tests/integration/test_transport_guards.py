"""daphne's transport guards (chat/daphne_guard.py) against a real worker and raw sockets."""

import asyncio
import json
import os
import socket
import time
import urllib.request

import pytest
import websockets
from channels.db import database_sync_to_async

from project.serving import MAX_WEBSOCKET_INCOMING_MESSAGE_BYTES
from tests.support import rawsocket
from tests.support.frames import recv_until
from tests.support.sse_client import SseStream, page_credentials, post_frame

pytestmark = pytest.mark.django_db(transaction=True)

MIB = 1024 * 1024


def events(output: str, name: str) -> list[dict]:
    """The JSON event lines (chat/logs.py) named ``name`` in a daphne log."""
    found = []
    for line in output.splitlines():
        start = line.find('{"')
        if start >= 0 and f'"event": "{name}"' in line:
            found.append(json.loads(line[start:]))
    return found


def _trickle_upgrade(port: int, origin: str, interval_s: float, limit_s: float) -> tuple[float, bytes]:
    """Send a handshake a byte at a time until the server closes; (seconds it took, what came back)."""
    request = rawsocket.upgrade_request(port, "/ws/chat/", origin)
    received = b""
    started = time.monotonic()
    with rawsocket.connect(port) as sock:
        for byte in request:
            if time.monotonic() - started > limit_s:
                break
            try:
                sock.sendall(bytes([byte]))
            except OSError:
                break
            sock.settimeout(interval_s)
            try:
                chunk = sock.recv(4096)
            except TimeoutError:
                continue
            except ConnectionResetError:
                break
            received += chunk
            if not chunk:
                break
    return time.monotonic() - started, received


def _idle_keepalive_closed_after(port: int, limit_s: float) -> float | None:
    """One complete request on a keep-alive connection, then silence: seconds until it is closed."""
    with rawsocket.connect(port) as sock:
        sock.sendall(f"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode())
        assert rawsocket.read_response_head(sock).status == 200
        answered = time.monotonic()
        if rawsocket.ended_by_peer(sock, limit_s):
            return time.monotonic() - answered
        return None


async def test_a_trickled_request_is_cut_at_the_deadline_while_requests_and_streams_go_on(daphne):
    timeout_s = 3
    server = daphne(RIPPLE_REQUEST_TIMEOUT_S=str(timeout_s))
    credentials = await asyncio.to_thread(page_credentials, server.http_url, None)
    stream = SseStream("127.0.0.1", server.port, credentials["cookie"])
    assert await stream.open() == 200
    stream_opened = time.monotonic()
    try:
        welcome = await stream.frame()
        assert welcome is not None and welcome["type"] == "welcome"
        # A byte a second, bounded to 20 s: the handshake would take ~200 s to arrive.
        trickle = asyncio.create_task(
            asyncio.to_thread(_trickle_upgrade, server.port, server.http_url, 1.0, 20)
        )
        idle = asyncio.create_task(asyncio.to_thread(_idle_keepalive_closed_after, server.port, 10))
        with urllib.request.urlopen(f"{server.http_url}/healthz", timeout=5) as response:
            assert response.status == 200  # an ordinary request meanwhile
        took_s, answer = await trickle
        assert took_s < timeout_s + 2.5, f"the trickled request was still open after {took_s:.1f} s"
        assert answer.startswith(b"HTTP/1.1 408 "), answer
        idle_s = await idle
        assert idle_s is not None and idle_s < timeout_s + 2.5, f"an idle keep-alive stayed open ({idle_s})"
        # The stream outlived the deadline and still carries frames both ways.
        assert time.monotonic() - stream_opened > timeout_s
        status, _ = await asyncio.to_thread(
            post_frame,
            server.http_url,
            stream.connection_id,
            {"type": "ping", "t": 5},
            credentials,
            server.http_url,
        )
        assert status == 202
        assert (await stream.frame_of("pong"))["t"] == 5
    finally:
        await stream.close()
    assert len(events(server.output(), "request_timeout")) == 1


def _ping_flood(
    sock: socket.socket, pid: int, limit_s: float, max_pings: int
) -> tuple[int, float, bool, int]:
    """Ping with full payloads, never reading: (pings sent, seconds, ended by the server, peak RSS)."""
    batch = b"".join(rawsocket.client_frame(rawsocket.OPCODE_PING, os.urandom(125)) for _ in range(500))
    sent, peak = 0, 0
    started = time.monotonic()
    sock.settimeout(5)
    ended = False
    while sent < max_pings and time.monotonic() - started < limit_s:
        try:
            sock.sendall(batch)
        except (ConnectionResetError, BrokenPipeError):
            ended = True
            break
        except TimeoutError:
            break  # the server stopped reading without closing: not ended
        sent += 500
        peak = max(peak, rawsocket.rss_bytes(pid))
    return sent, time.monotonic() - started, ended, peak


async def test_a_ping_flood_from_a_peer_that_never_reads_is_cut_off_and_costs_little_memory(daphne):
    server = daphne()
    sock = await asyncio.to_thread(
        rawsocket.open_websocket, server.port, "/ws/chat/", server.http_url, rcvbuf=4096
    )
    try:
        before = rawsocket.rss_bytes(server.pid)
        # Bounded: 15 s or 1,000,000 pings (131 MB), whichever comes first.
        sent, took_s, ended, peak = await asyncio.to_thread(_ping_flood, sock, server.pid, 15, 1_000_000)
    finally:
        sock.close()
    print(f"ping flood: {sent} pings in {took_s:.1f} s, RSS +{(peak - before) / MIB:.1f} MiB at most")
    assert ended, f"the server still took pings after {sent} in {took_s:.1f} s"
    assert peak - before < 64 * MIB
    flood = events(server.output(), "ping_flood")
    assert len(flood) == 1 and flood[0]["buffered"] > 1 * MIB


def _send_fragments(sock: socket.socket, fragment_bytes: int, count: int) -> int:
    """Begin one text message and send ``count`` fragments, never the last: bytes sent."""
    sent = 0
    for index in range(count):
        opcode = rawsocket.OPCODE_TEXT if index == 0 else rawsocket.OPCODE_CONTINUATION
        try:
            sock.sendall(rawsocket.client_frame(opcode, b"a" * fragment_bytes, fin=False))
        except (ConnectionResetError, BrokenPipeError):
            break
        sent += fragment_bytes
    return sent


def _store_history(slug: str, count: int, body_chars: int) -> None:
    from chat import services

    room = services.room_get_or_create(slug=slug)
    for i in range(count):
        services.message_store(
            room=room, author="archivist", user_id=None, body=f"{i:04d}" + "h" * body_chars, client_id=f"h{i}"
        )


async def test_a_fragmented_message_past_the_incoming_limit_is_refused_and_big_frames_still_go_out(daphne):
    server = daphne()
    sockets = []
    try:
        for _ in range(8):
            sock = await asyncio.to_thread(
                rawsocket.open_websocket, server.port, "/ws/chat/", server.http_url
            )
            reader = rawsocket.FrameReader(sock)
            opcode, payload = await asyncio.to_thread(reader.frame)
            assert opcode == rawsocket.OPCODE_TEXT and json.loads(payload)["type"] == "welcome"
            sockets.append(sock)
        before = rawsocket.rss_bytes(server.pid)
        # Each socket begins a ~1 MiB message in 16 KiB fragments: 8 MiB held if buffered.
        for sock in sockets:
            sent = await asyncio.to_thread(_send_fragments, sock, 16 * 1024, 64)
            assert sent > MAX_WEBSOCKET_INCOMING_MESSAGE_BYTES
        ended = [await asyncio.to_thread(rawsocket.ended_by_peer, sock, 5) for sock in sockets]
        grown = rawsocket.rss_bytes(server.pid) - before
    finally:
        for sock in sockets:
            sock.close()
    print(f"8 x 1 MiB of fragments: RSS +{grown / MIB:.2f} MiB")
    assert all(ended), f"sockets still open: {ended.count(False)} of 8"
    assert grown < 4 * MIB

    # What the server sends is not held to the incoming limit: a `subscribed` frame of ~200 KB.
    await database_sync_to_async(_store_history)("long", 50, 3900)
    async with websockets.connect(f"{server.ws_url}/ws/chat/", origin=server.http_url, max_size=None) as ws:
        await recv_until(ws, "welcome")
        await ws.send(json.dumps({"type": "subscribe", "room": "long"}))
        async with asyncio.timeout(10):
            while True:
                raw = await ws.recv()
                if json.loads(raw)["type"] == "subscribed":
                    break
    assert len(raw) > 3 * MAX_WEBSOCKET_INCOMING_MESSAGE_BYTES
    assert [m["seq"] for m in json.loads(raw)["messages"]] == list(range(1, 51))


async def test_a_refused_handshake_says_why(daphne):
    server = daphne()
    refused = await asyncio.to_thread(rawsocket.handshake, server.port, "/ws/chat/", "http://evil.example")
    assert refused.status == 403
    assert refused.headers["x-ripple-refusal"] == "origin_not_allowed"
    assert b"origin_not_allowed" in refused.body
    assert refused.headers["content-type"].startswith("text/plain")
    nowhere = await asyncio.to_thread(rawsocket.handshake, server.port, "/ws/nowhere/", server.http_url)
    assert (nowhere.status, nowhere.headers["x-ripple-refusal"]) == (404, "no_route")
    assert b"no_route" in nowhere.body
    accepted = await asyncio.to_thread(rawsocket.open_websocket, server.port, "/ws/chat/", server.http_url)
    accepted.close()


def _flood_then_answer_the_close_late(sock: socket.socket, answer_after_s: float) -> tuple[int, bool]:
    """Flood until the server closes, answer its close frame only after ``answer_after_s``.

    Returns the code of the server's close frame and whether the server still took the answer
    (False: it had dropped the connection first). A peer that is busy (or behind a loaded
    proxy) answers a close late; its socket was still closed on purpose.
    """
    frame = rawsocket.client_frame(rawsocket.OPCODE_TEXT, json.dumps({"type": "ping", "t": 1}).encode())
    sock.sendall(frame * 400)  # twice the burst plus the strikes, and more: over the ceiling
    reader = rawsocket.FrameReader(sock)
    while True:
        found = reader.frame(timeout_s=10)
        assert found is not None, "the connection ended without a close frame"
        opcode, payload = found
        if opcode == rawsocket.OPCODE_CLOSE:
            break
    code = int.from_bytes(payload[:2], "big")
    time.sleep(answer_after_s)  # the slow peer itself, not a wait for an outcome
    try:
        sock.sendall(rawsocket.client_frame(rawsocket.OPCODE_CLOSE, payload[:2]))
    except (ConnectionResetError, BrokenPipeError):
        return code, False
    assert rawsocket.ended_by_peer(sock, 10), "the server kept the connection after the close handshake"
    return code, True


async def test_a_close_answered_late_is_logged_with_the_code_the_server_sent_not_1006(daphne):
    server = daphne(DJANGO_LOG_LEVEL="INFO")
    sock = await asyncio.to_thread(rawsocket.open_websocket, server.port, "/ws/chat/", server.http_url)
    try:
        # 2.5 s: past autobahn's default close handshake timeout (1 s), within Ripple's (5 s).
        code, answered = await asyncio.to_thread(_flood_then_answer_the_close_late, sock, 2.5)
    finally:
        sock.close()
    assert code == 4429
    assert answered, "the server dropped the connection before the peer answered its close"
    async with asyncio.timeout(10):
        while not (ended := events(server.output(), "disconnect")):
            await asyncio.sleep(0.05)
    assert [event["code"] for event in ended] == [4429], ended
