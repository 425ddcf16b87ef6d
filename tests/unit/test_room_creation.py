"""Who may create rooms and how fast, which rooms the index lists, and deleting rooms (issue 12)."""

import json
import logging

import pytest
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.contrib.auth.models import Permission, User
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from chat import limits, selectors, services
from chat.logs import JsonFormatter
from chat.models import Message, Room
from project.asgi import application
from tests.conftest import ORIGIN_HEADERS, Client
from tests.support.sessions import logged_in_session

pytestmark = pytest.mark.django_db(transaction=True)

ROOMS_URL = reverse("admin:chat_room_changelist")


@pytest.fixture(autouse=True)
def fresh_creation_buckets(monkeypatch, settings):
    """Process-wide buckets of this test's own; a small burst that does not refill meanwhile."""
    monkeypatch.setattr(limits, "room_creations_per_member", limits.ExpiringBuckets())
    monkeypatch.setattr(limits, "room_creations_per_address", limits.ExpiringBuckets())
    settings.RIPPLE_ROOM_CREATE_BURST = 3
    settings.RIPPLE_ROOM_CREATE_PER_MIN = 0.01
    return settings


async def room_slugs() -> list[str]:
    return await database_sync_to_async(lambda: sorted(Room.objects.values_list("slug", flat=True)))()


async def subscribe_reply(client: Client, room: str) -> dict:
    """The direct reply to a subscribe: ``subscribed`` or ``error``."""
    await client.send({"type": "subscribe", "room": room, "ref": room})
    return await subscribe_reply_sent(client, room)


class OpenFrom:
    """Open in-process chat sockets from a given client address; all closed at the end."""

    def __init__(self) -> None:
        self.opened: list[WebsocketCommunicator] = []

    async def __call__(self, address: str | None = None, session_cookie: str | None = None) -> Client:
        headers = list(ORIGIN_HEADERS)
        if session_cookie:
            headers.append((b"cookie", f"sessionid={session_cookie}".encode()))
        communicator = WebsocketCommunicator(application, "/ws/chat/", headers=headers)
        if address is not None:
            communicator.scope["client"] = (address, 40000 + len(self.opened))
        self.opened.append(communicator)
        assert (await communicator.connect())[0]
        client = Client(communicator)
        client.welcome = await client.recv()
        assert client.welcome["type"] == "welcome"
        return client

    async def close_all(self) -> None:
        for communicator in self.opened:
            await communicator.disconnect()


@pytest.fixture
async def open_socket():
    opener = OpenFrom()
    yield opener
    await opener.close_all()


# Rates.


async def test_a_guest_creating_rooms_past_the_burst_is_rate_limited_and_only_the_burst_is_stored(
    open_socket,
):
    guest = await open_socket()
    replies = [await subscribe_reply(guest, f"spam-{i}") for i in range(6)]
    assert [reply["type"] for reply in replies] == ["subscribed"] * 3 + ["error"] * 3
    for refused in replies[3:]:
        assert refused["code"] == "rate_limited" and refused["room"] == refused["ref"]
        assert refused["retry_after_ms"] > 1000
    assert await room_slugs() == ["spam-0", "spam-1", "spam-2"]
    # The socket stays usable.
    await guest.send({"type": "message", "room": "spam-0", "body": "still here", "client_id": "k1"})
    assert (await guest.recv_type("ack"))["seq"] == 1


async def test_existing_rooms_can_be_subscribed_with_the_creation_bucket_empty(open_socket):
    await database_sync_to_async(services.room_get_or_create)(slug="lobby")
    guest = await open_socket()
    for i in range(3):
        assert (await subscribe_reply(guest, f"mine-{i}"))["type"] == "subscribed"
    assert (await subscribe_reply(guest, "one-too-many"))["code"] == "rate_limited"
    assert (await subscribe_reply(guest, "lobby"))["type"] == "subscribed"
    await guest.send({"type": "unsubscribe", "room": "mine-0"})
    await guest.recv_type("unsubscribed")
    assert (await subscribe_reply(guest, "mine-0"))["type"] == "subscribed"


async def test_subscribing_to_an_existing_room_costs_one_query_and_no_token(open_socket, monkeypatch):
    await database_sync_to_async(services.room_get_or_create)(slug="lobby")
    real_find, queries = selectors.room_find, []

    def counted_find(**kwargs):
        with CaptureQueriesContext(connection) as captured:
            found = real_find(**kwargs)
        queries.append(len(captured))
        return found

    def no_create(**kwargs):
        raise AssertionError("an existing room was created again")

    monkeypatch.setattr(selectors, "room_find", counted_find)
    monkeypatch.setattr(services, "room_get_or_create", no_create)
    guest = await open_socket("10.4.4.4")
    for _ in range(5):  # more than the burst: existing rooms take no token
        assert (await subscribe_reply(guest, "lobby"))["type"] == "subscribed"
        await guest.send({"type": "unsubscribe", "room": "lobby"})
        await guest.recv_type("unsubscribed")
    assert queries == [1] * 5


