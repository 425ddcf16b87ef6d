"""Guards on daphne's transport, where the application cannot see (docs/security.md).

daphne hands the application a request once it is whole and a message once its last fragment
arrived, and autobahn answers protocol pings by itself. What happens before (a request
trickling in a byte at a time, a message split into thousands of fragments, pings from a peer
that never reads the pongs) costs the worker memory and sockets without the application ever
hearing of it. The subclasses here close those gaps, and let a refused handshake say why:

- an HTTP request (a WebSocket upgrade included) must be whole within
  ``RIPPLE_REQUEST_TIMEOUT_S`` of its connection opening, or of the previous response ending;
  otherwise 408 and the connection is closed. Responses (the SSE stream, sockets) are not timed.
- a ping is answered only while the socket's unsent backlog is within
  ``RIPPLE_MAX_OUTBOUND_BYTES``; a peer that keeps pinging past it is closed with 4509 and
  dropped soon after (it is not reading, so the close frame may never reach it).
- an incoming message is limited to ``MAX_WEBSOCKET_INCOMING_MESSAGE_BYTES`` (the frame
  limit), counted as its fragments begin; daphne's own limit stays at 4 MiB for what it sends.
- the server's close frame gets ``CLOSE_HANDSHAKE_TIMEOUT_S`` (5 s, autobahn's default is
  1 s) for its answer, so a socket closed on purpose is logged with its code, not as 1006.
- ``{"type": "websocket.close", "reason": ..., "status": ...}`` before the accept becomes an
  HTTP refusal naming the reason (``X-Ripple-Refusal`` and a text body).

One more is for speed, not safety: a text or binary frame the application sends goes to the
socket at once (``write_now``) when nothing is queued before it, framed here, instead of
through autobahn's general path (which formats debug arguments for every frame) and Twisted's
(which waits for the next turn of the loop, registering and unregistering the socket for
writing around one ``send``). Whatever the kernel does not take is queued in the transport as
before, so the outbound backlog the guard reads is the same.

Reads, for speed too: a TCP connection's reads are called without the legacy log context
Twisted's asyncio reactor sets up around each one (``read_without_log_context``).

Idle sockets, for memory: once a socket is open, the upgrade request its HTTP channel would
keep for the socket's life, what autobahn kept of the handshake and daphne's fired deferred are
let go, and autobahn's send queue is a list: about 3.5 KiB a socket (6.5 with the queue of
chat/daphne_server.py; worker RSS per idle socket at 10,000 went from ~32 to ~25 KiB). Its
client's plain pings are answered here (chat/daphne_pings.py).

``install()`` makes daphne's command line build ``GuardedServer`` (chat/daphne_server.py) and
``Server.run()`` these factories: project/asgi.py calls it when daphne is the server, which
imports the application before it builds its server and factories.
"""

from __future__ import annotations

import contextlib
import pprint
import re
import struct
import time
from collections.abc import Callable
from http import HTTPStatus
from typing import Any

import autobahn.twisted.websocket as autobahn_twisted
import autobahn.websocket.protocol as autobahn_protocol
import daphne.cli
import daphne.server
import txaio
from autobahn.twisted.websocket import ConnectionDeny
from daphne.http_protocol import HTTPFactory
from daphne.ws_protocol import WebSocketFactory, WebSocketProtocol
from django.conf import settings
from twisted.internet import tcp
from twisted.internet.asyncioreactor import AsyncioSelectorReactor
from twisted.internet.protocol import connectionDone
from twisted.python.failure import Failure
from twisted.web.http import HTTPChannel, _GenericHTTPChannelProtocol

from project.serving import MAX_WEBSOCKET_INCOMING_MESSAGE_BYTES

from .daphne_pings import LONE_FRAME_MAX_BYTES, PingAnswering
from .daphne_server import GuardedServer
from .limits import transport_backlog_bytes
from .logs import log_event
from .protocol import CLOSE_TOO_SLOW

