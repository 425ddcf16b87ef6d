"""The Ripple wire protocol: every frame in both directions, error codes and close codes.

Text frames, one JSON object each, with a string ``type``. ``docs/protocol.md`` is the
user-facing version of this table; ``static/js/ripple/constants.js`` names the same types
(``tests/unit/test_protocol_sync.py`` checks that every copy agrees).

Client -> server
    ping         t?                          -> pong {t}
    pong         t?                          (answer to a server ping)
    subscribe    room, since?                -> subscribed {room, messages, last_seq, complete}
    unsubscribe  room                        -> unsubscribed {room}
    message      room, body, client_id       -> ack {room, client_id, seq, sent_at, duplicate}
                                             (or error message_rejected: a validator refused it)
    typing       room                        (at most one per ~3 s per socket; more are dropped;
                                             error not_subscribed outside the socket's rooms)
    (every client frame may carry ``ref``, copied into the direct reply)

Server -> client
    welcome      protocol, connection_id, user, heartbeat_interval_ms, heartbeat_timeout_ms,
                 server_time, limits
    pong         t, ref
    ping         t
    subscribed   room, messages, last_seq, complete, members, ref
    unsubscribed room, ref [, reason]        (reason: the server ended it: access_revoked, room_deleted)
    message      room, seq, author, author_kind, body, sent_at, client_id
                 (author_kind: user | guest | system)
    ack          room, client_id, seq, sent_at, duplicate, ref
    error        code, message, ref [, room, client_id, field, retry_after_ms]
    presence     room, joins, leaves        (members as {id, name, kind}; kind: user | guest)
    deleted      room, seqs                 (a moderator deleted these messages)
    room_closed  room, reason               (a moderator closed the room; no longer subscribed)
    room_reopened room                      (a room this socket was in, or was refused as closed,
                                             is open again: subscribe again, since the last seq)
    typing       room, name, kind           (someone else in the room is typing; never stored)

Close codes
    1000  normal close
    1011  internal error (sent by daphne when the application fails)
    4401  session ended (logout, expiry): do not reconnect
    4403  disconnected or removed by a moderator (refused again while the removal lasts):
          do not reconnect
    4408  heartbeat timeout: nothing heard for interval + timeout
    4409  too many sockets for this user or address: do not reconnect
    4413  frame too large for an endpoint with no error frames (echo, dashboard): do not resend it
    4429  flooding after rate_limited errors: do not reconnect
    4503  try again later: the channel layer (Redis) is away
    4509  too slow: the client stopped reading past the outbound limit
    4512  draining: reconnect at once, after a random delay

The same frames also travel over the HTTP fallback (chat/sse.py).
"""

# The package, one concept per module; every public name is re-exported here, so
# ``from chat import protocol; protocol.X`` and ``from chat.protocol import X`` keep working.
# - ``codes``: frame type names, error codes, close codes, reasons, author kinds.
# - ``parse``: client frames in: ``ProtocolError``, ``Frame``, ``parse_client_frame``,
#   ``check_body``.
# - ``build``: server frames out: ``dumps``, ``iso_ms`` and a builder for every server frame.

