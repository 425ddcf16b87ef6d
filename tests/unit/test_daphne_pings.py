"""When daphne's transport answers a ping itself (chat/daphne_pings.py), and the queue that says
whether the consumer is between frames (chat/daphne_server.py ``ApplicationQueue``)."""

import asyncio
import time

import pytest

from chat import protocol
from chat.daphne_pings import (
    CANONICAL_PING,
    LONE_FRAME_MAX_BYTES,
    PLAIN_PING_MAX_BYTES,
    PingAnswering,
    lone_text_frame,
    pong_for,
)
from chat.daphne_server import ApplicationQueue
from chat.stats import stats
from chat.throttle import Throttle
from tests.support.rawsocket import client_frame

OPEN, CLOSING = "open", "closing"


class Socket:
    """The consumer as the transport sees it."""

    def __init__(self) -> None:
        self.state = OPEN
        self.last_seen = 0.0
        self.throttle = Throttle(member_id="m1", creator_key="", client_host=None, now=time.monotonic())


class Transport:
    """Just what ``transport_backlog_bytes`` reads of a Twisted TCP transport."""

    def __init__(self) -> None:
        self.dataBuffer = b""
        self.offset = 0
        self._tempDataLen = 0


class TrafficStats:
    incomingOctetsWireLevel = 0


class Protocol(PingAnswering):
    """A daphne protocol's share of the state, recording what it sends."""

    STATE_OPEN = 3

    def __init__(self) -> None:
        self.state = self.STATE_OPEN
        self.transport = Transport()
        self.application_queue = ApplicationQueue()
        self.sent: list[str | bytes] = []
        # What autobahn's reader holds: nothing buffered, no frame or message begun.
        self.data = b""
        self.current_frame = None
        self.inside_message = False
        self.trafficStats = TrafficStats()
        self.delivered: list[str] = []

    def deliver_text(self, text: str) -> None:
        self.delivered.append(text)

    def serverSend(self, content: str | bytes, binary: bool = False) -> None:
        self.sent.append(content)


@pytest.fixture
async def waiting():
    """A protocol whose consumer (``Socket``) waits for its next frame, as when idle."""
    proto, socket = Protocol(), Socket()
    proto.answer_pings_for(socket, OPEN)
    reader = asyncio.ensure_future(proto.application_queue.get())
    await asyncio.sleep(0)  # the reader now waits
    assert proto.application_queue.idle()
    yield proto, socket
    reader.cancel()


async def test_a_plain_ping_is_answered_with_the_consumers_pong_and_counts_as_the_consumers(waiting):
    proto, socket = waiting
    tokens = socket.throttle.frames.tokens
    frames_in, frames_out = stats.frames_in["ping"], stats.frames_out["pong"]
    before = time.monotonic()
    assert proto.answered_at_transport(b'{"type":"ping","t":1733368800123,"ref":"a"}')
    assert proto.sent == [protocol.pong(1733368800123, "a")]
    assert socket.last_seen >= before
    assert socket.throttle.frames.tokens == pytest.approx(tokens - 1, abs=0.01)
    assert (stats.frames_in["ping"], stats.frames_out["pong"]) == (frames_in + 1, frames_out + 1)


@pytest.mark.parametrize(
    "payload",
    [
        b'{"type":"pingx","t":1}',  # another type
        b'{"type":"ping","t":true}',  # refused by the parser: the consumer says why
        b'{"type":"ping","t":1,"ref":' + b'"x' * 100 + b'"}',  # over PLAIN_PING_MAX_BYTES
        b'{"type":"ping","t":"\xff"}',  # not UTF-8 (autobahn refuses it before, all the same)
        b'{"type":"message","room":"a","body":"ping","client_id":"c"}',
        b' {"type":"ping","t":1}',
    ],
)
async def test_anything_but_a_plain_ping_goes_to_the_consumer(waiting, payload):
    proto, socket = waiting
    assert not proto.answered_at_transport(payload)
    assert proto.sent == [] and socket.last_seen == 0.0


