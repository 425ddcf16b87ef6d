"""The chat socket (``/ws/chat/``, and the fallback stream's consumer): frames in, services and
the hub, frames out.

``connect()`` is four steps: admit (identity, the per-user cap), join (the hub), watch (the
throttle, the session watch, the heartbeat) and welcome. Each records in ``held`` how far it
got, and ``disconnect()`` gives back exactly that. ``state`` says what the socket may still
do: frames are handled only while it is OPEN.
"""

from __future__ import annotations

import enum
import logging
import math
import time
import uuid
from collections.abc import Callable
from typing import Any

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer
from django.conf import settings

from .. import heartbeat, hub, limits, protocol, removal
from ..admission import CONNECTION_ID, SEND_TEXT
from ..identity import NO_SESSION, SESSION_SEEN, Identity, identity_from_scope, session_expiry, session_tag
from ..logs import log_event
from ..models import Room
from ..session_watch import SessionWatch
from ..stats import stats
from ..throttle import Throttle
from .dispatch import NO_CHANNEL_LAYER, dispatch_without_db_hop, serve_without_layer
from .frames import HANDLERS

logger = logging.getLogger(__name__)

# Marks a ``websocket.receive`` the server made itself (the HTTP fallback's resume by
# Last-Event-ID, chat/sse.py). No client can set it: daphne and the hub build every other one.
SERVER_FRAME = "ripple.server_frame"


class State(enum.Enum):
    """What the socket may still do."""

    CONNECTING = "connecting"
    OPEN = "open"  # welcomed: its frames are handled
    CLOSING = "closing"  # close sent: frames already queued are dropped
    CLOSED = "closed"  # disconnect() has given everything back


class Held(enum.IntEnum):
    """How far ``connect()`` got: each step holds its own share and everything before it."""

    NOTHING = 0
    USER_SLOT = 1  # a place under RIPPLE_MAX_CONNECTIONS_PER_USER
    HUB = 2  # a place in the hub; a refused join too, whose leaving may stop the hub
    WATCHED = 3  # the throttle (with the user's shared bucket), the session watch, the heartbeat
    OPEN = 4  # counted in the stats and logged as connected


