"""A lean WebSocket client for the load generator: websockets' sans-I/O protocol on an asyncio transport.

One process has to read every delivery to hundreds of sockets, so each socket is an
``asyncio.Protocol`` that feeds bytes to ``websockets.client.ClientProtocol`` and hands every
complete text message to ``on_text`` with one receive timestamp per read, without a task or a
queue per socket. Protocol pings are answered by ``ClientProtocol`` itself.
"""

from __future__ import annotations

import asyncio
import time

from websockets.client import ClientProtocol
from websockets.frames import Frame, Opcode
from websockets.http11 import Response
from websockets.typing import Origin
from websockets.uri import parse_uri

# Frames larger than this are a bug in the benchmark, not something to measure.
MAX_MESSAGE_BYTES = 2**20


class HandshakeError(Exception):
    """The server refused the WebSocket handshake or closed the connection during it."""


class WsClient(asyncio.Protocol):
    """One client socket; subclasses override ``on_text``."""

    def __init__(self, url: str, *, origin: str | None = None) -> None:
        self.url = url
        uri = parse_uri(url)
        # The server's own origin by default, as a page it served would send (Ripple admits
        # only that unless RIPPLE_ALLOWED_ORIGINS says otherwise).
        origin = origin or f"{'https' if uri.secure else 'http'}://{uri.host}:{uri.port}"
        self.ws = ClientProtocol(uri, origin=Origin(origin), max_size=MAX_MESSAGE_BYTES)
        loop = asyncio.get_running_loop()
        self.opened: asyncio.Future[None] = loop.create_future()
        self.closed: asyncio.Future[None] = loop.create_future()
        self.transport: asyncio.Transport | None = None
        # Pieces of a fragmented text message (daphne does not fragment, but the protocol may).
        self._fragments: list[bytes] = []

    # Callbacks for subclasses.

    def on_text(self, data: bytes, now_ns: int) -> None:
        """One complete text message; ``now_ns`` is ``perf_counter_ns()`` when its bytes were read."""

    # Sending.

    def send_text(self, text: str) -> None:
        if self.transport is None or self.transport.is_closing():
            raise ConnectionError("the socket is closed")
        self.ws.send_text(text.encode())
        self._flush()

    def close(self) -> None:
        """Start the closing handshake (or drop the TCP connection if it never opened)."""
        if self.transport is None or self.transport.is_closing():
            return
        opened = self.opened.done() and not self.opened.cancelled() and self.opened.exception() is None
        if opened and not self.ws.close_sent:
            self.ws.send_close()
            self._flush()
        else:
            self.transport.abort()

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()

    # asyncio.Protocol.

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports quack like asyncio.Transport without subclassing it.
        self.transport = transport  # type: ignore[assignment]
        request = self.ws.connect()
        self.ws.send_request(request)
        self._flush()

    def data_received(self, data: bytes) -> None:
        now_ns = time.perf_counter_ns()
        self.ws.receive_data(data)
        for event in self.ws.events_received():
            if isinstance(event, Frame):
                opcode = event.opcode
                if opcode is Opcode.TEXT:
                    if event.fin:
                        self.on_text(bytes(event.data), now_ns)
                    else:
                        self._fragments = [bytes(event.data)]
                elif opcode is Opcode.CONT and self._fragments:
                    self._fragments.append(bytes(event.data))
                    if event.fin:
                        text, self._fragments = b"".join(self._fragments), []
                        self.on_text(text, now_ns)
            elif isinstance(event, Response):
                self._handshake_done(event)
        self._flush()

    def eof_received(self) -> bool | None:
        self.ws.receive_eof()
        self._flush()
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.opened.done():
            self.opened.set_exception(HandshakeError(f"connection closed during the handshake: {exc}"))
            self.opened.exception()  # retrieved here, so an unawaited failure logs nothing
        if not self.closed.done():
            self.closed.set_result(None)

    # Internals.

    def _handshake_done(self, response: Response) -> None:
        if self.opened.done():
            return
        if self.ws.handshake_exc is None:
            self.opened.set_result(None)
        else:
            self.opened.set_exception(HandshakeError(f"HTTP {response.status_code} from {self.url}"))
            self.opened.exception()

    def _flush(self) -> None:
        transport = self.transport
        if transport is None:
            return
        for data in self.ws.data_to_send():
            if data:
                transport.write(data)
            elif transport.can_write_eof():
                transport.write_eof()
        if self.ws.close_expected():
            # The server closes TCP after the closing handshake; do it here if it does not.
            asyncio.get_running_loop().call_later(5.0, transport.abort)


async def open_socket(client: WsClient, *, host: str, port: int, timeout_s: float) -> None:
    """Connect ``client`` and wait for the handshake to finish; raises on failure or timeout."""
    loop = asyncio.get_running_loop()
    try:
        async with asyncio.timeout(timeout_s):
            await loop.create_connection(lambda: client, host, port)
            await client.opened
    except BaseException:
        client.abort()
        raise
