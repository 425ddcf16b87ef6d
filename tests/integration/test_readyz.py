"""/readyz against a real daphne and a Redis that goes away and comes back; the dashboard store
in Redis, and one dashboard showing two processes."""

import asyncio
import json
import time
import urllib.error
import urllib.request

import pytest
import websockets
from channels.db import database_sync_to_async

from chat import dashboard
from tests.support.origins import same_origin
from tests.support.processes import RedisServer, wait_until
from tests.support.sessions import logged_in_session

pytestmark = pytest.mark.django_db(transaction=True)


class RedisOnPort(RedisServer):
    """A redis-server on a given port: the same address as one stopped before it."""

    def __init__(self, port: int) -> None:
        super().__init__()
        self.port = port
        self.argv[self.argv.index("--port") + 1] = str(port)


@pytest.fixture
def redis_servers():
    """Redis servers this test starts; each is stopped (by its PID) when the test ends."""
    started: list[RedisServer] = []

    def start(port: int | None = None) -> RedisServer:
        server = RedisServer() if port is None else RedisOnPort(port)
        started.append(server)
        server.start()
        return server

    yield start
    for server in started:
        server.cleanup()


def readyz(server) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(f"{server.http_url}/readyz", timeout=5) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def test_readyz_follows_redis_going_away_and_coming_back_on_the_same_port(daphne, redis_servers):
    redis = redis_servers()
    server = daphne(REDIS_URL=redis.url)
    assert readyz(server) == (200, {"status": "ready", "database": "ok", "channel_layer": "ok"})

    redis.stop()
    assert not redis.alive()
    started = time.monotonic()
    _, body = wait_until(
        lambda: (answer := readyz(server))[0] == 503 and answer,
        timeout_s=10,
        what="/readyz to report the channel layer down",
    )
    assert time.monotonic() - started < 10
    assert body["status"] == "not ready"
    assert body["database"] == "ok"
    assert body["channel_layer"].startswith("error: ")

    redis_servers(port=redis.port)
    _, body = wait_until(
        lambda: (answer := readyz(server))[0] == 200 and answer,
        timeout_s=15,
        what="/readyz to recover with Redis back on the same port",
    )
    assert body == {"status": "ready", "database": "ok", "channel_layer": "ok"}
    assert server.alive()


@pytest.fixture
async def redis_dashboard(settings, redis_url):
    settings.REDIS_URL = redis_url
    settings.RIPPLE_DASHBOARD_EXPIRY_S = 0.5
    yield dashboard.redis_client()
    await dashboard.close_redis_client()


async def test_redis_store_keeps_snapshots_until_they_expire_and_prunes_its_index(redis_dashboard):
    ids = [f"test-{time.time_ns()}-{n}" for n in range(2)]
    for n, process_id in enumerate(ids):
        await dashboard.report({"process_id": process_id, "started_at": float(n), "open_sockets": n})
    found = [p for p in await dashboard.processes() if p["process_id"] in ids]
    assert [(p["process_id"], p["open_sockets"]) for p in found] == [(ids[0], 0), (ids[1], 1)]
    assert 0 < await redis_dashboard.pttl(dashboard.KEY_PREFIX + ids[0]) <= 500
    async with asyncio.timeout(5):
        while any(p["process_id"] in ids for p in await dashboard.processes()):
            await asyncio.sleep(0.05)
    members = await redis_dashboard.smembers(dashboard.INDEX_KEY)
    assert not set(ids) & members


def staff_session() -> str:
    return logged_in_session("operator", is_staff=True)[1]


async def test_one_dashboard_shows_the_sockets_of_two_processes(daphne, redis_servers):
    redis = redis_servers()
    first, second = daphne(REDIS_URL=redis.url), daphne(REDIS_URL=redis.url)
    key = await database_sync_to_async(staff_session)()
    pids = {first.pid, second.pid}
    async with (
        websockets.connect(f"{first.ws_url}/ws/chat/", origin=same_origin(f"{first.ws_url}/ws/chat/")),
        websockets.connect(f"{second.ws_url}/ws/chat/", origin=same_origin(f"{second.ws_url}/ws/chat/")),
        websockets.connect(f"{second.ws_url}/ws/chat/", origin=same_origin(f"{second.ws_url}/ws/chat/")),
        websockets.connect(
            f"{first.ws_url}/ws/admin/dashboard/",
            origin=same_origin(f"{first.ws_url}/ws/admin/dashboard/"),
            additional_headers={"Cookie": f"sessionid={key}"},
        ) as board,
    ):
        async with asyncio.timeout(10):
            while True:
                frame = json.loads(await board.recv())
                sockets = {p["pid"]: p["open_sockets"] for p in frame["processes"] if p["pid"] in pids}
                if sockets == {first.pid: 1, second.pid: 2}:
                    break
    assert frame["totals"]["open_sockets"] == 3
    assert frame["totals"]["processes"] == 2
    assert len([e for e in frame["recent"] if e["event"] == "connect"]) >= 3
