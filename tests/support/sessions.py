"""Database sessions for tests that open sockets as a logged-in user (sync; wrap for async)."""

from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY
from django.contrib.auth.models import User
from django.contrib.sessions.backends.db import SessionStore


def logged_in_session(username: str, *, is_staff: bool = False) -> tuple[int, str]:
    """Create a user and a session logged in as them; return (user id, session key)."""
    user = User.objects.create_user(username, password="pw-long-enough-1", is_staff=is_staff)
    session = SessionStore()
    session[SESSION_KEY] = str(user.pk)
    session[BACKEND_SESSION_KEY] = "django.contrib.auth.backends.ModelBackend"
    session[HASH_SESSION_KEY] = user.get_session_auth_hash()
    session.create()
    return user.pk, session.session_key
