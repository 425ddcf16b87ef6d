import asyncio
import json

import pytest
from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from channels.testing import WebsocketCommunicator

from chat import hub, services
from chat.models import Message, Room
from project.asgi import application
from tests.conftest import ORIGIN_HEADERS, no_tasks_but_current
from tests.support.sessions import logged_in_session

pytestmark = pytest.mark.django_db(transaction=True)


async def stored_seqs(slug: str) -> list[int]:
    return await database_sync_to_async(
        lambda: list(Message.objects.filter(room__slug=slug).order_by("seq").values_list("seq", flat=True))
    )()


async def test_welcome_describes_the_connection(ws_client, settings):
    async with ws_client() as client:
        welcome = client.welcome
    assert welcome["protocol"] == 1
    assert len(welcome["connection_id"]) == 32
    assert welcome["heartbeat_interval_ms"] == settings.RIPPLE_HEARTBEAT_INTERVAL_S * 1000
    assert welcome["heartbeat_timeout_ms"] == settings.RIPPLE_HEARTBEAT_TIMEOUT_S * 1000
    assert welcome["user"]["name"].startswith("guest-") and not welcome["user"]["authenticated"]
    assert welcome["limits"]["max_body_chars"] == 4000
    assert isinstance(welcome["server_time"], int)


async def test_ping_gets_pong_with_same_t_and_ref(ws_client):
    async with ws_client() as client:
        await client.send({"type": "ping", "t": 1234, "ref": "p1"})
        assert await client.recv() == {"type": "pong", "t": 1234, "ref": "p1"}
        await client.send({"type": "ping"})
        assert await client.recv() == {"type": "pong", "t": None, "ref": None}


async def test_two_clients_see_each_others_messages_in_order(ws_client):
    async with ws_client() as ann, ws_client() as bob:
        assert (await ann.subscribe("general"))["last_seq"] == 0
        await bob.subscribe("general")
        for i in range(3):
            await ann.send({"type": "message", "room": "general", "body": f"a{i}", "client_id": f"a{i}"})
            await bob.send({"type": "message", "room": "general", "body": f"b{i}", "client_id": f"b{i}"})
        seen = {}
        for name, client in (("ann", ann), ("bob", bob)):
            messages, acks = [], []
            while len(messages) < 6 or len(acks) < 3:
                frame = await client.recv()
                (messages if frame["type"] == "message" else acks).append(frame)
            seen[name] = messages
            assert all(frame["type"] == "ack" for frame in acks)
        assert [m["seq"] for m in seen["ann"]] == [1, 2, 3, 4, 5, 6]
        assert seen["ann"] == seen["bob"]
        assert sorted(m["body"] for m in seen["ann"]) == ["a0", "a1", "a2", "b0", "b1", "b2"]
        first = seen["ann"][0]
        assert set(first) == {"type", "room", "seq", "author", "author_kind", "body", "sent_at", "client_id"}
        assert first["author_kind"] == "guest"
        assert first["sent_at"].endswith("Z")


async def test_ack_carries_seq_and_sender_gets_own_message(ws_client):
    async with ws_client() as client:
        await client.subscribe("solo")
        await client.send({"type": "message", "room": "solo", "body": "hi", "client_id": "k1", "ref": 9})
        frames = [await client.recv(), await client.recv()]
        ack = next(f for f in frames if f["type"] == "ack")
        message = next(f for f in frames if f["type"] == "message")
        assert ack["seq"] == message["seq"] == 1
        assert (ack["client_id"], ack["duplicate"], ack["ref"]) == ("k1", False, 9)
        assert message["author"] == client.welcome["user"]["name"]


async def test_the_senders_own_copy_is_written_before_its_ack(ws_client):
    """This process's subscribers come first, the ack after (the protocol allows either order)."""
    async with ws_client() as client:
        await client.subscribe("first")
        for n in range(3):
            await client.send({"type": "message", "room": "first", "body": f"m{n}", "client_id": f"f{n}"})
            frames = [await client.recv(), await client.recv()]
            assert [(f["type"], f["seq"]) for f in frames] == [("message", n + 1), ("ack", n + 1)]


