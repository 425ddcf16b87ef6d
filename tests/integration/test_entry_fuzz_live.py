"""Property-based fuzzing of every way in, against one real daphne: arbitrary paths, headers
(every Unicode digit class included), query strings and bodies at every HTTP and WebSocket
entry point. Never a 500, never a traceback in the worker's log, and nothing stored.

Requests are written on raw sockets, byte by byte as generated, because a client library would
refuse or repair most of them. Header values are sent as UTF-8 bytes: a server sees them as
Latin-1 text, which is how non-ASCII reaches it from real clients too.
"""

from __future__ import annotations

import unicodedata

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from chat.models import Message, Room, RoomMembership
from tests.support import rawsocket

pytestmark = pytest.mark.django_db(transaction=True)

ENTRY_POINTS = [
    "/ws/chat/",
    "/ws/echo/",
    "/ws/admin/dashboard/",
    "/sse/chat/",
    "/sse/chat/send/",
    "/rooms/lobby/",
    "/name/",
    "/",
    "/healthz",
    "/readyz",
    "/metrics",
    "/echo/",
    "/accounts/login/",
    "/admin/",
    "/admin/dashboard/",
]

# One character of every Unicode digit class: Nd digits of many scripts, superscripts (No),
# fractions, Roman numerals (Nl): str.isdigit() says yes to some that int() refuses.
ODD_DIGITS = (
    "".join(
        sorted({chr(c) for c in range(0x30000) if unicodedata.category(chr(c)) in ("Nd", "No", "Nl")})[::97]
    )
    + "²³¹¼½٣۴߅३੫௬໗༣၅႗៦᠓᥇᧐᪅᭓᮴᱃᱙꘩꣓꤅꧕꩙꯹０１９"
)

header_text = st.one_of(
    st.text(max_size=60),
    st.text(alphabet=ODD_DIGITS + ":,-/. ab", max_size=30),
    st.sampled_from(["", " ", "0", "-1", "99999999999999999999", "1e9", "nan", "lobby:1", "lobby:²", "ws"]),
)
header_name = st.one_of(
    st.sampled_from(
        [
            "Origin",
            "Host",
            "Cookie",
            "Last-Event-ID",
            "X-CSRFToken",
            "X-Ripple-Stream-Token",
            "Sec-WebSocket-Version",
            "Sec-WebSocket-Protocol",
            "Sec-WebSocket-Extensions",
            "Content-Length",
            "Content-Type",
            "Sec-Fetch-Site",
            "X-Forwarded-For",
            "Accept",
            "Range",
            "If-Modified-Since",
        ]
    ),
    st.text(alphabet="abcdefghijklmnopqrstuvwxyz-_0123456789", min_size=1, max_size=20),
)
path_strategy = st.one_of(
    st.sampled_from(ENTRY_POINTS),
    st.builds(lambda base, tail: base + tail, st.sampled_from(ENTRY_POINTS), st.text(max_size=20)),
    st.text(alphabet="/abcdefghijklmnopqrstuvwxyz%.0123456789_-" + ODD_DIGITS[:40], max_size=40).map(
        lambda p: "/" + p
    ),
)
query_strategy = st.one_of(
    st.just(""),
    st.builds(lambda v: "connection=" + v, st.text(max_size=40)),
    st.text(alphabet="=&%;+abc0123456789" + ODD_DIGITS[:20], max_size=40),
)


def _encode(text: str) -> bytes:
    return text.encode("utf-8", "surrogatepass").replace(b"\r", b"").replace(b"\n", b"")


@st.composite
def requests(draw: st.DrawFn) -> bytes:
    method = draw(st.sampled_from(["GET", "GET", "POST", "HEAD", "PUT", "OPTIONS"]))
    # Half the requests are well-formed around one odd part, so that they reach the application
    # (a request malformed everywhere stops at the HTTP parser).
    clean = draw(st.booleans())
    path = draw(st.sampled_from(ENTRY_POINTS) if clean else path_strategy)
    query = draw(st.just("") if clean else query_strategy)
    websocket = draw(st.booleans())
    host = draw(st.sampled_from(["127.0.0.1:{port}"] * 4 + ["localhost", "", "127.0.0.1:{port}:1", "[::1"]))
    headers: list[tuple[str, str]] = [("Host", host)]
    if websocket:
        headers += [
            ("Upgrade", "websocket"),
            ("Connection", "Upgrade"),
            ("Sec-WebSocket-Key", draw(st.sampled_from(["dGhlIHNhbXBsZSBub25jZQ==", "", "x"]))),
            ("Sec-WebSocket-Version", "13"),
        ]
    if clean:
        origin = draw(st.sampled_from(["http://127.0.0.1:{port}", "http://127.0.0.1:1", "null", ""]))
        headers.append(("Origin", origin))
        odd = st.tuples(
            st.sampled_from(["Last-Event-ID", "Cookie", "X-Ripple-Stream-Token", "Origin"]), header_text
        )
        headers += draw(st.lists(odd, max_size=2))
    else:
        headers += draw(st.lists(st.tuples(header_name, header_text), max_size=6))
    body = draw(st.one_of(st.just(b""), st.binary(max_size=300), st.text(max_size=200).map(_encode)))
    target = _encode(path) + (b"?" + _encode(query) if query else b"")
    lines = [method.encode() + b" " + (target or b"/") + b" HTTP/1.1"]
    lines += [
        _encode(name) + b": " + _encode(value) for name, value in headers if name.lower() != "content-length"
    ]
    lines.append(b"Content-Length: " + str(len(body)).encode())
    lines.append(b"Connection: close" if not websocket else b"X-Fuzz: 1")
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


def status_of(port: int, request: bytes) -> int | None:
    """The response's status; None when the server closed without one (a refused request)."""
    # No half-close after sending: daphne drops a request whose client shut its side. The
    # worker's request deadline (RIPPLE_REQUEST_TIMEOUT_S) bounds the wait for an answer.
    with rawsocket.connect(port, timeout_s=15) as sock:
        sock.sendall(request.replace(b"{port}", str(port).encode()))
        data = b""
        while b"\r\n" not in data:
            chunk = sock.recv(4096)
            if not chunk:
                return None
            data += chunk
    status_line = data.split(b"\r\n", 1)[0].split()
    return int(status_line[1]) if len(status_line) > 1 and status_line[1].isdigit() else None


def test_no_request_at_any_entry_point_gets_a_500_a_traceback_or_a_stored_row(daphne):
    server = daphne(RIPPLE_MAX_CONNECTIONS_PER_IP="100000", RIPPLE_RATE_FRAMES_BURST="100000")
    counts = (Room.objects.count(), Message.objects.count(), RoomMembership.objects.count())
    seen: dict[int | None, int] = {}

    @settings(
        max_examples=250,
        deadline=None,
        derandomize=True,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(request=requests())
    def check(request: bytes) -> None:
        status = status_of(server.port, request)
        seen[status] = seen.get(status, 0) + 1
        assert status is None or status < 500, request

    check()
    output = server.output()
    assert "Traceback" not in output, output[-3000:]
    assert (Room.objects.count(), Message.objects.count(), RoomMembership.objects.count()) == counts
    # The generator reached past the refusals: pages, refusals and upgrades all happened.
    assert {101, 200, 400, 403, 404} <= set(seen), seen
