"""The admission guard against a real daphne: attacks from outside on the echo socket and the
fallback stream hold the worker's memory and end with a documented close, and refusals say why."""

import json
import socket
import time

import pytest

from chat.models import Message, Room
from tests.support import rawsocket
from tests.support.processes import wait_until
from tests.support.sse_client import page_credentials, post_frame

# The bound docs/security.md states for one attack on one worker.
RSS_BOUND_BYTES = 64 * 1024 * 1024


def events(output: str, name: str) -> list[dict]:
    found = []
    for line in output.splitlines():
        if line.startswith("{") and f'"event": "{name}"' in line:
            found.append(json.loads(line))
    return found


def send_quietly(sock: socket.socket, data: bytes) -> bool:
    """Send, or report that the server stopped taking bytes (closed, reset, or not reading)."""
    try:
        sock.sendall(data)
        return True
    except (TimeoutError, BrokenPipeError, ConnectionResetError):
        return False


def test_echo_sockets_that_flood_and_never_read_hold_the_worker_and_are_closed(daphne):
    server = daphne()
    origin = server.http_url
    before = rawsocket.rss_bytes(server.pid)
    peak = before
    attackers = [rawsocket.open_websocket(server.port, "/ws/echo/", origin, rcvbuf=4096) for _ in range(4)]
    text = rawsocket.client_frame(rawsocket.OPCODE_TEXT, b"x" * 16_000)
    # Fragments of one large message: 40 x 16 KiB continuation frames (640 KiB in all).
    fragments = [rawsocket.client_frame(rawsocket.OPCODE_TEXT, b"y" * 16_384, fin=False)] + [
        rawsocket.client_frame(rawsocket.OPCODE_CONTINUATION, b"y" * 16_384, fin=False) for _ in range(39)
    ]
    live = set(range(len(attackers)))
    deadline = time.monotonic() + 10  # bounded: 10 s, at most 400 frames a socket
    for sock in attackers:
        sock.settimeout(0.5)
    for _ in range(400):
        if not live or time.monotonic() > deadline:
            break
        for index in list(live):
            frames = fragments if index % 2 else [text]
            if not all(send_quietly(attackers[index], frame) for frame in frames):
                live.discard(index)
        peak = max(peak, rawsocket.rss_bytes(server.pid))
    try:
        for sock in attackers:
            assert rawsocket.ended_by_peer(sock, timeout_s=15), "an attacker's connection stayed open"
        peak = max(peak, rawsocket.rss_bytes(server.pid))
        assert peak - before < RSS_BOUND_BYTES, f"the worker grew by {(peak - before) >> 20} MiB"
        output = server.output()
        ended = [e for name in ("too_slow", "flooding", "frame_too_large") for e in events(output, name)]
        # The text senders were closed by the guard with a documented code; the fragment senders
        # by daphne's incoming message limit (the connection dropped).
        assert {e["endpoint"] for e in ended} == {"echo"}
        assert len(ended) >= 2
        assert "Traceback" not in output
    finally:
        for sock in attackers:
            sock.close()
    # The worker still serves.
    assert rawsocket.handshake(server.port, "/ws/echo/", origin).status == 101


def long_history(slug: str, count: int) -> None:
    from chat import services

    room = services.room_get_or_create(slug=slug)
    for n in range(count):
        services.message_store(room=room, author="ann", user_id=None, body="h" * 3_900, client_id=f"h{n}")


def read_until(sock: socket.socket, marker: bytes, timeout_s: float = 10) -> bytes:
    data = b""
    deadline = time.monotonic() + timeout_s
    while marker not in data or b"\n\n" not in data[data.index(marker) :]:
        sock.settimeout(max(0.1, deadline - time.monotonic()))
        chunk = sock.recv(4096)
        if not chunk:
            raise ConnectionError(f"closed before {marker!r}: {data[-300:]!r}")
        data += chunk
    return data


