"""Client frames in: ``parse_client_frame`` turns one text frame into a ``Frame`` or raises
``ProtocolError``; ``check_body`` is the body rule every way of posting shares.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from typing import Any

from .codes import (
    BODY_EMPTY,
    BODY_TOO_LONG,
    CLIENT_TYPES,
    FRAME_TOO_LARGE,
    INVALID_BODY,
    INVALID_FIELD,
    INVALID_FRAME,
    INVALID_JSON,
    INVALID_ROOM,
    MISSING_FIELD,
    PING,
    PONG,
    SUBSCRIBE,
    TYPING,
    UNKNOWN_TYPE,
    UNSUBSCRIBE,
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
    if frame_type in (UNSUBSCRIBE, TYPING):
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
