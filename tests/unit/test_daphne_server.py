"""daphne's server as Ripple runs it (chat/daphne_server.py): applications are reaped when they
end or their connection does, and the timeout walk leaves out the heartbeat's sockets."""

import asyncio

import pytest

import chat.daphne_server as daphne_server
from chat.daphne_pings import PingAnswering
from chat.daphne_server import FULL_TIMEOUT_WALK_S, GuardedServer


class Reactor:
    """Records what the server schedules instead of running it."""

    def __init__(self) -> None:
        self.calls: list[tuple[float, object]] = []

    def callLater(self, delay: float, call: object) -> None:
        self.calls.append((delay, call))


class Conn:
    """A connection as the server sees it: its timeouts checked, its exception handled."""

    def __init__(self) -> None:
        self.checked = 0
        self.errors: list[BaseException] = []

    def check_timeouts(self) -> None:
        self.checked += 1

    def handle_exception(self, error: BaseException) -> None:
        self.errors.append(error)

    def __hash__(self) -> int:
        return id(self)


@pytest.fixture
def server(monkeypatch):
    reactor = Reactor()
    monkeypatch.setattr(daphne_server, "reactor", reactor)
    server = GuardedServer.__new__(GuardedServer)  # what run() sets, without listening
    server.connections = {}
    server.ended = set()
    server.watched = set()
    server._next_full_walk = 0.0
    server.application_close_timeout = 10
    return server


async def test_an_application_is_reaped_when_it_ends_and_its_connection_when_it_is_lost(server):
    conn, other = Conn(), Conn()
    for c in (conn, other):
        server.protocol_connected(c)

    async def app(scope, receive, send):
        assert (await receive())["type"] == "websocket.connect"

    async def waits(scope, receive, send):
        await receive()
        await asyncio.Event().wait()

    server.application = app
    queue = server.create_application(conn, {"type": "websocket"})
    server.application = waits
    server.create_application(other, {"type": "websocket"})
    queue.put_nowait({"type": "websocket.connect"})
    await asyncio.sleep(0.01)
    assert server.ended == {conn}  # only the one that ended is looked at
    server.application_checker()
    assert "application_instance" not in server.connections[conn] and server.ended == set()
    server.protocol_disconnected(conn)
    server.application_checker()
    assert conn not in server.connections and other in server.connections
    other_instance = server.connections[other]["application_instance"]
    other_instance.cancel()
    await asyncio.sleep(0)
    server.protocol_disconnected(other)
    server.application_checker()
    assert server.connections == {} and server.ended == set()


async def test_an_application_that_failed_has_its_connection_told(server):
    conn = Conn()
    server.protocol_connected(conn)
    error = RuntimeError("boom")

    async def fails(scope, receive, send):
        raise error

    server.application = fails
    server.create_application(conn, {"type": "websocket"})
    await asyncio.sleep(0.01)
    server.application_checker()
    assert conn.errors == [error]


async def test_an_application_that_outlives_its_connection_is_cancelled_after_the_close_timeout(server):
    conn = Conn()
    server.protocol_connected(conn)

    async def hangs(scope, receive, send):
        await asyncio.Event().wait()

    server.application = hangs
    server.create_application(conn, {"type": "websocket"})
    server.protocol_disconnected(conn)
    instance = server.connections[conn]["application_instance"]
    server.application_checker()
    assert not instance.done()
    server.connections[conn]["disconnected"] -= 11
    server.application_checker()
    await asyncio.sleep(0)
    assert instance.cancelled()
    server.application_checker()
    assert server.connections == {}


class PingedConn(Conn, PingAnswering):
    """A connection whose pings the transport answers once its consumer hands it over."""

    def __init__(self, server: GuardedServer) -> None:
        super().__init__()
        self.server = server


def test_the_timeout_walk_skips_watched_sockets_but_once_a_minute(server, monkeypatch):
    watched, plain = PingedConn(server), Conn()
    server.connections = {watched: {}, plain: {}}
    # The consumer hands its socket over: the server hears that the heartbeat watches it.
    watched.answer_pings_for(object(), "open")
    assert server.watched == {watched}
    now = [1000.0]
    monkeypatch.setattr(daphne_server.time, "monotonic", lambda: now[0])
    server.timeout_checker()  # the first walk is a full one
    now[0] += 2
    server.timeout_checker()
    assert (watched.checked, plain.checked) == (1, 2)
    now[0] += FULL_TIMEOUT_WALK_S
    server.timeout_checker()
    assert (watched.checked, plain.checked) == (2, 3)
    # Lost: no longer the heartbeat's, so daphne's walk sees it until it is reaped.
    server.protocol_disconnected(watched)
    assert server.watched == set()
    now[0] += 2
    server.timeout_checker()
    assert (watched.checked, plain.checked) == (3, 4)
