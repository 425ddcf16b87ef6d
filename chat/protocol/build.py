"""Server frames out: ``dumps``, the one encoder, and a builder for every server frame.

Builders return encoded text, except ``message_payload``, a dict because it is also an element
of ``subscribed.messages``.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from .codes import (
    ACK,
    AUTHOR_GUEST,
    AUTHOR_SYSTEM,
    DELETED,
    ERROR,
    MESSAGE,
    PING,
    PONG,
    PRESENCE,
    PROTOCOL_VERSION,
    ROOM_CLOSED,
    ROOM_REOPENED,
    SUBSCRIBED,
    TYPING,
    UNSUBSCRIBED,
    WELCOME,
)

# ``dumps`` is the one encoder, so every frame is encoded alike: compact separators, and
# non-ASCII text as UTF-8 characters rather than ``\u`` escapes (``ensure_ascii=False``).


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
    messages: list[dict[str, Any]] | None = None,
    last_seq: int,
    complete: bool,
    members: list[dict[str, str]],
    ref: str | int | None,
    message_texts: list[str] | None = None,
) -> str:
    """The ``subscribed`` frame, its history given as ``messages`` (dicts) or as
    ``message_texts``: ``message`` frames already encoded (the hub's ring), spliced in as they
    are. Either way the text is the same, byte for byte."""
    head = {"type": SUBSCRIBED, "room": room}
    tail = {"last_seq": last_seq, "complete": complete, "members": members, "ref": ref}
    if message_texts is None:
        return dumps({**head, "messages": messages or [], **tail})
    return f'{dumps(head)[:-1]},"messages":[{",".join(message_texts)}],{dumps(tail)[1:]}'


def deleted(*, room: str, seqs: list[int]) -> str:
    return dumps({"type": DELETED, "room": room, "seqs": seqs})


def room_closed(*, room: str, reason: str) -> str:
    return dumps({"type": ROOM_CLOSED, "room": room, "reason": reason})


def room_reopened(*, room: str) -> str:
    """A room this socket was in when it closed is open again: subscribe to it again."""
    return dumps({"type": ROOM_REOPENED, "room": room})


def typing(*, room: str, name: str, kind: str) -> str:
    """``name`` (``kind``: user | guest) is typing in ``room``; sent to the others, never stored."""
    return dumps({"type": TYPING, "room": room, "name": name, "kind": kind})


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