async def test_a_failed_local_delivery_still_acks_and_still_reaches_the_room(ws_client, monkeypatch, caplog):
    def broken(**fields):
        raise RuntimeError("local delivery broke")

    async with ws_client() as sender, ws_client() as watcher:
        await sender.subscribe("halves")
        await watcher.subscribe("halves")
        monkeypatch.setattr(hub, "message_deliver_here", broken)
        ack = await sender.post("halves", "still here", "h1")
        assert (ack["seq"], ack["duplicate"]) == (1, False)
        # The channel layer's copy reaches this process's hub, which had not delivered seq 1.
        assert (await watcher.recv_type("message"))["body"] == "still here"
        assert (await sender.recv_type("message"))["seq"] == 1
    assert "delivering halves#1 here failed" in caplog.text


async def test_resend_of_client_id_is_acked_with_original_seq_and_not_broadcast(ws_client):
    async with ws_client() as sender, ws_client() as watcher:
        await sender.subscribe("dup")
        await watcher.subscribe("dup")
        first = await sender.post("dup", "once", "same-id")
        assert (await watcher.recv())["body"] == "once"
        again = await sender.post("dup", "once", "same-id")
        assert (again["seq"], again["duplicate"]) == (first["seq"], True)
        assert await watcher.nothing_more(0.3)
        # The sender's own stream had exactly one copy as well.
        frames = []
        while not await sender.nothing_more(0.1):
            frames.append(await sender.recv())
        assert [f["seq"] for f in frames if f["type"] == "message"] == [1]
    assert await stored_seqs("dup") == [1]


async def test_resume_with_since_returns_exactly_the_missed_messages(ws_client):
    async with ws_client() as writer:
        await writer.subscribe("resume")
        for i in range(5):
            await writer.post("resume", f"m{i}", f"c{i}")
        async with ws_client() as reader:
            subscribed = await reader.subscribe("resume", since=2)
            assert [m["seq"] for m in subscribed["messages"]] == [3, 4, 5]
            assert [m["body"] for m in subscribed["messages"]] == ["m2", "m3", "m4"]
            assert (subscribed["last_seq"], subscribed["complete"]) == (5, True)
            await writer.post("resume", "live", "c-live")
            live = await reader.recv_type("message")
            assert (live["seq"], live["body"]) == (6, "live")
            assert await reader.nothing_more()


async def test_subscribe_without_since_returns_recent_history(ws_client, settings):
    settings.RIPPLE_HISTORY_SIZE = 2
    async with ws_client() as writer:
        await writer.subscribe("recent")
        for i in range(4):
            await writer.post("recent", f"m{i}", f"c{i}")
        async with ws_client() as reader:
            subscribed = await reader.subscribe("recent")
    assert [m["seq"] for m in subscribed["messages"]] == [3, 4]
    assert subscribed["complete"] is True


async def test_resume_past_the_limit_says_incomplete(ws_client, settings):
    settings.RIPPLE_RESUME_LIMIT = 2
    async with ws_client() as writer:
        await writer.subscribe("limit")
        for i in range(5):
            await writer.post("limit", f"m{i}", f"c{i}")
        async with ws_client() as reader:
            subscribed = await reader.subscribe("limit", since=0)
    assert [m["seq"] for m in subscribed["messages"]] == [4, 5]
    assert subscribed["complete"] is False


async def test_unsubscribe_stops_delivery(ws_client):
    async with ws_client() as writer, ws_client() as reader:
        await writer.subscribe("quiet")
        await reader.subscribe("quiet")
        await reader.send({"type": "unsubscribe", "room": "quiet", "ref": "u"})
        assert await reader.recv() == {"type": "unsubscribed", "room": "quiet", "ref": "u"}
        await writer.post("quiet", "after", "c1")
        assert await reader.nothing_more(0.3)


async def test_one_socket_multiplexes_rooms(ws_client):
    async with ws_client() as client:
        await client.subscribe("one")
        await client.subscribe("two")
        await client.post("one", "in one", "x1")
        await client.post("two", "in two", "x2")
        messages = []
        while len(messages) < 2:
            frame = await client.recv()
            if frame["type"] == "message":
                messages.append((frame["room"], frame["seq"], frame["body"]))
    assert sorted(messages) == [("one", 1, "in one"), ("two", 1, "in two")]


