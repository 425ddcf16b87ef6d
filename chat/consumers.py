"""WebSocket consumers: frames in, services and the hub, frames out."""

from __future__ import annotations

import asyncio
import logging
import math
import time
import uuid
from typing import Any

from channels.consumer import get_handler_name
from channels.db import database_sync_to_async
from channels.exceptions import StopConsumer
from channels.generic.websocket import AsyncWebsocketConsumer
from channels.sessions import InstanceSessionWrapper
from django.conf import settings

from . import heartbeat, hub, limits, protocol, selectors, services
from .admission import CONNECTION_ID
from .identity import Identity, identity_from_scope, session_expiry, session_tag
from .logs import log_event
from .models import Room
from .stats import stats

logger = logging.getLogger(__name__)

# An alias with no layer behind it: sockets get no channel of their own, because the hub
# holds this process's only channel-layer membership (one per room, not one per socket).
NO_CHANNEL_LAYER = "ripple.no-layer"
# Marks a ``websocket.receive`` the server made itself (the HTTP fallback's resume by
# Last-Event-ID, chat/sse.py). No client can set it: daphne and the hub build every other one.
SERVER_FRAME = "ripple.server_frame"


class ChatConsumer(AsyncWebsocketConsumer):
    """One browser tab: any number of room subscriptions over one socket."""

    channel_layer_alias = NO_CHANNEL_LAYER

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        # Channels' session middleware wraps ``send`` to save a modified session on HTTP
        # responses, reading the lazy session on every frame; a socket never saves one, and
        # the room hub sends each message to every local subscriber, so frames skip it.
        wrapper = getattr(send, "__self__", None)
        if isinstance(wrapper, InstanceSessionWrapper):
            send = wrapper.real_send
        self.closing = False
        self.cleaned_up = False
        self.from_server = False
        try:
            await super().__call__(scope, receive, send)
        finally:
            # A consumer that crashed (or was cancelled by the server) never got its
            # disconnect(): release its caps, rooms and presence all the same.
            if not self.cleaned_up:
                await self.disconnect(1011)

    async def dispatch(self, message: dict[str, Any]) -> None:
        await dispatch_without_db_hop(self, message)

    async def connect(self) -> None:
        # Given by the admission guard (chat/admission.py), which logged under it already.
        self.connection_id = self.scope.get(CONNECTION_ID) or uuid.uuid4().hex
        # Maps each subscribed room slug to its Room row.
        self.rooms: dict[str, Room] = {}
        self.last_seen = self.connected_at = time.monotonic()
        self.counted: list[tuple[limits.ConnectionCounter, str]] = []
        self.identity: Identity = await identity_from_scope(self.scope, connection_id=self.connection_id)
        session = self.scope.get("session")
        self.session_tag = session_tag(session)
        await self.accept()
        refusal = self._count_in()
        if refusal is not None:
            log_event(
                "refused", connection=self.connection_id, reason=refusal, client=_client_address(self.scope)
            )
            await self.close(code=protocol.CLOSE_TOO_MANY_CONNECTIONS)
            return
        self.hub = hub.get_hub()
        try:
            await self.hub.connect(self)
        except hub.Draining:
            log_event("refused", connection=self.connection_id, reason="draining")
            await self.close(code=protocol.CLOSE_DRAINING)
            return
        except Exception:
            # The channel layer (Redis) is away: a documented "come back later", not a 500.
            logger.warning("the channel layer is unavailable; refusing a socket", exc_info=True)
            log_event("refused", connection=self.connection_id, reason="layer_unavailable")
            await self.close(code=protocol.CLOSE_TRY_AGAIN_LATER)
            return
        now = time.monotonic()
        self.frame_bucket = limits.TokenBucket(
            settings.RIPPLE_RATE_FRAMES_PER_S, settings.RIPPLE_RATE_FRAMES_BURST, now
        )
        self.message_bucket = limits.TokenBucket(
            settings.RIPPLE_RATE_MESSAGES_PER_S, settings.RIPPLE_RATE_MESSAGES_BURST, now
        )
        self.user_bucket = limits.user_message_buckets.acquire(
            self.identity.member_id,
            settings.RIPPLE_RATE_USER_MESSAGES_PER_S,
            settings.RIPPLE_RATE_USER_MESSAGES_BURST,
        )
        self.messages_blocked_until = 0.0
        # Rejected frames forgiven at one a second: a client that keeps flooding runs out.
        self.strikes = limits.TokenBucket(1.0, settings.RIPPLE_FLOOD_STRIKES, now)
        self.session_timer: asyncio.TimerHandle | None = None
        if session is not None and self.session_tag:
            try:
                expires = await database_sync_to_async(session_expiry)(session)
            except Exception:
                logger.warning("reading a session's expiry failed; checking again in 60 s", exc_info=True)
                expires = time.time() + 60
            if expires is not None:
                self._arm_session_timer(expires)
        stats.connected(connection_id=self.connection_id, user=self.identity.name)
        log_event(
            "connect",
            connection=self.connection_id,
            user=self.identity.name,
            user_id=self.identity.user_id,
            client=_client_address(self.scope),
        )
        self.monitor = heartbeat.get_monitor()
        self.monitor.register(self)
        await self.send_frame(
            protocol.WELCOME,
            protocol.welcome(
                connection_id=self.connection_id,
                user_name=self.identity.name,
                authenticated=self.identity.user_id is not None,
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
            ),
        )

    def _count_in(self) -> str | None:
        """Count this socket against the per-user cap; the reason if over.

        The per-address cap is the admission guard's (chat/admission.py), across every endpoint.
        """
        counter, key = limits.connections_per_user, self.identity.member_id
        if not counter.try_add(key, settings.RIPPLE_MAX_CONNECTIONS_PER_USER):
            return "too_many_connections_per_user"
        self.counted.append((counter, key))
        return None

    def _count_out(self) -> None:
        counted, self.counted = self.counted, []
        for counter, key in counted:
            counter.remove(key)

    def _arm_session_timer(self, expires_at: float) -> None:
        loop = asyncio.get_running_loop()
        delay = max(0.0, expires_at - time.time())
        self.session_timer = loop.call_later(delay, lambda: loop.create_task(self._session_check()))

    async def _session_check(self) -> None:
        """The session's expiry came: close the socket, unless the session was extended."""
        self.session_timer = None
        session = self.scope.get("session")
        try:
            expires = await database_sync_to_async(session_expiry)(session)
        except Exception:
            logger.warning("checking a session's expiry failed; trying again in 60 s", exc_info=True)
            self._arm_session_timer(time.time() + 60)
            return
        if expires is not None and expires > time.time():
            self._arm_session_timer(expires)
            return
        await self.end_session("session_expired")

    async def end_session(self, reason: str) -> None:
        """Logout or expiry: this socket spoke for a session that no longer exists."""
        log_event("session_ended", connection=self.connection_id, user=self.identity.name, reason=reason)
        await self.close(code=protocol.CLOSE_SESSION_ENDED)

    async def disconnect(self, code: int) -> None:
        if self.cleaned_up:
            return
        self.cleaned_up = True
        self._count_out()
        if not hasattr(self, "monitor"):
            # Refused, or closed before the handshake finished.
            if hasattr(self, "hub"):
                await self.hub.disconnect(self)
            return
        if self.session_timer is not None:
            self.session_timer.cancel()
            self.session_timer = None
        limits.user_message_buckets.release(self.identity.member_id)
        self.monitor.unregister(self)
        rooms, self.rooms = self.rooms, {}
        for slug in rooms:
            await self.hub.detach(self, slug)
        await self.hub.disconnect(self)
        duration_s = time.monotonic() - self.connected_at
        stats.disconnected(
            connection_id=self.connection_id, user=self.identity.name, code=code, duration_s=duration_s
        )
        log_event(
            "disconnect",
            connection=self.connection_id,
            user=self.identity.name,
            code=code,
            duration_s=round(duration_s, 3),
        )

    async def send_frame(self, frame_type: str, text: str) -> None:
        stats.frame_out(frame_type)
        await self.send(text_data=text)

    async def send_error(self, error: protocol.ProtocolError) -> None:
        stats.error(error.code)
        await self.send_frame(protocol.ERROR, protocol.error(error.code, error.message, **error.extra))

    async def _allowed(self, room: Room) -> bool:
        try:
            return await database_sync_to_async(selectors.room_allows)(
                room=room, user_id=self.identity.user_id
            )
        except Exception:
            logger.exception("checking access to %s failed", room.slug)
            raise protocol.ProtocolError(
                protocol.SERVER_ERROR, "could not check access; try again", room=room.slug
            ) from None

    def forget_room(self, slug: str) -> None:
        """The hub ended this subscription (the room was closed)."""
        self.rooms.pop(slug, None)

    async def close(self, code: int | bool | None = None, reason: str | None = None) -> None:
        # Frames the server already queued for this socket are dropped from here on: a flood
        # would otherwise be answered (and closed) again, frame after frame.
        self.closing = True
        await super().close(code=code, reason=reason)

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
        if self.closing:
            return
        now = self.last_seen = time.monotonic()
        frame: protocol.Frame | None = None
        if text_data is None:
            stats.frame_in("binary")
            problem = protocol.ProtocolError(
                protocol.BINARY_NOT_SUPPORTED, "binary frames are not supported; send JSON text"
            )
        else:
            try:
                frame = protocol.parse_client_frame(
                    text_data,
                    max_frame_chars=settings.RIPPLE_MAX_FRAME_CHARS,
                    max_body_chars=settings.RIPPLE_MAX_BODY_CHARS,
                )
                problem = None
            except protocol.ProtocolError as error:
                stats.frame_in("invalid")
                problem = error
        # Every frame, valid or not, takes a token; a message also takes the socket's and the
        # user's message tokens. A refused frame is answered and dropped before any query.
        wait = 0.0 if self.from_server else self.frame_bucket.take(now)
        if wait == 0.0 and frame is not None and frame.type == protocol.MESSAGE:
            # Once a message is refused, later ones are refused until its retry time too: a
            # token freed meanwhile must not let message 3 in before the re-sent message 2.
            wait = max(0.0, self.messages_blocked_until - now)
            if wait == 0.0:
                wait = limits.take_all((self.message_bucket, self.user_bucket), now)
                if wait > 0.0:
                    self.messages_blocked_until = now + wait
        if wait > 0.0:
            await self.rate_limited(frame, wait, now)
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
        if not self.from_server and self.strikes.take(now) > 0.0:
            stats.error("flooding")
            log_event("flooding", connection=self.connection_id, user=self.identity.name)
            await self.close(code=protocol.CLOSE_FLOODING)
            return
        extra: dict[str, Any] = {"retry_after_ms": math.ceil(wait_s * 1000)}
        if frame is not None:
            extra["ref"] = frame.ref
            if frame.room is not None:
                extra["room"] = frame.room
            if frame.client_id is not None:
                extra["client_id"] = frame.client_id
        await self.send_error(
            protocol.ProtocolError(
                protocol.RATE_LIMITED, "too many frames; wait retry_after_ms and send again", **extra
            )
        )

    # Heartbeat (called by the process's HeartbeatMonitor).

    async def heartbeat_ping(self) -> None:
        await self.send_frame(protocol.PING, protocol.ping(int(time.time() * 1000)))

    async def heartbeat_expired(self) -> None:
        stats.heartbeat_timeouts_total += 1
        log_event("heartbeat_timeout", connection=self.connection_id, user=self.identity.name)
        await self.close(code=protocol.CLOSE_HEARTBEAT_TIMEOUT, reason="heartbeat timeout")

    # Frame handlers.

    async def on_ping(self, frame: protocol.Frame) -> None:
        await self.send_frame(protocol.PONG, protocol.pong(frame.t, frame.ref))

    async def on_pong(self, frame: protocol.Frame) -> None:
        """Nothing to do: receiving it already counted as a sign of life."""

    async def on_subscribe(self, frame: protocol.Frame) -> None:
        slug = frame.room
        assert slug is not None
        if slug in self.rooms:
            raise protocol.ProtocolError(
                protocol.ALREADY_SUBSCRIBED, f"already subscribed to {slug}", ref=frame.ref, room=slug
            )
        if len(self.rooms) >= settings.RIPPLE_MAX_SUBSCRIPTIONS:
            raise protocol.ProtocolError(
                protocol.TOO_MANY_SUBSCRIPTIONS,
                f"a socket may subscribe to at most {settings.RIPPLE_MAX_SUBSCRIPTIONS} rooms",
                ref=frame.ref,
                room=slug,
            )
        try:
            # One query for a room that exists; only creating one is limited (docs/security.md).
            found = await database_sync_to_async(selectors.room_find)(slug=slug)
            if found is None:
                if not services.room_creation_allowed(user=self.scope.get("user")):
                    raise protocol.ProtocolError(
                        protocol.ROOM_NOT_FOUND,
                        f"{slug} does not exist, and only {settings.RIPPLE_ROOM_CREATION} may create rooms",
                        ref=frame.ref,
                        room=slug,
                    )
                now = time.monotonic()
                wait_s = limits.take_all(self._room_creation_buckets(now), now)
                if wait_s > 0.0:
                    await self.rate_limited(frame, wait_s, now)
                    return
                found = await database_sync_to_async(services.room_get_or_create)(slug=slug)
            room = found
        except protocol.ProtocolError:
            raise
        except Exception:
            logger.exception("subscribe to %s failed", slug)
            raise protocol.ProtocolError(
                protocol.SERVER_ERROR, "could not subscribe; try again", ref=frame.ref, room=slug
            ) from None
        if room.closed_at is not None:
            raise protocol.ProtocolError(
                protocol.ROOM_IS_CLOSED, f"{slug} was closed by a moderator", ref=frame.ref, room=slug
            )
        if room.private and not await self._allowed(room):
            raise protocol.ProtocolError(
                protocol.FORBIDDEN, f"{slug} is private: members only", ref=frame.ref, room=slug
            )
        try:
            await self.hub.attach(
                self,
                slug=slug,
                room_id=room.pk,
                since=frame.since,
                ref=frame.ref,
                member=self.identity.member,
                private=room.private,
            )
        except Exception:
            logger.exception("subscribe to %s failed", slug)
            await self.hub.detach(self, slug)
            raise protocol.ProtocolError(
                protocol.SERVER_ERROR, "could not subscribe; try again", ref=frame.ref, room=slug
            ) from None
        self.rooms[slug] = room

    def _room_creation_buckets(self, now: float) -> tuple[limits.TokenBucket, ...]:
        """The buckets a room creation takes from: the user's or guest session's (this socket's
        without a session), and the client address's."""
        rate_per_s = settings.RIPPLE_ROOM_CREATE_PER_MIN / 60
        burst = settings.RIPPLE_ROOM_CREATE_BURST
        key = f"u{self.identity.user_id}" if self.identity.user_id is not None else self.session_tag
        if key:
            buckets = [limits.room_creations_per_member.get(key, rate_per_s, burst, now)]
        else:
            # No cookie: a bucket of this socket's own, gone with it (keys would be free to make).
            own: limits.TokenBucket | None = getattr(self, "room_creation_bucket", None)
            if own is None:
                own = self.room_creation_bucket = limits.TokenBucket(rate_per_s, burst, now)
            buckets = [own]
        client = self.scope.get("client")
        if client:
            buckets.append(limits.room_creations_per_address.get(str(client[0]), rate_per_s, burst, now))
        return tuple(buckets)

    async def on_unsubscribe(self, frame: protocol.Frame) -> None:
        slug = frame.room
        assert slug is not None
        if self.rooms.pop(slug, None) is None:
            raise protocol.ProtocolError(
                protocol.NOT_SUBSCRIBED, f"not subscribed to {slug}", ref=frame.ref, room=slug
            )
        await self.hub.detach(self, slug)
        await self.send_frame(protocol.UNSUBSCRIBED, protocol.unsubscribed(room=slug, ref=frame.ref))

    async def on_message(self, frame: protocol.Frame) -> None:
        slug, client_id, body = frame.room, frame.client_id, frame.body
        assert slug is not None and client_id is not None and body is not None
        where = {"ref": frame.ref, "room": slug, "client_id": client_id}
        room = self.rooms.get(slug)
        if room is None:
            raise protocol.ProtocolError(
                protocol.NOT_SUBSCRIBED, f"subscribe to {slug} before sending", **where
            )
        if room.private and not await self._allowed(room):
            # Membership ended a moment ago; the hub is about to end the subscription too.
            raise protocol.ProtocolError(protocol.FORBIDDEN, f"{slug} is private: members only", **where)
        try:
            posted = await database_sync_to_async(services.message_accept)(
                room=room,
                author=self.identity.name,
                user_id=self.identity.user_id,
                body=body,
                client_id=client_id,
                author_key=self.identity.member_id,
            )
        except services.ClientIdConflict:
            raise protocol.ProtocolError(
                protocol.CLIENT_ID_CONFLICT, "this client_id is taken in this room", **where
            ) from None
        except services.RoomClosed:
            raise protocol.ProtocolError(
                protocol.ROOM_IS_CLOSED, f"{slug} was closed by a moderator", **where
            ) from None
        except services.MessageRejected as rejected:
            # The validator's own words (docs/extending.md); the message was not stored.
            raise protocol.ProtocolError(
                protocol.MESSAGE_REJECTED, str(rejected) or "the message was rejected", **where
            ) from None
        except protocol.ProtocolError:
            raise
        except Exception:
            logger.exception("storing a message in %s failed", slug)
            raise protocol.ProtocolError(
                protocol.SERVER_ERROR, "the message was not stored; send it again", **where
            ) from None
        message = posted.message
        # Acknowledge once stored: delivery no longer depends on this process (see hub).
        await self.send_frame(
            protocol.ACK,
            protocol.ack(
                room=slug,
                client_id=client_id,
                seq=message.seq,
                sent_at=message.sent_at,
                duplicate=not posted.created,
                ref=frame.ref,
            ),
        )
        try:
            await services.message_publish(posted)
        except Exception:
            logger.exception("publishing %s#%s failed; the tail check will deliver it", slug, message.seq)

    handlers = {
        protocol.PING: on_ping,
        protocol.PONG: on_pong,
        protocol.SUBSCRIBE: on_subscribe,
        protocol.UNSUBSCRIBE: on_unsubscribe,
        protocol.MESSAGE: on_message,
    }


