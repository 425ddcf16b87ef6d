"""The session watch: a socket opened with a login session ends when that session does.

Logout ends its sockets at once (a control event sent by chat/signals.py). Expiry sends no
event, so each socket arms one timer for its session's expiry, as read at the handshake
(chat/socket_auth.py). When it fires, the expiry is read again, because another request may
have extended the session (then the timer is armed for the new date). A read that fails (the
database is away) is tried again a minute later, and the socket stays open meanwhile.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

logger = logging.getLogger(__name__)

# After a failed read of the expiry, the next try comes this much later.
RETRY_S = 60.0


class SessionWatch:
    """One socket's session-expiry timer; ``cancel()`` when the socket closes."""

    def __init__(
        self,
        *,
        read_expiry: Callable[[], Awaitable[float | None]],
        on_expired: Callable[[], Awaitable[None]],
    ) -> None:
        """``read_expiry``: the session's expiry as stored now (epoch seconds), None when it is gone."""
        self.read_expiry = read_expiry
        self.on_expired = on_expired
        self.timer: asyncio.TimerHandle | None = None
        # The re-check under way, held so that it is not collected mid-flight and can be cancelled.
        self.check_task: asyncio.Task[None] | None = None

    def start(self, expires: float | None) -> None:
        """Arm the timer for ``expires``, as read at the handshake (chat/socket_auth.py); a
        session already gone (None) is not watched."""
        if expires is not None:
            self._arm(expires)

    def cancel(self) -> None:
        """Disarm the timer and stop a re-check under way; nothing fires after this."""
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        task, self.check_task = self.check_task, None
        if task is not None and task is not asyncio.current_task():
            task.cancel()

    def _arm(self, expires_at: float) -> None:
        loop = asyncio.get_running_loop()
        self.timer = loop.call_later(max(0.0, expires_at - time.time()), self._fire, loop)

    def _fire(self, loop: asyncio.AbstractEventLoop) -> None:
        self.timer = None
        self.check_task = loop.create_task(self._check(), name="ripple-session-check")

    async def _check(self) -> None:
        """The expiry came: end the socket, unless the session was extended meanwhile."""
        try:
            expires = await self.read_expiry()
        except Exception:
            logger.warning("checking a session's expiry failed; trying again in 60 s", exc_info=True)
            self._arm(time.time() + RETRY_S)
            return
        if expires is not None and expires > time.time():
            self._arm(expires)
            return
        await self.on_expired()
