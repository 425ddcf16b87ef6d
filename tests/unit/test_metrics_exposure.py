"""What /metrics tells and to whom: no private room by name, a bounded number of room series,
no room that is gone, the standard process metrics, and 404 outside RIPPLE_METRICS_ALLOW."""

import asyncio

import pytest
from channels.db import database_sync_to_async
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from chat import dashboard, hub
from chat.hub.events import EVENT_PRESENCE, room_group
from chat.hub.publisher import group_send
from chat.metrics import OTHER_ROOMS, RippleCollector
from chat.models import Room, RoomMembership
from chat.stats import ProcessStats
from project.asgi import application
from tests.support.sessions import logged_in_session

pytestmark = pytest.mark.django_db(transaction=True)

MEMBERS = "ripple_presence_members"


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


async def scrape(async_client) -> tuple[dict[tuple, float], str]:
    response = await async_client.get("/metrics")
    assert response.status_code == 200
    text = response.content.decode()
    return samples(text), text


def named_rooms(found: dict[tuple, float]) -> dict[str, float]:
    """The rooms ripple_presence_members names, by slug (the _other aggregate left out)."""
    rooms = {}
    for (name, labels), value in found.items():
        if name == MEMBERS and dict(labels)["room"] != OTHER_ROOMS:
            rooms[dict(labels)["room"]] = value
    return rooms


async def scrape_until(async_client, condition, *, timeout_s: float = 5.0, what: str):
    """Scrape until ``condition(samples)`` holds (the hub sets counts when its presence read lands)."""
    try:
        async with asyncio.timeout(timeout_s):
            while True:
                found, text = await scrape(async_client)
                if condition(found):
                    return found, text
                await asyncio.sleep(0.02)
    except TimeoutError:
        raise AssertionError(f"timed out waiting for {what}; last scrape:\n{text}") from None


def private_room(slug: str, *members: int) -> None:
    room = Room.objects.create(slug=slug, private=True)
    for user_id in members:
        RoomMembership.objects.create(room=room, user_id=user_id)


async def test_a_private_room_with_members_is_never_named(async_client, ws_client):
    ann_id, ann_key = await database_sync_to_async(logged_in_session)("ann")
    await database_sync_to_async(private_room)("vault-of-secrets", ann_id)
    async with ws_client(session_cookie=ann_key) as ann, ws_client() as guest:
        await ann.subscribe("vault-of-secrets")
        await guest.subscribe("lobby")
        found, text = await scrape_until(
            async_client,
            lambda found: (
                found.get(("ripple_presence_rooms", (("visibility", "private"),))) == 1
                and named_rooms(found) == {"lobby": 1}
            ),
            what="both rooms counted",
        )
        assert "vault-of-secrets" not in text
        # The private room's member is only in the aggregate.
        assert found[(MEMBERS, (("room", OTHER_ROOMS),))] == 1
        assert found[("ripple_presence_rooms", (("visibility", "public"),))] == 1


async def test_more_public_rooms_than_the_cap_give_at_most_that_many_named_series(
    async_client, ws_client, settings
):
    settings.RIPPLE_METRICS_MAX_ROOMS = 3
    async with ws_client() as a, ws_client() as b, ws_client() as c:
        # r1: 3 members, r2: 2, r3 to r5: 1 each.
        for client, rooms in ((a, ["r1", "r2", "r3", "r4", "r5"]), (b, ["r1", "r2"]), (c, ["r1"])):
            for room in rooms:
                await client.subscribe(room)
        found, _ = await scrape_until(
            async_client,
            lambda found: (
                found.get(("ripple_presence_rooms", (("visibility", "public"),))) == 5
                and sum(v for (name, _), v in found.items() if name == MEMBERS) == 8
            ),
            what="all five rooms counted",
        )
    # The most members first, ties by slug; the other two rooms summed.
    assert named_rooms(found) == {"r1": 3, "r2": 2, "r3": 1}
    assert found[(MEMBERS, (("room", OTHER_ROOMS),))] == 2


