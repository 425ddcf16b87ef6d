"""The frames daphne's guarded protocol writes itself (chat/daphne_guard.py ``write_now``).

Frames are checked byte for byte against the ``websockets`` library's own encoder, and the
writes go through a real Twisted TCP transport on a real socket pair, driven by hand.
"""

import pytest
from websockets.frames import Frame, Opcode

from chat.daphne_guard import (
    CLOSE_HANDSHAKE_TIMEOUT_S,
    GuardedWebSocketFactory,
    GuardedWebSocketProtocol,
    frame_header,
    framed,
    pformat_when_debugging,
    write_now,
)
from chat.limits import transport_backlog_bytes
from tests.support.twisted_pair import twisted_pair


@pytest.mark.parametrize("length", [0, 1, 125, 126, 127, 65535, 65536, 300_000])
@pytest.mark.parametrize("opcode", [Opcode.TEXT, Opcode.BINARY])
def test_a_frame_is_the_one_the_websockets_library_would_send(length, opcode):
    payload = bytes(i % 251 for i in range(length))
    expected = Frame(opcode, payload).serialize(mask=False)
    assert frame_header(opcode.value, length) + payload == expected


@pytest.fixture
def connected():
    """A Twisted server transport on one end of a socket pair, a plain socket on the other."""
    with twisted_pair() as pair:
        yield pair


def read_all(transport, far, size: int) -> bytes:
    """Take ``size`` bytes from the far end, letting the transport write its queue meanwhile."""
    received = bytearray()
    while len(received) < size:
        if transport_backlog_bytes(transport):
            transport.doWrite()
        received += far.recv(65536)
    return bytes(received)


def test_a_write_the_kernel_takes_whole_is_sent_at_once_and_nothing_is_queued(connected):
    transport, far = connected
    write_now(transport, b"hello")
    assert transport_backlog_bytes(transport) == 0
    assert far.recv(100) == b"hello"


def test_what_the_kernel_does_not_take_is_queued_and_later_writes_go_behind_it(connected):
    transport, far = connected
    big = bytes(i % 253 for i in range(400_000))
    write_now(transport, big)
    queued = transport_backlog_bytes(transport)
    assert 0 < queued < len(big)
    # With a backlog, nothing is sent ahead of it: the next write is queued whole.
    write_now(transport, b"after")
    assert transport_backlog_bytes(transport) == queued + len(b"after")
    assert read_all(transport, far, len(big) + 5) == big + b"after"
    assert transport_backlog_bytes(transport) == 0


def test_a_write_to_a_peer_that_is_gone_is_left_for_twisted_to_report(connected):
    transport, far = connected
    far.close()
    write_now(transport, b"x" * 100_000)  # must not raise
    assert transport_backlog_bytes(transport) == 100_000
    assert transport.doWrite() is not None  # Twisted's own write finds the lost connection


def test_a_connection_reads_the_factory_options_from_its_class_and_keeps_none_of_its_own():
    factory = GuardedWebSocketFactory(None, server="ripple-test")
    # What daphne's Server.run() sets after building the factory.
    factory.setProtocolOptions(
        maxMessagePayloadSize=4 * 1024 * 1024, maxFramePayloadSize=65536, allowNullOrigin=True
    )
    protocol = factory.buildProtocol(("127.0.0.1", 1))
    assert isinstance(protocol, GuardedWebSocketProtocol)
    assert protocol.maxMessagePayloadSize == 4 * 1024 * 1024 and protocol.maxFramePayloadSize == 65536
    assert protocol.closeHandshakeTimeout == CLOSE_HANDSHAKE_TIMEOUT_S and protocol.allowNullOrigin is True
    # A function option stays a plain function (not bound to the connection).
    assert protocol.perMessageCompressionAccept([]) is None
    # autobahn copies an option onto the connection only when it is missing there.
    assert all(hasattr(protocol, name) for name in protocol.CONFIG_ATTRS)
    assert not set(vars(protocol)) & set(protocol.CONFIG_ATTRS)
    # Options set later reach connections built afterwards.
    # The largest frame read at the transport follows the options: daphne's flags give 64 KiB
    # frames, under the 16-bit length read there.
    assert protocol.lone_limit == 65535
    factory.setProtocolOptions(maxFramePayloadSize=1024)
    later = factory.buildProtocol(("127.0.0.1", 2))
    assert later.maxFramePayloadSize == 1024
    assert later.lone_limit == 1024


def test_autobahn_formats_its_options_only_when_its_debug_lines_are_logged():
    import txaio

    assert txaio.get_global_log_level() not in ("debug", "trace")
    assert pformat_when_debugging([("a", 1)] * 29) == "(not formatted: debug logging is off)"
    previous = txaio.get_global_log_level()
    txaio.set_global_log_level("debug")
    try:
        assert pformat_when_debugging([("a", 1)]) == "[('a', 1)]"
    finally:
        txaio.set_global_log_level(previous)


def test_one_text_object_is_encoded_and_framed_once_for_all_its_recipients():
    text = "".join(['{"type":"message",', '"body":"é"}'])  # built at run time, not interned
    frame, length = framed(text, False)
    assert frame == frame_header(1, len(text.encode())) + text.encode() and length == len(text.encode())
    # The fan-out hands every subscriber the same object: the same frame, not a new one.
    assert framed(text, False)[0] is frame
    # An equal text in another object, or the same bytes as binary, is framed anew and right.
    other = "".join(['{"type":"message",', '"body":"é"}'])
    assert other is not text and framed(other, False) == (frame, length)
    data = text.encode()
    assert framed(data, True)[0] == frame_header(2, len(data)) + data
    assert framed(data, False)[0] == frame_header(1, len(data)) + data
