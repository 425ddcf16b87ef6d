"""The heartbeat sweeper on its own (chat/heartbeat.py): who is pinged, who is closed, and that
one sweeper task serves every connection and ends with the last one."""

import asyncio
import time

from chat.heartbeat import HeartbeatMonitor


class Conn:
    """A Watched connection that records what the sweeper did to it."""

    def __init__(self, *, fail: bool = False) -> None:
        self.last_seen = 0.0
        self.pings = 0
        self.pinged = asyncio.Event()
        self.expired = asyncio.Event()
        self.fail = fail

    async def heartbeat_ping(self) -> None:
        self.pings += 1
        self.pinged.set()
        if self.fail:
            raise ConnectionError("a broken socket")

    async def heartbeat_expired(self) -> None:
        self.expired.set()


async def test_a_quiet_connection_is_pinged_and_a_silent_one_is_closed():
    monitor = HeartbeatMonitor(interval_s=0.2, timeout_s=0.2)
    conn = Conn()
    monitor.register(conn)
    started = time.monotonic()
    async with asyncio.timeout(3):
        await conn.pinged.wait()
    pinged_after = time.monotonic() - started
    async with asyncio.timeout(3):
        await conn.expired.wait()
    expired_after = time.monotonic() - started
    # Pinged once quiet for interval + timeout / 2; closed once silent for interval + timeout.
    assert pinged_after >= monitor.ping_after_s
    assert expired_after >= monitor.interval_s + monitor.timeout_s
    assert conn not in monitor.next_ping
    monitor.unregister(conn)
    assert monitor._task is None


async def test_a_connection_that_keeps_talking_is_never_pinged():
    monitor = HeartbeatMonitor(interval_s=0.2, timeout_s=0.2)
    talker, quiet = Conn(), Conn()
    monitor.register(talker)
    monitor.register(quiet)
    async with asyncio.timeout(3):
        while not quiet.expired.is_set():
            talker.last_seen = time.monotonic()  # a frame arrived
            await asyncio.sleep(0.02)
    assert talker.pings == 0 and not talker.expired.is_set()
    monitor.unregister(talker)
    monitor.unregister(quiet)


async def test_one_broken_socket_does_not_stop_the_sweep_for_the_others():
    monitor = HeartbeatMonitor(interval_s=0.1, timeout_s=0.4)
    broken, healthy = Conn(fail=True), Conn()
    monitor.register(broken)
    monitor.register(healthy)
    async with asyncio.timeout(3):
        await broken.pinged.wait()
        await healthy.pinged.wait()
        await healthy.expired.wait()
    assert broken.expired.is_set() or broken in monitor.next_ping
    monitor.unregister(broken)
    monitor.unregister(healthy)


async def test_one_task_serves_every_connection_and_ends_with_the_last():
    monitor = HeartbeatMonitor(interval_s=20, timeout_s=10)
    conns = [Conn() for _ in range(100)]
    for conn in conns:
        monitor.register(conn)
    task = monitor._task
    assert task is not None
    assert sum(1 for t in asyncio.all_tasks() if t.get_name() == "ripple-heartbeat") == 1
    for conn in conns:
        monitor.unregister(conn)
    assert monitor._task is None
    async with asyncio.timeout(2):
        while not task.done():
            await asyncio.sleep(0.01)
    assert task.cancelled()


class CountedConn(Conn):
    """A Conn that counts how often the sweeper reads its ``last_seen``."""

    def __init__(self) -> None:
        super().__init__()
        self.reads = 0
        self._seen = 0.0

    @property
    def last_seen(self) -> float:
        self.reads += 1
        return self._seen

    @last_seen.setter
    def last_seen(self, value: float) -> None:
        self._seen = value


async def test_the_sweeper_passes_over_the_sockets_only_when_one_may_be_due():
    # Ticks every 0.1 s; a socket is pinged after 0.6 s of quiet and closed after 0.8 s.
    monitor = HeartbeatMonitor(interval_s=0.4, timeout_s=0.4)
    talker, quiet = CountedConn(), CountedConn()
    monitor.register(talker)
    monitor.register(quiet)
    loop = asyncio.get_running_loop()
    started = loop.time()
    async with asyncio.timeout(5):
        while not quiet.expired.is_set():
            talker.last_seen = time.monotonic()  # a frame arrives every tick or so
            await asyncio.sleep(0.05)
    closed_after = loop.time() - started
    # On time: silent for interval + timeout (0.8 s), closed within two ticks of it.
    assert 0.8 <= closed_after < 0.8 + 0.2, closed_after
    assert quiet.pings == 1 and talker.pings == 0 and not talker.expired.is_set()
    ticks = closed_after / monitor.tick_s
    # Read only when it may itself be due (0.6 s after each frame, and it talks every 0.05 s):
    # not at every tick (a pass at each would read it at least 9 times).
    assert ticks >= 7 and talker.reads <= 6, (talker.reads, ticks)
    monitor.unregister(talker)


async def test_each_socket_is_looked_at_about_once_an_interval_not_at_every_tick():
    # Ticks every 0.1 s; pinged after 0.6 s of quiet. 50 sockets, each talking every 0.36 s at
    # its own phase, so one of them is due every ~0.24 s: a pass over all of them then reads
    # each 8-9 times in 2 s. Looked at only when itself due, each is read 3-4 times.
    monitor = HeartbeatMonitor(interval_s=0.4, timeout_s=0.4)
    conns = [CountedConn() for _ in range(50)]
    for conn in conns:
        monitor.register(conn)
    loop = asyncio.get_running_loop()
    started = loop.time()
    period = 0.36
    talked = [started + period * i / len(conns) - period for i in range(len(conns))]
    while loop.time() - started < 2.0:
        now = loop.time()
        for i, conn in enumerate(conns):
            if now - talked[i] >= period:
                talked[i] = now
                conn.last_seen = time.monotonic()  # a client ping arrived
        await asyncio.sleep(0.02)
    reads = sorted(conn.reads for conn in conns)
    assert all(conn.pings == 0 and not conn.expired.is_set() for conn in conns)
    assert reads[-1] <= 5, reads
    for conn in conns:
        monitor.unregister(conn)
    assert monitor._task is None


async def test_a_connection_that_goes_is_not_held_by_its_slot():
    monitor = HeartbeatMonitor(interval_s=20, timeout_s=10)
    kept, gone = Conn(), Conn()
    monitor.register(kept)
    monitor.register(gone)
    monitor.unregister(gone)
    held = [conn for slot in monitor._slots.values() for conn in slot]
    assert held == [kept]
    monitor.unregister(kept)
    assert monitor._slots == {} and monitor._task is None
