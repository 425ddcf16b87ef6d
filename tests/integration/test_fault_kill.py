"""A worker killed with -9 in the middle of a conversation: nothing lost, nothing twice.

Two daphne workers share one Redis and the test database. Three clients on each chat in one
room; one worker is killed while they do. Its clients reconnect to the other worker, re-send
what was not acknowledged and resume from the last seq they saw. In the end the database holds
every message exactly once, numbered 1..N, and every client has seen exactly that list.
"""

import asyncio
import contextlib
import signal

import pytest
from channels.db import database_sync_to_async

from tests.support.chat_client import ChatClient
from tests.support.guests import guest_session
from tests.support.stored import room_messages

pytestmark = pytest.mark.django_db(transaction=True)

ROOM = "fault-kill"
CLIENTS_PER_WORKER = 3
MESSAGES_PER_CLIENT = 30
# About 6.7 messages/s per client for 4.5 s: within the default per-socket limit (5/s after a
# burst of 20), which the client also paces itself by (welcome.limits).
SEND_INTERVAL_S = 0.15
# A short heartbeat, so that pings and pongs flow during the test.
SERVER_ENV = {"RIPPLE_HEARTBEAT_INTERVAL_S": "2", "RIPPLE_HEARTBEAT_TIMEOUT_S": "2"}
# Acks each client on the doomed worker has before the kill: it dies mid-conversation.
ACKED_BEFORE_KILL = 10


@pytest.fixture(params=["pubsub", "core"])
def layer(request):
    """Both channels-redis layers: with the core one, the dead worker stays in the room's group."""
    return {"RIPPLE_CHANNEL_LAYER": request.param}


async def chat(client: ChatClient) -> None:
    for i in range(MESSAGES_PER_CLIENT):
        await client.send(f"{client.name} says {i}")
        await asyncio.sleep(SEND_INTERVAL_S)


def in_flight(client: ChatClient) -> bool:
    """A message of this client is on the wire: sent on the current socket, not acked yet."""
    return any(entry.sent_on is not None for entry in client.outbox.values())


