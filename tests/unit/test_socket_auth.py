"""chat/socket_auth.py: the session and user a socket is opened with, read in one hop at most."""

import pytest
from channels.db import database_sync_to_async
from django.contrib.auth import HASH_SESSION_KEY
from django.contrib.auth.models import User
from django.contrib.sessions.backends.db import SessionStore
from django.contrib.sessions.models import Session

from chat import socket_auth
from chat.identity import GUEST_NAME_KEY, NO_SESSION, SESSION_SEEN, identity_from_scope
from chat.socket_auth import SocketAuth
from tests.support.sessions import logged_in_session

pytestmark = pytest.mark.django_db(transaction=True)


async def handshake(*cookies: str, hops: list | None = None) -> dict:
    """The scope the inner application gets for a handshake with these Cookie headers."""
    seen: list[dict] = []

    async def inner(scope, receive, send):
        seen.append(scope)

    scope = {"type": "websocket", "headers": [(b"cookie", cookie.encode()) for cookie in cookies]}
    await SocketAuth(inner)(scope, None, None)
    assert seen == [scope], "the scope is the connection's own, given on as is (no copy)"
    return scope


@pytest.fixture
def hops(monkeypatch):
    """Counts the thread hops that read a session."""
    count = []
    read = socket_auth.read_session

    def counted(key):
        count.append(key)
        return read(key)

    monkeypatch.setattr(socket_auth, "read_session", counted)
    return count


def guest_session(name: str) -> str:
    session = SessionStore()
    session[GUEST_NAME_KEY] = name
    session.create()
    return session.session_key


async def test_no_session_cookie_means_no_thread_hop(hops):
    scope = await handshake("theme=dark; other=1")
    assert hops == []
    assert scope["session"] is None and not scope["user"].is_authenticated
    assert scope[SESSION_SEEN] is NO_SESSION
    assert (await handshake())[SESSION_SEEN] is NO_SESSION and hops == []


async def test_a_login_is_read_in_one_hop_with_the_sessions_expiry(hops):
    user_id, key = await database_sync_to_async(logged_in_session)("ann")
    scope = await handshake(f"theme=dark; sessionid={key}")
    assert hops == [key]
    assert scope["user"].pk == user_id and scope["session"].session_key == key
    stored = await Session.objects.aget(session_key=key)
    assert scope[SESSION_SEEN].expires == stored.expire_date.timestamp()
    assert scope[SESSION_SEEN].guest_key is None
    identity = identity_from_scope(scope, connection_id="c" * 32)
    assert (identity.name, identity.user_id, identity.member_id) == ("ann", user_id, f"u{user_id}")


async def test_the_cookie_may_come_in_a_second_cookie_header(hops):
    user_id, key = await database_sync_to_async(logged_in_session)("bea")
    scope = await handshake("theme=dark", f"sessionid={key}")
    assert scope["user"].pk == user_id


async def test_a_guest_session_gives_its_name_and_a_stable_member_id():
    key = await database_sync_to_async(guest_session)("Dora")
    first, second = await handshake(f"sessionid={key}"), await handshake(f"sessionid={key}")
    assert first[SESSION_SEEN].guest_name == "Dora" and first[SESSION_SEEN].guest_key == key
    ids = {identity_from_scope(scope, connection_id=c * 32) for scope, c in ((first, "a"), (second, "b"))}
    assert len({identity.member_id for identity in ids}) == 1
    assert {identity.name for identity in ids} == {"Dora"}


async def test_a_guest_name_registered_since_keeps_the_identity_under_another_name():
    key = await database_sync_to_async(guest_session)("Eve")
    await database_sync_to_async(User.objects.create_user)("Eve", password="pw-long-enough-1")
    scope = await handshake(f"sessionid={key}")
    assert scope[SESSION_SEEN].guest_name is None and scope[SESSION_SEEN].guest_key == key
    identity = identity_from_scope(scope, connection_id="c" * 32)
    assert identity.name.startswith("guest-") and identity.member_id.startswith("g")


@pytest.mark.parametrize(
    "cookie", ["sessionid=nosuchsessionkey0000000000000000", "sessionid=%%%", "sessionid="]
)
async def test_an_unknown_or_malformed_session_opens_as_a_guest_without_a_session(cookie):
    scope = await handshake(cookie)
    assert scope["session"] is None and not scope["user"].is_authenticated
    assert scope[SESSION_SEEN] is NO_SESSION


async def test_a_login_whose_password_changed_opens_anonymous_and_the_session_is_left_alone():
    """Django and Channels would flush the session; a socket writes none (the next page will)."""
    _, key = await database_sync_to_async(logged_in_session)("fay")
    user = await User.objects.aget(username="fay")
    user.set_password("another-pw-long-enough-2")
    await user.asave()
    scope = await handshake(f"sessionid={key}")
    assert scope["session"] is None and not scope["user"].is_authenticated
    assert await Session.objects.filter(session_key=key).aexists()


async def test_a_login_verified_by_a_fallback_key_is_kept_and_not_rekeyed(settings):
    _, key = await database_sync_to_async(logged_in_session)("gus")
    # The session's hash was made with the key that is now a fallback.
    settings.SECRET_KEY_FALLBACKS = [settings.SECRET_KEY]
    settings.SECRET_KEY = "a-new-secret-key-" + "x" * 40
    scope = await handshake(f"sessionid={key}")
    assert scope["user"].username == "gus" and scope["session"].session_key == key
    stored = await database_sync_to_async(lambda: SessionStore(key).load())()
    assert HASH_SESSION_KEY in stored
    assert await Session.objects.filter(session_key=key).aexists()


async def test_an_inactive_user_opens_anonymous():
    _, key = await database_sync_to_async(logged_in_session)("hal")
    await User.objects.filter(username="hal").aupdate(is_active=False)
    scope = await handshake(f"sessionid={key}")
    assert not scope["user"].is_authenticated


async def test_the_socket_sees_its_login_through_the_real_application(ws_client):
    _, key = await database_sync_to_async(logged_in_session)("ida")
    async with ws_client(session_cookie=key) as client:
        assert client.welcome["user"] == {"name": "ida", "authenticated": True}
    async with ws_client() as client:
        assert client.welcome["user"]["name"].startswith("guest-")
        assert client.welcome["user"]["authenticated"] is False
