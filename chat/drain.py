"""Graceful restart: send a worker's sockets elsewhere before it stops (docs/deploy.md).

Draining closes every socket of the process with 4512, each at a random moment within
``RIPPLE_DRAIN_S``: clients reconnect at once (after their own small random delay) and, through
nginx, land on another worker and resume, instead of all seeing 1006 at the same instant and
all coming back at the same instant. While draining, new handshakes are refused with HTTP 403
(nginx then tries the next worker) and ``/readyz`` answers 503, so a load balancer stops
sending sockets here.

Two ways in: SIGTERM (when ``RIPPLE_DRAIN_ON_SIGTERM``; the server's own SIGTERM handling runs
once the sockets are gone, so the process then exits as before), and ``manage.py drain``, which
tells running workers through the channel layer and leaves them up, draining, for the deploy
tool to stop.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import threading
from typing import Any

from django.conf import settings

from .logs import log_event

logger = logging.getLogger(__name__)

# Process-wide: once draining, this process takes no new sockets until it is restarted.
_draining = threading.Event()
_installed = False


def is_draining() -> bool:
    return _draining.is_set()


def begin() -> None:
    _draining.set()


def install_sigterm_handler(loop: asyncio.AbstractEventLoop, drain: Any) -> None:
    """Once per process, from the event loop's thread: SIGTERM drains, then does what it did.

    ``drain`` is a coroutine function taking the window in seconds. Called when the first
    socket arrives, by which time the server (daphne's Twisted reactor, or uvicorn) has
    installed its own handler, which is kept and called after the drain.
    """
    global _installed
    if _installed or not settings.RIPPLE_DRAIN_ON_SIGTERM:
        return
    if threading.current_thread() is not threading.main_thread():
        return  # signal handlers can only be set from the main thread
    _installed = True
    previous = signal.getsignal(signal.SIGTERM)

    def then_previous() -> None:
        signal.signal(signal.SIGTERM, previous)
        if callable(previous):
            previous(signal.SIGTERM, None)
        else:
            os.kill(os.getpid(), signal.SIGTERM)

    async def drain_then_stop() -> None:
        try:
            await drain(settings.RIPPLE_DRAIN_S)
        except Exception:
            logger.exception("draining failed; stopping anyway")
        then_previous()

    def on_sigterm(signum: int, frame: Any) -> None:
        if is_draining():
            # A second SIGTERM: stop now.
            then_previous()
            return
        log_event("drain_requested", signal="SIGTERM", window_s=settings.RIPPLE_DRAIN_S)
        loop.call_soon_threadsafe(lambda: loop.create_task(drain_then_stop()))

    signal.signal(signal.SIGTERM, on_sigterm)
