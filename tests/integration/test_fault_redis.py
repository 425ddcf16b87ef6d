"""Redis stops in the middle of a conversation and comes back: a clean "try again later", and
nothing lost or twice once it is back, without restarting any worker.

Two daphne workers share a Redis this test owns (so it can stop it and start it again on the
same port) and the test database. When Redis stops, every socket on both workers is closed
with 4503 (not 1011), handshakes are accepted and closed with 4503 (not an HTTP 500), and
/readyz says which part is missing. The clients keep what they type in their outbox, retry
with backoff, and once Redis answers again they reconnect, re-send and resume.
"""

import asyncio
import json
import urllib.error
import urllib.request

import pytest
import websockets
from channels.db import database_sync_to_async

from tests.support.chat_client import ChatClient
from tests.support.guests import guest_session
from tests.support.origins import same_origin
from tests.support.processes import RedisServer
from tests.support.stored import room_messages

pytestmark = pytest.mark.django_db(transaction=True)

ROOM = "fault-kill"
MESSAGES_PER_CLIENT = 20
SEND_INTERVAL_S = 0.15
SERVER_ENV = {"RIPPLE_HEARTBEAT_INTERVAL_S": "2", "RIPPLE_HEARTBEAT_TIMEOUT_S": "2"}


@pytest.fixture
def own_redis():
    server = RedisServer()
    server.start()
    try:
        yield server
    finally:
        server.cleanup()


def readyz(base_url: str) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(f"{base_url}/readyz", timeout=5) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


async def handshake_outcome(ws_url: str) -> int | str:
    """Open a socket: the close code it gets before any frame, or the first frame's type."""
    try:
        async with websockets.connect(
            f"{ws_url}/ws/chat/", origin=same_origin(f"{ws_url}/ws/chat/"), open_timeout=10
        ) as ws:
            async with asyncio.timeout(10):
                try:
                    return json.loads(await ws.recv())["type"]
                except websockets.ConnectionClosed:
                    return ws.close_code
    except websockets.InvalidStatus as error:
        return f"HTTP {error.response.status_code}"


@pytest.mark.parametrize("layer", ["pubsub", "core"])
async def test_redis_outage_closes_cleanly_and_recovers_with_nothing_lost(daphne, own_redis, layer):
    env = {"REDIS_URL": own_redis.url, "RIPPLE_CHANNEL_LAYER": layer, **SERVER_ENV}
    workers = [daphne(**env), daphne(**env)]
    pids = [w.pid for w in workers]
    clients = []
    for i in range(4):
        session = await database_sync_to_async(guest_session)(f"guest-{i}")
        urls = [workers[i % 2].ws_url, workers[(i + 1) % 2].ws_url]
        clients.append(ChatClient(urls, room=ROOM, name=f"guest-{i}", session_cookie=session))

    async def chat(client: ChatClient) -> None:
        for n in range(MESSAGES_PER_CLIENT):
            await client.send(f"{client.name} says {n}")
            await asyncio.sleep(SEND_INTERVAL_S)

    senders: list[asyncio.Task] = []
    try:
        await asyncio.gather(*(c.start(timeout=10) for c in clients))
        senders = [asyncio.create_task(chat(c)) for c in clients]
        await asyncio.gather(*(c.wait_for(lambda c=c: len(c.acked) >= 5, 15, "5 acks") for c in clients))

        own_redis.stop()
        # Every socket on both workers: closed with 4503, within the health check's second or two.
        await asyncio.gather(*(c.wait_for(lambda c=c: 4503 in c.closes, 10, "a 4503 close") for c in clients))
        # Handshakes while Redis is away: accepted and closed with 4503, never a 500.
        for worker in workers:
            assert await handshake_outcome(worker.ws_url) == 4503
            status, body = await asyncio.to_thread(readyz, worker.http_url)
            assert status == 503 and body["database"] == "ok" and body["channel_layer"].startswith("error")

        own_redis.start()  # the same port: the workers' settings are unchanged
        await asyncio.wait_for(asyncio.gather(*senders), timeout=30)
        await asyncio.gather(*(c.wait_acked(30) for c in clients))
        total = len(clients) * MESSAGES_PER_CLIENT
        await asyncio.gather(*(c.wait_seen(total, 30) for c in clients))
    finally:
        for task in senders:
            task.cancel()
        await asyncio.gather(*senders, return_exceptions=True)
        await asyncio.gather(*(c.stop() for c in clients))

    # No worker was restarted, and none of them failed a socket or a request with an error.
    assert [w.pid for w in workers] == pids and all(w.alive() for w in workers)
    for worker in workers:
        log = worker.output()
        assert "Exception inside application" not in log, log[-3000:]
        assert '" 500 ' not in log, log[-3000:]
    for c in clients:
        assert 1011 not in c.closes and 1006 not in c.closes, c.describe()

    stored = await database_sync_to_async(room_messages)(ROOM)
    assert [row[0] for row in stored] == list(range(1, total + 1))
    expected = {seq: (author, body, client_id) for seq, author, body, client_id in stored}
    sent = {client_id: (c.name, body) for c in clients for client_id, body in c.sent.items()}
    assert {row[3]: (row[1], row[2]) for row in stored} == sent  # each sent message stored once
    for c in clients:
        assert c.seen == expected, c.describe()
        assert c.redelivered == [] and c.gaps == [] and c.holes == [], c.describe()
