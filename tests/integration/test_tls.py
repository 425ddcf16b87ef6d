"""Ripple over TLS, against real processes: daphne's own TLS endpoint, and nginx terminating TLS
with deploy/nginx-tls.conf; wss:// chat, and cookies that are Secure only with DJANGO_HTTPS=1."""

import http.client
import json
import re
import ssl
from contextlib import ExitStack
from urllib.parse import urlencode, urlsplit

import pytest
import websockets
from websockets.typing import Origin

from tests.support.frames import recv_until
from tests.support.processes import ROOT, DaphneServer, free_port, wait_until
from tests.support.required import require
from tests.support.tls import NGINX_TLS_CONF, NginxServer, TlsDaphneServer, nginx_binary, self_signed_cert

pytestmark = pytest.mark.django_db(transaction=True)

HSTS_SECONDS = "60"


@pytest.fixture
def cert():
    made = self_signed_cert()
    yield made
    made.cleanup()


@pytest.fixture
def worker_env(live_database_url):
    """The environment of the ``daphne`` fixture's workers (tests/conftest.py): the test database."""
    return {
        "DJANGO_SECRET_KEY": "ripple-tests-only-not-secret",
        "DJANGO_DEBUG": "0",
        "DJANGO_ALLOWED_HOSTS": "127.0.0.1,localhost",
        "DATABASE_URL": live_database_url,
        "REDIS_URL": "",
        "DJANGO_LOG_LEVEL": "WARNING",
    }


def https_env(origin: str) -> dict[str, str]:
    return {"DJANGO_HTTPS": "1", "RIPPLE_ALLOWED_ORIGINS": origin, "DJANGO_HSTS_SECONDS": HSTS_SECONDS}


class Started(list):
    """Processes a test started, each stopped by PID when it ends, last first, even if one fails to stop."""

    def __init__(self, stack: ExitStack) -> None:
        super().__init__()
        self.stack = stack

    def append(self, process) -> None:
        super().append(process)
        self.stack.callback(process.cleanup)


@pytest.fixture
def processes():
    with ExitStack() as stack:
        yield Started(stack)


@pytest.fixture
def nginx_available():
    require(
        "nginx is not installed (apt-get install nginx): TLS through nginx not tested",
        nginx_binary() is not None,
    )


# HTTP, with the cookie attributes kept.


class Page:
    def __init__(self, response: http.client.HTTPResponse) -> None:
        self.status = response.status
        self.headers = response.headers
        self.text = response.read().decode()
        # Cookie name -> its value and attributes (lower-case names; flags map to "").
        self.cookies: dict[str, tuple[str, dict[str, str]]] = {}
        for header in response.headers.get_all("Set-Cookie") or []:
            first, *attributes = (part.strip() for part in header.split(";"))
            name, _, value = first.partition("=")
            parsed = {}
            for attribute in attributes:
                key, _, attribute_value = attribute.partition("=")
                parsed[key.lower()] = attribute_value
            self.cookies[name] = (value, parsed)


def request(
    base_url: str,
    path: str,
    *,
    context: ssl.SSLContext | None = None,
    method: str = "GET",
    headers: dict[str, str] | None = None,
    body: str | None = None,
) -> Page:
    url = urlsplit(base_url)
    host = url.hostname or "127.0.0.1"
    if url.scheme == "https":
        connection: http.client.HTTPConnection = http.client.HTTPSConnection(
            host, url.port, timeout=5, context=context
        )
    else:
        connection = http.client.HTTPConnection(host, url.port, timeout=5)
    try:
        connection.request(method, path, body=body, headers=headers or {})
        return Page(connection.getresponse())
    finally:
        connection.close()