class ChatConsumer(AsyncWebsocketConsumer):
    """One browser tab: any number of room subscriptions over one socket."""

    channel_layer_alias = NO_CHANNEL_LAYER
    state: State
    held: Held
    # What the hub and the heartbeat read: set by admit(), before the hub knows the socket.
    connection_id: str
    identity: Identity
    session_tag: str
    last_seen: float
    connected_at: float
    # Maps each subscribed room slug to its Room row.
    rooms: dict[str, Room]
    typing_at: dict[str, float]
    # This socket's connect event on the dashboard (stats.recent): the rooms it joined go in it.
    connect_event: dict[str, Any] | None = None
    throttle: Throttle
    session_watch: SessionWatch | None
    # Writes one text frame now (True), or None / False: await ``send`` (chat/admission.py).
    send_text: Callable[[str], bool] | None = None

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        # Under daphne, text frames are written without a coroutine each (chat/admission.py).
        self.send_text = scope.get(SEND_TEXT)
        self.state, self.held = State.CONNECTING, Held.NOTHING
        # True while the frame being handled is the server's own (SERVER_FRAME).
        self.from_server = False
        try:
            await serve_without_layer(self, scope, receive, send)
        finally:
            # A consumer that crashed (or was cancelled by the server) never got its
            # disconnect(): give back its caps, rooms and presence all the same.
            if self.state is not State.CLOSED:
                await self.disconnect(1011)

    async def dispatch(self, message: dict[str, Any]) -> None:
        await dispatch_without_db_hop(self, message)

    # The life of the socket: connect() takes, disconnect() gives back.

    async def connect(self) -> None:
        if await self.admit() and await self.join():
            await self.watch()
            await self.welcome()
            if self.state is State.CONNECTING:  # not closed meanwhile (a drain, a logout)
                self.state = State.OPEN

    async def admit(self) -> bool:
        """Learn who this is and count the socket against the per-user cap.

        The per-address cap is the admission guard's (chat/admission.py), across every endpoint.
        """
        # Given by the admission guard, which logged under it already.
        self.connection_id = self.scope.get(CONNECTION_ID) or uuid.uuid4().hex
        self.rooms = {}
        self.last_seen = self.connected_at = time.monotonic()
        self.identity = identity_from_scope(self.scope, connection_id=self.connection_id)
        self.session_tag = session_tag(self.scope.get("session"))
        # Maps each room to when this socket last fanned out ``typing`` there (frames.py).
        self.typing_at = {}
        await self.accept()
        if await removal.aremoved_until(self.identity.member_id) is not None:
            # Accepted first: a browser reads a close code, never a refused handshake's status.
            await self.refuse(protocol.CLOSE_DISCONNECTED_BY_MODERATOR, "removed", user=self.identity.name)
            return False
        if not limits.connections_per_user.try_add(
            self.identity.member_id, settings.RIPPLE_MAX_CONNECTIONS_PER_USER
        ):
            await self.refuse(
                protocol.CLOSE_TOO_MANY_CONNECTIONS,
                "too_many_connections_per_user",
                client=_client_address(self.scope),
            )
            return False
        self.held = Held.USER_SLOT
        return True

    async def join(self) -> bool:
        """Count the socket in with this process's hub; refused while draining or Redis is away."""
        self.hub = hub.get_hub()
        self.held = Held.HUB
        try:
            await self.hub.connect(self)
        except hub.Draining:
            await self.refuse(protocol.CLOSE_DRAINING, "draining")
            return False
        except Exception:
            # The channel layer (Redis) is away: a documented "come back later", not a 500.
            logger.warning("the channel layer is unavailable; refusing a socket", exc_info=True)
            await self.refuse(protocol.CLOSE_TRY_AGAIN_LATER, "layer_unavailable")
            return False
        return True

    async def watch(self) -> None:
        """Arm the throttle, the session watch and the heartbeat."""
        identity = self.identity
        client = self.scope.get("client")
        self.throttle = Throttle(
            member_id=identity.member_id,
            creator_key=f"u{identity.user_id}" if identity.user_id is not None else self.session_tag,
            client_host=str(client[0]) if client else None,
            now=time.monotonic(),
        )
        session = self.scope.get("session")
        self.session_watch = None
        if session is not None and self.session_tag:
            self.session_watch = SessionWatch(
                read_expiry=lambda: database_sync_to_async(session_expiry)(session),
                on_expired=lambda: self.end_session("session_expired"),
            )
        self.monitor = heartbeat.get_monitor()
        self.held = Held.WATCHED
        if self.session_watch is not None:
            self.session_watch.start(self.scope.get(SESSION_SEEN, NO_SESSION).expires)
        self.monitor.register(self)
        # daphne answers this socket's plain pings at its transport from here on, moving
        # last_seen and taking throttle tokens as receive() does (chat/daphne_pings.py).
        offer = self.scope.get(heartbeat.TRANSPORT_PINGS)
        if offer is not None:
            offer(self, State.OPEN)

    async def welcome(self) -> None:
        """Count the socket as connected and tell the client who it is and the limits it meets."""
        identity = self.identity
        self.connect_event = stats.connected(connection_id=self.connection_id, user=identity.name)
        self.held = Held.OPEN
        log_event(
            "connect",
            connection=self.connection_id,
            user=identity.name,
            user_id=identity.user_id,
            client=_client_address(self.scope),
        )
        await self.send_frame(protocol.WELCOME, _welcome_frame(self.connection_id, identity))

    async def refuse(self, code: int, reason: str, **fields: Any) -> None:
        log_event("refused", connection=self.connection_id, reason=reason, **fields)
        await self.close(code=code)

    async def disconnect(self, code: int) -> None:
        """Give back what ``connect()`` took, in the order that keeps the hub and caps right."""
        if self.state is State.CLOSED:
            return
        held, self.state, self.held = self.held, State.CLOSED, Held.NOTHING
        if held >= Held.USER_SLOT:
            limits.connections_per_user.remove(self.identity.member_id)
        if held >= Held.WATCHED:
            if self.session_watch is not None:
                self.session_watch.cancel()
            self.throttle.release()
            self.monitor.unregister(self)
        if held >= Held.HUB:
            rooms, self.rooms = self.rooms, {}
            left = list(rooms)
            for slug in rooms:
                await self.hub.detach(self, slug)
            await self.hub.disconnect(self)
        if held >= Held.OPEN:
            duration_s = time.monotonic() - self.connected_at
            stats.disconnected(
                connection_id=self.connection_id,
                user=self.identity.name,
                code=code,
                duration_s=duration_s,
                rooms=left if held >= Held.HUB else [],
            )
            log_event(
                "disconnect",
                connection=self.connection_id,
                user=self.identity.name,
                code=code,
                duration_s=round(duration_s, 3),
            )

    async def close(self, code: int | bool | None = None, reason: str | None = None) -> None:
        # Frames the server already queued for this socket are dropped from here on: a flood
        # would otherwise be answered (and closed) again, frame after frame.
        if self.state in (State.CONNECTING, State.OPEN):
            self.state = State.CLOSING
        await super().close(code=code, reason=reason)

    async def end_session(self, reason: str) -> None:
        """Logout or expiry: this socket spoke for a session that no longer exists."""
        log_event("session_ended", connection=self.connection_id, user=self.identity.name, reason=reason)
        await self.close(code=protocol.CLOSE_SESSION_ENDED)

    def forget_room(self, slug: str) -> None:
        """The hub ended this subscription (the room was closed)."""
        self.rooms.pop(slug, None)

    # Heartbeat (called by the process's HeartbeatMonitor).

    async def heartbeat_ping(self) -> None:
        await self.send_frame(protocol.PING, protocol.ping(int(time.time() * 1000)))

    async def heartbeat_expired(self) -> None:
        stats.heartbeat_timeouts_total += 1
        log_event("heartbeat_timeout", connection=self.connection_id, user=self.identity.name)
        await self.close(code=protocol.CLOSE_HEARTBEAT_TIMEOUT, reason="heartbeat timeout")

    # Frames in and out.

    async def send_frame(self, frame_type: str, text: str) -> None:
        stats.frame_out(frame_type)
        if self.send_text is None or not self.send_text(text):
            await self.send(text_data=text)

    async def send_error(self, error: protocol.ProtocolError) -> None:
        stats.error(error.code)
        await self.send_frame(protocol.ERROR, protocol.error(error.code, error.message, **error.extra))

    async def websocket_receive(self, message: dict[str, Any]) -> None:
        # A frame the server made for this client (SERVER_FRAME) spends none of its frame
        # tokens and draws no flood strike: resuming 100 rooms is not a flood. Frames are
        # handled one at a time, so the flag covers exactly this one.
        self.from_server = bool(message.get(SERVER_FRAME))
        try:
            await super().websocket_receive(message)
        finally:
            self.from_server = False

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        if self.state is not State.OPEN:
            return
        now = self.last_seen = time.monotonic()
        frame, problem = _parse(text_data)
        # Every frame, valid or not, is throttled; a refused one is answered before any query.
        frame_type = frame.type if frame is not None else None
        wait_s = self.throttle.check(frame_type, now, from_server=self.from_server)
        if wait_s > 0.0:
            await self.rate_limited(frame, wait_s, now)
            return
        if problem is not None:
            await self.send_error(problem)
            return
        assert frame is not None
        stats.frame_in(frame.type)
        try:
            await self.handlers[frame.type](self, frame)
        except protocol.ProtocolError as error:
            await self.send_error(error)
        except Exception:
            # A bug must cost this frame, not the socket (and not its cleanup).
            logger.exception("handling a %s frame failed", frame.type)
            await self.send_error(
                protocol.ProtocolError(protocol.SERVER_ERROR, "server failed on this frame", ref=frame.ref)
            )

    async def rate_limited(self, frame: protocol.Frame | None, wait_s: float, now: float) -> None:
        """Answer a frame over the rate limits; close a client that keeps sending them."""
        if self.throttle.flooding(now, from_server=self.from_server):
            stats.error("flooding")
            log_event("flooding", connection=self.connection_id, user=self.identity.name)
            await self.close(code=protocol.CLOSE_FLOODING)
            return
        await self.send_error(_rate_limited_error(frame, wait_s))

    # One handler per client frame type (frames.py).
    handlers = HANDLERS


