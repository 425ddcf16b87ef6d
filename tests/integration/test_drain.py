"""Graceful drain behind nginx, against real processes: nothing lost, nothing twice, no 1006.

Two daphne workers share one Redis and the test database; nginx (deploy/nginx.conf, generated
for test ports) sits in front of both, and every chat client connects through it, so a
reconnect lands wherever nginx sends it. The clients chat in one room while worker A drains,
by SIGTERM or by ``manage.py drain --pid``: A closes its sockets with 4512 at moments spread
over RIPPLE_DRAIN_S, and refuses new handshakes with HTTP 403, which nginx retries on B
(``proxy_next_upstream ... http_403``), so each client reconnects once and resumes on B.
Which worker holds a socket is read from the workers' JSON ``connect`` events, by the
``connection_id`` of the socket's welcome frame.
"""

import asyncio
import contextlib
import json
import signal
import sys
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass
from typing import Any

import pytest
from channels.db import database_sync_to_async
from django.contrib.sessions.backends.db import SessionStore

from chat.hub import DRAIN_GRACE_S
from chat.identity import GUEST_NAME_KEY
from chat.models import Message
from chat.protocol import CLOSE_DRAINING
from tests.support.chat_client import CLOSE_ABNORMAL, ChatClient
from tests.support.processes import ROOT, DaphneServer
from tests.support.required import require
from tests.support.tls import NginxServer, nginx_binary

pytestmark = pytest.mark.django_db(transaction=True)

DRAIN_S = 3.0
SERVER_ENV = {
    "RIPPLE_DRAIN_S": f"{DRAIN_S:g}",
    # A short heartbeat, so that pings and pongs flow during the test.
    "RIPPLE_HEARTBEAT_INTERVAL_S": "2",
    "RIPPLE_HEARTBEAT_TIMEOUT_S": "2",
}
# least_conn puts about half on each worker. With 8 closes at uniform moments over 3 s, the
# chance that they all fall within 1 s of each other is 8(1/3)^7 - 7(1/3)^8, about 0.3 %.
CLIENTS = 16
MIN_PER_WORKER = 7
MAX_CLIENTS = 24
MIN_CLOSE_SPREAD_S = 1.0
# 2.5 messages/s per client: within the per-socket limit (5/s after a burst of 20).
SEND_INTERVAL_S = 0.4
# Acks each client has before the drain, and again after every socket has moved.
ACKS_BEFORE = 4
ACKS_AFTER = 3
# Sockets opened through nginx while A is left up, draining (manage.py drain).
NEW_SOCKETS = 4


@pytest.fixture
def nginx_available():
    require(
        "nginx is not installed (apt-get install nginx): draining behind nginx not tested",
        nginx_binary() is not None,
    )


@dataclass
class Cluster:
    """Workers A and B behind one nginx; ``env`` is the workers' full environment."""

    a: DaphneServer
    b: DaphneServer
    nginx: NginxServer
    env: dict[str, str]

    def name(self, worker: DaphneServer) -> str:
        return "A" if worker is self.a else "B"


@pytest.fixture
def cluster(nginx_available, live_database_url, redis_url):
    env = {
        "DJANGO_SECRET_KEY": "ripple-tests-only-not-secret",
        "DJANGO_DEBUG": "0",
        "DJANGO_ALLOWED_HOSTS": "127.0.0.1,localhost",
        "DATABASE_URL": live_database_url,
        "REDIS_URL": redis_url,
        "DJANGO_LOG_LEVEL": "WARNING",
        **SERVER_ENV,
    }
    with ExitStack() as stack:
        workers = [DaphneServer(env), DaphneServer(env)]
        for worker in workers:
            # As deployed (Dockerfile): the client's address from nginx's X-Forwarded-For.
            worker.argv.insert(-1, "--proxy-headers")
            stack.callback(worker.cleanup)
        with ThreadPoolExecutor(len(workers)) as pool:
            list(pool.map(DaphneServer.start, workers))
        proxy = NginxServer(upstream_ports=[worker.port for worker in workers])
        stack.callback(proxy.cleanup)
        proxy.start()
        a, b = workers
        assert a.env is not None
        yield Cluster(a=a, b=b, nginx=proxy, env=a.env)
        # Shown by pytest when the test failed: what the processes said besides their events.
        for name, worker in (("A", a), ("B", b)):
            print(f"--- worker {name} (port {worker.port}), warnings and errors:\n{diagnostics(worker)}")
        print(f"--- nginx error.log:\n{proxy.output()[-4000:]}")