def pick_guest_name(base_url: str, *, context: ssl.SSLContext | None, name: str) -> tuple[Page, Page]:
    """Open a room with no identity (the name form), then post a name as a browser does."""
    form = request(base_url, "/rooms/tls/", context=context)
    assert form.status == 200, form.text
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', form.text)
    assert token, "the name form has no CSRF token"
    posted = request(
        base_url,
        "/name/",
        context=context,
        method="POST",
        headers={
            "Content-Type": "application/x-www-form-urlencoded",
            "Cookie": f"csrftoken={form.cookies['csrftoken'][0]}",
            "Origin": base_url,
            "Referer": f"{base_url}/rooms/tls/",
        },
        body=urlencode({"csrfmiddlewaretoken": token.group(1), "name": name, "next": "/rooms/tls/"}),
    )
    assert posted.status == 302, f"the name was refused ({posted.status}):\n{posted.text[:2000]}"
    assert posted.headers["Location"] == "/rooms/tls/"
    return form, posted


def assert_secure_cookies(form: Page, posted: Page) -> None:
    _, session = posted.cookies["sessionid"]
    assert "secure" in session, session
    assert "httponly" in session, session
    assert session.get("samesite") == "Lax", session
    _, csrf = form.cookies["csrftoken"]
    assert "secure" in csrf, csrf
    assert "httponly" in csrf, csrf
    assert csrf.get("samesite") == "Lax", csrf


# WebSockets.


async def chat_round_trip(
    ws_url: str, *, origin: str, context: ssl.SSLContext, session_cookie: str | None = None
) -> dict:
    """Open the chat socket, subscribe, post, and return the welcome frame."""
    headers = {"Cookie": f"sessionid={session_cookie}"} if session_cookie else None
    async with websockets.connect(
        f"{ws_url}/ws/chat/", origin=Origin(origin), ssl=context, additional_headers=headers, open_timeout=5
    ) as ws:
        welcome = await recv_until(ws, "welcome")
        await ws.send(json.dumps({"type": "subscribe", "room": "tls"}))
        await recv_until(ws, "subscribed")
        await ws.send(json.dumps({"type": "message", "room": "tls", "body": "over TLS", "client_id": "t1"}))
        ack = await recv_until(ws, "ack")
        assert (ack["room"], ack["client_id"], ack["duplicate"]) == ("tls", "t1", False)
        assert ack["seq"] >= 1
        return welcome


# daphne's own TLS endpoint.


def start_tls_daphne(processes, worker_env, cert) -> TlsDaphneServer:
    port = free_port()
    env = {**worker_env, **https_env(f"https://127.0.0.1:{port}")}
    server = TlsDaphneServer(env, cert, port=port)
    processes.append(server)
    server.start()
    return server


async def test_chat_over_wss_on_daphnes_own_tls_endpoint(processes, worker_env, cert):
    server = start_tls_daphne(processes, worker_env, cert)
    welcome = await chat_round_trip(server.ws_url, origin=server.http_url, context=cert.client_context())
    assert welcome["type"] == "welcome"


async def test_an_http_origin_is_refused_when_only_the_https_one_is_allowed(processes, worker_env, cert):
    server = start_tls_daphne(processes, worker_env, cert)
    with pytest.raises(websockets.InvalidStatus) as refused:
        async with websockets.connect(
            f"{server.ws_url}/ws/chat/",
            origin=Origin(f"http://127.0.0.1:{server.port}"),
            ssl=cert.client_context(),
            open_timeout=5,
        ):
            pass
    assert refused.value.response.status_code == 403


async def test_plain_ws_to_the_tls_endpoint_does_not_connect(processes, worker_env, cert):
    server = start_tls_daphne(processes, worker_env, cert)
    with pytest.raises((websockets.InvalidMessage, websockets.InvalidHandshake, OSError, EOFError)):
        async with websockets.connect(
            f"ws://127.0.0.1:{server.port}/ws/chat/", origin=Origin(server.http_url), open_timeout=5
        ):
            pass


async def test_cookies_over_https_are_secure_httponly_and_lax(processes, worker_env, cert):
    server = start_tls_daphne(processes, worker_env, cert)
    context = cert.client_context()
    form, posted = pick_guest_name(server.http_url, context=context, name="Ann")
    assert_secure_cookies(form, posted)
    # request.is_secure() is true behind daphne's TLS: Django sends HSTS.
    assert form.headers["Strict-Transport-Security"] == f"max-age={HSTS_SECONDS}"
    # The Secure session cookie names the guest on the wss:// socket.
    session_cookie = posted.cookies["sessionid"][0]
    welcome = await chat_round_trip(
        server.ws_url, origin=server.http_url, context=context, session_cookie=session_cookie
    )
    assert welcome["user"]["name"] == "Ann"