from .build import (
    ack,
    deleted,
    dumps,
    error,
    iso_ms,
    message_payload,
    ping,
    pong,
    presence,
    room_closed,
    room_reopened,
    subscribed,
    typing,
    unsubscribed,
    welcome,
)
from .codes import (
    ACK,
    ALREADY_SUBSCRIBED,
    AUTHOR_GUEST,
    AUTHOR_SYSTEM,
    AUTHOR_USER,
    BINARY_NOT_SUPPORTED,
    BODY_EMPTY,
    BODY_TOO_LONG,
    CLIENT_ID_CONFLICT,
    CLIENT_TYPES,
    CLOSE_DISCONNECTED_BY_MODERATOR,
    CLOSE_DRAINING,
    CLOSE_FLOODING,
    CLOSE_FRAME_TOO_LARGE,
    CLOSE_HEARTBEAT_TIMEOUT,
    CLOSE_NORMAL,
    CLOSE_SESSION_ENDED,
    CLOSE_TOO_MANY_CONNECTIONS,
    CLOSE_TOO_SLOW,
    CLOSE_TRY_AGAIN_LATER,
    DELETED,
    ERROR,
    ERROR_CODES,
    FORBIDDEN,
    FRAME_TOO_LARGE,
    INVALID_BODY,
    INVALID_FIELD,
    INVALID_FRAME,
    INVALID_JSON,
    INVALID_ROOM,
    MESSAGE,
    MESSAGE_REJECTED,
    MISSING_FIELD,
    NOT_SUBSCRIBED,
    PING,
    PONG,
    PRESENCE,
    PROTOCOL_VERSION,
    RATE_LIMITED,
    REASON_ACCESS_REVOKED,
    REASON_ROOM_DELETED,
    ROOM_CLOSED,
    ROOM_IS_CLOSED,
    ROOM_NOT_FOUND,
    ROOM_REOPENED,
    SERVER_ERROR,
    SUBSCRIBE,
    SUBSCRIBED,
    TOO_MANY_SUBSCRIPTIONS,
    TYPING,
    UNKNOWN_TYPE,
    UNSUBSCRIBE,
    UNSUBSCRIBED,
    WELCOME,
)
from .parse import (
    CLIENT_ID_RE,
    MAX_REF_CHARS,
    MAX_T_CHARS,
    ROOM_SLUG_RE,
    Frame,
    ProtocolError,
    body_is_storable,
    check_body,
    parse_client_frame,
)

__all__ = [
    "ACK",
    "ALREADY_SUBSCRIBED",
    "AUTHOR_GUEST",
    "AUTHOR_SYSTEM",
    "AUTHOR_USER",
    "BINARY_NOT_SUPPORTED",
    "BODY_EMPTY",
    "BODY_TOO_LONG",
    "CLIENT_ID_CONFLICT",
    "CLIENT_ID_RE",
    "CLIENT_TYPES",
    "CLOSE_DISCONNECTED_BY_MODERATOR",
    "CLOSE_DRAINING",
    "CLOSE_FLOODING",
    "CLOSE_FRAME_TOO_LARGE",
    "CLOSE_HEARTBEAT_TIMEOUT",
    "CLOSE_NORMAL",
    "CLOSE_SESSION_ENDED",
    "CLOSE_TOO_MANY_CONNECTIONS",
    "CLOSE_TOO_SLOW",
    "CLOSE_TRY_AGAIN_LATER",
    "DELETED",
    "ERROR",
    "ERROR_CODES",
    "FORBIDDEN",
    "FRAME_TOO_LARGE",
    "INVALID_BODY",
    "INVALID_FIELD",
    "INVALID_FRAME",
    "INVALID_JSON",
    "INVALID_ROOM",
    "MAX_REF_CHARS",
    "MAX_T_CHARS",
    "MESSAGE",
    "MESSAGE_REJECTED",
    "MISSING_FIELD",
    "NOT_SUBSCRIBED",
    "PING",
    "PONG",
    "PRESENCE",
    "PROTOCOL_VERSION",
    "RATE_LIMITED",
    "REASON_ACCESS_REVOKED",
    "REASON_ROOM_DELETED",
    "ROOM_CLOSED",
    "ROOM_IS_CLOSED",
    "ROOM_NOT_FOUND",
    "ROOM_REOPENED",
    "ROOM_SLUG_RE",
    "SERVER_ERROR",
    "SUBSCRIBE",
    "SUBSCRIBED",
    "TOO_MANY_SUBSCRIPTIONS",
    "TYPING",
    "UNKNOWN_TYPE",
    "UNSUBSCRIBE",
    "UNSUBSCRIBED",
    "WELCOME",
    "Frame",
    "ProtocolError",
    "ack",
    "body_is_storable",
    "check_body",
    "deleted",
    "dumps",
    "error",
    "iso_ms",
    "message_payload",
    "parse_client_frame",
    "ping",
    "pong",
    "presence",
    "room_closed",
    "room_reopened",
    "subscribed",
    "typing",
    "unsubscribed",
    "welcome",
]
