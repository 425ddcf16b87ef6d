import asyncio

import pytest
from channels.db import database_sync_to_async

from chat.hub import presence_batch_s
from chat.hub.events import room_group
from chat.hub.roster import REFRESH_ENTRIES_PER_STEP, Roster
from chat.hub.tasks import TaskSet
from chat.presence import Member
from chat.presence.memory import MemoryPresenceStore

pytestmark = pytest.mark.django_db(transaction=True)


def names(members: list[dict]) -> list[str]:
    return [m["name"] for m in members]


async def guest_session(name: str) -> str:
    from django.contrib.sessions.backends.db import SessionStore

    def make() -> str:
        session = SessionStore()
        session["ripple_guest_name"] = name
        session.create()
        return session.session_key

    return await database_sync_to_async(make)()


async def test_subscribed_lists_members_and_joins_are_pushed(ws_client):
    ann_key, bob_key = await guest_session("Ann"), await guest_session("Bob")
    async with ws_client(session_cookie=ann_key) as ann:
        first = await ann.subscribe("here")
        assert names(first["members"]) == ["Ann"]
        assert first["members"][0]["id"].startswith("g")
        async with ws_client(session_cookie=bob_key) as bob:
            second = await bob.subscribe("here")
            assert names(second["members"]) == ["Ann", "Bob"]
            pushed = await ann.recv_presence()
            assert (pushed["room"], names(pushed["joins"]), pushed["leaves"]) == ("here", ["Bob"], [])


async def test_a_leave_is_pushed_after_the_grace_period(ws_client, settings):
    settings.RIPPLE_PRESENCE_GRACE_S = 0.2
    ann_key, bob_key = await guest_session("Ann"), await guest_session("Bob")
    async with ws_client(session_cookie=ann_key) as ann:
        await ann.subscribe("bye")
        async with ws_client(session_cookie=bob_key) as bob:
            await bob.subscribe("bye")
            assert names((await ann.recv_presence())["joins"]) == ["Bob"]
        loop = asyncio.get_running_loop()
        started = loop.time()
        left = await ann.recv_presence(timeout=3)
        assert (left["joins"], names(left["leaves"])) == ([], ["Bob"])
        assert loop.time() - started >= 0.2


async def test_a_reconnect_within_the_grace_period_does_not_flap(ws_client, settings):
    settings.RIPPLE_PRESENCE_GRACE_S = 1.0
    ann_key, bob_key = await guest_session("Ann"), await guest_session("Bob")
    async with ws_client(session_cookie=ann_key) as ann:
        await ann.subscribe("flap")
        async with ws_client(session_cookie=bob_key) as bob:
            await bob.subscribe("flap")
            assert names((await ann.recv_presence())["joins"]) == ["Bob"]
        async with ws_client(session_cookie=bob_key) as bob_again:
            again = await bob_again.subscribe("flap")
            assert names(again["members"]) == ["Ann", "Bob"]
            # Past the grace period and a batch window: Ann heard nothing about Bob.
            assert await ann.nothing_more(1.5)
            assert ann.presence == []


async def test_two_tabs_of_one_guest_are_one_member(ws_client, settings):
    settings.RIPPLE_PRESENCE_GRACE_S = 0
    key = await guest_session("Ann")
    async with ws_client() as watcher:
        await watcher.subscribe("tabs")
        async with ws_client(session_cookie=key) as tab1, ws_client(session_cookie=key) as tab2:
            await tab1.subscribe("tabs")
            subscribed = await tab2.subscribe("tabs")
            assert sorted(names(subscribed["members"]))[0] == "Ann"
            assert len(subscribed["members"]) == 2  # Ann and the watcher
            joined = await watcher.recv_presence()
            assert names(joined["joins"]) == ["Ann"]
            await tab1.send({"type": "unsubscribe", "room": "tabs"})
            await tab1.recv_type("unsubscribed")
            assert await watcher.nothing_more(0.5)  # Ann is still here in tab 2


async def test_joins_in_one_batch_window_arrive_as_one_frame(ws_client, settings):
    settings.RIPPLE_PRESENCE_BATCH_S = 0.3
    async with ws_client() as host:
        await host.subscribe("party")
        async with ws_client() as a, ws_client() as b, ws_client() as c:
            for guest in (a, b, c):
                await guest.subscribe("party")
            batch = await host.recv_presence()
            assert len(batch["joins"]) == 3
            assert await host.nothing_more(0.5)


def test_presence_batches_stretch_with_the_room_and_stop_stretching(settings):
    settings.RIPPLE_PRESENCE_BATCH_S = 0.25
    assert presence_batch_s(0) == presence_batch_s(100) == 0.25
    assert presence_batch_s(1_000) == 2.5
    assert presence_batch_s(100_000) == 2.5  # at most ten times the setting


# The roster's batches (chat/hub/roster.py), on the in-memory store.


