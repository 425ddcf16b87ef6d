"""/metrics, /readyz, the staff dashboard page and its socket, and the snapshot store."""

import asyncio
import json

import pytest
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY
from django.contrib.auth.models import User
from django.contrib.sessions.backends.db import SessionStore
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from chat import dashboard, ops_views
from chat.dashboard import store as dashboard_store
from chat.metrics import RippleCollector
from chat.stats import ProcessStats, stats
from project.asgi import application
from tests.support.processes import free_port

pytestmark = pytest.mark.django_db(transaction=True)

FRAME_KEYS = {"type", "t", "processes", "totals", "rooms", "recent", "traffic", "warning"}


@pytest.fixture(autouse=True)
def in_memory_dashboard(settings):
    settings.REDIS_URL = ""
    dashboard._local.clear()
    yield
    dashboard._local.clear()


def samples(text: str) -> dict[tuple, float]:
    """Maps (sample name, sorted labels) to value."""
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


async def scrape(async_client) -> dict[tuple, float]:
    response = await async_client.get("/metrics")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain; version=0.0.4")
    return samples(response.content.decode())


def delta(before: dict, after: dict, name: str, **labels: str) -> float:
    key = (name, tuple(sorted(labels.items())))
    return after.get(key, 0) - before.get(key, 0)


async def test_metrics_parse_and_counters_move_as_sockets_open_send_and_close(async_client, ws_client):
    before = await scrape(async_client)
    families = {
        family.name: family.type
        for family in text_string_to_metric_families((await async_client.get("/metrics")).content.decode())
        if family.name.startswith("ripple_")
    }
    assert families == {
        "ripple_open_sockets": "gauge",
        "ripple_connects": "counter",
        "ripple_closes": "counter",
        "ripple_frames_in": "counter",
        "ripple_frames_out": "counter",
        "ripple_heartbeat_timeouts": "counter",
        "ripple_handshakes_rejected": "counter",
        "ripple_errors": "counter",
        "ripple_fanout_latency_seconds": "histogram",
        "ripple_presence_members": "gauge",
        "ripple_presence_rooms": "gauge",
        "ripple_event_loop_info": "gauge",
    }
    # In process, the test's own loop (asyncio's); a worker's is uvloop (test_event_loop_live.py).
    assert before[("ripple_event_loop_info", (("loop", "asyncio"),))] == 1
    # The start time comes from the standard process collector now (process_* metrics).
    assert 0 < before[("process_start_time_seconds", ())] <= stats.started_at

    async with ws_client() as client:
        opened = await scrape(async_client)
        assert delta(before, opened, "ripple_open_sockets") == 1
        assert delta(before, opened, "ripple_connects_total") == 1
        await client.subscribe("metered")
        await client.post("metered", "hello", "m-1")
        await client.recv_type("message")
        await client.send({"type": "unsubscribe", "room": "nowhere"})
        assert (await client.recv_type("error"))["code"] == "not_subscribed"
        # The room's member count is set when the hub's presence read lands.
        members = ("ripple_presence_members", (("room", "metered"),))
        async with asyncio.timeout(3):
            while members not in (during := await scrape(async_client)):
                await asyncio.sleep(0.02)
        assert during[members] == 1
    after = await scrape(async_client)

    assert delta(before, after, "ripple_open_sockets") == 0
    assert delta(before, after, "ripple_closes_total", code="1000") == 1
    assert delta(before, after, "ripple_frames_in_total", type="subscribe") == 1
    assert delta(before, after, "ripple_frames_in_total", type="message") == 1
    assert delta(before, after, "ripple_frames_out_total", type="ack") == 1
    assert delta(before, after, "ripple_frames_out_total", type="message") == 1
    assert delta(before, after, "ripple_errors_total", code="not_subscribed") == 1
    assert delta(before, after, "ripple_fanout_latency_seconds_count") == 1
    assert delta(before, after, "ripple_fanout_latency_seconds_bucket", le="+Inf") == 1
    assert delta(before, after, "ripple_fanout_latency_seconds_sum") >= 0


