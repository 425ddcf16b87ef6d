"""The chat socket's frame handlers: what each client frame does, through services and the hub.

``ChatConsumer.receive`` (chat.py) parses and throttles a frame, then awaits the handler for its
type in ``HANDLERS``. A handler answers a frame it cannot serve by raising ``ProtocolError``;
a service's refusal (chat/services.py) becomes one through ``REFUSALS``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from channels.db import database_sync_to_async
from django.conf import settings

from .. import hub, protocol, removal, selectors, services
from ..hub import RoomHub, Subscriber
from ..models import Room
from ..stats import RECENT_ROOMS
from ..throttle import Throttle

logger = logging.getLogger(__name__)

# Each refusal of a service (chat/services.py) as the client reads it: the error code, and the
# text ({error}: the exception's own; {room}: the frame's room).
REFUSALS: dict[type[Exception], tuple[str, str]] = {
    services.InvalidRoomSlug: (protocol.INVALID_ROOM, "{error}"),
    services.EmptyBody: (protocol.BODY_EMPTY, "{error}"),
    services.BodyTooLong: (protocol.BODY_TOO_LONG, "{error}"),
    services.BodyNotStorable: (protocol.INVALID_BODY, "{error}"),
    services.InvalidClientId: (protocol.INVALID_FIELD, "{error}"),
    services.ClientIdConflict: (protocol.CLIENT_ID_CONFLICT, "this client_id is taken in this room"),
    services.RoomClosed: (protocol.ROOM_IS_CLOSED, "{room} was closed by a moderator"),
    # The validator's own words (docs/extending.md); the message was not stored.
    services.MessageRejected: (protocol.MESSAGE_REJECTED, "{error}"),
}


class ChatSocket(Subscriber, Protocol):
    """The socket as its frame handlers see it: the hub's view, plus its rooms and limits."""

    scope: dict[str, Any]
    # Maps each subscribed room slug to its Room row.
    rooms: dict[str, Room]
    # Maps each room to when this socket last fanned out ``typing`` there (monotonic seconds).
    typing_at: dict[str, float]
    connect_event: dict[str, Any] | None
    throttle: Throttle
    hub: RoomHub

    async def send_frame(self, frame_type: str, text: str) -> None: ...

    async def rate_limited(self, frame: protocol.Frame | None, wait_s: float, now: float) -> None: ...


async def on_ping(socket: ChatSocket, frame: protocol.Frame) -> None:
    await socket.send_frame(protocol.PONG, protocol.pong(frame.t, frame.ref))


async def on_pong(socket: ChatSocket, frame: protocol.Frame) -> None:
    """Nothing to do: receiving it already counted as a sign of life."""


async def on_subscribe(socket: ChatSocket, frame: protocol.Frame) -> None:
    slug = frame.room
    assert slug is not None
    where = {"ref": frame.ref, "room": slug}
    if await removal.aremoved_until(socket.identity.member_id) is not None:
        # Removed while this socket was opening on a process that had not heard yet.
        await socket.close(code=protocol.CLOSE_DISCONNECTED_BY_MODERATOR, reason="removed")
        return
    if slug in socket.rooms:
        raise protocol.ProtocolError(protocol.ALREADY_SUBSCRIBED, f"already subscribed to {slug}", **where)
    if len(socket.rooms) >= settings.RIPPLE_MAX_SUBSCRIPTIONS:
        raise protocol.ProtocolError(
            protocol.TOO_MANY_SUBSCRIPTIONS,
            f"a socket may subscribe to at most {settings.RIPPLE_MAX_SUBSCRIPTIONS} rooms",
            **where,
        )
    try:
        # No query for a room live here (its hub keeps the row), else one for a room that
        # exists. Only creating one is limited (docs/security.md).
        room = await socket.hub.find_room(slug) or await _create_room(socket, frame, where)
        if room is None:
            return  # rate-limited, and answered so
    except protocol.ProtocolError:
        raise
    except Exception as error:
        raise _wire_error(
            error, "could not subscribe; try again", "subscribe to %s failed", **where
        ) from None
    if room.closed_at is not None:
        # The socket hears of a reopen (room_reopened) without asking again.
        socket.hub.watchers.watch(socket, slug)
        raise protocol.ProtocolError(protocol.ROOM_IS_CLOSED, f"{slug} was closed by a moderator", **where)
    if room.private and not await _allowed(socket, room):
        raise protocol.ProtocolError(protocol.FORBIDDEN, f"{slug} is private: members only", **where)
    try:
        await socket.hub.attach(
            socket,
            slug=slug,
            room_id=room.pk,
            since=frame.since,
            ref=frame.ref,
            member=socket.identity.member,
            private=room.private,
        )
    except Exception:
        logger.exception("subscribe to %s failed", slug)
        await socket.hub.detach(socket, slug)
        raise protocol.ProtocolError(
            protocol.SERVER_ERROR, "could not subscribe; try again", **where
        ) from None
    socket.rooms[slug] = room
    joined = socket.connect_event["rooms"] if socket.connect_event is not None else None
    if joined is not None and len(joined) < RECENT_ROOMS and slug not in joined:
        joined.append(slug)


