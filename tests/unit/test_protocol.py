import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from chat import protocol
from chat.protocol import ProtocolError, parse_client_frame


def parse(frame) -> protocol.Frame:
    text = frame if isinstance(frame, str) else json.dumps(frame)
    return parse_client_frame(text, max_frame_chars=1000, max_body_chars=20)


def error_of(frame) -> ProtocolError:
    with pytest.raises(ProtocolError) as caught:
        parse(frame)
    return caught.value


def test_ping_keeps_t_and_ref():
    frame = parse({"type": "ping", "t": 12.5, "ref": "r1"})
    assert (frame.type, frame.t, frame.ref) == ("ping", 12.5, "r1")


def test_subscribe_with_since():
    frame = parse({"type": "subscribe", "room": "general", "since": 7})
    assert (frame.room, frame.since) == ("general", 7)


def test_message_frame_fields():
    frame = parse({"type": "message", "room": "a-b_c", "body": "hi", "client_id": "c:1.x-y", "extra": 1})
    assert (frame.room, frame.body, frame.client_id) == ("a-b_c", "hi", "c:1.x-y")


@pytest.mark.parametrize(
    ("frame", "code", "field"),
    [
        ("{nope", "invalid_json", None),
        ("[1, 2]", "invalid_frame", None),
        ({"kind": "ping"}, "invalid_frame", None),
        ({"type": 5}, "invalid_frame", None),
        ({"type": "dance"}, "unknown_type", None),
        ({"type": "subscribe"}, "missing_field", "room"),
        ({"type": "subscribe", "room": "Bad Room"}, "invalid_room", "room"),
        ({"type": "subscribe", "room": "-leading"}, "invalid_room", "room"),
        ({"type": "subscribe", "room": "x" * 65}, "invalid_room", "room"),
        ({"type": "subscribe", "room": 3}, "invalid_room", "room"),
        ({"type": "subscribe", "room": "ok", "since": -1}, "invalid_field", "since"),
        ({"type": "subscribe", "room": "ok", "since": "3"}, "invalid_field", "since"),
        ({"type": "subscribe", "room": "ok", "since": True}, "invalid_field", "since"),
        ({"type": "ping", "t": {"a": 1}}, "invalid_field", "t"),
        ({"type": "ping", "t": "x" * 65}, "invalid_field", "t"),
        ({"type": "ping", "ref": [1]}, "invalid_field", "ref"),
        ({"type": "message", "room": "ok", "body": "hi"}, "missing_field", "client_id"),
        (
            {"type": "message", "room": "ok", "body": "hi", "client_id": "has space"},
            "invalid_field",
            "client_id",
        ),
        ({"type": "message", "room": "ok", "body": "hi", "client_id": ""}, "invalid_field", "client_id"),
        ({"type": "message", "room": "ok", "client_id": "c1"}, "missing_field", "body"),
        ({"type": "message", "room": "ok", "body": 5, "client_id": "c1"}, "invalid_field", "body"),
        ({"type": "message", "room": "ok", "body": "  \n ", "client_id": "c1"}, "body_empty", None),
        ({"type": "message", "room": "ok", "body": "x" * 21, "client_id": "c1"}, "body_too_long", None),
        ({"type": "message", "room": "ok", "body": "a\x00b", "client_id": "c1"}, "invalid_body", None),
        ('{"type":"message","room":"ok","body":"\\ud800","client_id":"c1"}', "invalid_body", None),
    ],
)
def test_bad_frames_get_stable_codes(frame, code, field):
    error = error_of(frame)
    assert error.code == code
    assert error.extra.get("field") == field


def test_oversized_frame_is_refused_before_parsing():
    assert error_of("x" * 1001).code == "frame_too_large"


def test_errors_carry_ref_room_and_client_id():
    error = error_of({"type": "message", "room": "ok", "body": "", "client_id": "c9", "ref": 4})
    assert error.extra == {"ref": 4, "room": "ok", "client_id": "c9"}


def test_sent_at_is_utc_with_milliseconds():
    moment = datetime(2026, 11, 22, 4, 13, 53, 123456, tzinfo=UTC)
    assert protocol.iso_ms(moment) == "2026-11-22T04:13:53.123Z"


def test_error_builder_drops_empty_extras():
    frame = json.loads(protocol.error("not_subscribed", "nope", ref=None, room="a", client_id=None))
    assert frame == {"type": "error", "code": "not_subscribed", "message": "nope", "ref": None, "room": "a"}


def test_documented_error_codes_match_the_module():
    """docs/protocol.md lists every error code the module defines, and no other."""
    doc = (Path(__file__).resolve().parents[2] / "docs" / "protocol.md").read_text()
    section = doc.split("## Errors", 1)[1].split("## Close codes", 1)[0]
    documented = {line.split("`")[1] for line in section.splitlines() if line.startswith("| `")}
    assert documented == protocol.ERROR_CODES