async def test_a_worker_killed_mid_chat_loses_nothing_and_duplicates_nothing(daphne, redis_url, layer):
    survivor = daphne(REDIS_URL=redis_url, **SERVER_ENV, **layer)
    doomed = daphne(REDIS_URL=redis_url, **SERVER_ENV, **layer)
    loop = asyncio.get_running_loop()

    async def client(name: str, urls: list[str]) -> ChatClient:
        session = await database_sync_to_async(guest_session)(name)
        return ChatClient(urls, room=ROOM, name=name, session_cookie=session)

    doomed_clients = [
        await client(f"doomed-{i}", [doomed.ws_url, survivor.ws_url]) for i in range(CLIENTS_PER_WORKER)
    ]
    survivor_clients = [
        await client(f"survivor-{i}", [survivor.ws_url, doomed.ws_url]) for i in range(CLIENTS_PER_WORKER)
    ]
    clients = doomed_clients + survivor_clients
    senders: list[asyncio.Task] = []
    try:
        await asyncio.gather(*(c.start(timeout=10) for c in clients))
        for c in clients:
            assert c.welcomes[0]["user"]["name"] == c.name
        senders = [asyncio.create_task(chat(c), name=f"chat-{c.name}") for c in clients]

        # Kill when every doomed client is well into its conversation, preferably at a moment
        # when one of them has a message on the wire.
        await asyncio.gather(
            *(
                c.wait_for(lambda c=c: len(c.acked) >= ACKED_BEFORE_KILL, 15, f"{ACKED_BEFORE_KILL} acks")
                for c in doomed_clients
            )
        )
        with contextlib.suppress(TimeoutError):  # then the kill lands between two messages
            await doomed_clients[0].wait_for(
                lambda: any(in_flight(c) for c in doomed_clients), 2, "a message in flight"
            )
        doomed.signal(signal.SIGKILL)
        killed_at = loop.time()
        in_flight_at_kill = {c.name: sum(e.sent_on is not None for e in c.outbox.values()) for c in clients}
        sent_at_kill = {c.name: len(c.sent) for c in clients}
        await asyncio.to_thread(doomed.proc.wait, 5)
        assert all(n < MESSAGES_PER_CLIENT for n in sent_at_kill.values()), sent_at_kill

        await asyncio.wait_for(asyncio.gather(*senders), timeout=30)
        await asyncio.gather(*(c.wait_acked(20) for c in clients))
        total = CLIENTS_PER_WORKER * 2 * MESSAGES_PER_CLIENT
        await asyncio.gather(*(c.wait_seen(total, 20) for c in clients))
        converged_at = loop.time()
    finally:
        for task in senders:
            task.cancel()
        await asyncio.gather(*senders, return_exceptions=True)
        await asyncio.gather(*(c.stop() for c in clients))

    stored = await database_sync_to_async(room_messages)(ROOM)

    # Every message every client sent is stored exactly once, under its author.
    by_client_id: dict[str, list[tuple[int, str, str, str]]] = {}
    for row in stored:
        by_client_id.setdefault(row[3], []).append(row)
    for c in clients:
        for client_id, body in c.sent.items():
            rows = by_client_id.get(client_id, [])
            assert len(rows) == 1, f"{client_id} stored {len(rows)} times: {rows}"
            _, author, stored_body, _ = rows[0]
            assert (author, stored_body) == (c.name, body)
            assert c.acked[client_id] == rows[0][0]
    assert len(stored) == total
    # Numbered 1..N with no gap.
    assert [row[0] for row in stored] == list(range(1, total + 1))
    # Every client saw exactly that list: nothing lost, nothing twice.
    expected = {seq: (author, body, client_id) for seq, author, body, client_id in stored}
    for c in clients:
        assert c.seen == expected, c.describe()
        assert c.redelivered == [], f"{c.name} got seqs again on one socket: {c.redelivered}"
        assert c.holes == [], f"{c.name}: a complete resume left out {c.holes}"
        assert c.gaps == [], f"{c.name}: the live stream skipped {c.gaps}"
        assert c.resets == []
        assert c.failed == {}
        # A rate_limited refusal is handled (the message goes again); no other error is expected.
        assert [e for e in c.errors if e.get("code") != "rate_limited"] == [], c.errors
        assert not [entry for entry in c.log if entry[1] == "client_error"], c.log

    # The killed worker's clients saw the connection drop and came back on the survivor; the
    # survivor's clients never noticed.
    for c in doomed_clients:
        assert c.closes and c.closes[0] == 1006, c.describe()
        assert len(c.welcomes) >= 2
        assert c.reconnect_times(), c.describe()
        last_subscribed = [detail for _, kind, detail in c.log if kind == "subscribed"][-1]
        assert last_subscribed.startswith(survivor.ws_url), last_subscribed
    for c in survivor_clients:
        assert c.closes == [], c.describe()
        assert len(c.welcomes) == 1

    reconnects = [t for c in doomed_clients for t in c.reconnect_times()]
    detected = [next(at for at, kind, _ in c.log if kind == "closed") - killed_at for c in doomed_clients]
    resent = {c.name: sum(1 for _, kind, _ in c.log if kind == "resend") for c in clients}
    duplicates = {c.name: len(c.duplicate_acks) for c in clients}
    rate_limited = sum(1 for c in clients for e in c.errors if e.get("code") == "rate_limited")
    print(
        f"\nfault-kill ({layer['RIPPLE_CHANNEL_LAYER']}): {total} messages; "
        f"closes {[c.closes for c in doomed_clients]}; "
        f"drop noticed after {[round(t * 1000) for t in detected]} ms; "
        f"reconnect (close -> subscribed) {[round(t * 1000) for t in reconnects]} ms; "
        f"in flight at kill {in_flight_at_kill}; re-sends {resent}; duplicate acks {duplicates}; "
        f"rate_limited {rate_limited}; "
        f"connect failures {[len(c.connect_failures) for c in doomed_clients]}; "
        f"pings {sum(c.pings_sent for c in clients)}, pongs {sum(c.pongs_received for c in clients)}; "
        f"converged {converged_at - killed_at:.2f} s after the kill"
    )