async def _create_room(socket: ChatSocket, frame: protocol.Frame, where: dict[str, Any]) -> Room | None:
    """Create the room ``frame`` subscribes to, under the creation limits; None when the socket
    was told it is rate-limited.

    A crowd subscribing to a new room at once each find no room and each take a creation token:
    one creates the room and the others get their token back. One that finds the bucket empty
    looks again before it is refused, since another subscribe may have created the room by then.
    """
    slug = frame.room
    assert slug is not None
    if not services.room_creation_allowed(user=socket.scope.get("user")):
        raise protocol.ProtocolError(
            protocol.ROOM_NOT_FOUND,
            f"{slug} does not exist, and only {settings.RIPPLE_ROOM_CREATION} may create rooms",
            **where,
        )
    now = time.monotonic()
    wait_s = socket.throttle.check_room_creation(now)
    if wait_s > 0.0:
        room = await database_sync_to_async(selectors.room_find)(slug=slug)
        if room is None:
            await socket.rate_limited(frame, wait_s, now)
        return room
    created = False
    try:
        room, created = await database_sync_to_async(services.room_create_if_missing)(slug=slug)
    finally:
        if not created:  # another subscribe made it meanwhile, or the write failed
            socket.throttle.refund_room_creation(time.monotonic())
    return room


async def on_unsubscribe(socket: ChatSocket, frame: protocol.Frame) -> None:
    slug = frame.room
    assert slug is not None
    socket.hub.watchers.unwatch(socket, slug)
    socket.typing_at.pop(slug, None)
    if socket.rooms.pop(slug, None) is None:
        raise protocol.ProtocolError(
            protocol.NOT_SUBSCRIBED, f"not subscribed to {slug}", ref=frame.ref, room=slug
        )
    await socket.hub.detach(socket, slug)
    await socket.send_frame(protocol.UNSUBSCRIBED, protocol.unsubscribed(room=slug, ref=frame.ref))