def _parse(text_data: str | None) -> tuple[protocol.Frame | None, protocol.ProtocolError | None]:
    """The frame in a text message, or the problem with it (counted as binary or invalid)."""
    if text_data is None:
        stats.frame_in("binary")
        return None, protocol.ProtocolError(
            protocol.BINARY_NOT_SUPPORTED, "binary frames are not supported; send JSON text"
        )
    try:
        frame = protocol.parse_client_frame(
            text_data,
            max_frame_chars=settings.RIPPLE_MAX_FRAME_CHARS,
            max_body_chars=settings.RIPPLE_MAX_BODY_CHARS,
        )
    except protocol.ProtocolError as error:
        stats.frame_in("invalid")
        return None, error
    return frame, None


def _rate_limited_error(frame: protocol.Frame | None, wait_s: float) -> protocol.ProtocolError:
    extra: dict[str, Any] = {"retry_after_ms": math.ceil(wait_s * 1000)}
    if frame is not None:
        extra["ref"] = frame.ref
        if frame.room is not None:
            extra["room"] = frame.room
        if frame.client_id is not None:
            extra["client_id"] = frame.client_id
    return protocol.ProtocolError(
        protocol.RATE_LIMITED, "too many frames; wait retry_after_ms and send again", **extra
    )


def _welcome_frame(connection_id: str, identity: Identity) -> str:
    return protocol.welcome(
        connection_id=connection_id,
        user_name=identity.name,
        authenticated=identity.user_id is not None,
        heartbeat_interval_ms=round(settings.RIPPLE_HEARTBEAT_INTERVAL_S * 1000),
        heartbeat_timeout_ms=round(settings.RIPPLE_HEARTBEAT_TIMEOUT_S * 1000),
        server_time_ms=int(time.time() * 1000),
        limits={
            "max_body_chars": settings.RIPPLE_MAX_BODY_CHARS,
            "max_frame_chars": settings.RIPPLE_MAX_FRAME_CHARS,
            "max_subscriptions": settings.RIPPLE_MAX_SUBSCRIPTIONS,
            "history_size": settings.RIPPLE_HISTORY_SIZE,
            "resume_limit": settings.RIPPLE_RESUME_LIMIT,
            "messages_per_s": settings.RIPPLE_RATE_MESSAGES_PER_S,
            "messages_burst": settings.RIPPLE_RATE_MESSAGES_BURST,
            "frames_per_s": settings.RIPPLE_RATE_FRAMES_PER_S,
            "frames_burst": settings.RIPPLE_RATE_FRAMES_BURST,
        },
    )


def _client_address(scope: dict[str, Any]) -> str | None:
    client = scope.get("client")
    return f"{client[0]}:{client[1]}" if client else None