async def test_new_sockets_from_one_address_share_its_bucket(open_socket):
    first = await open_socket("10.1.2.3")
    for i in range(3):
        assert (await subscribe_reply(first, f"a-{i}"))["type"] == "subscribed"
    # A fresh cookie-less socket has a full bucket of its own, but the address's is empty.
    second = await open_socket("10.1.2.3")
    assert (await subscribe_reply(second, "a-3"))["code"] == "rate_limited"
    elsewhere = await open_socket("10.9.9.9")
    assert (await subscribe_reply(elsewhere, "b-0"))["type"] == "subscribed"
    assert await room_slugs() == ["a-0", "a-1", "a-2", "b-0"]


async def test_many_sockets_subscribing_to_one_new_room_at_once_spend_one_creation(open_socket):
    """Each finds no room and takes a token; the one that creates it keeps its token, the rest
    get theirs back (a crowd behind one address joining a new room is not a flood of rooms)."""
    crowd = [await open_socket("10.4.4.4") for _ in range(8)]  # over the burst of 3
    for client in crowd:
        await client.send({"type": "subscribe", "room": "crowded", "ref": "crowded"})
    replies = [await subscribe_reply_sent(client, "crowded") for client in crowd]
    assert [reply["type"] for reply in replies] == ["subscribed"] * len(crowd), replies
    assert await room_slugs() == ["crowded"]
    # Two creations left for this address, as after creating one room.
    late = await open_socket("10.4.4.4")
    assert [(await subscribe_reply(late, f"c-{i}"))["type"] for i in range(3)] == [
        "subscribed",
        "subscribed",
        "error",
    ]


async def subscribe_reply_sent(client: Client, room: str) -> dict:
    """The reply to a subscribe already sent."""
    while True:
        frame = await client.recv()
        if frame["type"] in ("subscribed", "error") and frame.get("ref") == room:
            return frame


async def test_sockets_of_one_user_share_a_bucket(open_socket):
    _, key = await database_sync_to_async(logged_in_session)("ann")
    first = await open_socket(session_cookie=key)
    for i in range(3):
        assert (await subscribe_reply(first, f"ann-{i}"))["type"] == "subscribed"
    second = await open_socket(session_cookie=key)
    assert (await subscribe_reply(second, "ann-3"))["code"] == "rate_limited"
    assert await room_slugs() == ["ann-0", "ann-1", "ann-2"]


def test_expiring_buckets_stay_bounded_and_forget_full_buckets_first():
    buckets = limits.ExpiringBuckets(max_keys=10)
    hot = buckets.get("hot", 1.0, 2, now=0.0)
    assert limits.take_all((hot,), 0.0) == 0.0 and limits.take_all((hot,), 0.0) == 0.0
    for i in range(1000):
        buckets.get(f"new-{i}", 1.0, 2, now=0.0)
        assert buckets.size() <= 10
    # The drained bucket outlived a thousand full ones, so its key got no fresh burst.
    assert buckets.get("hot", 1.0, 2, now=0.0) is hot and hot.wait_s(0.0) > 0.0


def test_expiring_buckets_drop_the_least_recently_used_when_none_is_full():
    buckets = limits.ExpiringBuckets(max_keys=10)
    for i in range(50):
        limits.take_all((buckets.get(f"k{i}", 1.0, 1, now=0.0),), 0.0)
        assert buckets.size() <= 10
    assert buckets.get("k49", 1.0, 1, now=0.0).wait_s(0.0) > 0.0  # the newest are kept


# Who may create.


async def test_with_creation_for_users_a_guest_gets_room_not_found_and_nothing_is_created(
    open_socket, settings
):
    settings.RIPPLE_ROOM_CREATION = "users"
    await database_sync_to_async(services.room_get_or_create)(slug="lobby")
    guest = await open_socket()
    refused = await subscribe_reply(guest, "brand-new")
    assert (refused["type"], refused["code"], refused["room"]) == ("error", "room_not_found", "brand-new")
    assert await room_slugs() == ["lobby"]
    assert (await subscribe_reply(guest, "lobby"))["type"] == "subscribed"


async def test_with_creation_for_users_a_logged_in_user_creates_a_room(open_socket, settings):
    settings.RIPPLE_ROOM_CREATION = "users"
    _, key = await database_sync_to_async(logged_in_session)("bob")
    bob = await open_socket(session_cookie=key)
    assert (await subscribe_reply(bob, "bobs-room"))["type"] == "subscribed"
    assert await room_slugs() == ["bobs-room"]


async def test_with_creation_for_staff_only_staff_create(open_socket, settings):
    settings.RIPPLE_ROOM_CREATION = "staff"
    _, user_key = await database_sync_to_async(logged_in_session)("cat")
    _, staff_key = await database_sync_to_async(logged_in_session)("dee", is_staff=True)
    cat = await open_socket(session_cookie=user_key)
    assert (await subscribe_reply(cat, "cats"))["code"] == "room_not_found"
    dee = await open_socket(session_cookie=staff_key)
    assert (await subscribe_reply(dee, "staff-room"))["type"] == "subscribed"
    assert await room_slugs() == ["staff-room"]