async def on_message(socket: ChatSocket, frame: protocol.Frame) -> None:
    slug, client_id, body = frame.room, frame.client_id, frame.body
    assert slug is not None and client_id is not None and body is not None
    where = {"ref": frame.ref, "room": slug, "client_id": client_id}
    room = socket.rooms.get(slug)
    if room is None:
        raise protocol.ProtocolError(protocol.NOT_SUBSCRIBED, f"subscribe to {slug} before sending", **where)
    if room.private and not await _allowed(socket, room):
        # Membership ended a moment ago; the hub is about to end the subscription too.
        raise protocol.ProtocolError(protocol.FORBIDDEN, f"{slug} is private: members only", **where)
    try:
        posted = await services.amessage_accept(
            room=room,
            author=socket.identity.name,
            user_id=socket.identity.user_id,
            body=body,
            client_id=client_id,
            author_key=socket.identity.member_id,
        )
    except Exception as error:
        raise _wire_error(
            error, "the message was not stored; send it again", "storing a message in %s failed", **where
        ) from None
    message = posted.message
    # This process's subscribers first (the sender's own copy among them), then the ack, then
    # the other processes. The protocol lets the ack and the own copy come in either order, as
    # Phoenix replies after its broadcast: the ack's encoding and write are not in front of
    # every local delivery (docs/benchmarks.md). Stored already, so delivery no longer depends
    # on this process: whatever fails here, the tail check delivers it (see hub).
    try:
        await services.message_deliver_here(posted)
    except Exception:
        logger.exception("delivering %s#%s here failed; the tail check will deliver it", slug, message.seq)
    await socket.send_frame(
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
        await services.message_send_out(posted)
    except Exception:
        logger.exception("publishing %s#%s failed; the tail check will deliver it", slug, message.seq)


# A socket's ``typing`` frames fanned out per room: one per this many seconds; the client sends
# one every 3 s while the person types, so this passes each of those and drops bursts.
TYPING_MIN_INTERVAL_S = 2.0


async def on_typing(socket: ChatSocket, frame: protocol.Frame) -> None:
    """Tell the room's other subscribers who is typing: one channel-layer send, never stored."""
    slug = frame.room
    assert slug is not None
    if slug not in socket.rooms:
        raise protocol.ProtocolError(
            protocol.NOT_SUBSCRIBED, f"subscribe to {slug} before typing", ref=frame.ref, room=slug
        )
    now = time.monotonic()
    if now - socket.typing_at.get(slug, -TYPING_MIN_INTERVAL_S) < TYPING_MIN_INTERVAL_S:
        return  # dropped without an error: a page that types fast is not at fault
    socket.typing_at[slug] = now
    identity = socket.identity
    kind = protocol.AUTHOR_USER if identity.user_id is not None else protocol.AUTHOR_GUEST
    text = protocol.typing(room=slug, name=identity.name, kind=kind)
    await hub.typing_publish(room_slug=slug, text=text, sender=socket.connection_id)


async def _allowed(socket: ChatSocket, room: Room) -> bool:
    try:
        return await database_sync_to_async(selectors.room_allows)(room=room, user_id=socket.identity.user_id)
    except Exception:
        logger.exception("checking access to %s failed", room.slug)
        raise protocol.ProtocolError(
            protocol.SERVER_ERROR, "could not check access; try again", room=room.slug
        ) from None


Handler = Callable[[ChatSocket, protocol.Frame], Awaitable[None]]

# One handler per client frame type; a new frame type adds one (docs/extending.md).
HANDLERS: dict[str, Handler] = {
    protocol.PING: on_ping,
    protocol.PONG: on_pong,
    protocol.SUBSCRIBE: on_subscribe,
    protocol.UNSUBSCRIBE: on_unsubscribe,
    protocol.MESSAGE: on_message,
    protocol.TYPING: on_typing,
}


def _wire_error(error: Exception, failure: str, log_text: str, **where: Any) -> protocol.ProtocolError:
    """``error`` out of a service as the client reads it: a refusal's own code (REFUSALS), or,
    for a bug or an outage, ``server_error`` saying ``failure`` (logged as ``log_text``)."""
    for kind in type(error).__mro__:
        if kind in REFUSALS:
            code, text = REFUSALS[kind]
            if isinstance(error, services.InvalidMessage):
                where = {**where, "field": error.field}
            # Only a validator's MessageRejected can have no words of its own.
            message = text.format(error=error, room=where.get("room")) or "the message was rejected"
            return protocol.ProtocolError(code, message, **where)
    logger.error(log_text, where["room"], exc_info=error)
    return protocol.ProtocolError(protocol.SERVER_ERROR, failure, **where)
