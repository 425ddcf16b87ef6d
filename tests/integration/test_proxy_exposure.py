"""/metrics and /readyz through the shipped nginx configs, against real processes: nginx answers
404 for both from the public side (deploy/nginx.conf and deploy/nginx-tls.conf), the chat page
and a socket still work through it, and the worker answers /metrics on its own port, where
Prometheus scrapes it (deploy/prometheus.yml), but not to a public client nginx forwards."""

import http.client
import json
import select
import socket
import ssl
import time
from contextlib import ExitStack
from dataclasses import dataclass
from urllib.parse import urlsplit

import pytest
import websockets
from websockets.typing import Origin

from tests.support.frames import recv_until
from tests.support.processes import DaphneServer, free_port
from tests.support.required import require
from tests.support.tls import NginxServer, nginx_binary, self_signed_cert

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def nginx_available():
    require(
        "nginx is not installed (apt-get install nginx): /metrics through nginx not tested",
        nginx_binary() is not None,
    )


@dataclass
class Front:
    """One worker behind nginx: the public base URL and socket URL, and the worker itself."""

    base_url: str
    ws_url: str
    context: ssl.SSLContext | None
    worker: DaphneServer
    nginx: NginxServer


@pytest.fixture(params=["nginx.conf", "nginx-tls.conf"])
def front(request, nginx_available, live_database_url):
    env = {
        "DJANGO_SECRET_KEY": "ripple-tests-only-not-secret",
        "DJANGO_DEBUG": "0",
        "DJANGO_ALLOWED_HOSTS": "127.0.0.1,localhost",
        "DATABASE_URL": live_database_url,
        "REDIS_URL": "",
        "DJANGO_LOG_LEVEL": "WARNING",
    }
    with ExitStack() as stack:
        cert = None
        https_port = None
        if request.param == "nginx-tls.conf":
            cert = self_signed_cert()
            stack.callback(cert.cleanup)
            https_port = free_port()
            origin = f"https://127.0.0.1:{https_port}"
            env |= {"DJANGO_HTTPS": "1", "RIPPLE_ALLOWED_ORIGINS": origin}
        worker = DaphneServer(env)
        # As deployed (Dockerfile): the client's address from nginx's X-Forwarded-For.
        worker.argv.insert(-1, "--proxy-headers")
        stack.callback(worker.cleanup)
        worker.start()
        proxy = NginxServer(upstream_port=worker.port, cert=cert, https_port=https_port)
        stack.callback(proxy.cleanup)
        proxy.start()
        if cert is None:
            yield Front(proxy.http_url, proxy.ws_url, None, worker, proxy)
        else:
            yield Front(proxy.https_url, proxy.wss_url, cert.client_context(), worker, proxy)


def get(base_url: str, path: str, *, context=None, headers=None) -> tuple[int, str]:
    url = urlsplit(base_url)
    if url.scheme == "https":
        connection: http.client.HTTPConnection = http.client.HTTPSConnection(
            url.hostname or "127.0.0.1", url.port, timeout=5, context=context
        )
    else:
        connection = http.client.HTTPConnection(url.hostname or "127.0.0.1", url.port, timeout=5)
    try:
        connection.request("GET", path, headers=headers or {})
        response = connection.getresponse()
        return response.status, response.read().decode(errors="replace")
    finally:
        connection.close()


# Query strings, doubled slashes and escapes reach the same location in nginx and in Django.
REFUSED_PATHS = [
    "/metrics",
    "/readyz",
    "/metrics?format=openmetrics",
    "//metrics",
    "/%6Detrics",
    "/readyz?x=1",
]


def test_nginx_refuses_the_operations_endpoints_from_the_public_side(front):
    for path in REFUSED_PATHS:
        status, body = get(front.base_url, path, context=front.context)
        assert status == 404, (path, body)
        assert "ripple_" not in body and "channel_layer" not in body, path
    # The worker behind it answers them on its own port (loopback is in RIPPLE_METRICS_ALLOW).
    assert get(front.worker.http_url, "/metrics")[0] == 200
    assert get(front.worker.http_url, "/readyz")[0] == 200


async def test_the_chat_page_and_a_socket_still_work_through_nginx(front):
    assert get(front.base_url, "/healthz", context=front.context)[0] == 200
    status, page = get(front.base_url, "/rooms/exposed/", context=front.context)
    assert status == 200 and "csrfmiddlewaretoken" in page, page[:2000]
    async with websockets.connect(
        f"{front.ws_url}/ws/chat/", origin=Origin(front.base_url), ssl=front.context, open_timeout=5
    ) as ws:
        await recv_until(ws, "welcome")
        await ws.send(json.dumps({"type": "subscribe", "room": "exposed"}))
        await recv_until(ws, "subscribed")
        await ws.send(json.dumps({"type": "message", "room": "exposed", "body": "hi", "client_id": "p1"}))
        assert (await recv_until(ws, "ack"))["seq"] >= 1
        # Meanwhile the worker's own /metrics counts the socket that came through nginx.
        status, text = get(front.worker.http_url, "/metrics")
        assert status == 200
        assert "ripple_open_sockets 1.0" in text
        assert "process_resident_memory_bytes" in text


def test_the_worker_refuses_a_public_client_that_a_proxy_forwarded(front):
    """Had a proxy passed /metrics on, the worker (daphne --proxy-headers) would still say 404
    to the public address in X-Forwarded-For."""
    public = {"X-Forwarded-For": "203.0.113.9"}
    assert get(front.worker.http_url, "/metrics", headers=public)[0] == 404
    assert get(front.worker.http_url, "/readyz", headers=public)[0] == 404
    assert get(front.worker.http_url, "/healthz", headers=public)[0] == 200
    assert get(front.worker.http_url, "/readyz")[0] == 200


def test_a_request_trickled_through_nginx_is_cut_off_by_nginx_itself(front):
    """Slowloris against the public side: nginx's client_header_timeout (10 s) ends it."""
    split = urlsplit(front.base_url)
    sock = socket.create_connection((split.hostname, split.port), timeout=5)
    if front.context is not None:
        sock = front.context.wrap_socket(sock, server_hostname=split.hostname)
    request = f"GET /ws/chat/ HTTP/1.1\r\nHost: {split.netloc}\r\nUpgrade: websocket\r\n".encode()
    started = time.monotonic()
    try:
        # One byte a second, bounded to 25 s: far past the deadline.
        for byte in request[:25]:
            try:
                sock.sendall(bytes([byte]))
            except OSError:
                break
            readable, _, _ = select.select([sock], [], [], 1.0)
            if readable:
                break
        sock.settimeout(20)
        try:
            rest = sock.recv(4096)
        except OSError:
            rest = b""
        elapsed = time.monotonic() - started
    finally:
        sock.close()
    assert rest == b"" or rest.startswith(b"HTTP/1.1 408"), rest[:200]
    assert 8 <= elapsed < 16, elapsed
