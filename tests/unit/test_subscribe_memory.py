"""A subscribe to a room already live on this process reads no database: its history comes from
the stream's ring and its row from the hub, with the same answers the database would give."""

import asyncio

import pytest
from channels.db import database_sync_to_async

from chat import selectors, services
from chat.hub import get_hub
from chat.hub.janitor import Janitor
from chat.models import Message, Room, RoomMembership
from tests.support.sessions import logged_in_session

pytestmark = pytest.mark.django_db(transaction=True)

# The test's own reads of what the database says, not counted as the server's.
READ_HISTORY = selectors.message_history


class Reads:
    """Counts the calls of the selectors a subscribe may make (each still runs for real)."""

    NAMES = ("room_find", "message_history")

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.calls: dict[str, int] = dict.fromkeys(self.NAMES, 0)
        self.real = {name: getattr(selectors, name) for name in self.NAMES}
        for name in self.NAMES:
            monkeypatch.setattr(selectors, name, self._counted(name))

    def _counted(self, name: str):
        real = self.real[name]

        def counted(**kwargs):
            self.calls[name] += 1
            return real(**kwargs)

        return counted

    def snapshot(self) -> dict[str, int]:
        return dict(self.calls)


def stored_room(slug: str, count: int) -> Room:
    room = Room.objects.create(slug=slug)
    for number in range(1, count + 1):
        services.message_post(room=room, author="ann", body=f"body {number} é", client_id=f"m{number}")
    return room


def history_now(room: Room, since: int | None, settings) -> dict:
    """What the database says a subscriber should get, read directly."""
    history = READ_HISTORY(
        room_id=room.pk,
        room_slug=room.slug,
        since=since,
        history_size=settings.RIPPLE_HISTORY_SIZE,
        resume_limit=settings.RIPPLE_RESUME_LIMIT,
        max_bytes=settings.RIPPLE_MAX_HISTORY_BYTES,
    )
    return {"messages": history.messages, "last_seq": history.last_seq, "complete": history.complete}


def answer(subscribed: dict) -> dict:
    return {key: subscribed[key] for key in ("messages", "last_seq", "complete")}


async def test_a_live_rooms_history_comes_from_memory_as_the_database_would_give_it(
    ws_client, settings, monkeypatch
):
    settings.RIPPLE_HISTORY_SIZE = 5
    settings.RIPPLE_RESUME_LIMIT = 10
    room = await database_sync_to_async(stored_room)("ring", 12)
    reads = Reads(monkeypatch)
    expected = database_sync_to_async(history_now)
    async with ws_client() as ann:
        first = await ann.subscribe("ring")
        assert [m["seq"] for m in first["messages"]] == [8, 9, 10, 11, 12]
        assert reads.snapshot() == {"room_find": 1, "message_history": 1}
        for number in (13, 14, 15):
            await ann.post("ring", f"live {number}", f"l{number}")
            await ann.recv_type("message")
        async with ws_client() as bob, ws_client() as cy, ws_client() as dee:
            # Every later subscribe here: no row and no history read, and the same answer.
            fresh = await bob.subscribe("ring")
            assert answer(fresh) == await expected(room, None, settings)
            assert [m["seq"] for m in fresh["messages"]] == [11, 12, 13, 14, 15]
            resumed = await cy.subscribe("ring", since=9)
            assert answer(resumed) == await expected(room, 9, settings)
            assert [m["seq"] for m in resumed["messages"]] == [10, 11, 12, 13, 14, 15]
            assert resumed["complete"] is True
            up_to_date = await dee.subscribe("ring", since=15)
            assert answer(up_to_date) == await expected(room, 15, settings)
            assert answer(up_to_date) == {"messages": [], "last_seq": 15, "complete": True}
            assert reads.snapshot() == {"room_find": 1, "message_history": 1}
        async with ws_client() as eve, ws_client() as fay:
            # Further back than the ring reaches (it starts at 7): the database answers.
            old = await eve.subscribe("ring", since=3)
            assert answer(old) == await expected(room, 3, settings)
            assert old["complete"] is False  # 12 behind, resume limit 10: from 5
            assert reads.snapshot() == {"room_find": 1, "message_history": 2}
            # Ahead of what was delivered here (another worker's message): the database too.
            ahead = await fay.subscribe("ring", since=40)
            assert answer(ahead) == await expected(room, 40, settings)
            assert ahead["complete"] is False
            assert reads.snapshot() == {"room_find": 1, "message_history": 3}


