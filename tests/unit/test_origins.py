"""The Origin allowlist: exact origins from RIPPLE_ALLOWED_ORIGINS, else the site's own origin exactly."""

import pytest
from channels.testing import WebsocketCommunicator

from chat.origins import normalized, origin_allowed, own_origin
from project.asgi import application

pytestmark = pytest.mark.django_db(transaction=True)


def scope(host: str | None = "chat.example.com", scheme: str = "ws") -> dict:
    headers = [(b"host", host.encode())] if host is not None else []
    return {"type": "websocket", "scheme": scheme, "headers": headers}


SCOPE = scope()


def test_origins_are_compared_by_scheme_host_and_port():
    assert normalized("https://Chat.Example.com") == ("https", "chat.example.com", 443)
    assert normalized("http://127.0.0.1:8000/") == ("http", "127.0.0.1", 8000)
    for bad in ("null", "", "file://x", "https://", "https://a.com/path", "http://a.com:99999"):
        assert normalized(bad) is None, bad


def test_an_explicit_allowlist_admits_exactly_its_origins(settings):
    settings.RIPPLE_ALLOWED_ORIGINS = ["https://chat.example.com", "http://localhost:8000"]
    assert origin_allowed("https://chat.example.com", SCOPE)
    assert origin_allowed("https://chat.example.com:443", SCOPE)
    assert origin_allowed("http://localhost:8000", SCOPE)
    for refused in (
        "http://chat.example.com",  # another scheme
        "https://chat.example.com:8443",  # another port
        "https://evil.example.com",
        "https://chat.example.com.evil.net",
        "http://localhost:8001",
        None,
        "",
    ):
        assert not origin_allowed(refused, SCOPE), refused


def test_without_an_allowlist_only_the_sites_own_origin_passes(settings):
    settings.RIPPLE_ALLOWED_ORIGINS = []
    settings.ALLOWED_HOSTS = ["chat.example.com", "localhost", "[::1]"]
    settings.DJANGO_HTTPS = False
    assert origin_allowed("http://chat.example.com", scope("chat.example.com"))
    assert origin_allowed("http://chat.example.com:80", scope("chat.example.com"))
    assert origin_allowed("http://localhost:8000", scope("localhost:8000"))
    assert origin_allowed("http://[::1]:8000", scope("[::1]:8000"))
    assert origin_allowed("https://chat.example.com", scope("chat.example.com", scheme="wss"))
    for refused, host in (
        ("http://localhost:8001", "localhost:8000"),  # another port of the same host
        ("https://localhost:8000", "localhost:8000"),  # another scheme
        ("http://chat.example.com", "localhost:8000"),  # another allowed host
        ("http://evil.example.com", "evil.example.com"),  # a host not allowed
        ("http://localhost:8000", "localhost:8000:1"),
        ("http://localhost:8000", None),
        (None, "localhost:8000"),
        ("null", "localhost:8000"),
    ):
        assert not origin_allowed(refused, scope(host)), (refused, host)


def test_behind_tls_the_sites_own_origin_is_https(settings):
    settings.RIPPLE_ALLOWED_ORIGINS = []
    settings.ALLOWED_HOSTS = ["chat.example.com"]
    settings.DJANGO_HTTPS = True
    assert own_origin(scope("chat.example.com")) == ("https", "chat.example.com", 443)
    assert origin_allowed("https://chat.example.com", scope("chat.example.com"))
    assert not origin_allowed("http://chat.example.com", scope("chat.example.com"))


@pytest.mark.parametrize("origin", [b"https://evil.example.com", None])
async def test_a_handshake_from_another_origin_is_refused_before_the_socket_opens(settings, origin):
    settings.RIPPLE_ALLOWED_ORIGINS = ["http://localhost"]
    headers = [(b"host", b"localhost")] + ([(b"origin", origin)] if origin else [])
    communicator = WebsocketCommunicator(application, "/ws/chat/", headers=headers)
    connected, _ = await communicator.connect()
    assert not connected
    allowed = WebsocketCommunicator(
        application, "/ws/chat/", headers=[(b"host", b"localhost"), (b"origin", b"http://localhost")]
    )
    assert (await allowed.connect())[0]
    await allowed.disconnect()