async def test_a_ping_goes_to_the_consumer_while_it_is_busy_or_not_open_or_the_transport_is_backed_up(
    waiting,
):
    proto, socket = waiting
    ping = b'{"type":"ping","t":1}'
    # A frame queued before it (the consumer has not read it yet).
    proto.application_queue.put_nowait({"type": "websocket.receive", "text": "{}"})
    assert not proto.answered_at_transport(ping)
    await asyncio.sleep(0)
    # The consumer took it and is handling it: nobody waits on the queue.
    assert proto.application_queue.empty() and not proto.application_queue.idle()
    assert not proto.answered_at_transport(ping)
    # Waiting again.
    reader = asyncio.ensure_future(proto.application_queue.get())
    await asyncio.sleep(0)
    try:
        socket.state = CLOSING
        assert not proto.answered_at_transport(ping)
        socket.state = OPEN
        proto.state = 4  # autobahn's CLOSING: a close was sent
        assert not proto.answered_at_transport(ping)
        proto.state = proto.STATE_OPEN
        proto.transport.dataBuffer = b"x"  # unsent bytes: the admission guard must see the send
        assert not proto.answered_at_transport(ping)
        proto.transport.dataBuffer = b""
        assert proto.answered_at_transport(ping)
    finally:
        reader.cancel()
    assert len(proto.sent) == 1


async def test_a_ping_over_the_rate_limit_goes_to_the_consumer_and_takes_no_token(waiting):
    proto, socket = waiting
    ping = b'{"type":"ping","t":1}'
    answered = 0
    while proto.answered_at_transport(ping):
        answered += 1
    # The burst was answered; the next one is the consumer's to refuse (rate_limited, a strike).
    assert answered >= 1
    tokens = socket.throttle.frames.tokens
    assert not proto.answered_at_transport(ping)
    assert socket.throttle.frames.tokens == pytest.approx(tokens, abs=0.01)
    assert socket.throttle.check(protocol.PING, time.monotonic()) > 0.0


async def test_without_a_consumer_every_frame_goes_to_the_application():
    proto = Protocol()
    assert not proto.answered_at_transport(b'{"type":"ping","t":1}')


@pytest.mark.parametrize(
    "t",
    [0, 7, -1, 1733368800123, 10**15 - 1, -(10**15 - 1), 10**15, 2**53 - 1, 2**53, "01", "1.5", "-0", "1e3"],
)
def test_the_pong_is_the_consumers_whether_or_not_the_ping_is_in_the_clients_form(t, settings):
    payload = b'{"type":"ping","t":' + str(t).encode() + b"}"
    limits = {
        "max_frame_chars": settings.RIPPLE_MAX_FRAME_CHARS,
        "max_body_chars": settings.RIPPLE_MAX_BODY_CHARS,
    }
    try:
        expected = protocol.pong(protocol.parse_client_frame(payload.decode(), **limits).t, None)
    except protocol.ProtocolError:  # 2**53 and 01: refused by the parser, so by this too
        expected = None
    assert pong_for(payload) == expected
    # The client's form is recognised without parsing for integers of at most 15 digits.
    canonical = isinstance(t, int) and abs(t) < 10**15
    assert (CANONICAL_PING.fullmatch(payload) is not None) == canonical


# Read on arrival: one read holding exactly one whole masked text frame.


@pytest.mark.parametrize(
    "payload", [b"", b"a", b"ab", b"abc", b"abcd", b'{"type":"ping","t":1}', b"x" * PLAIN_PING_MAX_BYTES]
)
def test_a_lone_text_frame_is_unmasked_to_its_payload(payload):
    for _ in range(20):  # a new random mask each time
        assert lone_text_frame(client_frame(1, payload), PLAIN_PING_MAX_BYTES) == payload


@pytest.mark.parametrize("length", [125, 126, 127, 1000, 4099, LONE_FRAME_MAX_BYTES])
def test_a_lone_text_frame_with_a_16_bit_length_is_read_up_to_the_limit(length):
    payload = bytes((i * 7) % 256 for i in range(length))
    frame = client_frame(1, payload)
    assert lone_text_frame(frame, LONE_FRAME_MAX_BYTES) == payload
    assert lone_text_frame(frame, length) == payload
    assert lone_text_frame(frame, length - 1) is None  # over the limit: autobahn's
    assert lone_text_frame(frame[:-1], LONE_FRAME_MAX_BYTES) is None  # not whole yet
    assert lone_text_frame(frame + frame, LONE_FRAME_MAX_BYTES) is None  # two frames


