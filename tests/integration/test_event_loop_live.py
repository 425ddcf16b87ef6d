"""A worker started as every Ripple worker is (project/serve.py) serves on uvloop, says so on
/metrics, and still serves a chat socket end to end; ``RIPPLE_EVENT_LOOP=asyncio`` keeps
asyncio's own loop. Real daphne processes, read from outside."""

import json
import re
import urllib.request
from pathlib import Path

import pytest
import websockets

from tests.support.frames import recv_until
from tests.support.origins import same_origin

pytestmark = pytest.mark.django_db(transaction=True)

LOOP_INFO = re.compile(r'^ripple_event_loop_info\{loop="([a-z]+)"\} 1\.0$', re.M)


def loop_on_metrics(server) -> list[str]:
    with urllib.request.urlopen(f"{server.http_url}/metrics", timeout=5) as response:
        return LOOP_INFO.findall(response.read().decode())


def mapped_files(pid: int) -> str:
    return Path(f"/proc/{pid}/maps").read_text()


async def say_and_hear(server) -> tuple[dict, dict, dict]:
    """A message from one socket to another through the worker: the ack, the delivery, a pong."""
    url = f"{server.ws_url}/ws/chat/"
    async with (
        websockets.connect(url, origin=same_origin(url)) as ann,
        websockets.connect(url, origin=same_origin(url)) as bob,
    ):
        for ws in (ann, bob):
            await recv_until(ws, "welcome")
            await ws.send(json.dumps({"type": "subscribe", "room": "loop"}))
            await recv_until(ws, "subscribed")
        await ann.send(
            json.dumps({"type": "message", "room": "loop", "body": "on this loop", "client_id": "a1"})
        )
        ack, message = await recv_until(ann, "ack"), await recv_until(bob, "message")
        await bob.send(json.dumps({"type": "ping", "t": 7}))
        return ack, message, await recv_until(bob, "pong")


@pytest.mark.parametrize(
    ("setting", "expected"), [({}, "uvloop"), ({"RIPPLE_EVENT_LOOP": "asyncio"}, "asyncio")]
)
async def test_the_worker_serves_on_the_loop_it_was_asked_for(daphne, setting, expected):
    server = daphne(**setting)
    assert loop_on_metrics(server) == [expected]
    # The process itself: uvloop's extension is loaded only when it serves on it.
    assert ("uvloop" in mapped_files(server.proc.pid)) is (expected == "uvloop")
    ack, message, pong = await say_and_hear(server)
    assert (ack["seq"], message["seq"], message["body"]) == (1, 1, "on this loop")
    assert pong == {"type": "pong", "t": 7, "ref": None}
