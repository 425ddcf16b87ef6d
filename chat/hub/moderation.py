"""What moderators' events do to the subscribers here: frames sent, subscriptions ended.

Each room handler sends its frame under the stream's lock and returns the subscriptions it
ended; the hub then lets each one go (``RoomHub._end_subscriptions``), outside the lock.
"""

from __future__ import annotations

from .. import protocol
from ..logs import log_event
from ..stats import stats
from .stream import RoomStream, Subscription, fan_out
from .subscriber import Subscriber

Ended = list[tuple[Subscriber, Subscription]]


async def delete_messages(stream: RoomStream, seqs: list[int]) -> None:
    async with stream.lock:
        # The ring may hold their bodies; late attaches read the database instead.
        stream.forget_recent()
        await stream.send_all(protocol.deleted(room=stream.slug, seqs=seqs), "deleted")


async def close_room(stream: RoomStream, reason: str) -> Ended:
    """Send every subscriber here ``room_closed`` and end their subscriptions."""
    async with stream.lock:
        await stream.send_all(protocol.room_closed(room=stream.slug, reason=reason), "room_closed")
        ended = list(stream.subscribers.items())
        stream.subscribers.clear()
    return ended


async def remove_room(stream: RoomStream) -> Ended:
    """Send every subscriber here ``unsubscribed`` (room_deleted) and end their subscriptions."""
    text = protocol.unsubscribed(room=stream.slug, ref=None, reason=protocol.REASON_ROOM_DELETED)
    async with stream.lock:
        await stream.send_all(text, protocol.UNSUBSCRIBED)
        ended = list(stream.subscribers.items())
        stream.subscribers.clear()
        # Frames of the deleted room must not reach a new room of the same name.
        stream.forget_recent()
        stream.pending.clear()
    return ended


async def revoke_access(stream: RoomStream, allowed: set[int]) -> Ended:
    """Send ``unsubscribed`` (access_revoked) to the subscribers whose user is not ``allowed``."""
    text = protocol.unsubscribed(room=stream.slug, ref=None, reason=protocol.REASON_ACCESS_REVOKED)
    async with stream.lock:
        revoked = [
            (subscriber, subscription)
            for subscriber, subscription in stream.subscribers.items()
            if subscriber.identity.user_id not in allowed
        ]
        for subscriber, _ in revoked:
            del stream.subscribers[subscriber]
        await fan_out([subscriber for subscriber, _ in revoked], text)
    stats.frame_out(protocol.UNSUBSCRIBED, len(revoked))
    return revoked


async def disconnect_user(connections: set[Subscriber], user_id: int) -> None:
    for subscriber in list(connections):
        if subscriber.identity.user_id == user_id:
            log_event(
                "moderator_disconnect", connection=subscriber.connection_id, user=subscriber.identity.name
            )
            await subscriber.close(code=protocol.CLOSE_DISCONNECTED_BY_MODERATOR)


async def end_session(connections: set[Subscriber], session: str) -> None:
    for subscriber in list(connections):
        if subscriber.session_tag == session:
            await subscriber.end_session("logout")
