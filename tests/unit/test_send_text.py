"""The admission guard's direct text writes (chat/admission.py ``SEND_TEXT``): under daphne the
fan-out hands a frame to the socket's protocol without a coroutine, under the same outbound
limit as every other send. The transport is a real Twisted TCP transport on a socket pair."""

import asyncio
import functools

import pytest

from chat import protocol
from chat.admission import CONNECTION_ID, SEND_TEXT, Admission, Policy
from chat.daphne_guard import write_now
from chat.limits import transport_backlog_bytes
from tests.support.twisted_pair import twisted_pair


class Peer:
    """What the guard reads of daphne's protocol: its state, its transport, ``serverSend``."""

    STATE_OPEN = 1
    STATE_CLOSING = 2

    def __init__(self, transport) -> None:
        self.transport = transport
        self.state = self.STATE_OPEN
        self.written: list[str] = []

    def serverSend(self, content: str, binary: bool = False) -> None:
        self.written.append(content)
        write_now(self.transport, content.encode())


@pytest.fixture
def peer():
    with twisted_pair() as (transport, _far):
        yield Peer(transport)


def admitted(send) -> dict:
    """What the application behind the guard is given: its ``send`` and the scope's send_text."""
    seen: dict = {}

    async def application(scope, receive, app_send) -> None:
        seen["send"], seen["send_text"] = app_send, scope.get(SEND_TEXT, "absent")

    async def receive() -> dict:
        return {"type": "websocket.connect"}

    scope = {"type": "websocket", "path": "/ws/chat/", "headers": [], "client": ("127.0.0.1", 1)}
    scope[CONNECTION_ID] = "c1"
    asyncio.run(Admission(application, Policy("test"))._websocket(scope, receive, send))
    return seen


def guarded(peer: Peer, settings):
    """(the application's send, its send_text, what reached daphne's handle_reply)."""
    settings.RIPPLE_MAX_OUTBOUND_BYTES = 64 * 1024
    replies: list[dict] = []

    async def handle_reply(protocol_: Peer, message: dict) -> None:
        replies.append(message)

    seen = admitted(functools.partial(handle_reply, peer))  # as daphne hands it to the application
    return seen["send"], seen["send_text"], replies


def test_text_is_written_at_once_while_the_backlog_is_within_the_limit(peer, settings):
    _, send_text, replies = guarded(peer, settings)
    assert send_text is not None
    assert send_text('{"type":"message","seq":1}') is True
    assert peer.written == ['{"type":"message","seq":1}']
    assert replies == []  # no trip through daphne's handle_reply


def test_past_the_limit_the_awaited_send_decides_and_closes_4509(peer, settings):
    send, send_text, replies = guarded(peer, settings)
    frame = "x" * 8192
    sent = 0
    while transport_backlog_bytes(peer.transport) <= 64 * 1024 + 8192:
        assert send_text(frame) is True
        sent += 1
        assert sent < 1000, "the backlog never grew: the peer is reading"
    # Past the limit (and the largest frame): not written, the guarded send is to decide.
    assert send_text(frame) is False
    assert len(peer.written) == sent
    asyncio.run(send({"type": "websocket.send", "text": frame}))
    assert replies == [{"type": "websocket.close", "code": protocol.CLOSE_TOO_SLOW}]
    # Closed: later frames are dropped by both paths, and nothing more reaches the peer.
    assert send_text(frame) is True
    asyncio.run(send({"type": "websocket.send", "text": frame}))
    assert len(peer.written) == sent and len(replies) == 1


def test_a_peer_that_is_not_open_is_left_to_the_awaited_send(peer, settings):
    _, send_text, replies = guarded(peer, settings)
    peer.state = peer.STATE_CLOSING
    assert send_text("late") is False
    assert peer.written == [] and replies == []


def test_no_direct_path_where_the_server_exposes_no_protocol(settings):
    async def send(message: dict) -> None:  # uvicorn's, the test communicator's: a plain callable
        pass

    assert admitted(send)["send_text"] == "absent"