async def test_metrics_speak_openmetrics_when_asked(async_client):
    response = await async_client.get(
        "/metrics", headers={"Accept": "application/openmetrics-text; version=1.0.0"}
    )
    assert response["Content-Type"].startswith("application/openmetrics-text")
    assert response.content.decode().rstrip().endswith("# EOF")


def test_histogram_buckets_are_cumulative_and_end_with_inf():
    numbers = ProcessStats()
    for seconds in (0.0005, 0.003, 0.003, 0.2, 9.0):
        numbers.observe_latency(seconds)
    numbers.closes_total[4408] += 2
    numbers.presence_sizes["lobby"] = 3
    registry = CollectorRegistry()
    registry.register(RippleCollector(lambda: numbers))
    found = samples(generate_latest(registry).decode())
    bucket = "ripple_fanout_latency_seconds_bucket"
    assert found[(bucket, (("le", "0.001"),))] == 1
    assert found[(bucket, (("le", "0.0025"),))] == 1
    assert found[(bucket, (("le", "0.005"),))] == 3
    assert found[(bucket, (("le", "0.25"),))] == 4
    assert found[(bucket, (("le", "5.0"),))] == 4
    assert found[(bucket, (("le", "+Inf"),))] == 5
    assert found[("ripple_fanout_latency_seconds_count", ())] == 5
    assert found[("ripple_fanout_latency_seconds_sum", ())] == pytest.approx(9.2065)
    assert found[("ripple_closes_total", (("code", "4408"),))] == 2
    assert found[("ripple_presence_members", (("room", "lobby"),))] == 3


async def test_readyz_is_ready_with_the_in_memory_layer(async_client):
    response = await async_client.get("/readyz")
    assert response.status_code == 200
    assert response.json() == {"status": "ready", "database": "ok", "channel_layer": "ok"}
    assert response["Cache-Control"] == "no-store"


async def test_readyz_names_an_unreachable_redis(async_client, settings):
    settings.REDIS_URL = f"redis://127.0.0.1:{free_port()}/0"
    # The check asks the channel layer itself (not a Redis client of its own): point it there.
    layer = {"BACKEND": "channels_redis.core.RedisChannelLayer", "CONFIG": {"hosts": [settings.REDIS_URL]}}
    settings.CHANNEL_LAYERS = {"default": layer}
    try:
        response = await async_client.get("/readyz")
    finally:
        await dashboard.close_redis_client()
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "not ready" and body["database"] == "ok"
    assert body["channel_layer"].startswith("error: ")


async def test_readyz_names_a_failing_database(async_client, monkeypatch):
    def broken():
        raise RuntimeError("database is gone")

    monkeypatch.setattr(ops_views, "_select_one", broken)
    response = await async_client.get("/readyz")
    assert response.status_code == 503
    assert response.json()["database"] == "error: RuntimeError: database is gone"
    assert response.json()["channel_layer"] == "ok"


# The dashboard page.


def make_user(username: str, *, staff: bool) -> User:
    return User.objects.create_user(username, password="pw-long-enough-1", is_staff=staff)


def test_dashboard_page_sends_anonymous_and_non_staff_to_the_admin_login(client):
    response = client.get("/admin/dashboard/")
    assert response.status_code == 302
    assert response["Location"] == "/admin/login/?next=/admin/dashboard/"
    client.force_login(make_user("viewer", staff=False))
    response = client.get("/admin/dashboard/")
    assert response.status_code == 302
    assert response["Location"].startswith("/admin/login/")


def test_dashboard_page_renders_for_staff_with_its_module_and_no_inline_script(client):
    client.force_login(make_user("operator", staff=True))
    response = client.get("/admin/dashboard/")
    assert response.status_code == 200
    html = response.content.decode()
    assert 'id="total-sockets"' in html and 'id="traffic-chart"' in html
    assert 'data-ws-path="/ws/admin/dashboard/"' in html
    assert '<script type="module" src="/static/js/dashboard.js"></script>' in html
    # Every script on the page loads from a file.
    assert html.count("<script") == html.count("<script src=") + html.count('<script type="module" src=')