class CountingStore(MemoryPresenceStore):
    """The in-memory store, keeping each call's entries."""

    def __init__(self) -> None:
        super().__init__()
        self.adds: list[list] = []
        self.removes: list[list] = []
        self.refreshes: list[list] = []

    async def add(self, process, entries):
        self.adds.append(list(entries))
        await super().add(process, entries)

    async def remove(self, process, entries):
        self.removes.append(list(entries))
        await super().remove(process, entries)

    async def refresh(self, process, entries):
        self.refreshes.append(list(entries))
        await super().refresh(process, entries)


class AnnouncedRooms:
    """A channel layer that only records the groups told of a presence change."""

    def __init__(self) -> None:
        self.groups: list[str] = []

    async def group_send(self, group, message):
        self.groups.append(group)


class BatchedRoster(Roster):
    def __init__(self, store: CountingStore, layer: AnnouncedRooms) -> None:
        super().__init__(rooms={}, layer=layer, process_id="p1", tasks=TaskSet())
        self._store = store

    @property
    def store(self):
        return self._store


async def settled(tasks: TaskSet, timeout_s: float = 5) -> None:
    async with asyncio.timeout(timeout_s):
        while tasks.running():
            await asyncio.gather(*tasks.running())


async def wait_for(condition, timeout_s: float = 5) -> None:
    async with asyncio.timeout(timeout_s):
        while not condition():
            await asyncio.sleep(0.01)


def counted_reads(store, monkeypatch) -> list[str]:
    """The rooms whose members are read from ``store`` from now on (each read still runs)."""
    reads: list[str] = []
    real_members = store.members

    async def counted(room: str):
        reads.append(room)
        return await real_members(room)

    monkeypatch.setattr(store, "members", counted)
    return reads


MEMBERS = [(f"r{index % 3}", Member(name=f"m{index}", id=f"g{index}")) for index in range(30)]


async def test_arrivals_together_are_one_write_and_one_announcement_per_room():
    store, layer = CountingStore(), AnnouncedRooms()
    roster = BatchedRoster(store, layer)
    for slug, member in MEMBERS:
        await roster.arrive(slug, member)
    assert store.adds == []  # nothing written in the moment of arriving
    await wait_for(lambda: store.adds)
    await settled(roster._tasks)
    assert [sorted(batch, key=str) for batch in store.adds] == [sorted(MEMBERS, key=str)]
    assert sorted(layer.groups) == sorted(room_group(slug) for slug in ("r0", "r1", "r2"))
    sizes = {slug: len(await store.members(slug)) for slug in ("r0", "r1", "r2")}
    assert sizes == {"r0": 10, "r1": 10, "r2": 10}


async def test_departures_whose_grace_ends_together_are_one_write(settings):
    settings.RIPPLE_PRESENCE_GRACE_S = 0.05
    store, layer = CountingStore(), AnnouncedRooms()
    roster = BatchedRoster(store, layer)
    for slug, member in MEMBERS:
        await roster.arrive(slug, member)
    await wait_for(lambda: store.adds)
    await settled(roster._tasks)
    layer.groups.clear()
    for slug, member in MEMBERS:
        await roster.depart(slug, member)
    assert store.removes == []  # within the grace
    await wait_for(lambda: store.removes)
    await settled(roster._tasks)
    assert [sorted(batch, key=str) for batch in store.removes] == [sorted(MEMBERS, key=str)]
    assert sorted(layer.groups) == sorted(room_group(slug) for slug in ("r0", "r1", "r2"))
    assert store.rooms == {}


async def test_a_member_gone_before_its_arrival_was_written_is_never_written_or_announced(settings):
    settings.RIPPLE_PRESENCE_GRACE_S = 0
    store, layer = CountingStore(), AnnouncedRooms()
    roster = BatchedRoster(store, layer)
    ann, bob = Member(name="Ann", id="g1"), Member(name="Bob", id="g2")
    await roster.arrive("r", ann)
    await roster.arrive("r", bob)
    await roster.depart("r", ann)
    await wait_for(lambda: store.adds)
    await settled(roster._tasks)
    assert store.adds == [[("r", bob)]] and store.removes == []
    assert layer.groups == [room_group("r")]


async def test_a_shorter_grace_is_not_held_behind_a_longer_one(settings):
    store, layer = CountingStore(), AnnouncedRooms()
    roster = BatchedRoster(store, layer)
    ann, bob = Member(name="Ann", id="g1"), Member(name="Bob", id="g2")
    await roster.arrive("r", ann)
    await roster.arrive("r", bob)
    await wait_for(lambda: store.adds)
    await settled(roster._tasks)
    settings.RIPPLE_PRESENCE_GRACE_S = 30
    await roster.depart("r", ann)
    settings.RIPPLE_PRESENCE_GRACE_S = 0.05
    await roster.depart("r", bob)
    await wait_for(lambda: store.removes, timeout_s=2)
    assert store.removes == [[("r", bob)]]
    assert await store.members("r") == {ann}


