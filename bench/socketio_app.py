"""A third target: python-socketio's ``AsyncServer`` with its Redis manager, the baseline's rooms.

Run it on uvicorn (the ``fanout`` scenario always does, whatever ``--server`` says):
``REDIS_URL=redis://... python -m uvicorn --ws websockets --lifespan off bench.socketio_app:application``.
Clients speak Socket.IO v5 on ``/socket.io/``. A ``join`` event with a room name puts the socket
in that room and is acknowledged; a ``message`` event ``{"room": ..., "message": body}`` is
emitted to the whole room, sender included (the publisher's own copy is its window signal, as
with the baseline). The manager hands an emit to this process's members first, then publishes
it once on Redis; every other process's listener hands it to its own members. ``/healthz``
answers 200, as Ripple's does, so the tool can wait for the worker.
"""

import os
from typing import Any
from urllib.parse import urlsplit

import socketio

REDIS_URL = os.environ.get("REDIS_URL", "")
if not REDIS_URL:
    raise RuntimeError("bench.socketio_app fans out through Redis: set REDIS_URL")

LOOPBACK_HOSTS = ("127.0.0.1", "localhost")


def loopback_origin(origin: str | None, environ: dict[str, Any]) -> bool:
    """Admit pages of this machine only, as the baseline's AllowedHostsOriginValidator does."""
    return urlsplit(origin or "").hostname in LOOPBACK_HOSTS


sio = socketio.AsyncServer(
    async_mode="asgi",
    client_manager=socketio.AsyncRedisManager(REDIS_URL),
    cors_allowed_origins=loopback_origin,
)


@sio.on("join")
async def join(sid: str, room: str) -> bool:
    await sio.enter_room(sid, room)
    return True  # the acknowledgement: the client loads only once every socket has joined


@sio.on("message")
async def message(sid: str, data: dict[str, str]) -> None:
    await sio.emit("message", data["message"], to=data["room"])


async def healthz(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Everything outside /socket.io/: 200 on /healthz, 404 elsewhere; other sockets refused."""
    if scope["type"] == "websocket":
        await send({"type": "websocket.close"})  # before accept: an HTTP 403
        return
    found = scope["path"] == "/healthz"
    await send(
        {
            "type": "http.response.start",
            "status": 200 if found else 404,
            "headers": [(b"content-type", b"text/plain")],
        }
    )
    await send({"type": "http.response.body", "body": b"ok\n" if found else b"not found\n"})


application = socketio.ASGIApp(sio, other_asgi_app=healthz)
