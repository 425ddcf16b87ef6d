"""Admission: the one guard in front of every real-time entry point (docs/security.md).

Every WebSocket route and every HTTP route that carries frames (the fallback's stream and its
POST) is mounted through ``admit(app, policy)`` in chat/routing.py, which mounts nothing any
other way; tests/unit/test_admission.py checks that every route is wrapped. A path with no
route meets ``NO_ROUTE``, a refusal, instead of a server error.

Before the application sees a connection, the guard checks, in order:

1. the ``Origin`` (chat/origins.py: the site's own origin exactly, unless
   ``RIPPLE_ALLOWED_ORIGINS`` lists others);
2. that this process is not draining (nginx then tries the next worker);
3. the connections open from the client's address, every endpoint together
   (``RIPPLE_MAX_CONNECTIONS_PER_IP``); and, for the fallback's POST, its request rate.

A refused WebSocket handshake is answered before the socket opens: HTTP 403 (404 for a path
with no route) with the reason in an ``X-Ripple-Refusal`` header (chat/daphne_guard.py). Over
the address cap the socket is accepted and closed with 4409 instead, so the bundled client
stops rather than retrying. Refused HTTP requests get a status and a JSON body naming the
reason, and the same header.

For as long as a connection lives, the guard bounds what it may cost the worker:

- inbound, WebSocket: a frame over the policy's size closes it with 4413; frames beyond a
  ceiling of twice ``RIPPLE_RATE_FRAMES_PER_S`` (burst: twice ``RIPPLE_RATE_FRAMES_BURST`` plus
  ``RIPPLE_FLOOD_STRIKES``) close it with 4429. The chat consumer's own, finer limits answer
  with ``rate_limited`` error frames long before that; endpoints with no protocol of their own
  (the echo socket, the dashboard) rely on the ceiling alone.
- inbound, HTTP: a body over the policy's size is answered 413 before the application runs.
- outbound, both: the bytes written to the connection but not yet taken by the peer are read
  before every send (chat/limits.py ``outbound_gauge``). Past ``RIPPLE_MAX_OUTBOUND_BYTES``
  (plus the largest frame sent since the backlog was last below it: one resume may be bigger
  than the limit) the connection ends: close 4509 on a socket, ``event: close`` with 4509 and
  the end of the response on a stream, which is then cut off after a short grace, since a peer
  that does not read will not read the close either.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from django.conf import settings

from . import drain, limits, protocol
from .logs import log_event
from .origins import header, origin_allowed
from .stats import stats

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]

# Scope key: the connection id the guard gave this connection (the consumer reuses it).
CONNECTION_ID = "ripple.connection_id"
# Scope key: ``send_text(text) -> bool``, writing one text frame without a coroutine, when the
# server allows it (daphne; see ``_guard_outbound``). False: nothing was done, await ``send``.
SEND_TEXT = "ripple.send_text"
# How long a stream whose peer stopped reading keeps its TCP connection after the last event.
TOO_SLOW_GRACE_S = 1.0
# HTTP status of each refusal; 403 for a handshake lets nginx try the next worker
# (proxy_next_upstream http_403) when this one is draining.
REFUSAL_STATUS = {"origin_not_allowed": 403, "draining": 403, "rate_limited": 429}
# Request bodies read into memory by the guard before the application runs.
HTTP_BODY_CHUNK_LIMIT = 64


@dataclass(frozen=True, slots=True)
class Policy:
    """What one entry point admits: its name (in logs) and its own size limits."""

    name: str
    # Longest inbound WebSocket frame (characters of text, bytes of binary), or the name of the
    # setting that holds it; None: the application answers oversize frames itself (the chat
    # consumer's frame_too_large), under daphne's own incoming limit.
    max_frame_chars: int | str | None = None
    # Longest HTTP request body taken (bytes).
    max_body_bytes: int = 65536
    # Counted against the per-address cap while open (sockets and streams; not short POSTs).
    counted: bool = True
    # HTTP requests rate-limited per address (the fallback's POST).
    rate_per_address: bool = False
    # The end of an HTTP response cut off by the outbound limit (the stream's close event).
    too_slow_tail: bytes = b""


@dataclass(slots=True)
class _State:
    """One connection as the guard sees it: closed by either side, and by whom."""

    closed: bool = False


# Process-wide: POSTs per client address (bounded: least recently seen addresses drop out).
post_buckets = limits.KeyedBuckets(max_keys=10_000)


def _client(scope: Scope) -> str | None:
    client = scope.get("client")
    return str(client[0]) if client else None


def _refusal_headers(reason: str) -> list[tuple[bytes, bytes]]:
    return [(b"content-type", b"application/json"), (b"x-ripple-refusal", reason.encode())]


def _origin_refused(scope: Scope) -> bool:
    origin = header(scope, b"origin")
    if scope["type"] == "websocket":
        return not origin_allowed(origin, scope)
    # An EventSource or fetch from this site's own page may send no Origin (same-origin GET);
    # a browser marks cross-site requests with one or with Sec-Fetch-Site.
    if header(scope, b"sec-fetch-site") == "cross-site":
        return True
    return origin is not None and not origin_allowed(origin, scope)


class Admission:
    """ASGI middleware: origin, drain, caps, and inbound and outbound limits for one endpoint."""

    def __init__(self, application: Any, policy: Policy) -> None:
        self.application = application
        self.policy = policy

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("websocket", "http"):
            await self.application(scope, receive, send)
            return
        scope = {**scope, CONNECTION_ID: uuid.uuid4().hex}
        reason = self._refusal(scope)
        if reason is not None:
            self._log_refusal(scope, reason)
            await refuse(scope, receive, send, reason, status=REFUSAL_STATUS.get(reason, 403))
            return
        address = _client(scope)
        counted = self.policy.counted and address is not None
        if counted and not limits.connections_per_address.try_add(
            address or "", settings.RIPPLE_MAX_CONNECTIONS_PER_IP
        ):
            self._log_refusal(scope, "too_many_connections_per_address")
            await refuse(scope, receive, send, "too_many_connections", close_code=4409, status=429)
            return
        try:
            if scope["type"] == "websocket":
                await self._websocket(scope, receive, send)
            else:
                await self._http(scope, receive, send)
        finally:
            if counted:
                limits.connections_per_address.remove(address or "")

    def _refusal(self, scope: Scope) -> str | None:
        if _origin_refused(scope):
            return "origin_not_allowed"
        if self.policy.counted and drain.is_draining():
            return "draining"
        if self.policy.rate_per_address:
            address = _client(scope) or ""
            rate = settings.RIPPLE_RATE_FRAMES_PER_S * 2
            burst = settings.RIPPLE_RATE_FRAMES_BURST * 2 + settings.RIPPLE_FLOOD_STRIKES
            if post_buckets.take(address, rate, burst, time.monotonic()) > 0.0:
                return "rate_limited"
        return None

    def _log_refusal(self, scope: Scope, reason: str) -> None:
        stats.handshakes_rejected_total += 1
        client = scope.get("client")
        log_event(
            "refused",
            endpoint=self.policy.name,
            reason=reason,
            origin=header(scope, b"origin"),
            client=f"{client[0]}:{client[1]}" if client else None,
        )

    async def _websocket(self, scope: Scope, receive: Receive, send: Send) -> None:
        state = _State()
        guarded_send = self._guard_outbound(scope, send, state, websocket=True)
        send_text = getattr(guarded_send, "send_text", None)
        if send_text is not None:
            scope[SEND_TEXT] = send_text
        max_chars = self.policy.max_frame_chars
        if isinstance(max_chars, str):
            max_chars = int(getattr(settings, max_chars))
        ceiling = limits.TokenBucket(
            settings.RIPPLE_RATE_FRAMES_PER_S * 2,
            settings.RIPPLE_RATE_FRAMES_BURST * 2 + settings.RIPPLE_FLOOD_STRIKES,
        )

        async def guarded_receive() -> dict[str, Any]:
            while True:
                message = await receive()
                if message["type"] != "websocket.receive":
                    return message
                if state.closed:
                    continue  # queued behind a close: nobody will answer it
                text = message.get("text")
                size = len(text) if text is not None else len(message.get("bytes") or b"")
                if max_chars is not None and size > max_chars:
                    code, event = protocol.CLOSE_FRAME_TOO_LARGE, "frame_too_large"
                elif ceiling.take(time.monotonic()) > 0.0:
                    code, event = protocol.CLOSE_FLOODING, "flooding"
                else:
                    return message
                state.closed = True
                stats.error(event)
                log_event(event, endpoint=self.policy.name, connection=scope[CONNECTION_ID], size=size)
                await send({"type": "websocket.close", "code": code})

        await self.application(scope, guarded_receive, guarded_send)

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        # The whole body first (it is small, or refused): the application never sees a part of
        # an oversized request.
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body = message.get("body", b"")
            size += len(body)
            if size > self.policy.max_body_bytes or len(chunks) > HTTP_BODY_CHUNK_LIMIT:
                self._log_refusal(scope, "body_too_large")
                await _http_refusal(send, 413, protocol.FRAME_TOO_LARGE)
                return
            chunks.append(body)
            if not message.get("more_body"):
                break
        state = _State()
        gone = asyncio.Event()
        replayed = False

        async def replay_receive() -> dict[str, Any]:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": b"".join(chunks), "more_body": False}
            if gone.is_set():
                return {"type": "http.disconnect"}
            waiter = asyncio.ensure_future(receive())
            cut = asyncio.ensure_future(gone.wait())
            try:
                await asyncio.wait({waiter, cut}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                cut.cancel()
            if waiter.done():
                return waiter.result()
            waiter.cancel()
            return {"type": "http.disconnect"}

        guarded_send = self._guard_outbound(scope, send, state, websocket=False, gone=gone)
        await self.application(scope, replay_receive, guarded_send)

    def _guard_outbound(
        self, scope: Scope, send: Send, state: _State, *, websocket: bool, gone: asyncio.Event | None = None
    ) -> Send:
        """``send``, ending the connection once its unsent backlog keeps growing past the limit."""
        gauge = limits.outbound_gauge(send)
        limit = settings.RIPPLE_MAX_OUTBOUND_BYTES
        policy = self.policy
        largest = 0

        def over_limit(size: int) -> int | None:
            """The backlog when it is past the limit (plus the largest frame sent since it was
            last within it: one resume may be bigger than the limit); None when a frame of
            ``size`` may go, which is then counted."""
            nonlocal largest
            assert gauge is not None
            backlog = gauge()
            if backlog <= limit:
                largest = 0
            elif backlog > limit + largest:
                return backlog
            if size > largest:
                largest = size
            return None

        async def guarded_send(message: dict[str, Any]) -> None:
            if state.closed:
                return
            kind = message["type"]
            if kind == "websocket.close":
                state.closed = True
            elif gauge is not None and kind in ("websocket.send", "http.response.body"):
                size = len(message.get("text") or message.get("bytes") or message.get("body") or b"")
                backlog = over_limit(size)
                if backlog is not None:
                    state.closed = True
                    stats.error("too_slow")
                    log_event(
                        "too_slow", endpoint=policy.name, connection=scope[CONNECTION_ID], buffered=backlog
                    )
                    if websocket:
                        await send({"type": "websocket.close", "code": protocol.CLOSE_TOO_SLOW})
                    else:
                        await send({"type": "http.response.body", "body": policy.too_slow_tail})
                        if gone is not None:
                            gone.set()
                        asyncio.get_running_loop().call_later(TOO_SLOW_GRACE_S, limits.abort_connection, send)
                    return
            await send(message)

        def send_text(text: str) -> bool:
            """One text frame written now, under the same limit as ``guarded_send``: True when it
            was written (or dropped, the connection being closed); False when ``guarded_send``
            must decide (the peer is not open, or the backlog is past the limit)."""
            if state.closed:
                return True
            if peer.state != peer.STATE_OPEN or over_limit(len(text)) is not None:
                return False
            peer.serverSend(text, False)
            return True

        # Under daphne, a text frame can be handed to the socket's protocol directly: the fan-out
        # writes one frame to every subscriber of a room, and each trip through ``send`` (this
        # coroutine, daphne's ``handle_reply`` coroutine and its checks) cost more than the
        # write itself (docs/benchmarks.md). Anything else still goes through ``send``.
        peer = limits.send_protocol(send)
        if websocket and gauge is not None and hasattr(peer, "serverSend") and hasattr(peer, "STATE_OPEN"):
            guarded_send.send_text = send_text  # type: ignore[attr-defined]
        return guarded_send


async def _http_refusal(send: Send, status: int, reason: str) -> None:
    await send({"type": "http.response.start", "status": status, "headers": _refusal_headers(reason)})
    await send({"type": "http.response.body", "body": json.dumps({"error": reason}).encode() + b"\n"})


async def refuse(
    scope: Scope,
    receive: Receive,
    send: Send,
    reason: str,
    *,
    status: int = 403,
    close_code: int | None = None,
) -> None:
    """Turn a connection away, saying why (docs/security.md, "Refusals").

    A WebSocket is refused before it opens (HTTP ``status``, the reason in ``X-Ripple-Refusal``)
    or, with ``close_code``, accepted and closed with that code; HTTP gets ``status`` and a
    JSON body ``{"error": reason}``.
    """
    if scope["type"] == "http":
        await _http_refusal(send, status, reason)
        return
    with contextlib.suppress(Exception):
        await receive()  # websocket.connect
    if close_code is not None:
        await send({"type": "websocket.accept"})
        await send({"type": "websocket.close", "code": close_code})
    else:
        await send({"type": "websocket.close", "code": 1000, "reason": reason, "status": status})


async def no_route(scope: Scope, receive: Receive, send: Send) -> None:
    """Every path that no route takes: a refusal that says so (404), never a server error."""
    if scope["type"] not in ("websocket", "http"):
        return
    await refuse(scope, receive, send, "no_route", status=404)


def admit(application: Any, policy: Policy) -> Any:
    """Mount ``application`` behind the admission guard (the only way routing.py mounts one).

    Typed ``Any`` for Channels' routes, which take ASGI apps where django-stubs expects views.
    """
    return Admission(application, policy)


def asgi_route(application: Any) -> Any:
    """An ASGI app as a route's target (the same typing note as ``admit``)."""
    return application