@pytest.mark.parametrize(
    "data",
    [
        client_frame(2, b'{"type":"ping"}'),  # binary
        client_frame(9, b"p"),  # a protocol ping
        client_frame(1, b'{"type":"ping"}', fin=False),  # the first fragment of a message
        bytes([0xC1]) + client_frame(1, b'{"type":"ping"}')[1:],  # RSV1 (compressed)
        bytes([0x81, len(b'{"type":"ping"}')]) + b'{"type":"ping"}',  # unmasked
        client_frame(1, b'{"type":"ping"}') * 2,  # two frames in one read
        client_frame(1, b'{"type":"ping"}')[:-1],  # a frame not whole yet
        bytes([0x81, 0x80 | 126, 0, 5]) + b"mask" + b"hello",  # a 16-bit length under 126
        bytes([0x81, 0x80 | 127]) + (200).to_bytes(8, "big") + b"mask" + b"x" * 200,  # 64-bit
        bytes([0x81, 0x80 | 126, 0]),  # a length cut short
        b"\x81",
    ],
)
def test_anything_else_is_not_a_lone_text_frame(data):
    assert lone_text_frame(data, PLAIN_PING_MAX_BYTES) is None
    assert lone_text_frame(data, LONE_FRAME_MAX_BYTES) is None


def test_a_text_frame_over_the_limit_is_not_lone():
    assert lone_text_frame(client_frame(1, b"x" * 200), PLAIN_PING_MAX_BYTES) is None  # a plain ping's limit
    assert lone_text_frame(client_frame(1, b"x" * 200), 199) is None


async def test_a_ping_frame_read_alone_is_answered_before_autobahn_reads_it(waiting):
    proto, socket = waiting
    frame = client_frame(1, b'{"type":"ping","t":5,"ref":"z"}')
    assert proto.read_on_arrival(frame)
    assert proto.sent == [protocol.pong(5, "z")] and socket.last_seen > 0
    assert proto.delivered == []
    assert proto.trafficStats.incomingOctetsWireLevel == len(frame)


async def test_any_other_text_frame_read_alone_goes_to_the_application_without_autobahn(waiting):
    proto, socket = waiting
    body = '{"type":"message","room":"r","body":"' + "é" * 300 + '","client_id":"c1"}'
    frame = client_frame(1, body.encode())
    assert proto.read_on_arrival(frame)
    assert proto.delivered == [body] and proto.sent == []
    assert proto.trafficStats.incomingOctetsWireLevel == len(frame)
    # A ping the transport may not answer (the consumer is not waiting) goes to the application.
    socket.state = CLOSING
    assert proto.read_on_arrival(client_frame(1, b'{"type":"ping","t":5}'))
    assert proto.delivered == [body, '{"type":"ping","t":5}'] and proto.sent == []


async def test_a_text_frame_that_is_not_utf8_is_left_to_autobahn(waiting):
    proto, _ = waiting
    assert not proto.read_on_arrival(client_frame(1, b'{"type":"message","body":"\xff\xfe"}'))
    assert not proto.read_on_arrival(client_frame(1, "é".encode()[:1]))
    assert proto.delivered == [] and proto.trafficStats.incomingOctetsWireLevel == 0


async def test_a_frame_is_left_to_autobahn_when_its_reader_is_mid_frame_or_mid_message_or_not_open(waiting):
    proto, _ = waiting
    frame = client_frame(1, b'{"type":"ping","t":5}')
    message = client_frame(1, b'{"type":"message"}')
    proto.data = b"\x81"  # the start of a frame read before
    assert not proto.read_on_arrival(frame) and not proto.read_on_arrival(message)
    proto.data = b""
    proto.inside_message = True  # a fragmented message is open: a new text frame is an error
    assert not proto.read_on_arrival(frame) and not proto.read_on_arrival(message)
    proto.inside_message = False
    proto.current_frame = object()
    assert not proto.read_on_arrival(frame) and not proto.read_on_arrival(message)
    proto.current_frame = None
    proto.state = proto.STATE_OPEN + 1  # closing
    assert not proto.read_on_arrival(frame) and not proto.read_on_arrival(message)
    proto.state = proto.STATE_OPEN
    assert proto.sent == [] and proto.delivered == [] and proto.trafficStats.incomingOctetsWireLevel == 0
    assert proto.read_on_arrival(frame) and proto.read_on_arrival(message)
    assert len(proto.sent) == 1 and proto.delivered == ['{"type":"message"}']


