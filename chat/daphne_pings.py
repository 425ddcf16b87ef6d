"""Plain pings answered at daphne's transport, with the consumer's answer and its bookkeeping.

An idle chat socket's only traffic is its client's ``{"type":"ping","t":...}`` every heartbeat
interval. Through daphne, Channels and the consumer one costs about 300 µs of the worker
(500 a second at 10,000 sockets: 15 % of a core); here, at the transport, about a tenth. The
consumer hands its socket over once it watches it (``ChatConsumer.watch`` calls the scope's
``heartbeat.TRANSPORT_PINGS``); from then on a ping is answered here when all of these hold, and is
otherwise passed on to the consumer exactly as daphne would:

- it is a text frame of at most ``PLAIN_PING_MAX_BYTES`` that ``parse_client_frame`` reads as a
  ``ping`` (the consumer's parser, with its limits): anything else, and a ping it refuses,
  gets the consumer's answer;
- the consumer is OPEN and waits for its next frame with none queued, so the pong cannot pass
  an answer to a frame sent before the ping, nor a close;
- nothing is waiting in the transport to be written (the admission guard reads that backlog
  before every send, and closes a socket that does not read with 4509: a ping sent while
  anything waits goes that way);
- the consumer's throttle gives it a frame token (``Throttle.check``, which takes nothing when
  it refuses): a ping over the limit goes to the consumer, which refuses it again the same way,
  answers ``rate_limited`` and closes a flood with 4429.

Most pings are answered before autobahn even reads them (``read_on_arrival``): an idle
socket's ping arrives as one read holding exactly one small, whole, masked text frame, which is
unmasked here and put to the same test. Anything else (a frame split over reads, two frames in
one, a control frame, a frame while a fragmented message is open) goes to autobahn as before,
and a ping read that way is still answered by ``answered_at_transport``. At 10,000 idle sockets
autobahn's reading was most of what a ping cost.

Any other text frame read that way (most chat frames: a ``message`` of a few hundred bytes
arrives alone) is handed to the application here as daphne's ``onMessage`` would, once it
decodes as UTF-8 (otherwise autobahn reads it and fails the connection, as before).
autobahn's frame reading, its observers and its Deferreds cost about 90 µs a frame on the echo
benchmark; this costs a few.

The pong is the consumer's (``protocol.pong(t, ref)``) and the socket's ``last_seen`` moves as
the consumer's ``receive`` moves it, so the heartbeat neither pings nor expires a socket that
pings. The frame counters move as they would. What such a ping skips is the admission guard's
ceiling (chat/admission.py), which is twice the throttle's rate: the throttle refuses first.
"""

from __future__ import annotations

import re
import time
from typing import TYPE_CHECKING, Any, Protocol

from django.conf import settings

from . import protocol
from .limits import transport_backlog_bytes
from .stats import stats
from .throttle import Throttle

# The bundled client's ping is about 32 bytes; a longer frame is not a plain ping.
PLAIN_PING_MAX_BYTES = 128
PING_PREFIX = b'{"type":"ping"'
# The largest frame read at the transport: a 16-bit length (a chat message of up to ~16,000
# characters); longer ones, rare, go through autobahn.
LONE_FRAME_MAX_BYTES = 65535
# What the bundled client sends (JSON.stringify of {type, t: Date.now()}): a JSON integer with
# no leading zero, at most 15 digits, so within the parser's 2**53 limit on ``t``.
CANONICAL_PING = re.compile(rb'\{"type":"ping","t":(0|-?[1-9][0-9]{0,14})\}')