def test_cookies_over_plain_http_without_django_https_are_not_secure(processes, worker_env):
    server = DaphneServer({**worker_env, "DJANGO_HTTPS": "0", "DJANGO_HSTS_SECONDS": HSTS_SECONDS})
    processes.append(server)
    server.start()
    form, posted = pick_guest_name(server.http_url, context=None, name="Bob")
    _, session = posted.cookies["sessionid"]
    _, csrf = form.cookies["csrftoken"]
    assert "secure" not in session, session
    assert "secure" not in csrf, csrf
    assert "httponly" in session
    assert session.get("samesite") == "Lax"
    assert "Strict-Transport-Security" not in form.headers


# nginx terminating TLS (deploy/nginx-tls.conf) in front of a plain-HTTP daphne.


def start_behind_nginx(processes, worker_env, cert) -> tuple[NginxServer, DaphneServer]:
    https_port, http_port = free_port(), free_port()
    worker = DaphneServer({**worker_env, **https_env(f"https://127.0.0.1:{https_port}")})
    # As deployed (Dockerfile): the client's address and scheme from nginx's X-Forwarded-* headers.
    worker.argv.insert(-1, "--proxy-headers")
    processes.append(worker)
    worker.start()
    proxy = NginxServer(upstream_port=worker.port, cert=cert, https_port=https_port, http_port=http_port)
    processes.append(proxy)
    proxy.start()
    return proxy, worker


async def test_chat_and_secure_cookies_through_nginx_terminating_tls(
    nginx_available, processes, worker_env, cert
):
    proxy, _ = start_behind_nginx(processes, worker_env, cert)
    context = cert.client_context()
    form, posted = pick_guest_name(proxy.https_url, context=context, name="Cy")
    assert_secure_cookies(form, posted)
    # HSTS only on a request Django takes for secure: X-Forwarded-Proto reached it.
    assert form.headers["Strict-Transport-Security"] == f"max-age={HSTS_SECONDS}"
    welcome = await chat_round_trip(
        proxy.wss_url,
        origin=proxy.https_url,
        context=context,
        session_cookie=posted.cookies["sessionid"][0],
    )
    assert welcome["user"]["name"] == "Cy"


def test_nginx_redirects_plain_http_to_https(nginx_available, processes, worker_env, cert):
    proxy, _ = start_behind_nginx(processes, worker_env, cert)
    page = request(proxy.http_url, "/rooms/tls/?x=1")
    assert page.status == 301
    assert page.headers["Location"] == "https://127.0.0.1/rooms/tls/?x=1"


def test_nginx_passes_the_peers_address_not_one_the_client_wrote(
    nginx_available, processes, worker_env, cert
):
    proxy, worker = start_behind_nginx(processes, worker_env, cert)
    page = request(
        proxy.https_url,
        "/rooms/forwarded-for/",
        context=cert.client_context(),
        headers={"X-Forwarded-For": "203.0.113.9"},
    )
    assert page.status == 200
    # daphne's access log names the client address it took from X-Forwarded-For.
    logged = wait_until(
        lambda: [line for line in worker.output().splitlines() if '"GET /rooms/forwarded-for/"' in line],
        timeout_s=5,
        what="daphne's access log line",
    )
    assert logged[0].startswith("127.0.0.1:"), logged


def proxy_headers(conf: str) -> dict[str, str]:
    return dict(re.findall(r"^\s*proxy_set_header\s+(\S+)\s+(.+?);", conf, flags=re.MULTILINE))


def test_nginx_tls_conf_sends_the_proxy_headers_of_nginx_conf():
    plain = proxy_headers((ROOT / "deploy" / "nginx.conf").read_text())
    tls = proxy_headers(NGINX_TLS_CONF.read_text())
    assert tls.pop("X-Forwarded-For") == "$remote_addr"
    plain.pop("X-Forwarded-For")
    assert tls == plain