# The queue.


async def test_the_queue_gives_items_in_order_to_a_reader_that_waits_or_not():
    queue = ApplicationQueue()
    queue.put_nowait(1)
    queue.put_nowait(2)
    assert [await queue.get(), await queue.get()] == [1, 2]
    reader = asyncio.ensure_future(queue.get())
    await asyncio.sleep(0)
    assert queue.idle()
    queue.put_nowait(3)
    assert not queue.idle()
    assert await asyncio.wait_for(reader, 1) == 3
    read = []
    for i in range(1000):  # well past the compaction threshold, read a third as it goes
        queue.put_nowait(i)
        if i % 3 == 0:
            read.append(await queue.get())
    assert queue.qsize() == 1000 - 334
    read += [await queue.get() for _ in range(queue.qsize())]
    assert read == list(range(1000)) and queue.empty()


async def test_a_cancelled_reader_loses_nothing_and_the_next_reader_gets_it():
    queue = ApplicationQueue()
    first = asyncio.ensure_future(queue.get())
    second = asyncio.ensure_future(queue.get())
    await asyncio.sleep(0)
    queue.put_nowait("a")  # wakes the first reader...
    first.cancel()  # ...which is cancelled before it runs
    assert await asyncio.wait_for(second, 1) == "a"
    assert first.cancelled() and queue.empty() and not queue.idle()


def test_install_quiets_the_highlighters_of_both_autobahn_modules_that_use_them():
    import autobahn.twisted.websocket as autobahn_twisted
    import autobahn.websocket.protocol as autobahn_protocol

    from chat.daphne_guard import install

    install()
    install()  # twice: wrapped once
    for module in (autobahn_protocol, autobahn_twisted):
        for name in ("hltype", "hlval"):
            highlight = getattr(module, name)
            assert highlight(12345) == ""
            assert not hasattr(highlight.__wrapped__, "__wrapped__")


def test_autobahn_highlights_values_only_when_its_debug_lines_are_logged():
    import txaio
    from autobahn.util import hlval

    from chat.daphne_guard import when_debugging

    highlighted = when_debugging(hlval)
    assert txaio.get_global_log_level() not in ("debug", "trace")
    assert highlighted(12345) == ""
    previous = txaio.get_global_log_level()
    txaio.set_global_log_level("debug")
    try:
        assert highlighted(12345) == hlval(12345)
    finally:
        txaio.set_global_log_level(previous)


def test_a_tcp_connections_reads_are_called_without_twisteds_log_context():
    from twisted.internet import tcp
    from twisted.internet.asyncioreactor import AsyncioSelectorReactor

    from chat.daphne_guard import install, read_without_log_context

    install()
    assert AsyncioSelectorReactor.addReader.__wrapped__ is not None
    assert not hasattr(AsyncioSelectorReactor.addReader.__wrapped__, "__wrapped__")  # once

    class Loop:
        def __init__(self) -> None:
            self.readers: dict[int, tuple] = {}

        def add_reader(self, fd, callback, *args):
            self.readers[fd] = (callback, *args)

    class Reactor:
        def __init__(self) -> None:
            self._readers: dict = {}
            self._asyncioEventloop = Loop()

        def _readOrWrite(self, selectable, read):  # the reactor's own, which catches and logs
            return None

    def twisted_add_reader(reactor, reader):  # Twisted's: every read through callWithLogger
        reactor._readers[reader] = 7 if isinstance(reader, tcp.Server) else 8
        reactor._asyncioEventloop.add_reader(reactor._readers[reader], "callWithLogger", reader)

    reactor, connection, other = Reactor(), tcp.Server.__new__(tcp.Server), object()
    add_reader = read_without_log_context(twisted_add_reader)
    add_reader(reactor, connection)
    add_reader(reactor, other)
    assert reactor._asyncioEventloop.readers[7] == (reactor._readOrWrite, connection, True)
    assert reactor._asyncioEventloop.readers[8] == ("callWithLogger", other)