# Worker logs.


def events(worker: DaphneServer, kind: str) -> list[dict[str, Any]]:
    """The worker's JSON event lines (chat/logs.py) of one kind, in order."""
    found = []
    for line in worker.output().splitlines():
        if not line.startswith("{"):
            continue  # daphne's access log, warnings
        try:
            event = json.loads(line)
        except ValueError:
            continue
        if event.get("event") == kind:
            found.append(event)
    return found


def diagnostics(worker: DaphneServer, limit: int = 6000) -> str:
    """The worker's output without its JSON events and daphne's access log lines (the end)."""
    lines = [
        line
        for line in worker.output().splitlines()
        if not line.startswith("{") and not line.startswith("127.0.0.1:")
    ]
    return "\n".join(lines)[-limit:]


def connection_ids(worker: DaphneServer) -> set[str]:
    return {event["connection"] for event in events(worker, "connect")}


def draining_refusals(worker: DaphneServer) -> int:
    return sum(1 for event in events(worker, "refused") if event.get("reason") == "draining")


async def eventually(condition, *, timeout_s: float, what: str, interval_s: float = 0.05):
    """Poll ``condition`` without blocking the event loop (the clients keep running)."""
    try:
        async with asyncio.timeout(timeout_s):
            while not (result := condition()):
                await asyncio.sleep(interval_s)
            return result
    except TimeoutError:
        raise TimeoutError(f"timed out after {timeout_s} s waiting for {what}") from None


async def worker_of(client: ChatClient, cluster: Cluster) -> DaphneServer:
    """The worker holding the client's newest socket, by its connect event."""
    connection = client.welcomes[-1]["connection_id"]
    return await eventually(
        lambda: next((w for w in (cluster.a, cluster.b) if connection in connection_ids(w)), None),
        timeout_s=5,
        what=f"the connect event of {client.name}'s socket {connection}",
    )


# The chat.


def guest_session(name: str) -> str:
    """A session holding a guest name: the author stays the same across reconnects."""
    session = SessionStore()
    session[GUEST_NAME_KEY] = name
    session.create()
    assert session.session_key is not None
    return session.session_key


def room_messages(room: str) -> list[tuple[int, str, str, str]]:
    return list(
        Message.objects.filter(room__slug=room)
        .order_by("seq")
        .values_list("seq", "author", "body", "client_id")
    )


class Chat:
    """The clients of one room, all through nginx, and their senders; all stopped on exit."""

    def __init__(self, cluster: Cluster, room: str) -> None:
        self.cluster = cluster
        self.room = room
        self.clients: list[ChatClient] = []
        # Maps client name to the worker its first socket landed on.
        self.first_worker: dict[str, DaphneServer] = {}
        self._quiet = asyncio.Event()
        self._senders: list[asyncio.Task] = []

    async def __aenter__(self) -> "Chat":
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self._quiet.set()
        for task in self._senders:
            task.cancel()
        await asyncio.gather(*self._senders, return_exceptions=True)
        await asyncio.gather(*(c.stop() for c in self.clients))

    async def open(self, names: list[str]) -> list[ChatClient]:
        """Connect clients through nginx and note the worker each landed on."""
        opened = []
        for name in names:
            session = await database_sync_to_async(guest_session)(name)
            opened.append(
                ChatClient([self.cluster.nginx.ws_url], room=self.room, name=name, session_cookie=session)
            )
        self.clients.extend(opened)
        await asyncio.gather(*(c.start(timeout=10) for c in opened))
        for c in opened:
            assert c.welcomes[0]["user"]["name"] == c.name
            self.first_worker[c.name] = await worker_of(c, self.cluster)
        return opened

    def on(self, worker: DaphneServer) -> list[ChatClient]:
        return [c for c in self.clients if self.first_worker[c.name] is worker]

    async def open_spread(self) -> None:
        """CLIENTS clients, more one at a time (least_conn picks the emptier worker) until each
        worker holds MIN_PER_WORKER."""
        await self.open([f"drain-{i}" for i in range(CLIENTS)])
        while min(len(self.on(self.cluster.a)), len(self.on(self.cluster.b))) < MIN_PER_WORKER:
            assert len(self.clients) < MAX_CLIENTS, f"nginx did not spread the sockets: {self.placement()}"
            await self.open([f"drain-{len(self.clients)}"])

    def placement(self) -> dict[str, str]:
        return {name: self.cluster.name(worker) for name, worker in self.first_worker.items()}

    def talk(self, clients: list[ChatClient]) -> None:
        """Each client sends a message every SEND_INTERVAL_S until ``quiet()``."""

        async def talk(client: ChatClient) -> None:
            for i in range(10_000):
                await client.send(f"{client.name} says {i}")
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._quiet.wait(), SEND_INTERVAL_S)
                if self._quiet.is_set():
                    return

        self._senders += [asyncio.create_task(talk(c), name=f"talk-{c.name}") for c in clients]

    async def wait_acks(self, more: int, timeout_s: float) -> None:
        """Until every client has ``more`` acks than now: the conversation goes on."""
        now = {c.name: len(c.acked) for c in self.clients}
        await asyncio.gather(
            *(
                c.wait_for(lambda c=c: len(c.acked) >= now[c.name] + more, timeout_s, f"{more} more acks")
                for c in self.clients
            )
        )

    async def quiet(self) -> list[tuple[int, str, str, str]]:
        """Stop talking, wait until everything sent is acked and seen by all; the stored list."""
        self._quiet.set()
        await asyncio.wait_for(asyncio.gather(*self._senders), timeout=5)
        await asyncio.gather(*(c.wait_acked(15) for c in self.clients))
        total = sum(len(c.sent) for c in self.clients)
        await asyncio.gather(*(c.wait_seen(total, 15) for c in self.clients))
        return await database_sync_to_async(room_messages)(self.room)


