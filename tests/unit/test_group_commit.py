"""Messages queued behind a write share its next transaction (chat/group_commit.py), on a real database."""

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from asgiref.sync import SyncToAsync, async_to_sync
from channels.db import database_sync_to_async
from django.db import connection

from chat import services
from chat.group_commit import GroupCommit, database_thread
from chat.models import Message, Room
from tests.support import validators

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def gated(settings):
    """Every message waits in the database thread until ``validators.released`` is set."""
    settings.RIPPLE_MESSAGE_VALIDATORS = ["tests.support.validators.gate"]
    validators.released.clear()
    yield
    validators.released.set()


def accept(room, client_id, body="hi", author="ann", key="g-ann"):
    return asyncio.ensure_future(
        services.amessage_accept(
            room=room, author=author, user_id=None, body=body, client_id=client_id, author_key=key
        )
    )


async def in_flight() -> None:
    """Wait until the first write is in the database thread, so the next ones queue."""
    for _ in range(100):
        await asyncio.sleep(0)
        queue = services.message_writes._queues.get(asyncio.get_running_loop())
        if queue is not None and queue.in_flight is not None:
            return
    raise AssertionError("the first write never started")


async def test_writes_queued_behind_one_are_stored_together_each_with_its_own_outcome(gated):
    room = await database_sync_to_async(services.room_get_or_create)(slug="burst")
    other = await database_sync_to_async(services.room_get_or_create)(slug="other")
    closed = await database_sync_to_async(services.room_get_or_create)(slug="shut")
    await database_sync_to_async(services.room_close)(room=closed)
    batches_before = services.message_writes.batches

    first = accept(room, "m0")
    await in_flight()
    queued = [accept(room, f"m{n}") for n in range(1, 6)]
    again = accept(room, "m1", body="sent twice")  # the same author re-sending: its earlier copy
    stolen = accept(room, "m2", author="bob", key="g-bob")  # someone else's client_id
    shut = accept(closed, "s1")
    empty = accept(room, "e1", body="   ")
    elsewhere = accept(other, "o1")
    validators.released.set()
    results = await asyncio.wait_for(
        asyncio.gather(first, *queued, again, stolen, shut, empty, elsewhere, return_exceptions=True), 10
    )
    # One hop for the first, one for everything that queued behind it.
    assert services.message_writes.batches - batches_before == 2

    stored = results[:6]
    assert [posted.message.seq for posted in stored] == [1, 2, 3, 4, 5, 6]
    assert all(posted.created for posted in stored)
    resent, refused, in_closed, blank, other_room = results[6:]
    assert not resent.created and resent.message.seq == 2
    assert isinstance(refused, services.ClientIdConflict)
    assert isinstance(in_closed, services.RoomClosed)
    assert isinstance(blank, services.EmptyBody)
    assert other_room.created and other_room.message.seq == 1

    # What failed rolled back its own savepoint only: no gap, nothing half written.
    rows = await database_sync_to_async(
        lambda: list(Message.objects.filter(room=room).order_by("seq").values_list("seq", "client_id"))
    )()
    assert rows == [(n + 1, f"m{n}") for n in range(6)]
    last = await database_sync_to_async(lambda: Room.objects.get(pk=room.pk).last_seq)()
    assert last == 6
    assert await database_sync_to_async(Message.objects.filter(room=closed).count)() == 0


async def test_a_caller_cancelled_while_queued_leaves_the_batch_and_its_message_stored(gated):
    room = await database_sync_to_async(services.room_get_or_create)(slug="cancel")
    first = accept(room, "c0")
    await in_flight()
    queued = [accept(room, f"c{n}") for n in range(1, 4)]
    await asyncio.sleep(0)
    queued[1].cancel()
    validators.released.set()
    results = await asyncio.wait_for(asyncio.gather(first, *queued, return_exceptions=True), 10)
    assert isinstance(results[2], asyncio.CancelledError)
    assert [results[n].message.seq for n in (0, 1, 3)] == [1, 2, 4]
    stored = await database_sync_to_async(
        lambda: list(Message.objects.filter(room=room).order_by("seq").values_list("client_id", flat=True))
    )()
    assert stored == ["c0", "c1", "c2", "c3"]


async def test_a_lone_write_goes_at_once_in_a_batch_of_its_own():
    room = await database_sync_to_async(services.room_get_or_create)(slug="lone")
    before = services.message_writes.batches, services.message_writes.writes
    posted = await asyncio.wait_for(accept(room, "l0"), 10)
    assert posted.created and posted.message.seq == 1
    assert (services.message_writes.batches, services.message_writes.writes) == (before[0] + 1, before[1] + 1)


def thread_and_connection() -> tuple[int, int]:
    return threading.get_ident(), id(connection.connection)


async def test_a_batch_runs_in_the_thread_and_on_the_connection_of_every_other_database_call():
    """Handed to the executor directly, a batch still runs where ``database_sync_to_async``
    runs everything else, so on the same database connection."""
    loop = asyncio.get_running_loop()
    assert database_thread(loop) is SyncToAsync.single_thread_executor
    seen = []

    def store(item):
        seen.append((item, *thread_and_connection()))
        return item

    writes = GroupCommit(store)
    await database_sync_to_async(Room.objects.count)()  # opens that thread's connection
    other = await database_sync_to_async(thread_and_connection)()
    assert await writes.submit("a") == "a"
    assert seen == [("a", *other)]

    # Inside async_to_sync the thread is the sync caller's, as asgiref chooses it.
    async def submit_from_async_to_sync():
        assert database_thread(asyncio.get_running_loop()) is None
        return await writes.submit("b")

    def sync_caller():
        assert async_to_sync(submit_from_async_to_sync)() == "b"
        return threading.get_ident()

    with ThreadPoolExecutor(1) as pool:
        caller = await loop.run_in_executor(pool, sync_caller)
    assert seen[-1][:2] == ("b", caller)