def test_a_fallback_stream_that_stops_reading_is_cut_at_the_outbound_limit(daphne):
    limit = 256 * 1024
    server = daphne(RIPPLE_MAX_OUTBOUND_BYTES=str(limit))
    long_history("archive", 200)  # ~780 KiB: each subscribe sends RIPPLE_MAX_HISTORY_BYTES of it
    credentials = page_credentials(server.http_url, None)
    sock = rawsocket.connect(server.port, rcvbuf=4096)
    request = (
        f"GET /sse/chat/ HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\nAccept: text/event-stream\r\n"
        f"Cookie: {credentials['cookie']}\r\n\r\n"
    )
    sock.sendall(request.encode())
    head = read_until(sock, b'"type":"welcome"')
    data = [json.loads(line[6:]) for line in head.split(b"\n") if line.startswith(b"data: {")]
    token = next(frame["token"] for frame in data if "token" in frame)
    connection = next(frame["connection_id"] for frame in data if frame.get("type") == "welcome")
    before = rawsocket.rss_bytes(server.pid)
    peak = before
    try:
        # The client reads no more. Its session keeps asking for the long history: bounded to
        # 60 rounds, stopping once the server reports the stream cut off.
        for round_ in range(60):
            if events(server.output(), "too_slow"):
                break
            for frame in (
                {"type": "subscribe", "room": "archive"},
                {"type": "unsubscribe", "room": "archive"},
            ):
                status, _ = post_frame(
                    server.http_url, connection, frame, credentials, server.http_url, stream_token=token
                )
                assert status == 202, (round_, status)
            peak = max(peak, rawsocket.rss_bytes(server.pid))
        too_slow = wait_until(
            lambda: events(server.output(), "too_slow"), timeout_s=10, what="the stream to be cut off"
        )
        assert too_slow[0]["endpoint"] == "stream"
        assert limit < too_slow[0]["buffered"] <= limit + 600 * 1024  # plus one history frame at most
        assert rawsocket.ended_by_peer(sock, timeout_s=10), "the stalled stream stayed open"
        peak = max(peak, rawsocket.rss_bytes(server.pid))
        assert peak - before < RSS_BOUND_BYTES, f"the worker grew by {(peak - before) >> 20} MiB"
    finally:
        sock.close()


@pytest.mark.parametrize(
    ("path", "origin", "status", "reason"),
    [
        ("/ws/chat/", "http://127.0.0.1:1", 403, "origin_not_allowed"),  # another port, same host
        ("/ws/chat/", "https://127.0.0.1:{port}", 403, "origin_not_allowed"),  # another scheme
        ("/ws/echo/", "http://evil.example", 403, "origin_not_allowed"),
        ("/ws/admin/dashboard/", None, 403, "origin_not_allowed"),
        ("/", "{origin}", 404, "no_route"),
        ("/ws/nothing/", "{origin}", 404, "no_route"),
    ],
)
def test_a_refused_handshake_says_why_and_never_errs(daphne, path, origin, status, reason):
    server = daphne()
    if origin is not None:
        origin = origin.format(port=server.port, origin=server.http_url)
    response = rawsocket.handshake(server.port, path, origin)
    assert response.status == status
    assert response.headers.get("x-ripple-refusal") == reason
    assert reason.encode() in response.body
    assert "Traceback" not in server.output()


def test_a_page_on_another_port_cannot_use_the_fallback_either(daphne):
    server = daphne()
    credentials = page_credentials(server.http_url, None)
    status, answer = post_frame(
        server.http_url, "0" * 32, {"type": "ping"}, credentials, "http://127.0.0.1:1", stream_token="x"
    )
    assert (status, answer) == (403, {"error": "origin_not_allowed"})
    with rawsocket.connect(server.port) as sock:
        sock.sendall(
            f"GET /sse/chat/ HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\nOrigin: http://127.0.0.1:1\r\n\r\n".encode()
        )
        refused = rawsocket.read_response_head(sock)
    assert refused.status == 403 and refused.headers["x-ripple-refusal"] == "origin_not_allowed"
    assert Message.objects.count() == 0 and Room.objects.count() == 0
