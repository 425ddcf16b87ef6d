"""The hub's only view of a consumer: what it reads from a socket and calls on it.

``chat.consumers.ChatConsumer`` (and the HTTP fallback's stream, which runs one) is the one
implementation; the hub never reaches for anything not named here.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, Protocol

from ..identity import Identity

logger = logging.getLogger(__name__)


class Subscriber(Protocol):
    """One socket as the hub sees it: who it is, how to send to it, how to end it."""

    # The socket's id in logs and on the dashboard.
    connection_id: str
    # Who the socket speaks for: moderation matches ``user_id``, logs show ``name``.
    identity: Identity
    # The session the socket was opened with ("" without one): a logout ends its sockets.
    session_tag: str

    # Writes one text frame at once and says True, or says False (then ``base_send`` it); None
    # where the server offers no such path (chat/admission.py ``SEND_TEXT``).
    send_text: Callable[[str], bool] | None

    async def base_send(self, message: dict[str, Any], /) -> None:
        """Write one ASGI ``websocket.send`` as it is: the frame text is encoded once for all."""
        ...

    def forget_room(self, slug: str) -> None:
        """The hub ended this socket's subscription to ``slug`` (closed, deleted, revoked)."""
        ...

    async def close(self, code: int | bool | None = None, reason: str | None = None) -> None: ...

    async def end_session(self, reason: str) -> None:
        """The session the socket spoke for ended (logout): close with 4401."""
        ...


async def close_quietly(subscriber: Subscriber, code: int) -> None:
    """Close one socket; a socket that fails to close (gone already) must not stop the others."""
    try:
        await subscriber.close(code=code)
    except Exception:
        logger.debug("closing a socket failed", exc_info=True)