def lone_text_frame(data: bytes, limit: int) -> bytes | None:
    """The payload of ``data`` when it is exactly one masked, unfragmented text frame of at most
    ``limit`` bytes (at most 65,535: a 7- or 16-bit length, minimally encoded) with no extension
    bits (RFC 6455 5.2); otherwise None."""
    if len(data) < 6 or data[0] != 0x81 or not data[1] & 0x80:  # FIN, no RSV, text; masked
        return None
    length = data[1] & 0x7F
    start = 6
    if length == 126:
        if len(data) < 8:
            return None
        length = (data[2] << 8) | data[3]
        if length < 126:  # not the minimal encoding: autobahn's to refuse
            return None
        start = 8
    elif length == 127:
        return None
    if length > limit or len(data) != start + length:
        return None
    mask = (data[start - 4 : start] * (length // 4 + 1))[:length]
    masked = int.from_bytes(data[start:], "little") ^ int.from_bytes(mask, "little")
    return masked.to_bytes(length, "little")


def pong_for(payload: bytes) -> str | None:
    """The consumer's answer to ``payload`` if it is a ``ping`` its parser accepts; otherwise None.

    The bundled client's ping, ``{"type":"ping","t":<milliseconds>}``, is recognised as bytes
    and answered from its digits (``CANONICAL_PING``); any other is parsed as the consumer
    parses it. Both give ``protocol.pong(t, ref)`` to the byte.
    """
    canonical = CANONICAL_PING.fullmatch(payload)
    if canonical is not None:
        return f'{{"type":"pong","t":{canonical[1].decode()},"ref":null}}'
    try:
        frame = protocol.parse_client_frame(
            payload.decode(),
            max_frame_chars=settings.RIPPLE_MAX_FRAME_CHARS,
            max_body_chars=settings.RIPPLE_MAX_BODY_CHARS,
        )
    except (protocol.ProtocolError, UnicodeDecodeError):
        return None
    if frame.type != protocol.PING:
        return None
    return protocol.pong(frame.t, frame.ref)


class PingedSocket(Protocol):
    """What the transport reads and moves on the consumer whose pings it answers."""

    state: Any
    last_seen: float
    throttle: Throttle


class PingAnswering:
    """A daphne WebSocket protocol's share: which consumer's pings it answers, and the answer."""

    # The consumer, and the value of its ``state`` in which its frames are handled.
    pings_answered_for: PingedSocket | None = None
    open_state: Any = None
    # The largest payload ``read_on_arrival`` takes: what autobahn would take in one frame. A
    # class attribute, set with the factory's options (chat/daphne_guard.py), not worked out
    # per frame.
    lone_limit: int = LONE_FRAME_MAX_BYTES

    if TYPE_CHECKING:  # what the protocol class this is mixed into has (daphne's and autobahn's)
        state: int
        STATE_OPEN: int
        transport: Any
        application_queue: Any
        data: bytes  # what autobahn has read and not yet parsed
        current_frame: Any
        inside_message: bool
        trafficStats: Any

        def serverSend(self, content: str | bytes, binary: bool = False) -> None: ...

    def answer_pings_for(self, socket: PingedSocket, open_state: Any) -> None:
        """From now on answer ``socket``'s plain pings here while its ``state`` is ``open_state``."""
        self.pings_answered_for = socket
        self.open_state = open_state
        # daphne's timeout walk leaves it to the heartbeat (chat/daphne_server.py).
        watches = getattr(getattr(self, "server", None), "heartbeat_watches", None)
        if watches is not None:
            watches(self)

    def read_on_arrival(self, data: bytes) -> bool:
        """Take ``data``, as read from the socket, here if it is one whole text frame (module
        docstring): a plain ping that may be answered is answered, any other text goes to the
        application as daphne would hand it on. True if so, and autobahn never sees it."""
        if (
            self.state != self.STATE_OPEN
            or self.data
            or self.current_frame is not None
            or self.inside_message
        ):
            return False
        payload = lone_text_frame(data, self.lone_limit)
        if payload is None:
            return False
        if self.pings_answered_for is None or not self.answered_at_transport(payload):
            try:
                text = payload.decode()
            except UnicodeDecodeError:  # autobahn fails the connection, as it always has
                return False
            self.deliver_text(text)
        self.trafficStats.incomingOctetsWireLevel += len(data)  # as autobahn counts what it reads
        return True

    def deliver_text(self, text: str) -> None:
        """Hand one text message to the application, as daphne's ``onMessage`` does."""
        raise NotImplementedError

    def answered_at_transport(self, payload: bytes) -> bool:
        """Answer ``payload`` here if it is a plain ping that may be (module docstring); True if so."""
        socket = self.pings_answered_for
        if (
            socket is None
            or len(payload) > PLAIN_PING_MAX_BYTES
            or not payload.startswith(PING_PREFIX)
            or self.state != self.STATE_OPEN
            or socket.state is not self.open_state
        ):
            return False
        idle = getattr(self.application_queue, "idle", None)
        if idle is None or not idle() or transport_backlog_bytes(self.transport):
            return False
        pong = pong_for(payload)
        if pong is None:
            return False
        now = time.monotonic()
        if socket.throttle.check(protocol.PING, now) > 0.0:
            return False
        socket.last_seen = now
        # daphne's ``last_ping`` is not moved here: its timeout walk leaves this socket to the
        # heartbeat, and moves it itself when it looks (``GuardedWebSocketProtocol.check_timeouts``).
        stats.frame_in(protocol.PING)
        stats.frame_out(protocol.PONG)
        self.serverSend(pong)
        return True
