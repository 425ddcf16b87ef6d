"""Who a moderator removed, as every worker checks it on each handshake and subscribe.

The removals live in the database (``models.Removal``: key, until), so every worker sees them.
Each process keeps the active ones in memory and reads them again at most every
``REFRESH_S``: a connect storm costs one small query a second per process, not one per
handshake. ``services.member_remove`` also tells every running hub (a control event), which
adds the keys here at once, so a removed identity is refused on the process that closed it
without waiting for the next read.
"""

from __future__ import annotations

import threading
import time
from datetime import datetime

from channels.db import database_sync_to_async
from django.utils import timezone

from .models import Removal

# Seconds the in-memory copy of the active removals may be old.
REFRESH_S = 1.0

_lock = threading.Lock()
# Maps each removed key to the Unix time its removal ends.
_until: dict[str, float] = {}
_read_at = -REFRESH_S


def remember(keys: list[str], until: datetime) -> None:
    """Count ``keys`` removed until ``until`` here, ahead of the next read."""
    ends = until.timestamp()
    with _lock:
        for key in keys:
            _until[key] = max(_until.get(key, 0.0), ends)


def _refresh(now_monotonic: float) -> None:
    global _read_at, _until
    rows = Removal.objects.filter(until__gt=timezone.now()).values_list("key", "until")
    fresh = {key: until.timestamp() for key, until in rows}
    with _lock:
        _until, _read_at = fresh, now_monotonic


def removable(key: str) -> bool:
    """Whether ``key`` can be removed at all: a user (``u``) or a guest session (``g``).

    A guest with no cookie is a new identity on every socket (``c<connection>``): there is
    nothing to keep out, so its checks cost nothing, the database included.
    """
    return key[:1] in ("u", "g")


def removed_until(key: str) -> float | None:
    """The Unix time ``key``'s removal ends, or None when it is not removed. May read the database."""
    if not removable(key):
        return None
    now = time.monotonic()
    if now - _read_at >= REFRESH_S:
        _refresh(now)
    ends = _until.get(key)
    return ends if ends is not None and ends > time.time() else None


async def aremoved_until(key: str) -> float | None:
    """``removed_until`` from async code: a thread hop only when the copy is due a read."""
    if not removable(key):
        return None
    if time.monotonic() - _read_at < REFRESH_S:
        ends = _until.get(key) if key else None
        return ends if ends is not None and ends > time.time() else None
    return await database_sync_to_async(removed_until)(key)


def forget_all() -> None:
    """Drop the in-memory copy (tests); the next check reads the database."""
    global _read_at
    with _lock:
        _until.clear()
        _read_at = -REFRESH_S
