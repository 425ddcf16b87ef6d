"""Guest sessions for tests that open sockets as a guest with a chosen name (sync; wrap for async)."""

from django.contrib.sessions.backends.db import SessionStore

from chat.identity import GUEST_NAME_KEY


def guest_session(name: str) -> str:
    """Create a session holding the guest name ``name`` (as the name form keeps it); its key.

    As the room page leaves in a browser: the author of a re-send after a reconnect stays the
    same (a socket without one gets a new name each time).
    """
    session = SessionStore()
    session[GUEST_NAME_KEY] = name
    session.create()
    assert session.session_key is not None
    return session.session_key