# After a connection is told to close, how long a peer that does not read gets before the
# connection is aborted (the close may sit behind a backlog it never takes).
ABORT_GRACE_S = 1.0
# How long a peer gets to answer the server's close frame before the connection is dropped
# and counted as an abnormal close (1006). autobahn's default is 1 s, which a peer that is
# busy, or behind a proxy on a loaded machine, misses: its socket was closed on purpose (a
# drain, a flood, a moderator) yet logged as lost. websockets' own default is 10 s.
CLOSE_HANDSHAKE_TIMEOUT_S = 5.0
# Pings left unanswered (backlog over the limit) before the socket is closed. Browsers never
# send protocol pings; a library client pings every 20 s or so, far from this many in a row.
UNANSWERED_PINGS_BEFORE_CLOSE = 16
# What autobahn keeps of the opening handshake and reads only during it.
HANDSHAKE_LEFTOVERS = (
    "http_request_data",
    "http_response_data",
    "http_status_line",
    "http_headers",
    "http_request_params",
    "_wskey",
)
# Refusal reasons travel in a response header: short tokens only.
REFUSAL_REASON = re.compile(r"[a-z0-9_]{1,64}")
REFUSAL_STATUSES = frozenset({403, 404, 429, 503})
REQUEST_TIMEOUT_BODY = b"408 Request Timeout: the request did not arrive in time\n"
REQUEST_TIMEOUT_RESPONSE = (
    b"HTTP/1.1 408 Request Timeout\r\n"
    b"Content-Type: text/plain; charset=utf-8\r\n"
    b"Content-Length: " + str(len(REQUEST_TIMEOUT_BODY)).encode() + b"\r\n"
    b"Connection: close\r\n\r\n" + REQUEST_TIMEOUT_BODY
)


def _peer(transport: Any) -> str | None:
    peer: Any = transport.getPeer() if transport is not None else None
    return f"{peer.host}:{peer.port}" if hasattr(peer, "host") and hasattr(peer, "port") else None


class DeadlineHTTPChannel(HTTPChannel):
    """An HTTP/1.1 connection whose requests must each arrive whole within a deadline.

    Twisted's own timeout is an idle timeout (every byte resets it; daphne sets 12 h), so a
    request sent a byte every few seconds holds a connection open for good. This deadline runs
    from the connection opening, or from the previous response ending, to the last byte of a
    request; while a request is being answered there is none.
    """

    # The pending IDelayedCall, while a request is awaited.
    _deadline: Any = None
    # Whether any byte arrived since the deadline was armed: a request begun gets a 408, an
    # idle keep-alive connection is just closed.
    _request_begun = False

    def connectionMade(self) -> None:
        super().connectionMade()
        self._arm_deadline()

    def dataReceived(self, data: bytes) -> None:
        if self._deadline is not None and data:
            self._request_begun = True
        super().dataReceived(data)

    def allContentReceived(self) -> None:
        self._disarm_deadline()
        request = self.requests[-1] if self.requests else None
        super().allContentReceived()
        if request is not None and request.transport is None and not request.finished:
            # daphne upgraded it to a WebSocket (its transport went to the WebSocket protocol):
            # it never finishes, and kept here it would live as long as the socket (~2.6 KiB).
            with contextlib.suppress(ValueError):
                self.requests.remove(request)

    def requestDone(self, request: Any) -> None:
        # Armed before the buffered next request (if any) is parsed: that one may disarm it.
        self._arm_deadline()
        super().requestDone(request)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self._disarm_deadline()
        super().connectionLost(reason)

    def _arm_deadline(self) -> None:
        self._disarm_deadline()
        self._request_begun = False
        self._deadline = self.callLater(settings.RIPPLE_REQUEST_TIMEOUT_S, self._deadline_passed)

    def _disarm_deadline(self) -> None:
        if self._deadline is not None:
            if self._deadline.active():
                self._deadline.cancel()
            self._deadline = None

    def _deadline_passed(self) -> None:
        self._deadline = None
        transport: Any = self.transport
        if transport is None:
            return
        if not (self._request_begun or self.requests):
            # An idle keep-alive connection: close it once what it was sent has gone out.
            self.loseConnection()
            return
        log_event("request_timeout", client=_peer(transport))
        transport.write(REQUEST_TIMEOUT_RESPONSE)
        self._abortingCall = self.callLater(ABORT_GRACE_S, self.forceAbortClient)
        self.loseConnection()


class GuardedHTTPFactory(HTTPFactory):
    """daphne's HTTP factory, building connections with a request deadline."""

    def protocol(self) -> _GenericHTTPChannelProtocol:  # type: ignore[override]
        return _GenericHTTPChannelProtocol(DeadlineHTTPChannel())