BAD_FRAMES = [
    ("not json", "invalid_json"),
    ("[]", "invalid_frame"),
    ({"no": "type"}, "invalid_frame"),
    ({"type": "shout"}, "unknown_type"),
    ({"type": "subscribe"}, "missing_field"),
    ({"type": "subscribe", "room": "UPPER"}, "invalid_room"),
    ({"type": "subscribe", "room": "ok", "since": "x"}, "invalid_field"),
    ({"type": "message", "room": "ok", "body": "hi"}, "missing_field"),
    ({"type": "message", "room": "ok", "body": "", "client_id": "c"}, "body_empty"),
    ({"type": "message", "room": "ok", "body": "x" * 4001, "client_id": "c"}, "body_too_long"),
    ({"type": "message", "room": "ok", "body": "a\u0000b", "client_id": "c"}, "invalid_body"),
    ({"type": "message", "room": "ok", "body": "hi", "client_id": "c"}, "not_subscribed"),
    ({"type": "unsubscribe", "room": "ok"}, "not_subscribed"),
    ("x" * 20000, "frame_too_large"),
]


@pytest.mark.parametrize(("frame", "code"), BAD_FRAMES)
async def test_bad_input_gets_an_error_frame_keeps_the_socket_and_stores_nothing(ws_client, frame, code):
    async with ws_client() as client:
        await client.send(frame)
        error = await client.recv()
        assert (error["type"], error["code"]) == ("error", code)
        assert error["message"]
        await client.send({"type": "ping", "t": 1})
        assert (await client.recv())["type"] == "pong"
    assert await database_sync_to_async(Message.objects.count)() == 0


async def test_binary_frames_are_refused(ws_client):
    async with ws_client() as client:
        await client.communicator.send_to(bytes_data=b"\x00\x01")
        assert (await client.recv())["code"] == "binary_not_supported"


async def test_subscribing_twice_is_an_error(ws_client):
    async with ws_client() as client:
        await client.subscribe("twice")
        await client.send({"type": "subscribe", "room": "twice", "ref": 2})
        error = await client.recv()
        assert (error["code"], error["room"], error["ref"]) == ("already_subscribed", "twice", 2)


async def test_subscription_count_is_capped(ws_client, settings):
    settings.RIPPLE_MAX_SUBSCRIPTIONS = 2
    async with ws_client() as client:
        await client.subscribe("r1")
        await client.subscribe("r2")
        await client.send({"type": "subscribe", "room": "r3"})
        assert (await client.recv())["code"] == "too_many_subscriptions"
    assert not await database_sync_to_async(Room.objects.filter(slug="r3").exists)()


async def test_client_id_of_another_author_is_refused(ws_client):
    async with ws_client() as ann, ws_client() as bob:
        await ann.subscribe("clash")
        await bob.subscribe("clash")
        await ann.post("clash", "mine", "shared-id")
        await bob.send({"type": "message", "room": "clash", "body": "also mine", "client_id": "shared-id"})
        error = await bob.recv_type("error")
        assert (error["code"], error["client_id"]) == ("client_id_conflict", "shared-id")
    assert await stored_seqs("clash") == [1]


async def test_database_failure_is_a_server_error_and_nothing_is_stored(ws_client, monkeypatch):
    async with ws_client() as client:
        await client.subscribe("broken")

        def fail(**kwargs):
            from django.db import OperationalError

            raise OperationalError("database is down")

        monkeypatch.setattr(services, "message_store", fail)
        await client.send({"type": "message", "room": "broken", "body": "hi", "client_id": "c1"})
        error = await client.recv()
        assert (error["code"], error["client_id"]) == ("server_error", "c1")
        monkeypatch.undo()
        ack = await client.post("broken", "hi", "c1")
        assert (ack["seq"], ack["duplicate"]) == (1, False)
    assert await stored_seqs("broken") == [1]


async def test_handshake_without_allowed_origin_is_refused():
    for headers in ([], [(b"origin", b"http://evil.example"), (b"host", b"localhost")]):
        communicator = WebsocketCommunicator(application, "/ws/chat/", headers=headers)
        connected, _ = await communicator.connect()
        assert not connected
        await communicator.disconnect()


