"""The per-process room hub, one concept per module.

- ``events``: event and group names, and the publish helpers services import.
- ``subscriber``: ``Subscriber``, the hub's only view of a consumer.
- ``stream``: ``RoomStream``, one room here: ordering, gap fill, recent frames, ``fan_out``.
- ``roster``: presence tracking (arrive, depart after a grace, announce, sync).
- ``moderation``: what deleted/closed/access/room-deleted events do to subscribers here.
- ``watchers``: the sockets waiting for a closed room to reopen; closing removed identities.
- ``janitor``: the periodic duties (health, access audit, dashboard report, tail check,
  presence refresh, group refresh).
- ``fallback``: the HTTP fallback streams held here and the POSTed frames routed to them.
- ``draining``: sending this process's sockets away (4512).
- ``core``: ``RoomHub`` composing them, and ``get_hub``.
- ``publisher`` and ``receiving``: channels_redis' pub/sub layer, sending in batches on a held
  connection and receiving without a timer per message.

``from chat import hub`` keeps working: the names other modules use are re-exported here.
"""

from . import receiving
from .core import RoomHub, get_hub
from .draining import DRAIN_GRACE_S, Draining
from .events import (
    CONTROL_GROUP,
    EVENT_ACCESS,
    EVENT_CLOSED,
    EVENT_CONNECTION_FRAME,
    EVENT_DELETED,
    EVENT_DISCONNECT_USER,
    EVENT_DRAIN,
    EVENT_END_SESSION,
    EVENT_MESSAGE,
    EVENT_PRESENCE,
    EVENT_REMOVE_MEMBERS,
    EVENT_REOPENED,
    EVENT_ROOM_DELETED,
    EVENT_TYPING,
    connection_frame,
    connection_group,
    control_event,
    message_deliver_here,
    message_publish,
    message_send_out,
    room_event,
    room_group,
    typing_publish,
)
from .janitor import GROUP_REFRESH_S, HEALTH_TIMEOUT_S
from .roster import PRESENCE_BATCH_MAX_FACTOR, PRESENCE_BATCH_MEMBERS, presence_batch_s
from .stream import RECENT_FRAMES, RoomStream, Subscription, fan_out
from .subscriber import Subscriber

__all__ = [
    "CONTROL_GROUP",
    "DRAIN_GRACE_S",
    "EVENT_ACCESS",
    "EVENT_CLOSED",
    "EVENT_CONNECTION_FRAME",
    "EVENT_DELETED",
    "EVENT_DISCONNECT_USER",
    "EVENT_DRAIN",
    "EVENT_END_SESSION",
    "EVENT_MESSAGE",
    "EVENT_PRESENCE",
    "EVENT_REMOVE_MEMBERS",
    "EVENT_REOPENED",
    "EVENT_ROOM_DELETED",
    "EVENT_TYPING",
    "GROUP_REFRESH_S",
    "HEALTH_TIMEOUT_S",
    "PRESENCE_BATCH_MAX_FACTOR",
    "PRESENCE_BATCH_MEMBERS",
    "RECENT_FRAMES",
    "Draining",
    "RoomHub",
    "RoomStream",
    "Subscriber",
    "Subscription",
    "connection_frame",
    "connection_group",
    "control_event",
    "fan_out",
    "get_hub",
    "message_deliver_here",
    "message_publish",
    "message_send_out",
    "presence_batch_s",
    "room_event",
    "room_group",
    "typing_publish",
]

receiving.install()