def moved(client: ChatClient) -> bool:
    """Closed once and subscribed again on a new socket."""
    return bool(client.closes) and client.connected and len(client.welcomes) >= 2


def assert_nothing_lost_nothing_twice(
    clients: list[ChatClient], stored: list[tuple[int, str, str, str]]
) -> None:
    by_client_id: dict[str, list[tuple[int, str, str, str]]] = {}
    for row in stored:
        by_client_id.setdefault(row[3], []).append(row)
    total = sum(len(c.sent) for c in clients)
    for c in clients:
        for client_id, body in c.sent.items():
            rows = by_client_id.get(client_id, [])
            assert len(rows) == 1, f"{client_id} stored {len(rows)} times: {rows}"
            assert rows[0][1:3] == (c.name, body)
            assert c.acked[client_id] == rows[0][0]
    assert [row[0] for row in stored] == list(range(1, total + 1))
    expected = {seq: (author, body, client_id) for seq, author, body, client_id in stored}
    for c in clients:
        assert c.seen == expected, c.describe()
        assert c.redelivered == [], f"{c.name} got seqs again on one socket: {c.redelivered}"
        assert (c.holes, c.gaps, c.resets, c.failed) == ([], [], [], {}), c.describe()
        assert [e for e in c.errors if e.get("code") != "rate_limited"] == [], c.errors
        assert not [entry for entry in c.log if entry[1] == "client_error"], c.log


def assert_moved_to_b(clients: list[ChatClient], landed: dict[str, DaphneServer], cluster: Cluster) -> None:
    """Each client was closed with 4512 once, and resumed (since its last seq) on B."""
    for c in clients:
        assert c.closes == [CLOSE_DRAINING], c.describe()
        assert landed[c.name] is cluster.b, f"{c.name} reconnected to {cluster.name(landed[c.name])}"
        closed_at = next(i for i, entry in enumerate(c.log) if entry[1] == "closed")
        resubscribed = [detail for _, kind, detail in c.log[closed_at:] if kind == "subscribe"]
        assert resubscribed and resubscribed[0] != "since=None", c.log


def assert_a_closed_only_with_4512(a: DaphneServer, sockets: int) -> None:
    """A's own view: each of its sockets ended with 4512 (no 1006, no 1011)."""
    codes = [event.get("code") for event in events(a, "disconnect")]
    assert codes == [CLOSE_DRAINING] * sockets, codes


def wait_exit(worker: DaphneServer, timeout_s: float) -> tuple[int, float]:
    """The worker's return code and the monotonic time (the loop's clock) it was seen to exit."""
    assert worker.proc is not None
    code = worker.proc.wait(timeout=timeout_s)
    return code, time.monotonic()


def readyz(worker: DaphneServer) -> tuple[int, dict[str, Any]]:
    try:
        with urllib.request.urlopen(f"{worker.http_url}/readyz", timeout=5) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def upstream_retries(proxy: NginxServer) -> int:
    """Socket handshakes nginx's access log shows refused with 403 by one worker, then taken
    (101) by the next (written when each socket ends)."""
    return sum(1 for line in proxy.access_log() if "/ws/chat/" in line and "upstream_status=403, 101" in line)