def test_room_page_of_a_missing_room_is_404_and_creates_nothing_when_guests_may_not_create(client, settings):
    settings.RIPPLE_ROOM_CREATION = "users"
    Room.objects.create(slug="lobby")
    session = client.session
    session["ripple_guest_name"] = "Ann"
    session.save()
    assert client.get("/rooms/ghost/").status_code == 404
    assert client.get("/rooms/lobby/").status_code == 200
    assert list(Room.objects.values_list("slug", flat=True)) == ["lobby"]
    index = client.get("/").content.decode()
    assert "Only signed-in users can create rooms" in index and "Open or create" not in index
    refused = client.post("/", {"room": "Ghost"})
    assert refused.status_code == 400 and "There is no room ghost" in refused.content.decode()
    assert client.post("/", {"room": "Lobby"})["Location"] == "/rooms/lobby/"
    User.objects.create_user("eve", password="pw-long-enough-1")
    client.login(username="eve", password="pw-long-enough-1")
    assert client.get("/rooms/ghost/").status_code == 200  # the socket will create it
    assert client.post("/", {"room": "Ghost"})["Location"] == "/rooms/ghost/"
    assert "Open or create a room" in client.get("/").content.decode()


def test_index_lists_rooms_with_messages_or_a_title_but_not_empty_ones(client):
    used = services.room_get_or_create(slug="chatty")
    services.message_post(room=used, author="a", body="hi", client_id="x1")
    services.room_get_or_create(slug="announced", title="Announcements")
    for i in range(5):
        services.room_get_or_create(slug=f"spam-room-{i}")
    page = client.get("/").content.decode()
    assert 'href="/rooms/chatty/"' in page and 'href="/rooms/announced/"' in page
    assert "spam-room" not in page


# Deleting rooms.


def run_delete(client, rooms: list[Room], **data):
    return client.post(
        ROOMS_URL,
        {"action": "delete_rooms", ACTION_CHECKBOX_NAME: [room.pk for room in rooms], "index": 0, **data},
    )


async def test_deleting_a_room_from_the_admin_unsubscribes_its_sockets_and_a_later_subscribe_starts_afresh(
    open_socket, admin_client, caplog
):
    doomed = await database_sync_to_async(services.room_get_or_create)(slug="doomed")
    await database_sync_to_async(services.room_get_or_create)(slug="kept")
    watcher = await open_socket()
    await watcher.subscribe("doomed")
    await watcher.post("doomed", "soon gone", "w1")
    page = await database_sync_to_async(run_delete)(admin_client, [doomed])
    assert page.status_code == 200 and b"Delete the rooms" in page.content  # the confirmation page
    assert await room_slugs() == ["doomed", "kept"]

    with caplog.at_level(logging.INFO, logger="ripple.events"):
        done = await database_sync_to_async(run_delete)(admin_client, [doomed], apply="1")
    assert done.status_code == 302
    ended = await watcher.recv_type("unsubscribed")
    assert ended == {"type": "unsubscribed", "room": "doomed", "ref": None, "reason": "room_deleted"}
    assert await room_slugs() == ["kept"]
    assert not await database_sync_to_async(Message.objects.filter(room_id=doomed.pk).exists)()
    logged = [
        json.loads(JsonFormatter().format(record))
        for record in caplog.records
        if record.name == "ripple.events" and record.getMessage() == "moderation"
    ]
    assert [(e["action"], e["rooms"], e["by"]) for e in logged] == [("room_delete", ["doomed"], "admin")]

    # Not subscribed any more; subscribing again makes a new, empty room.
    await watcher.send({"type": "message", "room": "doomed", "body": "x", "client_id": "w2"})
    assert (await watcher.recv_type("error"))["code"] == "not_subscribed"
    again = await watcher.subscribe("doomed")
    assert (again["last_seq"], again["messages"]) == (0, [])
    assert await room_slugs() == ["doomed", "kept"]


def test_only_moderators_of_messages_and_rooms_get_the_delete_action(client):
    staff = User.objects.create_user("mod", password="pw-long-enough-1", is_staff=True)
    staff.user_permissions.add(
        Permission.objects.get(codename="view_room"), Permission.objects.get(codename="change_room")
    )
    room = Room.objects.create(slug="target")
    client.login(username="mod", password="pw-long-enough-1")
    assert b"delete_rooms" not in client.get(ROOMS_URL).content
    run_delete(client, [room], apply="1")
    assert Room.objects.filter(slug="target").exists()
    staff.user_permissions.add(Permission.objects.get(codename="change_message"))
    assert b"delete_rooms" in client.get(ROOMS_URL).content
    run_delete(client, [room], apply="1")
    assert not Room.objects.filter(slug="target").exists()
