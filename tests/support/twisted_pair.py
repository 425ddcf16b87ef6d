"""A real Twisted TCP server transport on one end of a socket pair, a plain socket on the other.

tcp.Server is what daphne's sockets are; a UNIX pair behaves the same for ``send()``. Both
buffers are small (4 KiB), so a backlog builds in the transport after a few writes.
"""

import asyncio
import contextlib
import socket
from collections.abc import Iterator

from twisted.internet import tcp
from twisted.internet.asyncioreactor import AsyncioSelectorReactor
from twisted.internet.protocol import Protocol


@contextlib.contextmanager
def twisted_pair() -> Iterator[tuple[tcp.Server, socket.socket]]:
    """(the server transport, the far end), all closed afterwards."""
    loop = asyncio.new_event_loop()
    reactor = AsyncioSelectorReactor(loop)
    near, far = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    near.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    far.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    near.setblocking(False)
    far.settimeout(5)
    transport = tcp.Server(near, Protocol(), ("127.0.0.1", 1), None, 1, reactor)
    try:
        yield transport, far
    finally:
        transport.stopWriting()
        near.close()
        far.close()
        loop.close()