def frame_header(opcode: int, length: int) -> bytes:
    """An unfragmented, unmasked frame's header (RFC 6455 5.2): what a server sends."""
    first = 0x80 | opcode  # FIN
    if length < 126:
        return bytes((first, length))
    if length < 65536:
        return struct.pack("!BBH", first, 126, length)
    return struct.pack("!BBQ", first, 127, length)


# The last message framed, by identity: the fan-out writes one text object to every subscriber
# of a room in turn, so it is encoded and framed once, not once per subscriber. Holding the
# object keeps its identity from being reused.
_last_framed: tuple[str | bytes, bool, bytes, int] | None = None


def framed(content: str | bytes, binary: bool) -> tuple[bytes, int]:
    """``content`` as one server frame, and its payload's length (the same object: framed once)."""
    global _last_framed
    last = _last_framed
    if last is not None and last[0] is content and last[1] == binary:
        return last[2], last[3]
    payload = content if isinstance(content, bytes) else content.encode()
    frame = frame_header(2 if binary else 1, len(payload)) + payload
    _last_framed = (content, binary, frame, len(payload))
    return frame, len(payload)


def write_now(transport: Any, data: bytes) -> None:
    """Write ``data`` to a plain TCP transport's socket now if nothing is queued before it.

    What the kernel does not take (or everything, on any other transport, when the transport
    holds a backlog, or when it is closing) goes through ``transport.write``, which queues it
    and writes it once the socket can take more. A socket error is left for Twisted to find
    the same way: the data is queued and its next write reports the lost connection.
    """
    if (
        type(transport) is tcp.Server
        and not transport.TLS
        and transport.connected
        and not transport.disconnecting
        and not transport._writeDisconnected
        and not transport._tempDataLen
        and len(transport.dataBuffer) == transport.offset
    ):
        try:
            sent = transport.socket.send(data)
        except OSError:  # EWOULDBLOCK, ENOBUFS, or the peer gone: Twisted's write sorts it out
            sent = 0
        if sent >= len(data):
            return
        data = data[sent:]
    transport.write(data)


class SendQueue(list[Any]):
    """autobahn's queue of frames to send in chops or in sync (``append``, ``popleft``, ``len``).

    A deque costs about 760 bytes even empty; this one about 70. autobahn queues nothing in it
    unless it is asked to send in chops or in sync, which daphne never does.
    """

    __slots__ = ()

    def popleft(self) -> Any:
        return self.pop(0)