def test_admin_index_links_to_the_live_dashboard_for_staff(client):
    client.force_login(make_user("operator", staff=True))
    html = client.get("/admin/").content.decode()
    assert '<a href="/admin/dashboard/" id="live-dashboard-link">Live dashboard</a>' in html
    # The stock index is still there around it.
    assert 'id="recent-actions-module"' in html
    assert html.count('id="live-dashboard-link"') == 1


# The dashboard socket.


def login_session(username: str, *, staff: bool) -> str:
    user = make_user(username, staff=staff)
    session = SessionStore()
    session[SESSION_KEY] = str(user.pk)
    session[BACKEND_SESSION_KEY] = "django.contrib.auth.backends.ModelBackend"
    session[HASH_SESSION_KEY] = user.get_session_auth_hash()
    session.create()
    return session.session_key


def dashboard_socket(session_key: str | None = None, origin: bytes = b"http://localhost"):
    headers = [(b"origin", origin), (b"host", b"localhost")]
    if session_key:
        headers.append((b"cookie", f"sessionid={session_key}".encode()))
    return WebsocketCommunicator(application, "/ws/admin/dashboard/", headers=headers)


@pytest.mark.parametrize("who", ["anonymous", "non-staff"])
async def test_dashboard_socket_refuses_anyone_but_staff(who):
    key = await database_sync_to_async(login_session)("viewer", staff=False) if who == "non-staff" else None
    rejected = stats.handshakes_rejected_total
    communicator = dashboard_socket(key)
    connected, _ = await communicator.connect()
    assert connected is False
    assert stats.handshakes_rejected_total == rejected + 1
    await communicator.wait()


async def test_dashboard_socket_refuses_staff_from_another_origin():
    key = await database_sync_to_async(login_session)("operator", staff=True)
    communicator = dashboard_socket(key, origin=b"http://evil.example")
    connected, _ = await communicator.connect()
    assert connected is False
    await communicator.wait()


async def test_dashboard_socket_sends_staff_a_frame_a_second_and_leaves_no_task(ws_client):
    key = await database_sync_to_async(login_session)("operator", staff=True)
    communicator = dashboard_socket(key)
    connected, _ = await communicator.connect()
    assert connected
    async with ws_client():
        first = json.loads(await communicator.receive_from(timeout=3))
        open_with_client = stats.open_sockets
        # Until this process's report counts the client's socket (an earlier report, from
        # before it connected, can still be the latest for a second).
        async with asyncio.timeout(10):
            while True:
                second = json.loads(await communicator.receive_from(timeout=3))
                mine = next((p for p in second["processes"] if p["process_id"] == stats.process_id), None)
                if mine is not None and mine["open_sockets"] == open_with_client:
                    break
                first = second
    assert set(first) == FRAME_KEYS
    assert first["type"] == "dashboard"
    assert 0.5 < second["t"] - first["t"] < 1.5
    assert mine["open_sockets"] == second["totals"]["open_sockets"]
    assert open_with_client == stats.open_sockets + 1  # the client's socket, closed since
    assert set(mine) >= {"host", "pid", "uptime_s", "messages_in_per_s", "messages_out_per_s", "age_s"}
    assert len(second["traffic"]) == dashboard.CHART_WINDOW_S
    await communicator.disconnect()
    assert not [task for task in asyncio.all_tasks() if task.get_name() == "ripple-dashboard-push"]


# The snapshot store and the frame.


def snapshot(process_id: str, **fields) -> dict:
    return {
        "process_id": process_id,
        "host": "web1",
        "pid": 10,
        "started_at": 1000.0,
        "uptime_s": 60.0,
        "reported_at": 1999.5,
        "open_sockets": 0,
        "connects_total": 0,
        "closes_total": {},
        "heartbeat_timeouts_total": 0,
        "errors_total": {},
        "rooms": {},
        "recent": [],
        "traffic": [],
        **fields,
    }


