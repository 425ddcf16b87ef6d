"""Who opened a socket or stream: its session and user, read once at the handshake.

Channels' ``AuthMiddlewareStack`` does this in three layers (cookies, session, user): each copies
the scope and holds it, with its own coroutine frame, for the life of the socket, and the user is
read in a thread hop even when the request carries no session cookie. A socket then needed more
hops for the guest name and the session's expiry. ``SocketAuth`` is one layer:

- no session cookie (or one naming no live session): no thread hop at all; ``session`` is None
  and ``user`` is ``AnonymousUser``;
- a session cookie: one thread hop reads the session, the user, a guest's display name, and when
  the session expires.

The user is checked as ``django.contrib.auth.get_user`` checks it (the backend, the session's
auth hash, ``SECRET_KEY_FALLBACKS``), but nothing is written: a session whose hash no longer
verifies (the password changed) opens the socket as a guest with no session, where Django and
Channels would flush it, and a hash that verifies only with a fallback key is not re-keyed, which
a socket could not send back to the browser as a new cookie.

It sets ``scope["session"]``, ``scope["user"]`` and ``scope[SESSION_SEEN]`` (a ``SessionSeen``)
in place: it is mounted only behind the admission guard (chat/routing.py), which gives every
connection a scope of its own. Sockets never write a session, so there is no ``send`` wrapper.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

from channels.db import database_sync_to_async
from django.conf import settings
from django.contrib.auth import (
    BACKEND_SESSION_KEY,
    HASH_SESSION_KEY,
    SESSION_KEY,
    get_user_model,
    load_backend,
)
from django.contrib.auth.models import AnonymousUser
from django.core.exceptions import ValidationError
from django.http.cookie import parse_cookie
from django.utils.crypto import constant_time_compare

from .identity import NO_SESSION, SESSION_SEEN, SessionSeen, session_expiry, session_guest


def session_cookie(scope: dict[str, Any]) -> str | None:
    """The session cookie's value, parsed the way Django parses ``request.COOKIES``."""
    found = [value.decode("latin1") for name, value in scope.get("headers", ()) if name == b"cookie"]
    if not found:
        return None
    return parse_cookie("; ".join(found)).get(settings.SESSION_COOKIE_NAME) or None


def read_session(key: str) -> tuple[Any, Any, SessionSeen]:
    """(session or None, user, what was seen) for a session key; runs in the database thread."""
    session = import_module(settings.SESSION_ENGINE).SessionStore(key)
    user = session_user(session)
    if not session.session_key or user is None:
        # No such session (expired, deleted or forged), or a login that no longer verifies.
        return None, AnonymousUser(), NO_SESSION
    name, guest_key = (None, None) if user.is_authenticated else session_guest(session)
    return session, user, SessionSeen(guest_name=name, guest_key=guest_key, expires=session_expiry(session))


def session_user(session: Any) -> Any:
    """The session's user, ``AnonymousUser`` without a login, None for a login that fails the check."""
    try:
        user_id = get_user_model()._meta.pk.to_python(session[SESSION_KEY])
        backend_path = session[BACKEND_SESSION_KEY]
    except (KeyError, ValueError, ValidationError):  # no login, or a malformed one
        return AnonymousUser()
    if backend_path not in settings.AUTHENTICATION_BACKENDS:
        return AnonymousUser()
    user = load_backend(backend_path).get_user(user_id)
    if user is None:  # deleted, or no longer active
        return AnonymousUser()
    if not hasattr(user, "get_session_auth_hash"):
        return user
    sent = session.get(HASH_SESSION_KEY)
    if not sent:
        return None
    hashes = [user.get_session_auth_hash(), *user.get_session_auth_fallback_hash()]
    return user if any(constant_time_compare(sent, known) for known in hashes) else None


class SocketAuth:
    """ASGI middleware: ``session``, ``user`` and ``SESSION_SEEN`` in the scope, in one hop at most."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> Any:
        key = session_cookie(scope)
        if key is None:
            session, user, seen = None, AnonymousUser(), NO_SESSION
        else:
            session, user, seen = await database_sync_to_async(read_session)(key)
        scope["session"], scope["user"], scope[SESSION_SEEN] = session, user, seen
        return await self.inner(scope, receive, send)