class GuardedWebSocketProtocol(WebSocketProtocol, PingAnswering):
    """daphne's WebSocket protocol with bounded pongs, a small incoming limit and reasoned refusals.

    Its consumer's plain pings are answered here (chat/daphne_pings.py), and it gets no protocol
    pings from daphne while the consumer's heartbeat watches it.
    """

    # Pings in a row not answered because the backlog was over the limit.
    unanswered_pings = 0
    # (HTTP status, reason) of a refusal the application asked for.
    refusal: tuple[int, str] | None = None

    def onMessageFrameBegin(self, length: int) -> None:
        super().onMessageFrameBegin(length)
        total = self.message_data_total_length
        if not self.failedByMe and total > MAX_WEBSOCKET_INCOMING_MESSAGE_BYTES:
            # Counted from the frame headers, before any of this frame's payload is kept.
            self.wasMaxMessagePayloadSizeExceeded = True
            self._max_message_size_exceeded(
                total,
                MAX_WEBSOCKET_INCOMING_MESSAGE_BYTES,
                f"incoming message of {total} bytes over {MAX_WEBSOCKET_INCOMING_MESSAGE_BYTES}",
            )

    def _connectionMade(self) -> None:
        super()._connectionMade()
        self.send_queue = SendQueue()

    def onOpen(self) -> None:
        super().onOpen()
        # What the opening handshake read and wrote (kept by autobahn "for the testsuite") is
        # not read again: about 1 KiB a socket.
        for name in HANDSHAKE_LEFTOVERS:
            setattr(self, name, None)
        created: Any = getattr(self, "application_deferred", None)
        if created is not None and created.called:  # the application exists: nothing waits on it
            self.application_deferred = None

    def dataReceived(self, data: bytes) -> None:
        if self.muted or not self.read_on_arrival(data):
            super().dataReceived(data)

    def deliver_text(self, text: str) -> None:
        # daphne's onMessage, for a frame already decoded (the muted check is dataReceived's).
        self.last_ping = time.time()
        self.application_queue.put_nowait({"type": "websocket.receive", "text": text})

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        if isBinary or self.muted or not self.answered_at_transport(payload):
            super().onMessage(payload, isBinary)

    def check_timeouts(self) -> None:
        socket = self.pings_answered_for
        if socket is not None and socket.state is self.open_state:
            # The heartbeat pings this socket when it is quiet and closes it when it is silent
            # (4408, sooner than daphne's ping timeout): daphne's pings would only double it.
            self.last_ping = time.time()
        super().check_timeouts()

    def onPing(self, payload: bytes) -> None:
        if self.state != self.STATE_OPEN:
            return
        backlog = transport_backlog_bytes(self.transport)
        if backlog <= settings.RIPPLE_MAX_OUTBOUND_BYTES:
            self.unanswered_pings = 0
            self.sendPong(payload)
            return
        self.unanswered_pings += 1
        if self.unanswered_pings < UNANSWERED_PINGS_BEFORE_CLOSE:
            return
        log_event("ping_flood", client=_peer(self.transport), buffered=backlog)
        self.sendClose(code=CLOSE_TOO_SLOW)
        self.factory.reactor.callLater(ABORT_GRACE_S, self.dropConnection, abort=True)

    def serverSend(self, content: str | bytes, binary: bool = False) -> None:
        """Send one message; the common case framed here and written at once (``write_now``)."""
        frame, payload_length = framed(content, binary)
        if (
            self.state != self.STATE_OPEN
            or self._perMessageCompress is not None
            or self.send_queue
            or self.autoFragmentSize
            or 0 < self.maxMessagePayloadSize < payload_length
            or self.logFrames
            or self.logOctets
            or self.trackedTimings
        ):
            super().serverSend(content, binary)  # autobahn's path: it raises or handles these
            return
        write_now(self.transport, frame)

    def handle_reply(self, message: dict[str, Any]) -> None:
        if message.get("type") == "websocket.close" and self.state == self.STATE_CONNECTING:
            reason = message.get("reason")
            status = message.get("status")
            self.serverReject(
                reason=reason if isinstance(reason, str) and REFUSAL_REASON.fullmatch(reason) else "refused",
                status=status if status in REFUSAL_STATUSES else 403,
            )
            return
        super().handle_reply(message)

    def serverReject(self, reason: str = "refused", status: int = 403) -> None:
        """Refuse the handshake with ``status``, naming ``reason`` (daphne's says only 403)."""
        if not hasattr(self, "handshake_deferred"):
            return  # already answered (the application and the connect timeout both refused)
        self.refusal = (status, reason)
        self.handshake_deferred.errback(ConnectionDeny(code=status, reason=reason))
        del self.handshake_deferred
        self.server.protocol_disconnected(self)
        self.server.log_action(
            "websocket",
            "rejected",
            {
                "path": self.request.path,
                "client": "%s:%s" % tuple(self.client_addr) if self.client_addr else None,  # noqa: UP031  daphne's format
            },
        )

    def sendHttpErrorResponse(self, code: int, reason: str, responseHeaders: Any = None) -> None:
        if self.refusal is None or self.refusal[0] != code:
            super().sendHttpErrorResponse(code, reason, responseHeaders)
            return
        status, why = self.refusal
        body = f"{status} {HTTPStatus(status).phrase}: {why}\n".encode()
        head = [
            f"HTTP/1.1 {status} {HTTPStatus(status).phrase}",
            "Content-Type: text/plain; charset=utf-8",
            f"Content-Length: {len(body)}",
            f"X-Ripple-Refusal: {why}",
            "Connection: close",
        ]
        if self.factory.server:
            head.append(f"Server: {self.factory.server}")
        self.sendData(("\r\n".join(head) + "\r\n\r\n").encode("ascii") + body)


class GuardedWebSocketFactory(WebSocketFactory):
    """daphne's WebSocket factory, building guarded protocols that share its options.

    autobahn copies the factory's 29 options onto every connection (an instance dict of ~110
    entries per socket). Here they live once, as class attributes of a protocol class of this
    factory's own, remade whenever an option is set (daphne sets its own after building the
    factory); a connection only keeps what it changes.
    """

    protocol = GuardedWebSocketProtocol

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # daphne does not pass this one; autobahn reads it from the factory per connection.
        self.setProtocolOptions(closeHandshakeTimeout=CLOSE_HANDSHAKE_TIMEOUT_S)

    def setProtocolOptions(self, **options: Any) -> None:
        super().setProtocolOptions(**options)
        shared = {
            name: staticmethod(value) if callable(value) else value
            for name in GuardedWebSocketProtocol.CONFIG_ATTRS
            for value in [getattr(self, name)]
        }
        shared["lone_limit"] = lone_limit(self.maxFramePayloadSize, self.maxMessagePayloadSize)
        protocol: type[GuardedWebSocketProtocol] = type(
            GuardedWebSocketProtocol.__name__, (GuardedWebSocketProtocol,), shared
        )
        self.protocol = protocol