def summary(clients: list[ChatClient]) -> str:
    return (
        f"closes {sorted({code for c in clients for code in c.closes})}, "
        f"1006 {sum(c.closes.count(CLOSE_ABNORMAL) for c in clients)}, "
        f"refused handshakes seen by clients {sum(len(c.connect_failures) for c in clients)}, "
        f"re-sends {sum(1 for c in clients for e in c.log if e[1] == 'resend')}, "
        f"duplicate acks {sum(len(c.duplicate_acks) for c in clients)}, "
        f"rate_limited {sum(1 for c in clients for e in c.errors if e.get('code') == 'rate_limited')}"
    )


async def test_sigterm_spreads_4512_closes_and_every_socket_resumes_on_the_other_worker(cluster):
    a, b = cluster.a, cluster.b
    loop = asyncio.get_running_loop()
    async with Chat(cluster, "drain-sigterm") as chat:
        await chat.open_spread()
        on_a, on_b = chat.on(a), chat.on(b)
        chat.talk(chat.clients)
        await asyncio.gather(
            *(
                c.wait_for(lambda c=c: len(c.acked) >= ACKS_BEFORE, 15, f"{ACKS_BEFORE} acks")
                for c in chat.clients
            )
        )

        sigterm_at = loop.time()
        a.signal(signal.SIGTERM)
        exited = asyncio.ensure_future(asyncio.to_thread(wait_exit, a, DRAIN_S + DRAIN_GRACE_S + 5))
        await asyncio.gather(
            *(c.wait_for(lambda c=c: moved(c), DRAIN_S + 5, "a drain close and a new socket") for c in on_a)
        )
        moved_at = loop.time()
        code, exited_at = await exited
        landed = {c.name: await worker_of(c, cluster) for c in on_a}
        await chat.wait_acks(ACKS_AFTER, 15)
        stored = await chat.quiet()

    assert code == 0, f"worker A exited with {code}:\n{a.output()[-3000:]}"
    assert exited_at - sigterm_at <= DRAIN_S + 2.5, f"A took {exited_at - sigterm_at:.2f} s to exit"
    assert_moved_to_b(on_a, landed, cluster)
    for c in on_b:
        assert c.closes == [], c.describe()
    for c in chat.clients:
        assert CLOSE_ABNORMAL not in c.closes, c.describe()
        assert c.connect_failures == [], c.describe()
    close_times = sorted(
        at - sigterm_at for c in on_a for at, kind, _ in c.log if kind == "closed" and at >= sigterm_at
    )
    spread = close_times[-1] - close_times[0]
    assert spread >= MIN_CLOSE_SPREAD_S, f"closes not spread over the window: {close_times}"
    assert close_times[-1] <= DRAIN_S + 1.5, f"a close came after the window: {close_times}"
    assert_a_closed_only_with_4512(a, len(on_a))
    finished = events(a, "drain_finished")
    assert finished and finished[0]["left_open"] == 0, a.output()[-3000:]
    assert_nothing_lost_nothing_twice(chat.clients, stored)

    moves = [t for c in on_a for t in c.reconnect_times()]
    print(
        f"\ndrain by SIGTERM ({DRAIN_S:g} s window): {len(stored)} messages, "
        f"{len(on_a)} sockets on A and {len(on_b)} on B; "
        f"closes at {[round(t, 2) for t in close_times]} s after SIGTERM (spread {spread:.2f} s); "
        f"time to move (close -> subscribed on B) {[round(t * 1000) for t in moves]} ms; "
        f"all moved {moved_at - sigterm_at:.2f} s after SIGTERM; "
        f"A exited with {code} after {exited_at - sigterm_at:.2f} s; "
        f"handshakes A refused while draining {draining_refusals(a)}, "
        f"retried by nginx (403 then 101) {upstream_retries(cluster.nginx)}; {summary(chat.clients)}"
    )


