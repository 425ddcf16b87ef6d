"""Who is posting: the logged-in user, or a guest's display name from the session."""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from typing import Any

from django.conf import settings

from . import names
from .presence import Member

GUEST_NAME_KEY = "ripple_guest_name"
GUEST_NAME_RE = re.compile(r"[\w .'-]{1,32}")
GUEST_NAME_FORMAT = "Use 1-32 letters, digits, spaces, dots, dashes or apostrophes."
GUEST_NAME_TAKEN = (
    "That name is taken (or too close to a registered user's or a reserved name); pick another."
)


# The scope key of the ``SessionSeen`` the handshake read (chat/socket_auth.py).
SESSION_SEEN = "ripple.session_seen"


@dataclass(frozen=True, slots=True)
class SessionSeen:
    """What the handshake read from the session, so that a socket reads nothing more to start.

    ``guest_key``: the session key when the session holds a guest name (the guest's identity
    across sockets), and ``guest_name`` that name if still usable (a user may have registered it
    since). ``expires``: when the session expires (epoch seconds); all None with no session.
    """

    guest_name: str | None = None
    guest_key: str | None = None
    expires: float | None = None


NO_SESSION = SessionSeen()


class GuestNameRefused(ValueError):
    """A guest name that may not be used; ``message`` says why, for the name form."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@dataclass(frozen=True, slots=True)
class Identity:
    """Who is posting. ``member_id`` is the opaque presence id: one per user, per guest session,
    or per socket for a guest with no session."""

    name: str
    user_id: int | None
    member_id: str = ""

    @property
    def member(self) -> Member:
        return Member(name=self.name, id=self.member_id)


def _opaque(value: str) -> str:
    return hmac.new(settings.SECRET_KEY.encode(), value.encode(), hashlib.sha256).hexdigest()[:16]


def check_guest_name(raw: str) -> str:
    """The display name a guest asked for, cleaned, or raise ``GuestNameRefused``.

    Refused: anything but letters, digits, spaces, dots, dashes and apostrophes, and any name
    that could pass for a registered user's or a reserved one (chat.names). One indexed query.
    """
    name = " ".join(raw.split())
    if not GUEST_NAME_RE.fullmatch(name):
        raise GuestNameRefused(GUEST_NAME_FORMAT)
    if names.is_taken(name):
        raise GuestNameRefused(GUEST_NAME_TAKEN)
    return name


def clean_guest_name(raw: str) -> str | None:
    """A display name a guest may use, or None."""
    try:
        return check_guest_name(raw)
    except GuestNameRefused:
        return None


def guest_name_usable(name: object) -> bool:
    """A name kept in a session may still be used: a user may have registered it since."""
    return isinstance(name, str) and bool(name) and not names.is_taken(name)


def generated_guest_name() -> str:
    return f"guest-{secrets.token_hex(2)}"


def identity_from_request(request: Any) -> Identity | None:
    user = request.user
    if user.is_authenticated:
        return Identity(name=user.get_username(), user_id=user.pk, member_id=f"u{user.pk}")
    name = request.session.get(GUEST_NAME_KEY)
    if not guest_name_usable(name):
        # None makes the page ask for a name again.
        return None
    return Identity(name=name, user_id=None, member_id=f"g{_opaque(request.session.session_key or '')}")


def identity_from_scope(scope: dict[str, Any], *, connection_id: str) -> Identity:
    """A socket's identity, from what its handshake read (chat/socket_auth.py): no database."""
    user = scope.get("user")
    if user is not None and user.is_authenticated:
        return Identity(name=user.get_username(), user_id=user.pk, member_id=f"u{user.pk}")
    seen = scope.get(SESSION_SEEN, NO_SESSION)
    if seen.guest_key:
        # A name taken since it was chosen is not used: the guest keeps their identity
        # (and the client_ids they sent) under a generated name.
        return Identity(
            name=seen.guest_name or generated_guest_name(),
            user_id=None,
            member_id=f"g{_opaque(seen.guest_key)}",
        )
    return Identity(name=generated_guest_name(), user_id=None, member_id=f"c{connection_id[:15]}")


def session_guest(session: Any) -> tuple[str | None, str | None]:
    """(the session's guest name if still usable, the session key when it holds a name)."""
    name = session.get(GUEST_NAME_KEY)
    if not name:
        return None, None
    return (name if guest_name_usable(name) else None), session.session_key


def session_tag(session: Any) -> str:
    """An opaque name for a session (its key is a credential): "" when there is none."""
    key = getattr(session, "session_key", None) if session is not None else None
    return f"s{_opaque(key)}" if key else ""


def session_expiry(session: Any) -> float | None:
    """When ``session`` expires (epoch seconds) as stored now, or None when it no longer exists.

    Read from the store each time: another request may have extended the session, and logout
    deletes it. Stores without a table (signed cookies, cache) answer from the session itself.
    """
    key = getattr(session, "session_key", None) if session is not None else None
    if not key:
        return None
    model = getattr(session, "get_model_class", None)
    if model is None:
        return float(session.get_expiry_date().timestamp())
    expires = model().objects.filter(session_key=key).values_list("expire_date", flat=True).first()
    return None if expires is None else float(expires.timestamp())