def test_the_cap_applies_to_rooms_not_seen_through_sockets_too():
    numbers = ProcessStats()
    for index in range(30):
        numbers.room_members(f"room-{index:02}", members=index + 1, private=False)
    numbers.room_members("hidden", members=100, private=True)
    registry = CollectorRegistry()
    registry.register(RippleCollector(lambda: numbers, max_rooms=20))
    found = samples(generate_latest(registry).decode())
    named = named_rooms(found)
    assert sorted(named) == [f"room-{index:02}" for index in range(10, 30)]
    assert found[(MEMBERS, (("room", OTHER_ROOMS),))] == sum(range(1, 11)) + 100
    numbers.room_gone("hidden")
    found = samples(generate_latest(registry).decode())
    assert found[(MEMBERS, (("room", OTHER_ROOMS),))] == sum(range(1, 11))
    assert found[("ripple_presence_rooms", (("visibility", "private"),))] == 0


async def test_standard_process_metrics_are_exported_and_the_hand_made_one_is_gone(async_client):
    found, text = await scrape(async_client)
    assert found[("process_resident_memory_bytes", ())] > 0
    assert found[("process_open_fds", ())] > 0
    assert ("process_cpu_seconds_total", ()) in found
    assert found[("process_start_time_seconds", ())] > 0
    assert any(name == "python_info" for name, _ in found)
    assert "ripple_process_start_time_seconds" not in text


async def test_a_room_whose_last_subscriber_left_is_not_exported_again(async_client, ws_client, monkeypatch):
    """A presence read that lands after the room's last subscriber here left (a slow Redis, a
    fill holding the room's lock) used to put the room back on /metrics until its next join."""
    async with ws_client() as ann, ws_client() as bob:
        await ann.subscribe("brief")
        await scrape_until(async_client, lambda found: named_rooms(found) == {"brief": 1}, what="brief named")

        local = hub.get_hub()
        store = local.presence
        read = store.members
        entered, release, returned = asyncio.Event(), asyncio.Event(), asyncio.Event()

        async def slow_members(room: str):
            if room != "brief":
                return await read(room)
            entered.set()
            await release.wait()
            try:
                return await read(room)
            finally:
                returned.set()

        monkeypatch.setattr(store, "members", slow_members)
        await bob.subscribe("brief")
        # Another process announces a change: the hub re-reads the room's members (its own
        # arrivals it adds without a read), and that read hangs.
        await group_send(
            local.layer, room_group("brief"), {"type": EVENT_PRESENCE, "room": "brief", "origin": "elsewhere"}
        )
        async with asyncio.timeout(5):
            await entered.wait()
        for client in (ann, bob):
            await client.send({"type": "unsubscribe", "room": "brief"})
            await client.recv_type("unsubscribed")
        await scrape_until(async_client, lambda found: named_rooms(found) == {}, what="brief gone")
        assert "brief" not in local.rooms

        release.set()
        async with asyncio.timeout(5):
            await returned.wait()
        found, text = await scrape(async_client)
        assert named_rooms(found) == {}, text
        assert found[("ripple_presence_rooms", (("visibility", "public"),))] == 0


async def status_from(address: str, path: str) -> int:
    """GET ``path`` through the ASGI application as a client at ``address`` ("": none, as over
    a Unix socket); the response status. (The test client cannot set the scope's client.)"""
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"localhost")],
        "client": (address, 4000) if address else None,
        "server": ("127.0.0.1", 8000),
    }
    sent: list[dict] = []
    received = [{"type": "http.request", "body": b"", "more_body": False}]

    async def receive() -> dict:
        if received:
            return received.pop()
        await asyncio.Event().wait()  # no disconnect until the response is done
        return {}

    async def send(message: dict) -> None:
        sent.append(message)

    await application(scope, receive, send)
    return next(message["status"] for message in sent if message["type"] == "http.response.start")


@pytest.mark.parametrize("address", ["203.0.113.9", "2001:db8::1", "::ffff:198.51.100.7", ""])
async def test_metrics_and_readyz_are_404_to_clients_outside_the_allowed_networks(address):
    assert await status_from(address, "/metrics") == 404
    assert await status_from(address, "/readyz") == 404
    assert await status_from(address, "/healthz") == 200


@pytest.mark.parametrize(
    "address", ["127.0.0.1", "::1", "10.1.2.3", "172.18.0.5", "192.168.1.20", "::ffff:10.0.0.2"]
)
async def test_metrics_and_readyz_answer_loopback_and_private_networks(address):
    assert await status_from(address, "/metrics") == 200
    assert await status_from(address, "/readyz") == 200


async def test_the_allowed_networks_come_from_the_setting(settings):
    settings.RIPPLE_METRICS_ALLOW = ["203.0.113.0/24"]
    assert await status_from("203.0.113.9", "/metrics") == 200
    assert await status_from("127.0.0.1", "/metrics") == 404
