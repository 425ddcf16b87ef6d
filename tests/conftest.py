import asyncio
import json
import os
from contextlib import asynccontextmanager

import pytest
from channels.layers import channel_layers
from channels.testing import WebsocketCommunicator
from django.db import connection

from project.asgi import application
from tests.support.processes import DaphneServer, RedisServer, worker_env

ORIGIN_HEADERS = [(b"origin", b"http://localhost"), (b"host", b"localhost")]


@pytest.fixture(autouse=True)
def fresh_channel_layer():
    """Each test gets its own in-memory layer: no group members left over from another loop."""
    channel_layers.backends.clear()
    yield
    channel_layers.backends.clear()


@pytest.fixture
def fast_heartbeat(settings):
    settings.RIPPLE_HEARTBEAT_INTERVAL_S = 0.2
    settings.RIPPLE_HEARTBEAT_TIMEOUT_S = 0.2
    return settings


class Client:
    """A WebsocketCommunicator speaking JSON frames, with the welcome already read."""

    def __init__(self, communicator: WebsocketCommunicator) -> None:
        self.communicator = communicator
        self.welcome: dict = {}
        # Frames read past by recv_type, handed out first by recv.
        self.backlog: list[dict] = []
        # Presence frames, in arrival order, for recv_presence.
        self.presence: list[dict] = []

    async def send(self, frame) -> None:
        await self.communicator.send_to(text_data=frame if isinstance(frame, str) else json.dumps(frame))

    async def _read(self, timeout: float) -> dict:
        """The next frame off the socket; presence frames are set aside for recv_presence."""
        while True:
            frame = json.loads(await self.communicator.receive_from(timeout=timeout))
            if frame["type"] != "presence":
                return frame
            self.presence.append(frame)

    async def recv(self, timeout: float = 2) -> dict:
        if self.backlog:
            return self.backlog.pop(0)
        return await self._read(timeout)

    async def recv_type(self, frame_type: str, timeout: float = 2) -> dict:
        """The next frame of ``frame_type``; server pings are dropped, other frames kept for recv."""
        for index, frame in enumerate(self.backlog):
            if frame["type"] == frame_type:
                return self.backlog.pop(index)
        while True:
            frame = await self._read(timeout)
            if frame["type"] == frame_type:
                return frame
            if frame["type"] != "ping":
                self.backlog.append(frame)

    async def recv_presence(self, timeout: float = 2) -> dict:
        """The next ``presence`` frame (other frames are kept for recv)."""
        async with asyncio.timeout(timeout):
            while not self.presence:
                frame = json.loads(await self.communicator.receive_from(timeout=timeout))
                if frame["type"] == "presence":
                    self.presence.append(frame)
                elif frame["type"] != "ping":
                    self.backlog.append(frame)
        return self.presence.pop(0)

    async def subscribe(self, room: str, since: int | None = None) -> dict:
        frame = {"type": "subscribe", "room": room}
        if since is not None:
            frame["since"] = since
        await self.send(frame)
        return await self.recv_type("subscribed")

    async def post(self, room: str, body: str, client_id: str) -> dict:
        await self.send({"type": "message", "room": room, "body": body, "client_id": client_id})
        return await self.recv_type("ack")

    async def nothing_more(self, timeout: float = 0.1) -> bool:
        """True when no frame but presence arrives within ``timeout``."""
        while not self.backlog:
            if await self.communicator.receive_nothing(timeout=timeout):
                return True
            frame = json.loads(await self.communicator.receive_from())
            if frame["type"] == "presence":
                self.presence.append(frame)
            else:
                self.backlog.append(frame)
        return False


@pytest.fixture
def ws_client():
    """Open chat sockets in-process; every one is closed when the test ends."""
    opened: list[WebsocketCommunicator] = []

    @asynccontextmanager
    async def open_client(path: str = "/ws/chat/", headers=None, session_cookie: str | None = None):
        all_headers = list(headers if headers is not None else ORIGIN_HEADERS)
        if session_cookie:
            all_headers.append((b"cookie", f"sessionid={session_cookie}".encode()))
        communicator = WebsocketCommunicator(application, path, headers=all_headers)
        opened.append(communicator)
        connected, _ = await communicator.connect()
        assert connected, "the handshake was refused"
        client = Client(communicator)
        client.welcome = await client.recv()
        assert client.welcome["type"] == "welcome"
        try:
            yield client
        finally:
            await communicator.disconnect()

    return open_client


def no_tasks_but_current() -> list[asyncio.Task]:
    current = asyncio.current_task()
    return [task for task in asyncio.all_tasks() if task is not current and not task.done()]


# Real processes.


@pytest.fixture(scope="session")
def redis_url():
    """REDIS_URL when set; otherwise a redis-server of the suite's own on a free port."""
    if os.environ.get("REDIS_URL"):
        yield os.environ["REDIS_URL"]
        return
    server = RedisServer()
    try:
        server.start()
        yield server.url
    finally:
        server.cleanup()


@pytest.fixture
def live_database_url(transactional_db):
    """A DATABASE_URL for child processes: the test database this run created."""
    db = connection.settings_dict
    if db["ENGINE"].endswith("sqlite3"):
        return f"sqlite:///{db['NAME']}"
    user = db.get("USER") or ""
    password = f":{db['PASSWORD']}" if db.get("PASSWORD") else ""
    auth = f"{user}{password}@" if user else ""
    return f"postgres://{auth}{db.get('HOST') or '127.0.0.1'}:{db.get('PORT') or 5432}/{db['NAME']}"


@pytest.fixture
def daphne(live_database_url):
    """Start daphne processes: ``daphne(port=None, **env)``; all are stopped when the test ends."""
    servers: list[DaphneServer] = []

    def start(port: int | None = None, **env: str) -> DaphneServer:
        server = DaphneServer(worker_env(live_database_url, **env), port=port)
        servers.append(server)
        server.start()
        return server

    yield start
    for server in servers:
        server.cleanup()
