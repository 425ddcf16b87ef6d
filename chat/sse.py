"""The HTTP fallback transport: the chat socket's frames over Server-Sent Events and POST.

For clients whose WebSocket does not get through (a proxy that strips ``Upgrade``, a browser
without it), the same protocol travels over plain HTTP (docs/protocol.md, "HTTP fallback"):

- ``GET /sse/chat/`` is a stream: it opens with ``event: stream`` / ``data: {"token": ...}``,
  the stream's secret, then every server frame is one SSE event (``data: <frame>``), the first
  being ``welcome`` with the ``connection_id``; ``: keep-alive`` comments keep proxies from
  timing it out; a close becomes ``event: close`` / ``data: {"code": N}`` and the end of the
  response.
- ``POST /sse/chat/send/?connection=<id>`` carries one client frame and the stream's token
  (``X-Ripple-Stream-Token``). It may reach any worker: the frame goes through the channel
  layer to the worker holding the stream (group ``ripple.conn.<id>``), which hands it to the
  stream's consumer only when the token and the session match (chat/hub/fallback.py); the consumer
  handles it exactly as a socket frame, so every reply, error, rate limit and size limit is
  the socket's own.

The connection id is not a secret (it is in the logs and on the staff dashboard), and clients
without a session all have the same (empty) session tag: the token is what ties a POST to the
stream. Only the stream's own response carries it; it is never logged, never in ``welcome``.

The stream is a ``ChatConsumer`` behind an adapter that speaks the WebSocket half of ASGI to it
and SSE to the client: one implementation of the protocol, two transports. State lives in the
database and the channel layer, so no sticky sessions are needed. A plain ASGI class rather
than Channels' ``AsyncHttpConsumer``: that one ends the response when ``handle()`` returns and
cannot see ``http.disconnect`` while ``handle()`` runs, and a stream needs both the other way.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import secrets
from typing import Any

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.http import require_POST

from . import consumers, hub, protocol
from .identity import session_tag
from .origins import header

logger = logging.getLogger(__name__)

# Comment lines at this interval keep nginx (proxy_read_timeout) and other proxies from
# closing a quiet stream; the client's pings still go by POST, as on a socket.
KEEPALIVE_S = 15.0
CONNECTION_ID_RE = re.compile(r"[0-9a-f]{32}")
# The same ceiling daphne puts on a socket frame (project/serving.py).
MAX_POST_BYTES = 65536
STREAM_TOKEN_HEADER = "X-Ripple-Stream-Token"  # noqa: S105 - a header name
# secrets.token_urlsafe(32): 43 characters; a header of any other shape is refused with 400.
STREAM_TOKEN_BYTES = 32
STREAM_TOKEN_RE = re.compile(r"[A-Za-z0-9_-]{43}")
# One position of a Last-Event-ID: a room slug and a seq in ASCII digits (str.isdigit() and
# \d also take digits int() refuses, or reads, from other scripts).
POSITION_RE = re.compile(rf"({protocol.ROOM_SLUG_RE.pattern}):([0-9]{{1,15}})", re.ASCII)
MAX_LAST_EVENT_ID_CHARS = 8192


class SseChatStream:
    """ASGI app for ``GET /sse/chat/``: runs a ChatConsumer and streams its frames as SSE."""

    def __init__(self, consumer_app: Any) -> None:
        self.consumer_app = consumer_app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["method"] != "GET":
            await _plain(send, 405, b"GET only\n")
            return
        while True:  # the request body (empty for a GET)
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            if not message.get("more_body"):
                break
        await _Stream(scope, send).run(self.consumer_app, receive)


def format_event_id(positions: dict[str, int]) -> str:
    """``room:seq,room:seq``: where the stream stands in each of its rooms."""
    return ",".join(f"{room}:{seq}" for room, seq in sorted(positions.items()))


def parse_last_event_id(value: str | None) -> dict[str, int]:
    """The positions in a Last-Event-ID; {} for anything that is not wholly one of our ids."""
    positions: dict[str, int] = {}
    if not value or len(value) > MAX_LAST_EVENT_ID_CHARS:
        return positions
    for item in value.split(","):
        found = POSITION_RE.fullmatch(item)
        if found is None:
            return {}
        positions[found.group(1)] = int(found.group(2))
    return positions if len(positions) <= settings.RIPPLE_MAX_SUBSCRIPTIONS else {}


async def _plain(send: Any, status: int, body: bytes) -> None:
    await send(
        {"type": "http.response.start", "status": status, "headers": [(b"content-type", b"text/plain")]}
    )
    await send({"type": "http.response.body", "body": body})


class _Stream:
    """One stream: WebSocket ASGI events from the consumer become SSE on the response."""

    def __init__(self, scope: dict[str, Any], send: Any) -> None:
        self.inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.scope = {**scope, "type": "websocket", "subprotocols": []}
        self.send = send
        self.started = self.ended = False
        self.connection_id: str | None = None
        # Proves a POST comes from this stream's own client: sent on this response only.
        self.token = secrets.token_urlsafe(STREAM_TOKEN_BYTES)
        self.joined = False
        # Each subscribed room's newest seq sent on this stream: the events' ``id``, so that an
        # EventSource reconnecting by itself sends it back as Last-Event-ID and resumes.
        self.positions = parse_last_event_id(header(scope, b"last-event-id"))

    async def run(self, consumer_app: Any, receive: Any) -> None:
        await self.inbox.put({"type": "websocket.connect"})
        consumer = asyncio.create_task(consumer_app(self.scope, self.inbox.get, self._from_consumer))
        client_gone = asyncio.create_task(self._client_gone(receive))
        keepalive = asyncio.create_task(self._keepalive())
        try:
            await asyncio.wait({consumer, client_gone}, return_when=asyncio.FIRST_COMPLETED)
            if not consumer.done():
                # The client went away: the consumer cleans up as after a socket's disconnect.
                await self.inbox.put({"type": "websocket.disconnect", "code": 1001})
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(10):
                        await asyncio.shield(consumer)
        finally:
            for task in (consumer, client_gone, keepalive):
                task.cancel()
            await asyncio.gather(consumer, client_gone, keepalive, return_exceptions=True)
            await self._leave_group()
            if not self.started:
                await _plain(self.send, 500, b"the stream could not start\n")
            elif not self.ended:
                self.ended = True
                with contextlib.suppress(Exception):
                    await self.send({"type": "http.response.body", "body": b"", "more_body": False})

    async def _client_gone(self, receive: Any) -> None:
        while (await receive())["type"] != "http.disconnect":
            pass

    async def _keepalive(self) -> None:
        while True:
            await asyncio.sleep(KEEPALIVE_S)
            if self.started and not self.ended:
                await self.send(
                    {"type": "http.response.body", "body": b": keep-alive\n\n", "more_body": True}
                )

    async def _from_consumer(self, message: dict[str, Any]) -> None:
        kind = message["type"]
        if self.ended:
            return
        if kind == "websocket.accept":
            self.started = True
            await self.send(
                {
                    "type": "http.response.start",
                    "status": 200,
                    "headers": [
                        (b"content-type", b"text/event-stream; charset=utf-8"),
                        (b"cache-control", b"no-store"),
                        # nginx: pass events on at once instead of buffering the response.
                        (b"x-accel-buffering", b"no"),
                    ],
                }
            )
            # An EventSource left to itself reconnects after 2 s and resumes by Last-Event-ID;
            # the bundled client closes it instead and resumes with subscribe/since. The token
            # comes before welcome, so the client has it before it can send anything.
            token_event = f'retry: 2000\n\nevent: stream\ndata: {{"token": "{self.token}"}}\n\n'
            await self.send({"type": "http.response.body", "body": token_event.encode(), "more_body": True})
        elif kind == "websocket.send":
            text = message.get("text")
            if text is None:
                return
            if self.connection_id is None and text.startswith('{"type":"welcome"'):
                self.connection_id = json.loads(text)["connection_id"]
                await self._join_group()
                await self._resume()
            event_id = self._track(text)
            event = f"id: {event_id}\ndata: {text}\n\n" if event_id is not None else f"data: {text}\n\n"
            await self.send({"type": "http.response.body", "body": event.encode(), "more_body": True})
        elif kind == "websocket.close":
            code = message.get("code", protocol.CLOSE_NORMAL)
            if not self.started:
                # Refused before opening (e.g. a draining worker): an HTTP refusal, as for a socket.
                self.started = self.ended = True
                await _plain(self.send, 403, b"refused\n")
            else:
                self.ended = True
                body = f'event: close\ndata: {{"code": {int(code)}}}\n\n'.encode()
                await self.send({"type": "http.response.body", "body": body, "more_body": False})
            await self.inbox.put({"type": "websocket.disconnect", "code": code})

    async def _resume(self) -> None:
        """Subscribe again to the rooms a Last-Event-ID named, each from its seq.

        The frames are the server's, not the client's: marked so, they take none of the
        client's frame tokens and never count towards a flood close (chat/throttle.py), so
        up to RIPPLE_MAX_SUBSCRIPTIONS rooms resume whatever the frame burst.
        """
        for room, seq in list(self.positions.items()):
            frame = {"type": protocol.SUBSCRIBE, "room": room, "since": seq}
            await self.inbox.put(
                {"type": "websocket.receive", "text": protocol.dumps(frame), consumers.SERVER_FRAME: True}
            )

    def _track(self, text: str) -> str | None:
        """Follow the rooms' positions; the event id to send with this frame, if it moved one."""
        if text.startswith('{"type":"message"'):
            frame = json.loads(text)
            self.positions[frame["room"]] = max(frame["seq"], self.positions.get(frame["room"], 0))
        elif text.startswith('{"type":"subscribed"'):
            frame = json.loads(text)
            newest = max([frame["last_seq"], *(m["seq"] for m in frame["messages"])])
            self.positions[frame["room"]] = newest
        elif text.startswith(('{"type":"unsubscribed"', '{"type":"room_closed"')):
            self.positions.pop(json.loads(text)["room"], None)
            return format_event_id(self.positions)
        else:
            return None
        return format_event_id(self.positions)

    async def _join_group(self) -> None:
        if self.connection_id is None:
            return
        tag = session_tag(self.scope.get("session"))
        self.joined = await hub.get_hub().register_stream(self.connection_id, tag, self.token, self.inbox)

    async def _leave_group(self) -> None:
        if not self.joined or self.connection_id is None:
            return
        await hub.get_hub().unregister_stream(self.connection_id)


