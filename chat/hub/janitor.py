"""The hub's periodic duties, one small method each, run from one task while the hub is up.

Every tick (at most a second): the Redis health check. On their own periods: the private-room
access audit (``RIPPLE_ACCESS_RECHECK_S``), the dashboard report (``RIPPLE_DASHBOARD_REPORT_S``),
the tail check (``RIPPLE_TAIL_CHECK_S``: a message the channel layer dropped, at-most-once as it
is, still reaches every subscriber, once and in order), the presence refresh (a third of
``RIPPLE_PRESENCE_TTL_S``) and the channel-layer group refresh (``GROUP_REFRESH_S``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from channels.db import database_sync_to_async
from django.conf import settings

from .. import protocol, selectors
from ..dashboard import store as dashboard_store
from ..logs import log_event
from ..stats import stats
from .events import room_group
from .roster import Roster
from .stream import RoomStream
from .subscriber import Subscriber, close_quietly

logger = logging.getLogger(__name__)

# The channel layer forgets group members after a day unless they are added again.
GROUP_REFRESH_S = 3600.0
# Redis must answer a PING within this, or the hub sends its sockets away with 4503.
HEALTH_TIMEOUT_S = 2.0
# A failing dashboard report is logged once a minute at most.
REPORT_WARN_EVERY_S = 60.0


class Tended(Protocol):
    """The hub as its janitor sees it (chat/hub/core.py RoomHub)."""

    layer: Any
    channel: str | None
    rooms: dict[str, RoomStream]
    connections: set[Subscriber]
    roster: Roster
    # False from a failed health check (Redis away) until one succeeds again.
    healthy: bool

    async def access_changed(self, stream: RoomStream) -> None: ...


class Duty:
    """One periodic duty: what to run, how often, and when it last ran (monotonic seconds)."""

    def __init__(self, run: Callable[[], Awaitable[None]], every_s: float, *, slack_s: float, now: float):
        self.run = run
        self.every_s = every_s
        # Due this much early: a duty whose period is a whole number of ticks runs every
        # that many ticks, not one tick late for a rounding error.
        self.slack_s = slack_s
        self.last = now

    def due(self, now: float) -> bool:
        return now - self.last >= self.every_s - self.slack_s


class Janitor:
    """Runs the hub's periodic duties; ``tick`` is one pass, ``run`` the loop around it."""

    def __init__(self, hub: Tended, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.hub = hub
        self.clock = clock
        tail_every = settings.RIPPLE_TAIL_CHECK_S
        presence_every = settings.RIPPLE_PRESENCE_TTL_S / 3
        report_every = settings.RIPPLE_DASHBOARD_REPORT_S
        # Once a second at most: the dashboard report is per second by default.
        self.tick_s = min(1.0, tail_every, presence_every, report_every)
        now = clock()
        slack = self.tick_s / 2
        # In the order they run within a tick.
        self.duties = [
            Duty(self.audit_access, settings.RIPPLE_ACCESS_RECHECK_S, slack_s=slack, now=now),
            Duty(self.report, report_every, slack_s=slack, now=now),
            Duty(self.tail_check, tail_every, slack_s=slack, now=now),
            Duty(self.refresh_presence, presence_every, slack_s=slack, now=now),
            Duty(self.refresh_groups, GROUP_REFRESH_S, slack_s=0.0, now=now),
        ]
        # When the last dashboard-report failure was logged (monotonic seconds).
        self._report_warned = -1e9

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.tick_s)
            await self.tick()

    async def tick(self) -> None:
        """The health check, then every duty whose period has come round."""
        await self.check_health()
        now = self.clock()
        for duty in self.duties:
            if duty.due(now):
                duty.last = now
                await duty.run()

    async def check_health(self) -> None:
        """Every tick: when Redis stops answering, send every socket here away with 4503.

        Without Redis, messages would still be stored, but they would reach other processes
        only through the tail check and presence would be frozen: a clear "try again later"
        lets clients back off and resume once Redis is back, on whichever worker they reach.
        """
        hub = self.hub
        try:
            # asyncio.timeout, not wait_for: on Python 3.11 wait_for can swallow a cancellation
            # that arrives as the ping completes, and this task would outlive the hub's _stop.
            async with asyncio.timeout(HEALTH_TIMEOUT_S):
                await hub.roster.store.ping()
        except Exception as error:
            if hub.healthy:
                hub.healthy = False
                logger.warning(
                    "Redis does not answer (%r); closing %d sockets with 4503", error, len(hub.connections)
                )
                log_event("layer_unavailable", sockets=len(hub.connections), error=repr(error))
                for subscriber in list(hub.connections):
                    await close_quietly(subscriber, protocol.CLOSE_TRY_AGAIN_LATER)
            return
        if not hub.healthy:
            hub.healthy = True
            log_event("layer_available")

    async def audit_access(self) -> None:
        """Re-check who may stay in private rooms, whatever changed them.

        Model signals (chat/signals.py) end subscriptions at once when a membership or a room
        changes through the ORM; a change no signal sees (``QuerySet.update``, raw SQL, another
        client of the database) is caught here within ``RIPPLE_ACCESS_RECHECK_S``. One query for
        every room with subscribers here, then one per private room. The room rows the hub
        keeps for subscribes are let go too, so the next subscribe reads each row again.
        """
        for stream in self.hub.rooms.values():
            stream.forget_row()
        streams = [stream for stream in self.hub.rooms.values() if stream.subscribers]
        if not streams:
            return
        try:
            private = await database_sync_to_async(selectors.private_room_ids)(
                room_ids=[stream.room_id for stream in streams]
            )
            for stream in streams:
                if stream.room_id in private or stream.private:
                    await self.hub.access_changed(stream)
        except Exception:
            logger.warning("re-checking private rooms' subscribers failed", exc_info=True)

    async def report(self) -> None:
        """This process's numbers for the live dashboard (chat/dashboard/store.py)."""
        try:
            await dashboard_store.report(stats.snapshot())
        except Exception:
            # Once a second while Redis is away would bury every other line: once a minute.
            now = self.clock()
            if now - self._report_warned > REPORT_WARN_EVERY_S:
                self._report_warned = now
                logger.warning("dashboard report failed (repeats are muted for 60 s)", exc_info=True)

    async def tail_check(self) -> None:
        """Fetch what the channel layer may have dropped: compare each room's last seq."""
        joined = [stream for stream in self.hub.rooms.values() if stream.delivered is not None]
        if not joined:
            return
        try:
            last_seqs = await database_sync_to_async(selectors.room_last_seqs)(
                room_ids=[stream.room_id for stream in joined]
            )
        except Exception:
            logger.warning("tail check failed", exc_info=True)
            return
        for stream in joined:
            newest = last_seqs.get(stream.room_id, 0)
            if stream.delivered is not None and newest > stream.delivered:
                stream.start_fill(newest)

    async def refresh_presence(self) -> None:
        """Keep presence entries alive (chat/hub/roster.py)."""
        try:
            await self.hub.roster.refresh()
        except Exception:
            logger.warning("presence refresh failed", exc_info=True)

    async def refresh_groups(self) -> None:
        """Add this process to its rooms' groups again, before the channel layer forgets it."""
        channel = self.hub.channel
        if channel is None:
            return
        for slug in list(self.hub.rooms):
            try:
                await self.hub.layer.group_add(room_group(slug), channel)
            except Exception:
                logger.warning("refreshing room %s failed", slug, exc_info=True)
