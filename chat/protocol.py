"""The Ripple wire protocol: every frame in both directions, error codes and close codes.

Text frames, one JSON object each, with a string ``type``. ``docs/protocol.md`` is the
user-facing version of this table; ``static/js/ripple-socket.js`` names the same types.

Client -> server
    ping         t?                          -> pong {t}
    pong         t?                          (answer to a server ping)
    subscribe    room, since?                -> subscribed {room, messages, last_seq, complete}
    unsubscribe  room                        -> unsubscribed {room}
    message      room, body, client_id       -> ack {room, client_id, seq, sent_at, duplicate}
                                             (or error message_rejected: a validator refused it)
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

Close codes
    1000  normal close
    1011  internal error (sent by daphne when the application fails)
    4401  session ended (logout, expiry): do not reconnect
    4403  disconnected by a moderator: do not reconnect
    4408  heartbeat timeout: nothing heard for interval + timeout
    4409  too many sockets for this user or address: do not reconnect
    4413  frame too large for an endpoint with no error frames (echo, dashboard): do not resend it
    4429  flooding after rate_limited errors: do not reconnect
    4503  try again later: the channel layer (Redis) is away
    4509  too slow: the client stopped reading past the outbound limit
    4512  draining: reconnect at once, after a random delay

The same frames also travel over the HTTP fallback (chat/sse.py).
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

PROTOCOL_VERSION = 1

# Client frame types.
PING = "ping"
PONG = "pong"
SUBSCRIBE = "subscribe"
UNSUBSCRIBE = "unsubscribe"
MESSAGE = "message"
CLIENT_TYPES = frozenset({PING, PONG, SUBSCRIBE, UNSUBSCRIBE, MESSAGE})

# Server-only frame types.
WELCOME = "welcome"
SUBSCRIBED = "subscribed"
UNSUBSCRIBED = "unsubscribed"
ACK = "ack"
ERROR = "error"
PRESENCE = "presence"
DELETED = "deleted"
ROOM_CLOSED = "room_closed"

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

ROOM_SLUG_RE = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")
CLIENT_ID_RE = re.compile(r"[A-Za-z0-9_.:-]{1,64}")
MAX_REF_CHARS = 64
MAX_T_CHARS = 64


class ProtocolError(Exception):
    """A client frame that cannot be handled; becomes an ``error`` frame."""

    def __init__(self, code: str, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.extra = extra


@dataclass(frozen=True, slots=True)
class Frame:
    """One parsed client frame. Fields a type does not use stay ``None``."""

    type: str
    ref: str | int | None = None
    t: str | int | float | None = None
    room: str | None = None
    since: int | None = None
    body: str | None = None
    client_id: str | None = None


def parse_client_frame(text: str, *, max_frame_chars: int, max_body_chars: int) -> Frame:
    """Parse and validate one client text frame, or raise ``ProtocolError``."""
    if len(text) > max_frame_chars:
        raise ProtocolError(FRAME_TOO_LARGE, f"frames are limited to {max_frame_chars} characters")
    try:
        data = json.loads(text)
    except (ValueError, RecursionError):  # RecursionError: "[[[[..." nested thousands deep
        raise ProtocolError(INVALID_JSON, "the frame is not valid JSON") from None
    if not isinstance(data, dict):
        raise ProtocolError(INVALID_FRAME, "a frame must be a JSON object")
    ref = _ref(data)
    frame_type = data.get("type")
    if not isinstance(frame_type, str):
        raise ProtocolError(INVALID_FRAME, "a frame needs a string 'type'", ref=ref)
    if frame_type not in CLIENT_TYPES:
        raise ProtocolError(UNKNOWN_TYPE, f"unknown frame type {frame_type[:40]!r}", ref=ref)
    if frame_type in (PING, PONG):
        return Frame(type=frame_type, ref=ref, t=_t(data, ref))
    room = _room(data, ref)
    if frame_type == SUBSCRIBE:
        return Frame(type=frame_type, ref=ref, room=room, since=_since(data, ref, room))
    if frame_type == UNSUBSCRIBE:
        return Frame(type=frame_type, ref=ref, room=room)
    client_id = _client_id(data, ref, room)
    body = _body(data, ref, room, client_id, max_body_chars)
    return Frame(type=frame_type, ref=ref, room=room, body=body, client_id=client_id)


def _ref(data: dict) -> str | int | None:
    ref = data.get("ref")
    if ref is None:
        return None
    if isinstance(ref, bool) or not isinstance(ref, (str, int)):
        raise ProtocolError(INVALID_FIELD, "'ref' must be a string or an integer", field="ref")
    if isinstance(ref, str) and len(ref) > MAX_REF_CHARS:
        raise ProtocolError(INVALID_FIELD, f"'ref' is limited to {MAX_REF_CHARS} characters", field="ref")
    if isinstance(ref, str) and not _encodable(ref):
        # A lone surrogate ("\ud800") parses, but no reply echoing it could be sent.
        raise ProtocolError(INVALID_FIELD, "'ref' must be valid Unicode text", field="ref")
    if isinstance(ref, int) and abs(ref) >= 2**53:
        raise ProtocolError(INVALID_FIELD, "'ref' is out of range", field="ref")
    return ref


def _t(data: dict, ref: str | int | None) -> str | int | float | None:
    t = data.get("t")
    if t is None:
        return None
    if isinstance(t, bool) or not isinstance(t, (str, int, float)):
        raise ProtocolError(INVALID_FIELD, "'t' must be a number or a string", ref=ref, field="t")
    if isinstance(t, str) and len(t) > MAX_T_CHARS:
        raise ProtocolError(INVALID_FIELD, f"'t' is limited to {MAX_T_CHARS} characters", ref=ref, field="t")
    if isinstance(t, float) and not math.isfinite(t):  # NaN and 1e999 cannot be echoed as JSON
        raise ProtocolError(INVALID_FIELD, "'t' must be a finite number", ref=ref, field="t")
    if isinstance(t, int) and abs(t) >= 2**53:
        raise ProtocolError(INVALID_FIELD, "'t' is out of range", ref=ref, field="t")
    if isinstance(t, str) and not _encodable(t):
        raise ProtocolError(INVALID_FIELD, "'t' must be valid Unicode text", ref=ref, field="t")
    return t


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _room(data: dict, ref: str | int | None) -> str:
    if "room" not in data:
        raise ProtocolError(MISSING_FIELD, "'room' is required", ref=ref, field="room")
    room = data["room"]
    if not isinstance(room, str) or not ROOM_SLUG_RE.fullmatch(room):
        raise ProtocolError(
            INVALID_ROOM,
            "'room' must be 1-64 of a-z, 0-9, '-' and '_', starting with a letter or digit",
            ref=ref,
            field="room",
        )
    return room


def _since(data: dict, ref: str | int | None, room: str) -> int | None:
    since = data.get("since")
    if since is None:
        return None
    if isinstance(since, bool) or not isinstance(since, int) or not 0 <= since < 2**53:
        raise ProtocolError(
            INVALID_FIELD, "'since' must be an integer >= 0", ref=ref, room=room, field="since"
        )
    return since


def _client_id(data: dict, ref: str | int | None, room: str) -> str:
    if "client_id" not in data:
        raise ProtocolError(MISSING_FIELD, "'client_id' is required", ref=ref, room=room, field="client_id")
    client_id = data["client_id"]
    if not isinstance(client_id, str) or not CLIENT_ID_RE.fullmatch(client_id):
        raise ProtocolError(
            INVALID_FIELD,
            "'client_id' must be 1-64 of A-Z, a-z, 0-9, '_', '-', '.' and ':'",
            ref=ref,
            room=room,
            field="client_id",
        )
    return client_id


def _body(data: dict, ref: str | int | None, room: str, client_id: str, max_body_chars: int) -> str:
    where = {"ref": ref, "room": room, "client_id": client_id}
    if "body" not in data:
        raise ProtocolError(MISSING_FIELD, "'body' is required", field="body", **where)
    body = data["body"]
    if not isinstance(body, str):
        raise ProtocolError(INVALID_FIELD, "'body' must be a string", field="body", **where)
    check_body(body, max_body_chars=max_body_chars, **where)
    return body


def check_body(body: str, *, max_body_chars: int, **where: Any) -> None:
    """Raise ``ProtocolError`` unless ``body`` can be posted; shared by every way of posting."""
    if not body.strip():
        raise ProtocolError(BODY_EMPTY, "the body is empty", **where)
    if len(body) > max_body_chars:
        raise ProtocolError(BODY_TOO_LONG, f"bodies are limited to {max_body_chars} characters", **where)
    if not body_is_storable(body):
        raise ProtocolError(INVALID_BODY, "the body holds NUL or text that is not valid Unicode", **where)


def body_is_storable(text: str) -> bool:
    """True when every database backend can store ``text`` (no NUL, no lone surrogates)."""
    if "\x00" in text:
        return False
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


# Builders. ``dumps`` is the one encoder, so every frame is compact and ASCII-safe alike.


def dumps(frame: dict[str, Any]) -> str:
    """Encode one server frame."""
    return json.dumps(frame, separators=(",", ":"), ensure_ascii=False)


def iso_ms(moment: datetime) -> str:
    """UTC timestamp with millisecond precision, as sent in ``sent_at``."""
    utc = moment.astimezone(UTC)
    # Field by field: strftime goes through the C library's locale and time zone code, which
    # showed up in profiles of the message path.
    return (
        f"{utc.year:04d}-{utc.month:02d}-{utc.day:02d}T"
        f"{utc.hour:02d}:{utc.minute:02d}:{utc.second:02d}.{utc.microsecond // 1000:03d}Z"
    )


def message_payload(
    *,
    room: str,
    seq: int,
    author: str,
    body: str,
    sent_at: datetime,
    client_id: str,
    system: bool = False,
    deleted: bool = False,
    author_kind: str = AUTHOR_GUEST,
) -> dict[str, Any]:
    """The ``message`` frame as a dict; also the element of ``subscribed.messages``.

    A deleted message keeps its place (``seq``) but loses its author and body. ``author_kind``
    defaults to guest, the kind that claims least; a system message is always system.
    """
    payload: dict[str, Any] = {
        "type": MESSAGE,
        "room": room,
        "seq": seq,
        "author": "" if deleted else author,
        "author_kind": AUTHOR_SYSTEM if system else author_kind,
        "body": "" if deleted else body,
        "sent_at": iso_ms(sent_at),
        "client_id": client_id,
    }
    if system:
        payload["system"] = True
    if deleted:
        payload["deleted"] = True
    return payload


def welcome(
    *,
    connection_id: str,
    user_name: str,
    authenticated: bool,
    heartbeat_interval_ms: int,
    heartbeat_timeout_ms: int,
    server_time_ms: int,
    limits: dict[str, int | float],
) -> str:
    return dumps(
        {
            "type": WELCOME,
            "protocol": PROTOCOL_VERSION,
            "connection_id": connection_id,
            "user": {"name": user_name, "authenticated": authenticated},
            "heartbeat_interval_ms": heartbeat_interval_ms,
            "heartbeat_timeout_ms": heartbeat_timeout_ms,
            "server_time": server_time_ms,
            "limits": limits,
        }
    )


def pong(t: Any, ref: str | int | None) -> str:
    return dumps({"type": PONG, "t": t, "ref": ref})


def ping(t_ms: int) -> str:
    return dumps({"type": PING, "t": t_ms})


def subscribed(
    *,
    room: str,
    messages: list[dict[str, Any]],
    last_seq: int,
    complete: bool,
    members: list[dict[str, str]],
    ref: str | int | None,
) -> str:
    return dumps(
        {
            "type": SUBSCRIBED,
            "room": room,
            "messages": messages,
            "last_seq": last_seq,
            "complete": complete,
            "members": members,
            "ref": ref,
        }
    )


def deleted(*, room: str, seqs: list[int]) -> str:
    return dumps({"type": DELETED, "room": room, "seqs": seqs})


def room_closed(*, room: str, reason: str) -> str:
    return dumps({"type": ROOM_CLOSED, "room": room, "reason": reason})


def presence(*, room: str, joins: list[dict[str, str]], leaves: list[dict[str, str]]) -> str:
    return dumps({"type": PRESENCE, "room": room, "joins": joins, "leaves": leaves})


def unsubscribed(*, room: str, ref: str | int | None, reason: str | None = None) -> str:
    """The answer to an ``unsubscribe`` (``ref``), or the server ending one (``reason``, no ref)."""
    if reason is not None:
        return dumps({"type": UNSUBSCRIBED, "room": room, "ref": None, "reason": reason})
    return dumps({"type": UNSUBSCRIBED, "room": room, "ref": ref})


def ack(
    *, room: str, client_id: str, seq: int, sent_at: datetime, duplicate: bool, ref: str | int | None
) -> str:
    return dumps(
        {
            "type": ACK,
            "room": room,
            "client_id": client_id,
            "seq": seq,
            "sent_at": iso_ms(sent_at),
            "duplicate": duplicate,
            "ref": ref,
        }
    )


def error(code: str, message: str, ref: str | int | None = None, **extra: Any) -> str:
    frame: dict[str, Any] = {"type": ERROR, "code": code, "message": message, "ref": ref}
    frame.update((key, value) for key, value in extra.items() if value is not None)
    return dumps(frame)
