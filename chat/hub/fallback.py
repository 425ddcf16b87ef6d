"""The HTTP fallback streams held by this process, and the POSTed frames routed to them.

A stream (chat/sse.py) registers here with the hub once its consumer is welcomed; a frame
POSTed to any worker travels the channel layer to the stream's group and, on the process that
holds the stream, is handed to the stream's consumer only with the stream's own session and
token.
"""

from __future__ import annotations

import asyncio
import hmac
from typing import Any


class FallbackRoutes:
    """Maps each fallback stream's connection id to who may write to it and its inbox."""

    def __init__(self) -> None:
        # Connection id -> (the session tag that opened the stream, its secret token, the
        # queue its consumer reads client frames from).
        self._routes: dict[str, tuple[str, str, asyncio.Queue[dict[str, Any]]]] = {}

    def add(
        self, connection_id: str, session_tag: str, token: str, inbox: asyncio.Queue[dict[str, Any]]
    ) -> None:
        self._routes[connection_id] = (session_tag, token, inbox)

    def remove(self, connection_id: str) -> None:
        self._routes.pop(connection_id, None)

    def route(self, event: dict[str, Any]) -> None:
        """Hand a POSTed frame to its fallback stream's consumer, if that stream is here."""
        found = self._routes.get(event["connection"])
        if found is None:
            return
        session, token, inbox = found
        # Only from the session that opened the stream and with the stream's own token: its id
        # alone is not enough, nor is an empty session tag, which every cookie-less client has.
        sent = str(event.get("token") or "").encode()
        if session == event["session"] and hmac.compare_digest(token.encode(), sent):
            inbox.put_nowait({"type": "websocket.receive", "text": event["text"]})