def lone_limit(max_frame: int, max_message: int) -> int:
    """The largest frame taken at the transport (``read_on_arrival``): autobahn's limits (0:
    none) and the incoming one applied in ``onMessageFrameBegin``, whichever is smallest."""
    return min(
        LONE_FRAME_MAX_BYTES,
        MAX_WEBSOCKET_INCOMING_MESSAGE_BYTES,
        max_frame or LONE_FRAME_MAX_BYTES,
        max_message or LONE_FRAME_MAX_BYTES,
    )


def pformat_when_debugging(value: Any, *args: Any, **kwargs: Any) -> str:
    """autobahn's ``pformat``, run only when autobahn's debug lines are logged.

    autobahn pretty-prints its options for a debug line at every connection, whether or not
    the line is logged: about a sixth of a millisecond of a connect.
    """
    if txaio.get_global_log_level() in ("debug", "trace"):  # type: ignore[attr-defined]
        return pprint.pformat(value, *args, **kwargs)
    return "(not formatted: debug logging is off)"


def when_debugging(highlight: Callable[..., str]) -> Callable[..., str]:
    """autobahn's ``highlight`` (``hltype``, ``hlval``), run only when its debug lines are logged.

    autobahn styles values for its debug lines as it reads every frame, whether or not the
    lines are logged: about a sixth of the time an idle socket's ping takes at the transport.
    """

    def highlighted(*args: Any, **kwargs: Any) -> str:
        if txaio.get_global_log_level() in ("debug", "trace"):  # type: ignore[attr-defined]
            return highlight(*args, **kwargs)
        return ""

    return highlighted


def read_without_log_context(add_reader: Callable[[Any, Any], None]) -> Callable[[Any, Any], None]:
    """The asyncio reactor's ``addReader``, calling a TCP connection's reads without a log context.

    Twisted's asyncio reactor wraps every read in ``callWithLogger``, which copies a context dict
    so that legacy ``twisted.python.log`` lines during the read name the connection: about a
    seventh of what an idle socket's ping costs here, for lines daphne does not write. The
    reactor's own ``_readOrWrite`` still catches and logs an exception and drops the connection.
    """

    def addReader(reactor: Any, reader: Any) -> None:
        add_reader(reactor, reader)
        fd = reactor._readers.get(reader)
        if fd is not None and type(reader) is tcp.Server:  # asyncio replaces the fd's callback
            reactor._asyncioEventloop.add_reader(fd, reactor._readOrWrite, reader, True)

    addReader.__wrapped__ = add_reader  # type: ignore[attr-defined]
    return addReader


def install() -> None:
    """Make daphne's command line build ``GuardedServer`` and its ``run()`` the guarded factories."""
    if not hasattr(AsyncioSelectorReactor.addReader, "__wrapped__"):
        AsyncioSelectorReactor.addReader = read_without_log_context(AsyncioSelectorReactor.addReader)  # type: ignore[method-assign]
    autobahn_protocol.pformat = pformat_when_debugging  # type: ignore[assignment]
    # Both modules import the highlighters by name: the Twisted one styles three values for a
    # debug line on every read (about a tenth of an idle socket's ping).
    for module in (autobahn_protocol, autobahn_twisted):
        if hasattr(module.hltype, "__wrapped__"):  # once, however often install() is called
            continue
        for name in ("hltype", "hlval"):
            highlight = getattr(module, name)
            patched = when_debugging(highlight)
            patched.__wrapped__ = highlight  # type: ignore[attr-defined]
            setattr(module, name, patched)
    daphne.cli.CommandLineInterface.server_class = GuardedServer  # type: ignore[misc]
    daphne.server.HTTPFactory = GuardedHTTPFactory  # type: ignore[misc]
    daphne.server.WebSocketFactory = GuardedWebSocketFactory  # type: ignore[misc]
