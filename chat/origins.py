"""Which pages may open a socket (and post to the HTTP fallback) with this site's cookies.

A browser sends the page's ``Origin`` with every WebSocket handshake, and cookies go along
whatever the page: without this check any site could open a socket as the logged-in user
(cross-site WebSocket hijacking). ``RIPPLE_ALLOWED_ORIGINS`` lists the origins exactly
(``https://chat.example.com``, scheme and port included); empty, any origin whose host is in
``ALLOWED_HOSTS`` passes (Channels' ``AllowedHostsOriginValidator``). A handshake with no
``Origin`` is refused too. Refusals are answered with HTTP 403 before the socket opens (the
page sees a close with 1006) and logged as ``refused`` events.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from channels.security.websocket import AllowedHostsOriginValidator, WebsocketDenier
from django.conf import settings

from .logs import log_event

DEFAULT_PORTS = {"http": 80, "https": 443}


def normalized(origin: str) -> tuple[str, str, int] | None:
    """(scheme, host, port) of an origin, or None when it is not one."""
    try:
        parts = urlsplit(origin.strip())
        port = parts.port
    except ValueError:
        return None
    if parts.scheme not in DEFAULT_PORTS or not parts.hostname or parts.path not in ("", "/"):
        return None
    return parts.scheme, parts.hostname, port or DEFAULT_PORTS[parts.scheme]


def origin_allowed(origin: str | None) -> bool:
    """Whether a request from a page at ``origin`` may act with the user's cookies."""
    if not origin:
        return False
    if settings.RIPPLE_ALLOWED_ORIGINS:
        found = normalized(origin)
        return found is not None and any(found == normalized(o) for o in settings.RIPPLE_ALLOWED_ORIGINS)
    checker = AllowedHostsOriginValidator(None)
    return bool(checker.valid_origin(urlsplit(origin)))


def header(scope: dict[str, Any], name: bytes) -> str | None:
    """A request header from an ASGI scope (``name`` in lower case), or None."""
    for key, value in scope.get("headers", []):
        if key == name:
            return value.decode("latin1")
    return None


class OriginGuard:
    """ASGI middleware for WebSocket routes: refuse handshakes from origins not allowed."""

    def __init__(self, application: Any) -> None:
        self.application = application

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> Any:
        origin = header(scope, b"origin")
        if origin_allowed(origin):
            return await self.application(scope, receive, send)
        client = scope.get("client")
        log_event(
            "refused", reason="origin", origin=origin, client=f"{client[0]}:{client[1]}" if client else None
        )
        return await WebsocketDenier()(scope, receive, send)