async def test_the_periodic_refresh_writes_many_entries_in_steps(settings):
    """5,000 entries in one pipeline held the event loop 50-120 ms; steps let messages through."""
    settings.RIPPLE_PRESENCE_GRACE_S = 30
    store, layer = CountingStore(), AnnouncedRooms()
    roster = BatchedRoster(store, layer)
    members = [(f"r{index % 7}", Member(name=f"m{index}", id=f"g{index}")) for index in range(600)]
    for slug, member in members:
        await roster.arrive(slug, member)
    await wait_for(lambda: store.adds)
    await settled(roster._tasks)
    for slug, member in members[:100]:
        await roster.depart(slug, member)  # departing, within the grace: still refreshed
    await roster.refresh()
    assert [len(step) for step in store.refreshes] == [REFRESH_ENTRIES_PER_STEP] * 2 + [100]
    assert sorted(key for step in store.refreshes for key in step) == sorted(members)


async def test_arrivals_here_are_pushed_without_reading_the_store_back(ws_client, settings, monkeypatch):
    settings.RIPPLE_PRESENCE_GRACE_S = 0.05
    from chat.hub import get_hub
    from chat.hub.events import EVENT_PRESENCE
    from chat.hub.publisher import group_send

    keys = [await guest_session(name) for name in ("Ann", "Bob", "Cy")]
    async with ws_client(session_cookie=keys[0]) as ann:
        await ann.subscribe("quiet")
        store = get_hub().presence
        reads = counted_reads(store, monkeypatch)
        async with ws_client(session_cookie=keys[1]) as bob, ws_client(session_cookie=keys[2]) as cy:
            assert names((await bob.subscribe("quiet"))["members"]) == ["Ann", "Bob"]
            await cy.subscribe("quiet")
            joined: list[str] = []
            while len(joined) < 2:
                pushed = await ann.recv_presence()
                assert pushed["leaves"] == []
                joined += names(pushed["joins"])
            assert sorted(joined) == ["Bob", "Cy"]
            assert reads == []  # written here, added as they are
            await bob.communicator.disconnect()
            left = await ann.recv_presence(timeout=3)
            assert (left["joins"], names(left["leaves"])) == ([], ["Bob"])
            assert reads == ["quiet"]  # a departure is read back: Bob may be in elsewhere
            # Another process's announcement is read too.
            await store.add("another-process", [("quiet", Member(name="Zed", id="g-zed"))])
            hub = get_hub()
            await group_send(
                hub.layer,
                room_group("quiet"),
                {"type": EVENT_PRESENCE, "room": "quiet", "origin": "elsewhere"},
            )
            other = await ann.recv_presence(timeout=3)
            assert (names(other["joins"]), other["leaves"]) == (["Zed"], [])
            assert reads == ["quiet", "quiet"]
            await store.remove("another-process", [("quiet", Member(name="Zed", id="g-zed"))])


async def test_a_member_who_leaves_comes_back_and_leaves_again_is_written_gone_once_at_the_later_time(
    settings,
):
    settings.RIPPLE_PRESENCE_GRACE_S = 0.05
    store, layer = CountingStore(), AnnouncedRooms()
    roster = BatchedRoster(store, layer)
    ann, bob = Member(name="Ann", id="g1"), Member(name="Bob", id="g2")
    await roster.arrive("r", ann)
    await roster.arrive("r", bob)
    await wait_for(lambda: store.adds)
    await settled(roster._tasks)
    loop = asyncio.get_running_loop()
    await roster.depart("r", ann)
    await roster.arrive("r", ann)  # back within the grace: its first departure is void
    settings.RIPPLE_PRESENCE_GRACE_S = 0.3
    left_at = loop.time()
    await roster.depart("r", ann)
    settings.RIPPLE_PRESENCE_GRACE_S = 0.1
    await roster.depart("r", bob)
    await wait_for(lambda: len(store.removes) == 2, timeout_s=3)
    await settled(roster._tasks)
    assert store.removes == [[("r", bob)], [("r", ann)]]
    assert loop.time() - left_at >= 0.3
    assert roster._departing == {} and roster._departures == []


async def test_the_refresh_reads_back_only_rooms_with_members_from_another_process(ws_client, monkeypatch):
    from chat.hub import get_hub
    from chat.hub.events import EVENT_PRESENCE
    from chat.hub.publisher import group_send

    ann_key = await guest_session("Ann")
    zed = Member(name="Zed", id="g-zed")
    async with ws_client(session_cookie=ann_key) as ann:
        await ann.subscribe("solo")
        await ann.subscribe("mixed")
        hub = get_hub()
        store = hub.presence
        # Zed is in "mixed" through another process, which announced it.
        await store.add("another-process", [("mixed", zed)])
        await group_send(
            hub.layer, room_group("mixed"), {"type": EVENT_PRESENCE, "room": "mixed", "origin": "x"}
        )
        joined = await ann.recv_presence(timeout=3)
        assert (joined["room"], names(joined["joins"])) == ("mixed", ["Zed"])

        reads = counted_reads(store, monkeypatch)
        await hub.roster.refresh()
        assert reads == ["mixed"]  # "solo" holds only this process's members
        # The other process died: its entry is gone (expired), and the next refresh tells Ann.
        await store.remove("another-process", [("mixed", zed)])
        await hub.roster.refresh()
        left = await ann.recv_presence(timeout=3)
        assert (left["room"], left["joins"], names(left["leaves"])) == ("mixed", [], ["Zed"])
        assert reads == ["mixed", "mixed"]