async def test_guest_name_comes_from_the_session(ws_client):
    from django.contrib.sessions.backends.db import SessionStore

    def make_session():
        session = SessionStore()
        session["ripple_guest_name"] = "Zoë"
        session.create()
        return session.session_key

    key = await database_sync_to_async(make_session)()
    async with ws_client(session_cookie=key) as client:
        assert client.welcome["user"] == {"name": "Zoë", "authenticated": False}
        await client.subscribe("named")
        await client.post("named", "hello", "n1")
        message = await client.recv_type("message")
    assert message["author"] == "Zoë"


async def test_logged_in_user_posts_under_username(ws_client):
    _, key = await database_sync_to_async(logged_in_session)("carol")
    async with ws_client(session_cookie=key) as client:
        assert client.welcome["user"] == {"name": "carol", "authenticated": True}


async def test_server_pings_and_a_silent_client_is_closed_with_4408(ws_client, fast_heartbeat):
    async with ws_client() as client:
        assert (await client.recv(timeout=2))["type"] == "ping"
        # Say nothing more: closed after interval + timeout of silence.
        while True:
            output = await client.communicator.receive_output(timeout=3)
            if output["type"] == "websocket.close":
                break
        assert output["code"] == 4408


async def test_a_client_that_pings_every_interval_is_never_pinged(ws_client, fast_heartbeat):
    async with ws_client() as client:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 1.2  # three times interval + timeout
        while loop.time() < deadline:
            await client.send({"type": "ping", "t": 7})
            assert (await client.recv(timeout=1))["type"] == "pong"
            # One interval of quiet from the server until the next ping.
            assert await client.nothing_more(timeout=fast_heartbeat.RIPPLE_HEARTBEAT_INTERVAL_S)


async def test_any_frame_keeps_a_connection_alive(ws_client, fast_heartbeat):
    async with ws_client() as client:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 1.2  # three times interval + timeout
        while loop.time() < deadline:
            frame = await client.recv(timeout=1)
            assert frame["type"] == "ping", frame
            await client.send({"type": "pong", "t": frame["t"]})


async def test_no_task_is_left_behind_after_disconnects(ws_client, fast_heartbeat):
    async with ws_client() as ann, ws_client() as bob:
        await ann.subscribe("tasks")
        await bob.subscribe("tasks")
        await ann.post("tasks", "hi", "t1")
        await bob.recv_type("message")
        assert len(no_tasks_but_current()) >= 3  # two sockets, the heartbeat sweeper, the hub
    # Disconnect is processed by the consumers' own tasks: wait for them to finish.
    async with asyncio.timeout(3):
        while no_tasks_but_current():
            await asyncio.sleep(0.01)
    assert hub.get_hub().rooms == {}


async def test_hub_delivers_out_of_order_arrivals_in_seq_order(ws_client, settings):
    settings.RIPPLE_GAP_FILL_S = 5  # long: order must come from reordering, not the database
    async with ws_client() as client:
        await client.subscribe("order")
        layer = get_channel_layer()
        room = await database_sync_to_async(Room.objects.get)(slug="order")
        posted = [
            await database_sync_to_async(services.message_store)(
                room=room, author="x", user_id=None, body=f"m{i}", client_id=f"o{i}"
            )
            for i in range(3)
        ]
        for item in reversed(posted):  # 3, 2, 1 through the channel layer only
            await layer.group_send(
                hub.room_group("order"),
                {
                    "type": hub.EVENT_MESSAGE,
                    "room": "order",
                    "seq": item.message.seq,
                    "text": item.frame_text,
                },
            )
        seqs = [(await client.recv_type("message"))["seq"] for _ in range(3)]
    assert seqs == [1, 2, 3]


async def test_hub_fills_a_dropped_message_from_the_database(ws_client, settings):
    settings.RIPPLE_GAP_FILL_S = 0.05
    async with ws_client() as client:
        await client.subscribe("holes")
        room = await database_sync_to_async(Room.objects.get)(slug="holes")
        store = database_sync_to_async(services.message_store)
        await store(room=room, author="x", user_id=None, body="lost", client_id="h1")  # never published
        second = await store(room=room, author="x", user_id=None, body="found", client_id="h2")
        await services.message_publish(second)
        first, then = await client.recv_type("message"), await client.recv_type("message")
    assert [(first["seq"], first["body"]), (then["seq"], then["body"])] == [(1, "lost"), (2, "found")]


