"""The hub's parts on their own: a room stream's order and gap fill, the fan-out helper, the
janitor's schedule and duties, the fallback's routes, and the drain."""

import asyncio
import json

import pytest
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator

from chat import drain, protocol, services
from chat.hub import RoomStream, Subscription, fan_out, get_hub
from chat.hub.fallback import FallbackRoutes
from chat.hub.janitor import GROUP_REFRESH_S, Janitor
from chat.hub.tasks import TaskSet
from chat.models import Room
from chat.presence import Member
from project.asgi import application

pytestmark = pytest.mark.django_db(transaction=True)

SAME_ORIGIN = [(b"origin", b"http://localhost"), (b"host", b"localhost")]
MEMBER = Member(name="Ann", id="g1")


class Recorder:
    """A subscriber that keeps every frame it is sent; ``arrived`` is set at ``expected`` frames."""

    def __init__(self, expected: int = 1) -> None:
        self.texts: list[str] = []
        self.expected = expected
        self.arrived = asyncio.Event()

    async def base_send(self, message: dict) -> None:
        assert message["type"] == "websocket.send"
        self.texts.append(message["text"])
        if len(self.texts) >= self.expected:
            self.arrived.set()


class Broken:
    """A subscriber whose socket is gone: every send fails."""

    async def base_send(self, message: dict) -> None:
        raise ConnectionResetError("the socket closed meanwhile")


def joined_stream(slug: str, room_id: int = 0, *subscribers: object) -> RoomStream:
    """A stream joined at seq 0 with ``subscribers`` attached from the start."""
    stream = RoomStream(slug, room_id, tasks=TaskSet())
    stream.delivered = 0
    for subscriber in subscribers:
        stream.subscribers[subscriber] = Subscription(0, MEMBER)
    return stream


# The room stream.


async def test_an_early_arrival_waits_for_the_message_before_it(settings):
    settings.RIPPLE_GAP_FILL_S = 30  # the order must come from the stream, not a database read
    subscriber = Recorder(expected=2)
    stream = joined_stream("early", 0, subscriber)

    await stream.offer(2, "second")
    assert subscriber.texts == []
    assert stream.pending == {2: "second"}
    assert stream.fill_timer is not None

    await stream.offer(1, "first")
    assert subscriber.texts == ["first", "second"]
    assert stream.delivered == 2 and stream.pending == {}
    assert stream.fill_timer is None
    assert list(stream.recent) == [(1, "first"), (2, "second")]
    await stream.offer(1, "first")  # a repeat is dropped
    assert subscriber.texts == ["first", "second"]


async def test_a_hole_is_filled_from_the_database_in_order(settings):
    settings.RIPPLE_GAP_FILL_S = 0.01
    room = await database_sync_to_async(Room.objects.create)(slug="holes")
    store = database_sync_to_async(services.message_store)
    await store(room=room, author="x", user_id=None, body="lost", client_id="h1")  # never offered
    second = await store(room=room, author="x", user_id=None, body="found", client_id="h2")
    subscriber = Recorder(expected=2)
    stream = joined_stream("holes", room.pk, subscriber)

    await stream.offer(2, second.frame_text)
    async with asyncio.timeout(5):
        await subscriber.arrived.wait()
    frames = [json.loads(text) for text in subscriber.texts]
    assert [(frame["seq"], frame["body"]) for frame in frames] == [(1, "lost"), (2, "found")]
    assert stream.delivered == 2 and stream.pending == {}


async def test_a_subscriber_gets_only_messages_above_its_mark(settings):
    settings.RIPPLE_GAP_FILL_S = 30
    early, late = Recorder(), Recorder()
    stream = joined_stream("marks", 0, early)
    stream.subscribers[late] = Subscription(1, MEMBER)
    await stream.offer(1, "one")
    await stream.offer(2, "two")
    assert early.texts == ["one", "two"]
    assert late.texts == ["two"]


# The fan-out helper.


async def test_fan_out_passes_over_a_failing_send_and_reaches_the_others():
    before, after = Recorder(), Recorder()
    tried = await fan_out([before, Broken(), after], "frame")
    assert tried == 3
    assert before.texts == ["frame"] and after.texts == ["frame"]


async def test_every_subscriber_after_a_broken_one_gets_the_room_message(settings):
    settings.RIPPLE_GAP_FILL_S = 30
    first, last = Recorder(), Recorder()
    stream = joined_stream("broken", 0, first, Broken(), last)
    await stream.offer(1, "hello")
    assert first.texts == ["hello"] and last.texts == ["hello"]
    assert stream.delivered == 1


# The janitor.


class RecordingJanitor(Janitor):
    """A janitor whose duties only note that they ran, on a clock the test moves."""

    def __init__(self, hub, clock) -> None:
        self.ran: list[str] = []
        self.reported = asyncio.Event()
        super().__init__(hub, clock=clock)

    async def check_health(self) -> None:
        self.ran.append("health")

    async def audit_access(self) -> None:
        self.ran.append("audit")

    async def report(self) -> None:
        self.ran.append("report")
        if self.ran.count("report") >= 3:
            self.reported.set()

    async def tail_check(self) -> None:
        self.ran.append("tail")

    async def refresh_presence(self) -> None:
        self.ran.append("presence")

    async def refresh_groups(self) -> None:
        self.ran.append("groups")


