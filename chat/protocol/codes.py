"""The protocol's names: frame types, error codes, close codes, reasons and author kinds.

Plain constants, the one copy the server uses. ``static/js/ripple/constants.js`` and
``docs/protocol.md`` name them again; ``tests/unit/test_protocol_sync.py`` reads this file's
frame-type blocks and checks every copy against these values.
"""

from __future__ import annotations

PROTOCOL_VERSION = 1

# Client frame types.
PING = "ping"
PONG = "pong"
SUBSCRIBE = "subscribe"
UNSUBSCRIBE = "unsubscribe"
MESSAGE = "message"
# Someone is typing in a room: ephemeral, never stored; the server's frame names who.
TYPING = "typing"
CLIENT_TYPES = frozenset({PING, PONG, SUBSCRIBE, UNSUBSCRIBE, MESSAGE, TYPING})

# Server-only frame types.
WELCOME = "welcome"
SUBSCRIBED = "subscribed"
UNSUBSCRIBED = "unsubscribed"
ACK = "ack"
ERROR = "error"
PRESENCE = "presence"
DELETED = "deleted"
ROOM_CLOSED = "room_closed"
ROOM_REOPENED = "room_reopened"

# ``message.author_kind`` (and ``kind`` of a presence member, user or guest): who stands
# behind a name. Only the operators post as system (Message.system).
AUTHOR_USER = "user"
AUTHOR_GUEST = "guest"
AUTHOR_SYSTEM = "system"

# Close codes. 4400-4499 (except 4408): do not reconnect. 4500-4599: reconnect (with backoff;
# 4512 right away, after a random delay).
CLOSE_NORMAL = 1000
CLOSE_SESSION_ENDED = 4401
CLOSE_DISCONNECTED_BY_MODERATOR = 4403
CLOSE_HEARTBEAT_TIMEOUT = 4408
CLOSE_TOO_MANY_CONNECTIONS = 4409
CLOSE_FRAME_TOO_LARGE = 4413
CLOSE_FLOODING = 4429
CLOSE_TRY_AGAIN_LATER = 4503
CLOSE_TOO_SLOW = 4509
CLOSE_DRAINING = 4512

# Error codes: stable strings, documented in docs/protocol.md.
INVALID_JSON = "invalid_json"
INVALID_FRAME = "invalid_frame"
UNKNOWN_TYPE = "unknown_type"
BINARY_NOT_SUPPORTED = "binary_not_supported"
FRAME_TOO_LARGE = "frame_too_large"
MISSING_FIELD = "missing_field"
INVALID_FIELD = "invalid_field"
INVALID_ROOM = "invalid_room"
BODY_EMPTY = "body_empty"
BODY_TOO_LONG = "body_too_long"
INVALID_BODY = "invalid_body"
ALREADY_SUBSCRIBED = "already_subscribed"
NOT_SUBSCRIBED = "not_subscribed"
TOO_MANY_SUBSCRIPTIONS = "too_many_subscriptions"
CLIENT_ID_CONFLICT = "client_id_conflict"
SERVER_ERROR = "server_error"
ROOM_IS_CLOSED = "room_closed"
RATE_LIMITED = "rate_limited"
FORBIDDEN = "forbidden"
# ``subscribe`` to a room that does not exist, from a visitor RIPPLE_ROOM_CREATION does not let create it.
ROOM_NOT_FOUND = "room_not_found"
# ``message`` refused by a RIPPLE_MESSAGE_VALIDATORS hook (chat.services.MessageRejected); not stored.
MESSAGE_REJECTED = "message_rejected"
# ``unsubscribed.reason`` when the server ends a subscription: membership of a private room lost.
REASON_ACCESS_REVOKED = "access_revoked"
# ``unsubscribed.reason``: a moderator deleted the room and its messages.
REASON_ROOM_DELETED = "room_deleted"
ERROR_CODES = frozenset(
    {
        INVALID_JSON,
        INVALID_FRAME,
        UNKNOWN_TYPE,
        BINARY_NOT_SUPPORTED,
        FRAME_TOO_LARGE,
        MISSING_FIELD,
        INVALID_FIELD,
        INVALID_ROOM,
        BODY_EMPTY,
        BODY_TOO_LONG,
        INVALID_BODY,
        ALREADY_SUBSCRIBED,
        NOT_SUBSCRIBED,
        TOO_MANY_SUBSCRIPTIONS,
        CLIENT_ID_CONFLICT,
        SERVER_ERROR,
        ROOM_IS_CLOSED,
        RATE_LIMITED,
        FORBIDDEN,
        ROOM_NOT_FOUND,
        MESSAGE_REJECTED,
    }
)
