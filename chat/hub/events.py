"""What crosses the channel layer: event names, group names, and the helpers that send them.

Services import the publish helpers (``message_publish``, ``room_event``, ``control_event``),
the fallback's POST view ``connection_frame``; every hub receives what they send on its one
channel and dispatches it (chat/hub/core.py).
"""

from __future__ import annotations

import asyncio
from typing import Any, Protocol
from weakref import WeakKeyDictionary

from channels.layers import get_channel_layer

from .publisher import group_send

EVENT_MESSAGE = "room.message"
# "The room's presence changed somewhere": each hub re-reads the room's members (debounced).
EVENT_PRESENCE = "room.presence"
# Moderation, per room: messages deleted, room closed.
EVENT_DELETED = "room.deleted"
EVENT_CLOSED = "room.closed"
# A private room's members changed (or the room became private): re-check every subscriber.
EVENT_ACCESS = "room.access"
# A moderator deleted the room and its messages (services.room_delete): every subscriber leaves.
EVENT_ROOM_DELETED = "room.removed"
# Someone is typing (chat/consumers/frames.py): the frame, encoded once, to the room's other
# subscribers on every process. Never stored, no seq.
EVENT_TYPING = "room.typing"
# The room events after which a hub reads the room's row again (RoomStream.forget_row).
ROW_EVENTS = frozenset({EVENT_CLOSED, EVENT_ACCESS, EVENT_ROOM_DELETED})
# Process-wide control events, sent to every hub through CONTROL_GROUP.
CONTROL_GROUP = "ripple.control"
EVENT_DISCONNECT_USER = "control.disconnect_user"
# A moderator reopened a room: each hub tells the sockets it keeps as the room's watchers.
# A control event, as the hub left the room's group when the room closed.
EVENT_REOPENED = "control.room_reopened"
# A moderator removed identities (users or guests, by member id): their sockets close with 4403.
EVENT_REMOVE_MEMBERS = "control.remove_members"
# A session ended (logout): its sockets close with 4401.
EVENT_END_SESSION = "control.end_session"
# A client frame POSTed to any worker for the HTTP fallback stream it belongs to (chat/sse.py).
EVENT_CONNECTION_FRAME = "conn.frame"
# manage.py drain: the named processes (or all) send their sockets away (chat/drain.py).
EVENT_DRAIN = "control.drain"


def room_group(slug: str) -> str:
    return f"room.{slug}"


def connection_group(connection_id: str) -> str:
    """The group a fallback stream's process joins, so POSTs on any worker reach it."""
    return f"ripple.conn.{connection_id}"


class LocalDelivery(Protocol):
    """This process's hub, as a publisher on its event loop sees it."""

    async def offer(self, slug: str, seq: int, text: str, stored_at: float | None = None) -> None: ...


# Maps each event loop to its hub (registered by get_hub), so a message stored on this
# process reaches the local subscribers before it goes round the channel layer.
local_hubs: WeakKeyDictionary[asyncio.AbstractEventLoop, LocalDelivery] = WeakKeyDictionary()


async def message_publish(*, room_slug: str, seq: int, text: str, stored_at: float | None = None) -> None:
    """Send one stored message to the room on every process; local subscribers get it first."""
    await message_deliver_here(room_slug=room_slug, seq=seq, text=text, stored_at=stored_at)
    await message_send_out(room_slug=room_slug, seq=seq, text=text, stored_at=stored_at)


async def message_deliver_here(
    *, room_slug: str, seq: int, text: str, stored_at: float | None = None
) -> None:
    """``message_publish``'s first half: this process's subscribers of the room, now."""
    local = local_hubs.get(asyncio.get_running_loop())
    if local is not None:
        await local.offer(room_slug, seq, text, stored_at)


async def message_send_out(*, room_slug: str, seq: int, text: str, stored_at: float | None = None) -> None:
    """``message_publish``'s second half: the room's group on the channel layer, so every process
    (this one drops its copy by ``seq``)."""
    await group_send(
        get_channel_layer(),
        room_group(room_slug),
        {"type": EVENT_MESSAGE, "room": room_slug, "seq": seq, "text": text, "stored_at": stored_at},
    )


async def room_event(slug: str, kind: str, data: dict[str, Any]) -> None:
    """Tell every process with subscribers in the room (moderation events)."""
    await group_send(get_channel_layer(), room_group(slug), {"type": kind, "room": slug, **data})


async def typing_publish(*, room_slug: str, text: str, sender: str) -> None:
    """One ``typing`` frame to the room on every process: one channel-layer send, like a message.

    Not offered to this process first: there is no seq to drop the second copy by, so every hub
    (this one too) takes it from the group once and skips the ``sender`` connection.
    """
    await room_event(room_slug, EVENT_TYPING, {"text": text, "sender": sender})


async def control_event(kind: str, data: dict[str, Any]) -> None:
    """Tell every process that has sockets."""
    await get_channel_layer().group_send(CONTROL_GROUP, {"type": kind, **data})


async def connection_frame(connection_id: str, *, session: str, token: str, text: str) -> None:
    """Hand one POSTed client frame to the process holding the fallback stream."""
    await get_channel_layer().group_send(
        connection_group(connection_id),
        {
            "type": EVENT_CONNECTION_FRAME,
            "connection": connection_id,
            "session": session,
            "token": token,
            "text": text,
        },
    )