async def test_tail_check_delivers_a_dropped_last_message(ws_client, settings):
    settings.RIPPLE_TAIL_CHECK_S = 0.1
    async with ws_client() as client:
        await client.subscribe("tail")
        room = await database_sync_to_async(Room.objects.get)(slug="tail")
        await database_sync_to_async(services.message_store)(
            room=room, author="x", user_id=None, body="never published", client_id="t1"
        )
        message = await client.recv_type("message", timeout=2)
    assert (message["seq"], message["body"]) == (1, "never published")


async def test_echo_endpoint_behaves_like_the_tutorial_server():
    communicator = WebsocketCommunicator(application, "/ws/echo/", headers=ORIGIN_HEADERS)
    connected, _ = await communicator.connect()
    assert connected
    assert await communicator.receive_from() == "Hello Client"
    await communicator.send_to(text_data="hi there")
    assert await communicator.receive_from() == "received: hi there(From Server)"
    await communicator.send_to(bytes_data=b"abc")
    assert await communicator.receive_from() == "received: 3 bytes(From Server)"
    await communicator.disconnect()


async def test_frames_are_compact_json(ws_client):
    async with ws_client() as client:
        await client.send({"type": "ping", "t": 1})
        raw = await client.communicator.receive_from()
    assert raw == json.dumps({"type": "pong", "t": 1, "ref": None}, separators=(",", ":"))


async def test_a_failed_subscribe_is_a_server_error_and_leaves_no_task(ws_client, monkeypatch):
    from chat import selectors

    real = selectors.room_row

    def fail(**kwargs):
        from django.db import OperationalError

        raise OperationalError("database is down")

    async with ws_client() as client:

        def ripple_tasks() -> list[str]:
            return sorted(t.get_name() for t in no_tasks_but_current() if t.get_name().startswith("ripple-"))

        # A connected socket: the heartbeat sweeper and the hub's reader and janitor.
        running = ripple_tasks()
        assert running == ["ripple-heartbeat", "ripple-hub-janitor", "ripple-hub-reader"]
        monkeypatch.setattr(selectors, "room_row", fail)
        await client.send({"type": "subscribe", "room": "flaky", "ref": "s1"})
        error = await client.recv()
        assert (error["code"], error["room"], error["ref"]) == ("server_error", "flaky", "s1")
        assert hub.get_hub().rooms == {}
        # Nothing started for the room is left running, and the hub still serves the socket.
        assert ripple_tasks() == running
        monkeypatch.setattr(selectors, "room_row", real)
        subscribed = await client.subscribe("flaky")
        assert subscribed["last_seq"] == 0
        await client.post("flaky", "works now", "f1")
        assert (await client.recv_type("message"))["body"] == "works now"


async def test_a_subscriber_that_attaches_mid_burst_gets_every_message_once(ws_client):
    """Messages stored while a subscribe reads history reach the new subscriber exactly once."""
    async with ws_client() as writer, ws_client() as reader:
        await writer.subscribe("burst")
        room = await database_sync_to_async(Room.objects.get)(slug="burst")
        store = database_sync_to_async(services.message_store)

        async def write(count: int) -> None:
            for i in range(count):
                posted = await store(room=room, author="w", user_id=None, body=f"m{i}", client_id=f"w{i}")
                await services.message_publish(posted)

        writing = asyncio.create_task(write(40))
        await asyncio.sleep(0)  # let the burst start before subscribing
        subscribed = await reader.subscribe("burst", since=0)
        await writing
        seqs = [m["seq"] for m in subscribed["messages"]]
        while len(seqs) < 40:
            seqs.append((await reader.recv_type("message"))["seq"])
        assert seqs == list(range(1, 41))
        assert await reader.nothing_more(0.2)


async def test_an_open_socket_waits_on_its_client_in_the_consumer_itself_not_in_a_task_per_frame(ws_client):
    """No channel layer, one source of frames: no receive task per frame (consumers/dispatch.py)."""
    async with ws_client() as client:
        for n in range(3):
            await client.send({"type": "ping", "t": n})
            assert (await client.recv())["type"] == "pong"
        running = sorted(task.get_coro().__qualname__ for task in no_tasks_but_current())
        # The application itself and the hub's three; Channels' loop added a guarded_receive.
        assert running == [
            "HeartbeatMonitor._sweep",
            "Janitor.run",
            "ProtocolTypeRouter.__call__",
            "RoomHub._read",
        ]