@require_POST
async def send_frame(request: HttpRequest) -> HttpResponse:
    """``POST /sse/chat/send/?connection=<id>``: one client frame for the stream ``id``.

    Django's CSRF middleware has checked the token (``X-CSRFToken``); the Origin is checked as
    for a socket. The frame itself is checked by the stream's consumer, which answers on the
    stream, so the answer here is only 202, or a refusal of the request itself. A stream token
    of the right shape but not the stream's also gets 202: the stream may live on another
    worker, and the one holding it drops the frame unseen (chat/hub/fallback.py).
    """
    connection_id = request.GET.get("connection", "")
    if not CONNECTION_ID_RE.fullmatch(connection_id):
        return JsonResponse({"error": "invalid_connection"}, status=400)
    stream_token = request.headers.get(STREAM_TOKEN_HEADER, "")
    if not STREAM_TOKEN_RE.fullmatch(stream_token):
        return JsonResponse({"error": "invalid_stream_token"}, status=400)
    if len(request.body) > MAX_POST_BYTES:
        return JsonResponse({"error": protocol.FRAME_TOO_LARGE}, status=413)
    try:
        text = request.body.decode("utf-8")
    except UnicodeDecodeError:
        return JsonResponse({"error": protocol.INVALID_JSON}, status=400)
    tag = session_tag(request.session) if request.session.session_key else ""
    try:
        await hub.connection_frame(connection_id, session=tag, token=stream_token, text=text)
    except Exception:
        logger.warning("forwarding a fallback frame failed", exc_info=True)
        return JsonResponse({"error": "try_again_later"}, status=503)
    return JsonResponse({"accepted": True}, status=202)