async def test_reported_snapshots_expire_unless_reported_again(settings, monkeypatch):
    settings.RIPPLE_DASHBOARD_EXPIRY_S = 5
    clock = [100.0]
    monkeypatch.setattr(dashboard_store, "_monotonic", lambda: clock[0])
    await dashboard.report(snapshot("a", open_sockets=1))
    await dashboard.report(snapshot("b", started_at=2000.0))
    assert [p["process_id"] for p in await dashboard.processes()] == ["a", "b"]
    clock[0] = 104.0
    await dashboard.report(snapshot("a", open_sockets=2))
    clock[0] = 105.0
    found = await dashboard.processes()
    assert [(p["process_id"], p["open_sockets"]) for p in found] == [("a", 2)]
    clock[0] = 109.0
    assert await dashboard.processes() == []
    assert dashboard._local == {}


def test_a_report_encodes_its_rooms_again_only_when_they_changed(monkeypatch):
    monkeypatch.setattr(dashboard_store, "_rooms_encoded", None)
    rooms = {f"room-{i}": i % 7 + 1 for i in range(1000)}
    first = {"process_id": "p", "uptime_s": 1.0, "rooms": dict(rooms), "recent": [{"rooms": ["x"]}]}
    assert json.loads(dashboard_store.encode(first)) == first
    encoded = dashboard_store._rooms_encoded
    # The next second: the same sizes in a new dict, other numbers moved.
    second = {**first, "uptime_s": 2.0, "rooms": dict(rooms)}
    assert json.loads(dashboard_store.encode(second)) == second
    assert dashboard_store._rooms_encoded is encoded
    # A member left one room; a room emptied; then no room at all, and no rooms key.
    rooms["room-3"] -= 1
    del rooms["room-4"]
    third = {**second, "rooms": dict(rooms)}
    assert json.loads(dashboard_store.encode(third)) == third
    assert dashboard_store._rooms_encoded is not encoded
    for other in ({**third, "rooms": {}}, {"process_id": "p"}, {"rooms": {"a": 1}}):
        assert json.loads(dashboard_store.encode(other)) == other


def test_frame_merges_processes_rooms_recent_and_traffic():
    now = 2000.2
    first = snapshot(
        "a",
        pid=1,
        open_sockets=3,
        heartbeat_timeouts_total=1,
        closes_total={"1000": 2},
        rooms={"lobby": 4, "dev": 1},
        recent=[
            {"t": 1990.0, "event": "connect", "id": "c1", "user": "ann"},
            {"t": 1995.0, "event": "disconnect", "id": "c1", "user": "ann", "code": 1000, "duration_s": 5.0},
        ],
        traffic=[[1995, 5, 10], [1999, 5, 10], [2000, 7, 7]],
    )
    second = snapshot(
        "b",
        pid=2,
        open_sockets=2,
        closes_total={"1000": 1, "4408": 1},
        rooms={"lobby": 4, "ops": 2},
        recent=[{"t": 1993.0, "event": "connect", "id": "c2", "user": "bob"}],
        traffic=[[1999, 1, 2]],
    )
    frame = dashboard.build_frame([first, second], now=now)
    assert frame["totals"]["processes"] == 2
    assert frame["totals"]["open_sockets"] == 5
    assert frame["totals"]["closes_total"] == {"1000": 3, "4408": 1}
    # The current second (2000) is incomplete and left out of the rates.
    assert frame["processes"][0]["messages_in_per_s"] == 2.0
    assert frame["processes"][0]["messages_out_per_s"] == 4.0
    assert frame["totals"]["messages_in_per_s"] == 2.2
    assert frame["processes"][0]["age_s"] == 0.7
    assert frame["rooms"] == [
        {"room": "lobby", "members": 4},
        {"room": "ops", "members": 2},
        {"room": "dev", "members": 1},
    ]
    assert [(e["t"], e["process"]) for e in frame["recent"]] == [
        (1995.0, "web1:1"),
        (1993.0, "web1:2"),
        (1990.0, "web1:1"),
    ]
    assert frame["recent"][0]["code"] == 1000
    traffic = {row[0]: row[1:] for row in frame["traffic"]}
    assert len(frame["traffic"]) == dashboard.CHART_WINDOW_S
    assert frame["traffic"][-1][0] == 1999
    assert traffic[1999] == [6, 12] and traffic[1995] == [5, 10] and traffic[1998] == [0, 0]
