"""The admission guard: every real-time entry point is mounted behind it, and it bounds what
one connection may cost (chat/admission.py)."""

import json

import pytest
from channels.testing import HttpCommunicator, WebsocketCommunicator

from chat import admission, drain, limits, routing
from project.asgi import application
from tests.conftest import ORIGIN_HEADERS

pytestmark = pytest.mark.django_db(transaction=True)

ECHO_OTHER_PORT = [(b"origin", b"http://localhost:8001"), (b"host", b"localhost:8000")]


def test_every_route_is_mounted_behind_the_guard_and_unknown_paths_meet_a_refusal():
    websocket = routing.websocket_urlpatterns
    for route in websocket[:-1]:
        assert isinstance(route.callback, admission.Admission), route.pattern
    assert websocket[-1].callback is admission.no_route
    for route in [*routing.http_stream_urlpatterns, *routing.http_frame_urlpatterns(object())]:
        assert isinstance(route.callback, admission.Admission), route.pattern
    names = [route.callback.policy.name for route in websocket[:-1]]
    assert names == ["chat", "echo", "dashboard"]


@pytest.mark.parametrize("path", ["/", "/ws/", "/ws/chat/extra/", "/ws/%00/", "/\u0661/"])
async def test_a_socket_to_a_path_with_no_route_is_refused_not_an_error(path):
    communicator = WebsocketCommunicator(application, path, headers=ORIGIN_HEADERS)
    connected, _ = await communicator.connect()
    assert not connected


@pytest.mark.parametrize("path", ["/ws/echo/", "/ws/chat/", "/ws/admin/dashboard/"])
async def test_another_port_of_the_same_host_is_another_origin(path):
    communicator = WebsocketCommunicator(application, path, headers=ECHO_OTHER_PORT)
    connected, _ = await communicator.connect()
    assert not connected


async def test_echo_closes_a_frame_over_its_size_with_4413(settings):
    settings.RIPPLE_MAX_FRAME_CHARS = 100
    communicator = WebsocketCommunicator(application, "/ws/echo/", headers=ORIGIN_HEADERS)
    assert (await communicator.connect())[0]
    assert await communicator.receive_from() == "Hello Client"
    await communicator.send_to(text_data="x" * 100)
    assert await communicator.receive_from() == f"received: {'x' * 100}(From Server)"
    await communicator.send_to(text_data="x" * 101)
    assert await communicator.receive_output(timeout=3) == {"type": "websocket.close", "code": 4413}
    await communicator.disconnect()


async def test_echo_closes_a_flood_with_4429_at_the_transport_ceiling(settings):
    settings.RIPPLE_RATE_FRAMES_PER_S = 0.1
    settings.RIPPLE_RATE_FRAMES_BURST = 2
    settings.RIPPLE_FLOOD_STRIKES = 1
    ceiling = 2 * 2 + 1  # twice the burst plus the strikes
    communicator = WebsocketCommunicator(application, "/ws/echo/", headers=ORIGIN_HEADERS)
    assert (await communicator.connect())[0]
    assert await communicator.receive_from() == "Hello Client"
    for n in range(ceiling + 3):
        await communicator.send_to(text_data=f"m{n}")
    echoed = []
    while True:
        output = await communicator.receive_output(timeout=3)
        if output["type"] == "websocket.close":
            assert output["code"] == 4429
            break
        echoed.append(output["text"])
    assert echoed == [f"received: m{n}(From Server)" for n in range(ceiling)]
    await communicator.disconnect()


async def test_the_address_cap_counts_every_endpoint_together(settings):
    settings.RIPPLE_MAX_CONNECTIONS_PER_IP = 2

    def from_address(path: str) -> WebsocketCommunicator:
        communicator = WebsocketCommunicator(application, path, headers=ORIGIN_HEADERS)
        communicator.scope["client"] = ("10.9.9.9", 50000)
        return communicator

    echo, chat, third = from_address("/ws/echo/"), from_address("/ws/chat/"), from_address("/ws/echo/")
    try:
        for communicator in (echo, chat, third):
            assert (await communicator.connect())[0]
        assert await echo.receive_from() == "Hello Client"
        assert json.loads(await chat.receive_from())["type"] == "welcome"
        assert await third.receive_output(timeout=3) == {"type": "websocket.close", "code": 4409}
    finally:
        for communicator in (echo, chat, third):
            await communicator.disconnect()
    assert limits.connections_per_address.count("10.9.9.9") == 0


async def test_a_draining_process_refuses_every_socket_before_it_opens(monkeypatch):
    monkeypatch.setattr(drain, "is_draining", lambda: True)
    for path in ("/ws/echo/", "/ws/chat/"):
        communicator = WebsocketCommunicator(application, path, headers=ORIGIN_HEADERS)
        assert not (await communicator.connect())[0]


async def post(path: str, body: bytes, headers: list[tuple[bytes, bytes]]) -> dict:
    communicator = HttpCommunicator(application, "POST", path, body=body, headers=headers)
    return await communicator.get_response(timeout=5)


async def test_the_fallback_post_is_refused_for_another_origin_a_large_body_or_a_flood(settings):
    cross = [(b"host", b"localhost"), (b"origin", b"http://localhost:9999")]
    refused = await post("/sse/chat/send/?connection=" + "0" * 32, b"{}", cross)
    assert refused["status"] == 403
    assert dict(refused["headers"])[b"x-ripple-refusal"] == b"origin_not_allowed"
    same = [(b"host", b"localhost"), (b"origin", b"http://localhost")]
    large = await post("/sse/chat/send/?connection=" + "0" * 32, b"x" * 70_000, same)
    assert large["status"] == 413 and json.loads(large["body"]) == {"error": "frame_too_large"}
    settings.RIPPLE_RATE_FRAMES_PER_S = 0.01
    settings.RIPPLE_RATE_FRAMES_BURST = 1
    settings.RIPPLE_FLOOD_STRIKES = 0
    admission.post_buckets._buckets.clear()
    statuses = [
        (await post("/sse/chat/send/?connection=" + "0" * 32, b"{}", same))["status"] for _ in range(4)
    ]
    # Two through the guard (CSRF then refuses them: no token), then 429.
    assert statuses == [403, 403, 429, 429]


def test_keyed_buckets_stay_bounded_however_many_keys_arrive():
    buckets = limits.KeyedBuckets(max_keys=100)
    for n in range(1000):
        assert buckets.take(f"10.0.{n // 256}.{n % 256}", 1.0, 1, now=0.0) == 0.0
    assert len(buckets) == 100
    assert buckets.take("10.0.3.231", 1.0, 1, now=0.0) > 0.0  # the newest key kept its state