async def dispatch_without_db_hop(consumer: AsyncWebsocketConsumer, message: dict[str, Any]) -> None:
    """Channels' dispatch without its stale-connection check before every frame and at the close.

    database_sync_to_async already closes stale connections around each query, so the check is
    a thread hop per frame for nothing; and a socket that never queries never touches the
    database, so a test without the django_db mark passes even when an earlier test left a
    persistent connection open in asgiref's thread (docs/testing.md).
    """
    if message["type"] == "websocket.disconnect":
        # websocket_disconnect without its hop: these consumers join no channel-layer groups.
        await consumer.disconnect(message.get("code", 1005))
        raise StopConsumer()
    handler = getattr(consumer, get_handler_name(message), None)
    if handler is None:
        raise ValueError(f"no handler for message type {message['type']}")
    await handler(message)


def _client_address(scope: dict[str, Any]) -> str | None:
    client = scope.get("client")
    return f"{client[0]}:{client[1]}" if client else None


class EchoConsumer(AsyncWebsocketConsumer):
    """The classic Node ``ws`` tutorial server: greets, then echoes with a suffix."""

    channel_layer_alias = NO_CHANNEL_LAYER

    async def dispatch(self, message: dict[str, Any]) -> None:
        await dispatch_without_db_hop(self, message)

    async def connect(self) -> None:
        await self.accept()
        await self.send(text_data="Hello Client")

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        if text_data is not None:
            await self.send(text_data=f"received: {text_data}(From Server)")
        else:
            await self.send(text_data=f"received: {len(bytes_data or b'')} bytes(From Server)")
