"""chat/session_watch.py: the session-expiry timer, with expiries read from a list."""

import asyncio
import logging
import time

from chat import session_watch
from chat.session_watch import SessionWatch


class Session:
    """Answers each read of the expiry with the next of ``answers`` (an exception is raised)."""

    def __init__(self, *answers):
        self.answers = list(answers)
        self.reads = 0
        self.expired = asyncio.Event()

    async def read_expiry(self):
        self.reads += 1
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    async def on_expired(self):
        self.expired.set()

    def watch(self) -> SessionWatch:
        return SessionWatch(read_expiry=self.read_expiry, on_expired=self.on_expired)

    async def started(self) -> SessionWatch:
        """A watch started with the first answer, as the handshake reads it (chat/socket_auth.py)."""
        watch = self.watch()
        watch.start(await self.read_expiry())
        return watch


def in_s(seconds: float) -> float:
    return time.time() + seconds


async def test_the_socket_ends_when_its_session_expires():
    session = Session(in_s(0.05), in_s(-1))
    watch = await session.started()
    await asyncio.wait_for(session.expired.wait(), timeout=2)
    assert session.reads == 2  # read again at expiry before ending anything
    watch.cancel()


async def test_a_session_gone_at_expiry_ends_the_socket():
    session = Session(in_s(0.05), None)
    watch = await session.started()
    await asyncio.wait_for(session.expired.wait(), timeout=2)
    watch.cancel()


async def test_an_extended_session_rearms_the_timer_for_its_new_expiry():
    session = Session(in_s(0.05), in_s(0.4), in_s(-1))
    watch = await session.started()
    await asyncio.sleep(0.2)
    assert not session.expired.is_set() and session.reads == 2
    await asyncio.wait_for(session.expired.wait(), timeout=2)
    assert session.reads == 3
    watch.cancel()


async def test_a_session_already_gone_at_the_start_is_not_watched():
    session = Session(None)
    watch = await session.started()
    assert watch.timer is None


async def test_a_failed_read_tries_again_later_and_keeps_the_socket(monkeypatch, caplog):
    monkeypatch.setattr(session_watch, "RETRY_S", 0.05)
    session = Session(in_s(0.02), RuntimeError("database away"), RuntimeError("still away"), in_s(-1))
    with caplog.at_level(logging.WARNING, logger="chat.session_watch"):
        watch = await session.started()
        await asyncio.wait_for(session.expired.wait(), timeout=2)
    assert session.reads == 4
    assert [record.getMessage() for record in caplog.records] == [
        "checking a session's expiry failed; trying again in 60 s",
    ] * 2
    watch.cancel()


async def test_cancel_disarms_the_timer():
    session = Session(in_s(0.05), in_s(-1))
    watch = await session.started()
    watch.cancel()
    await asyncio.sleep(0.1)
    assert session.reads == 1 and not session.expired.is_set()
    assert watch.timer is None


async def test_cancel_stops_a_recheck_under_way():
    release = asyncio.Event()
    session = Session(in_s(0.01))

    async def slow_read():
        if session.reads:
            await release.wait()
            return in_s(-1)
        return await session.read_expiry()

    watch = SessionWatch(read_expiry=slow_read, on_expired=session.on_expired)
    watch.start(await slow_read())
    await asyncio.sleep(0.05)
    check = watch.check_task
    assert check is not None and not check.done()
    watch.cancel()
    release.set()
    await asyncio.wait([check], timeout=1)
    assert check.cancelled() and not session.expired.is_set()