@pytest.fixture
def janitor_periods(settings):
    settings.RIPPLE_TAIL_CHECK_S = 5.0
    settings.RIPPLE_PRESENCE_TTL_S = 60.0  # refreshed every 20 s
    settings.RIPPLE_DASHBOARD_REPORT_S = 1.0
    settings.RIPPLE_ACCESS_RECHECK_S = 10.0
    return settings


async def test_each_janitor_duty_runs_on_its_own_period(janitor_periods):
    clock = [0.0]
    janitor = RecordingJanitor(hub=None, clock=lambda: clock[0])
    assert janitor.tick_s == 1.0
    by_second: dict[int, list[str]] = {}
    for second in range(1, 21):
        clock[0] = float(second)
        janitor.ran.clear()
        await janitor.tick()
        by_second[second] = list(janitor.ran)

    assert all(ran[0] == "health" and "report" in ran for ran in by_second.values())
    assert [s for s, ran in by_second.items() if "tail" in ran] == [5, 10, 15, 20]
    assert [s for s, ran in by_second.items() if "audit" in ran] == [10, 20]
    assert [s for s, ran in by_second.items() if "presence" in ran] == [20]
    assert not any("groups" in ran for ran in by_second.values())
    assert by_second[20] == ["health", "audit", "report", "tail", "presence"]

    clock[0] = GROUP_REFRESH_S
    janitor.ran.clear()
    await janitor.tick()
    assert "groups" in janitor.ran


async def test_the_janitor_loop_ticks_on_its_own(janitor_periods):
    janitor_periods.RIPPLE_DASHBOARD_REPORT_S = 0.01
    janitor = RecordingJanitor(hub=None, clock=asyncio.get_running_loop().time)
    assert janitor.tick_s == 0.01
    task = asyncio.create_task(janitor.run())
    try:
        async with asyncio.timeout(5):
            await janitor.reported.wait()
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert janitor.ran.count("health") >= 3


async def open_socket() -> WebsocketCommunicator:
    communicator = WebsocketCommunicator(application, "/ws/chat/", headers=SAME_ORIGIN)
    connected, _ = await communicator.connect()
    assert connected
    welcome = json.loads(await communicator.receive_from())
    assert welcome["type"] == protocol.WELCOME
    return communicator


async def test_the_health_check_sends_every_socket_away_while_redis_does_not_answer(monkeypatch):
    communicator = await open_socket()
    try:
        hub = get_hub()
        store = hub.presence

        async def unanswered() -> None:
            raise ConnectionError("Redis is away")

        monkeypatch.setattr(store, "ping", unanswered)
        janitor = Janitor(hub)
        await janitor.check_health()
        assert hub.healthy is False
        closed = await communicator.receive_output(timeout=2)
        assert closed == {"type": "websocket.close", "code": protocol.CLOSE_TRY_AGAIN_LATER}

        monkeypatch.undo()
        await janitor.check_health()
        assert hub.healthy is True
    finally:
        await communicator.disconnect()


# The fallback's routes.


async def test_a_posted_frame_reaches_its_stream_only_with_the_streams_session_and_token():
    routes = FallbackRoutes()
    inbox: asyncio.Queue[dict] = asyncio.Queue()
    routes.add("c1", "session-a", "token-a", inbox)

    def post(**fields) -> None:
        routes.route({"connection": "c1", "session": "session-a", "token": "token-a", "text": "{}", **fields})

    post(token="token-b")
    post(session="")
    post(connection="c2")
    assert inbox.empty()
    post()
    assert inbox.get_nowait() == {"type": "websocket.receive", "text": "{}"}
    routes.remove("c1")
    post()
    assert inbox.empty()


# The drain.


@pytest.fixture
def drained_process():
    """A drain marks the whole process; the next test must find it serving again."""
    yield
    drain._draining.clear()


async def test_a_drain_closes_every_socket_with_4512_and_returns_once_they_are_gone(drained_process):
    sockets = [await open_socket(), await open_socket()]
    hub = get_hub()
    assert len(hub.connections) == 2
    draining = asyncio.create_task(hub.drain(0.05))
    for communicator in sockets:
        closed = await communicator.receive_output(timeout=2)
        assert closed == {"type": "websocket.close", "code": protocol.CLOSE_DRAINING}
        await communicator.disconnect()
    async with asyncio.timeout(1):  # well inside the window and its 2 s grace
        await draining
    assert hub.connections == set()
    assert drain.is_draining()


async def test_a_drain_returns_only_after_the_hub_stop_the_last_socket_began(drained_process, monkeypatch):
    """The drain's return lets the server stop the process: the last socket's cleanup (the hub's
    stop, its own ``disconnect``) must be over by then, not cancelled half way."""
    socket = await open_socket()
    hub = get_hub()
    stopping, may_stop = asyncio.Event(), asyncio.Event()
    real_stop = hub._stop

    async def slow_stop() -> None:
        stopping.set()
        await may_stop.wait()
        await real_stop()

    monkeypatch.setattr(hub, "_stop", slow_stop)
    draining = asyncio.create_task(hub.drain(0.01))
    assert (await socket.receive_output(timeout=2))["code"] == protocol.CLOSE_DRAINING
    await socket.send_input({"type": "websocket.disconnect", "code": protocol.CLOSE_DRAINING})
    async with asyncio.timeout(2):
        await stopping.wait()
    assert hub.connections == set()  # the last socket has left the set, its stop is under way
    # The drain is given time to return, and must not (before the fix it returned here).
    done, _ = await asyncio.wait({draining}, timeout=0.1)
    assert not done
    may_stop.set()
    async with asyncio.timeout(1):
        await draining