async def test_the_history_byte_limit_holds_on_the_memory_path(ws_client, settings, monkeypatch):
    settings.RIPPLE_HISTORY_SIZE = 20
    room = await database_sync_to_async(stored_room)("bytes", 6)
    async with ws_client() as ann:
        await ann.subscribe("bytes")
        frames = await database_sync_to_async(selectors.message_range)(
            room_id=room.pk, room_slug="bytes", after=0, upto=6
        )
        one = len(frames[-1][1].encode()) + 1  # every body here is as long
        settings.RIPPLE_MAX_HISTORY_BYTES = one * 3 + 2
        reads = Reads(monkeypatch)
        async with ws_client() as bob, ws_client() as cy:
            fresh = await bob.subscribe("bytes")
            assert answer(fresh) == await database_sync_to_async(history_now)(room, None, settings)
            assert [m["seq"] for m in fresh["messages"]] == [4, 5, 6]
            resumed = await cy.subscribe("bytes", since=1)
            assert answer(resumed) == await database_sync_to_async(history_now)(room, 1, settings)
            assert resumed["complete"] is False
        assert reads.snapshot() == {"room_find": 0, "message_history": 0}


async def test_deleted_messages_send_later_subscribers_to_the_database(ws_client, settings, monkeypatch):
    room = await database_sync_to_async(stored_room)("erase", 4)
    async with ws_client() as ann:
        await ann.subscribe("erase")
        ids = await database_sync_to_async(
            lambda: list(Message.objects.filter(room=room, seq__in=[2, 3]).values_list("pk", flat=True))
        )()
        await database_sync_to_async(services.message_delete)(message_ids=ids)
        assert (await ann.recv_type("deleted"))["seqs"] == [2, 3]
        reads = Reads(monkeypatch)
        async with ws_client() as bob:
            fresh = await bob.subscribe("erase")
        assert [(m["seq"], m["body"]) for m in fresh["messages"]] == [
            (1, "body 1 é"),
            (2, ""),
            (3, ""),
            (4, "body 4 é"),
        ]
        assert reads.snapshot() == {"room_find": 0, "message_history": 1}
        # Read again, the ring holds the deletions: the next one is served from memory.
        async with ws_client() as cy:
            assert answer(await cy.subscribe("erase")) == answer(fresh)
        assert reads.snapshot() == {"room_find": 0, "message_history": 1}


async def test_a_room_made_private_while_live_is_checked_on_the_next_subscribe(ws_client, monkeypatch):
    ann_id, ann_key = await database_sync_to_async(logged_in_session)("ann")
    room = await database_sync_to_async(stored_room)("lounge", 1)
    await database_sync_to_async(RoomMembership.objects.create)(room=room, user_id=ann_id)
    reads = Reads(monkeypatch)
    async with ws_client(session_cookie=ann_key) as ann:
        await ann.subscribe("lounge")  # the room is live here while Ann stays
        async with ws_client() as guest:
            await guest.subscribe("lounge")
            assert reads.snapshot()["room_find"] == 1
            await guest.send({"type": "unsubscribe", "room": "lounge"})
            await guest.recv_type("unsubscribed")

            # Through the ORM: the save tells every hub, which reads the row again.
            def make_private() -> None:
                room.private = True
                room.save()

            await database_sync_to_async(make_private)()
            await wait_for(lambda: get_hub().rooms["lounge"].row is None)
            await guest.send({"type": "subscribe", "room": "lounge", "ref": "again"})
            refused = await guest.recv_type("error")
            assert (refused["code"], refused["ref"]) == ("forbidden", "again")
            assert reads.snapshot()["room_find"] == 2
            # Ann, a member, stays; her stream keeps the fresh row from here on.
            assert get_hub().rooms["lounge"].row is not None

            # Behind the ORM's back (no signal): the access re-check lets the row go.
            await database_sync_to_async(Room.objects.filter(pk=room.pk).update)(private=False)
            await Janitor(get_hub()).audit_access()
            subscribed = await guest.subscribe("lounge")
            assert subscribed["room"] == "lounge"
            assert reads.snapshot()["room_find"] == 3


async def test_a_closed_and_reopened_room_is_read_again(ws_client, monkeypatch):
    room = await database_sync_to_async(stored_room)("hall", 1)
    async with ws_client() as ann, ws_client() as bob:
        await ann.subscribe("hall")
        hub = get_hub()
        stream = hub.rooms["hall"]
        assert stream.row is not None and stream.row.closed_at is None
        # Bob's subscribe is half way (attaching) when the room closes: the stream outlives
        # the close, and its row must not say "open" to the next subscribe.
        stream.attaching += 1
        try:
            await database_sync_to_async(services.room_close)(room=room)
            await ann.recv_type("room_closed")
            await wait_for(lambda: stream.row is None)
            await bob.send({"type": "subscribe", "room": "hall", "ref": "b"})
            refused = await bob.recv_type("error")
            assert (refused["code"], refused["ref"]) == ("room_closed", "b")
            await database_sync_to_async(services.room_reopen)(room=room)
            await bob.recv_type("room_reopened")
            assert (await bob.subscribe("hall"))["last_seq"] == 1
        finally:
            stream.attaching -= 1


async def wait_for(condition, timeout: float = 2.0) -> None:
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.01)