async def run_drain_command(cluster: Cluster, pid: int) -> str:
    """``manage.py drain --pid`` with the workers' environment; retried while the worker has
    not reported to the dashboard yet (it does once a second)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 15
    while True:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "manage.py",
            "drain",
            "--pid",
            str(pid),
            cwd=ROOT,
            env=cluster.env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        try:
            out, err = await asyncio.wait_for(process.communicate(), 20)
        except TimeoutError:
            process.kill()
            await process.wait()
            raise
        if process.returncode == 0:
            return out.decode()
        if b"no such worker" not in err or loop.time() > deadline:
            raise AssertionError(
                f"manage.py drain failed ({process.returncode}):\n{out.decode()}\n{err.decode()}"
            )


async def test_manage_py_drain_moves_sockets_to_the_other_worker_and_leaves_the_drained_one_up(cluster):
    a, b = cluster.a, cluster.b
    loop = asyncio.get_running_loop()
    async with Chat(cluster, "drain-command") as chat:
        await chat.open_spread()
        on_a, on_b = chat.on(a), chat.on(b)
        chat.talk(chat.clients)
        await asyncio.gather(
            *(
                c.wait_for(lambda c=c: len(c.acked) >= ACKS_BEFORE, 15, f"{ACKS_BEFORE} acks")
                for c in chat.clients
            )
        )

        command_at = loop.time()
        output = await run_drain_command(cluster, a.pid)
        assert "draining" in output, output
        await asyncio.gather(
            *(c.wait_for(lambda c=c: moved(c), DRAIN_S + 10, "a drain close and a new socket") for c in on_a)
        )
        moved_at = loop.time()
        landed = {c.name: await worker_of(c, cluster) for c in on_a}
        await eventually(
            lambda: events(a, "drain_finished"),
            timeout_s=DRAIN_S + DRAIN_GRACE_S + 5,
            what="A's drain_finished",
        )
        assert a.alive(), f"A stopped after manage.py drain:\n{a.output()[-3000:]}"
        assert_a_closed_only_with_4512(a, len(on_a))
        a_ready = await asyncio.to_thread(readyz, a)
        b_ready = await asyncio.to_thread(readyz, b)

        # New sockets through nginx: least_conn tries A first (no sockets), A refuses with 403,
        # nginx takes them to B.
        refused_before = draining_refusals(a)
        newcomers = await chat.open([f"late-{i}" for i in range(NEW_SOCKETS)])
        refused_new = draining_refusals(a) - refused_before
        chat.talk(newcomers)
        await chat.wait_acks(ACKS_AFTER, 15)

        stop_started = loop.time()
        await asyncio.to_thread(a.stop)
        stopped_after = loop.time() - stop_started
        await chat.wait_acks(1, 10)
        stored = await chat.quiet()

    assert a_ready == (503, {"status": "draining", "database": "ok", "channel_layer": "ok"}), a_ready
    assert b_ready[0] == 200 and b_ready[1]["status"] == "ready", b_ready
    assert_moved_to_b(on_a, landed, cluster)
    for c in newcomers:
        assert chat.first_worker[c.name] is b, f"{c.name} landed on A: {chat.placement()}"
    assert refused_new >= 1, "nginx never tried the draining worker: the 403 retry path went unused"
    assert not connection_ids(a) & {c.welcomes[0]["connection_id"] for c in newcomers}
    for c in on_b + newcomers:
        assert c.closes == [], c.describe()
    for c in chat.clients:
        assert CLOSE_ABNORMAL not in c.closes, c.describe()
        assert c.connect_failures == [], c.describe()
    assert a.proc is not None and a.proc.returncode == 0, f"A exited with {a.proc and a.proc.returncode}"
    assert stopped_after < 5, f"stopping the drained A took {stopped_after:.2f} s"
    assert_nothing_lost_nothing_twice(chat.clients, stored)

    moves = [t for c in on_a for t in c.reconnect_times()]
    close_times = sorted(
        at - command_at for c in on_a for at, kind, _ in c.log if kind == "closed" and at >= command_at
    )
    print(
        f"\ndrain by manage.py ({DRAIN_S:g} s window): {len(stored)} messages, "
        f"{len(on_a)} sockets on A and {len(on_b)} on B; "
        f"closes at {[round(t, 2) for t in close_times]} s after the command started "
        f"(spread {close_times[-1] - close_times[0]:.2f} s; the command itself takes ~1 s); "
        f"time to move {[round(t * 1000) for t in moves]} ms; all moved {moved_at - command_at:.2f} s "
        f"after the command started; A's readyz {a_ready}; {NEW_SOCKETS} new sockets all on B, "
        f"{refused_new} of their handshakes refused by A; handshakes A refused in all "
        f"{draining_refusals(a)}, retried by nginx (403 then 101) {upstream_retries(cluster.nginx)}; "
        f"A stopped with {a.proc.returncode} in {stopped_after:.2f} s; {summary(chat.clients)}"
    )
