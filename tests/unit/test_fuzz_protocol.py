"""Property-based fuzzing of the wire protocol: client frame parsing and the server builders.

Every test is derandomized (the same examples on every run, so CI is reproducible) and keeps
no example database: a failure prints its input, and the @example lines pin the ones found.
"""

import json
import math
import re
from datetime import UTC, datetime, timedelta, timezone

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from chat import protocol
from chat.protocol import ProtocolError, parse_client_frame

FUZZ = settings(
    max_examples=300,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.large_base_example],
)
BUILDERS = settings(FUZZ, max_examples=100)

DEFAULT_FRAME_CHARS = 16384
DEFAULT_BODY_CHARS = 4000
FIELD_NAMES = ["type", "room", "body", "client_id", "since", "ref", "t"]
ERROR_EXTRA_KEYS = {"ref", "room", "client_id", "field"}
SENT_AT_RE = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")


# Strategies. Text includes lone surrogates (which JSON can carry as \udxxx escapes) and
# control characters, which hypothesis leaves out by default.

lone_surrogates = st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF)
any_char = st.one_of(st.characters(), lone_surrogates, st.sampled_from('\x00 \t\n\r"\\{}[]:,-_.aZ09é€😀'))
odd_text = st.one_of(
    st.text(any_char, max_size=80),
    st.text(st.sampled_from(" \t\n\r\u00a0\u2028\u3000"), max_size=10),  # white space only
    st.integers(0, 70).map(lambda n: "x" * n),  # around the 64-character limits
    st.integers(DEFAULT_BODY_CHARS - 2, DEFAULT_BODY_CHARS + 2).map(lambda n: "b" * n),
    st.sampled_from(["\ud800", "a\udfff", "\x00", "a\x00b", "\ufeff", "NaN", "Infinity"]),
)
numbers = st.one_of(
    st.integers(),
    st.integers(-(2**53) - 2, -(2**53) + 2),
    st.integers(2**53 - 2, 2**53 + 2),
    st.integers(min_value=10**300).map(lambda n: n * 10**100),  # far past float range
    st.floats(),
    # json.dumps writes these as NaN, Infinity and -Infinity, which json.loads reads back.
    st.sampled_from([math.nan, math.inf, -math.inf, 1e308, -0.0, 5e-324]),
)
scalars = st.one_of(st.none(), st.booleans(), numbers, odd_text)
json_values = st.recursive(
    scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=4), st.dictionaries(st.sampled_from(FIELD_NAMES) | odd_text, children)
    ),
    max_leaves=12,
)

slugs = st.from_regex(protocol.ROOM_SLUG_RE, fullmatch=True)
client_ids = st.from_regex(protocol.CLIENT_ID_RE, fullmatch=True)
field_values = {
    "type": st.sampled_from(sorted(protocol.CLIENT_TYPES))
    | st.sampled_from(["PING", "Ping ", "welcome", "ack"]),
    "room": slugs | st.sampled_from(["A", "-a", "_a", "a b", "x" * 65, "é", "a\n"]),
    "client_id": client_ids | st.sampled_from(["", "a b", "c" * 65, "é", "a/b", "a\n"]),
    "body": odd_text | st.text(max_size=20),
    "since": st.integers(-3, 3) | st.integers(2**53 - 1, 2**53),
    "ref": st.integers(-3, 3) | st.integers(2**53 - 2, 2**53 + 2) | odd_text,
    "t": numbers | odd_text,
}
# Frames whose reply echoes what the client sent: t in a pong, ref in any reply.
echoing_frames = st.fixed_dictionaries(
    {"type": st.sampled_from([protocol.PING, protocol.PONG, "dance"]) | json_values},
    optional={"t": field_values["t"], "ref": field_values["ref"]},
)


@st.composite
def frame_objects(draw) -> dict:
    """A JSON object mixing real field names, mostly plausible values, and arbitrary JSON."""
    frame = {}
    for name in draw(st.lists(st.sampled_from(FIELD_NAMES), unique=True)):
        plausible = field_values[name]
        frame[name] = draw(plausible | json_values if draw(st.booleans()) else plausible)
    frame.update(draw(st.dictionaries(odd_text, json_values, max_size=2)))
    return frame


def encoded(objects):
    """``objects`` as JSON text, escaped to ASCII or not, compact or not."""
    return st.builds(
        lambda obj, ascii_only, compact: json.dumps(
            obj, ensure_ascii=ascii_only, separators=(",", ":") if compact else None
        ),
        objects,
        st.booleans(),
        st.booleans(),
    )


def nested(depth: int, kind: str) -> str:
    if kind == "list":
        return "[" * depth + "]" * depth
    return '{"a":' * depth + "1" + "}" * depth


deep_nesting = st.one_of(
    st.builds(nested, st.integers(1, 3000), st.sampled_from(["list", "dict"])),
    st.builds(
        lambda depth, kind: '{"type":"ping","x":' + nested(depth, kind) + "}",
        st.integers(1, 3000),
        st.sampled_from(["list", "dict"]),
    ),
)


@st.composite
def mangled_json(draw) -> str:
    """A valid frame with a slice cut out or some text spliced in."""
    text = draw(encoded(frame_objects()))
    start = draw(st.integers(0, len(text)))
    end = draw(st.integers(start, len(text)))
    return text[:start] + draw(st.text(any_char, max_size=5)) + text[end:]


frame_texts = st.one_of(
    encoded(frame_objects()),
    encoded(echoing_frames),
    encoded(json_values),
    mangled_json(),
    st.text(any_char, max_size=200),
    deep_nesting,
    st.builds(lambda n: '{"type":"ping","t":"' + "y" * n + '"}', st.integers(16300, 16400)),  # frame limit
    st.sampled_from(["", " ", "null", "1e999", "-Infinity", "NaN", '"ping"', "[]", "{}", '{"type":null}']),
)
frame_limits = st.one_of(st.just(DEFAULT_FRAME_CHARS), st.integers(1, 20000))
body_limits = st.one_of(st.just(DEFAULT_BODY_CHARS), st.integers(1, 5000))


# Helpers.


def strict_json(text: str):
    """Decode ``text`` as RFC 8259 JSON: no NaN or Infinity tokens, and sendable as UTF-8."""
    text.encode("utf-8")  # a lone surrogate cannot go out in a WebSocket text frame

    def refuse(token):
        raise ValueError(f"{token} is not JSON")

    return json.loads(text, parse_constant=refuse)


def parse_outcome(text: str, max_frame_chars: int, max_body_chars: int):
    """The Frame, or the ProtocolError; any other exception propagates and fails the test."""
    try:
        return parse_client_frame(text, max_frame_chars=max_frame_chars, max_body_chars=max_body_chars)
    except ProtocolError as error:
        return error


def valid_ref(ref) -> bool:
    if ref is None:
        return True
    if isinstance(ref, str):
        return len(ref) <= protocol.MAX_REF_CHARS
    return isinstance(ref, int) and not isinstance(ref, bool) and abs(ref) < 2**53


def assert_frame_is_valid(frame: protocol.Frame, text: str, max_frame_chars: int, max_body_chars: int):
    assert isinstance(frame, protocol.Frame)
    assert len(text) <= max_frame_chars
    assert frame.type in protocol.CLIENT_TYPES
    assert valid_ref(frame.ref)
    data = json.loads(text)
    assert isinstance(data, dict)
    # The parser validates; it never rewrites what the client sent.
    assert frame.type == data["type"]
    assert frame.ref == data.get("ref")
    if frame.type in (protocol.PING, protocol.PONG):
        assert (frame.room, frame.since, frame.body, frame.client_id) == (None, None, None, None)
        assert frame.t == data.get("t")
        t = frame.t
        assert t is None or (isinstance(t, (str, int, float)) and not isinstance(t, bool))
        assert not isinstance(t, str) or len(t) <= protocol.MAX_T_CHARS
        assert not isinstance(t, float) or not math.isnan(t)
        return
    assert frame.t is None
    assert isinstance(frame.room, str) and protocol.ROOM_SLUG_RE.fullmatch(frame.room)
    assert frame.room == data["room"]
    if frame.type == protocol.SUBSCRIBE:
        assert (frame.body, frame.client_id) == (None, None)
        assert frame.since == data.get("since")
        since = frame.since
        assert since is None or (type(since) is int and 0 <= since < 2**53)
    elif frame.type in (protocol.UNSUBSCRIBE, protocol.TYPING):
        assert (frame.since, frame.body, frame.client_id) == (None, None, None)
    else:
        assert frame.type == protocol.MESSAGE
        assert frame.since is None
        assert isinstance(frame.client_id, str) and protocol.CLIENT_ID_RE.fullmatch(frame.client_id)
        assert frame.client_id == data["client_id"]
        body = frame.body
        assert isinstance(body, str) and body == data["body"]
        assert body.strip() and len(body) <= max_body_chars and "\x00" not in body
        body.encode("utf-8")  # storable in every database: no lone surrogates


def assert_error_is_valid(error: ProtocolError, text: str, max_frame_chars: int):
    assert error.code in protocol.ERROR_CODES
    assert isinstance(error.message, str) and error.message
    assert set(error.extra) <= ERROR_EXTRA_KEYS
    assert valid_ref(error.extra.get("ref"))
    if len(text) > max_frame_chars:
        assert error.code == protocol.FRAME_TOO_LARGE
    if "room" in error.extra:
        assert protocol.ROOM_SLUG_RE.fullmatch(error.extra["room"])
    if "client_id" in error.extra:
        assert protocol.CLIENT_ID_RE.fullmatch(error.extra["client_id"])


# Parsing.


@FUZZ
@given(text=frame_texts, max_frame_chars=frame_limits, max_body_chars=body_limits)
# Found by this test: json.loads raised RecursionError past the parser (fixed in cd45805).
@example(text=nested(2000, "list"), max_frame_chars=DEFAULT_FRAME_CHARS, max_body_chars=DEFAULT_BODY_CHARS)
def test_parse_returns_a_valid_frame_or_raises_protocol_error(text, max_frame_chars, max_body_chars):
    outcome = parse_outcome(text, max_frame_chars, max_body_chars)
    if isinstance(outcome, ProtocolError):
        assert_error_is_valid(outcome, text, max_frame_chars)
    else:
        assert_frame_is_valid(outcome, text, max_frame_chars, max_body_chars)


@FUZZ
@given(frame=frame_objects(), ascii_only=st.booleans())
def test_a_frame_object_is_accepted_or_refused_with_a_documented_code(frame, ascii_only):
    text = json.dumps(frame, ensure_ascii=ascii_only)
    outcome = parse_outcome(text, DEFAULT_FRAME_CHARS, DEFAULT_BODY_CHARS)
    if isinstance(outcome, ProtocolError):
        assert_error_is_valid(outcome, text, DEFAULT_FRAME_CHARS)
        # ref is echoed whenever the frame is an object with a valid ref.
        if outcome.extra.get("field") != "ref" and len(text) <= DEFAULT_FRAME_CHARS:
            assert valid_ref(frame.get("ref"))
            assert outcome.extra.get("ref") == frame.get("ref")
    else:
        assert_frame_is_valid(outcome, text, DEFAULT_FRAME_CHARS, DEFAULT_BODY_CHARS)


@FUZZ
@given(
    frame=st.fixed_dictionaries(
        {"type": st.just("message"), "room": slugs, "client_id": client_ids, "body": st.text(min_size=1)}
    ),
    max_body_chars=st.integers(1, 50),
)
def test_a_well_formed_message_is_refused_only_for_its_body(frame, max_body_chars):
    text = json.dumps(frame)
    outcome = parse_outcome(text, DEFAULT_FRAME_CHARS, max_body_chars)
    body = frame["body"]
    if not body.strip():
        expected = protocol.BODY_EMPTY
    elif len(body) > max_body_chars:
        expected = protocol.BODY_TOO_LONG
    elif "\x00" in body:
        expected = protocol.INVALID_BODY
    else:
        expected = None
    if expected is None:
        assert isinstance(outcome, protocol.Frame)
        assert (outcome.room, outcome.client_id, outcome.body) == (frame["room"], frame["client_id"], body)
    else:
        assert isinstance(outcome, ProtocolError)
        assert (outcome.code, outcome.extra["room"], outcome.extra["client_id"]) == (
            expected,
            frame["room"],
            frame["client_id"],
        )


# What the consumer sends back for any frame: a pong for a ping, an error for a refused frame.
# Both must be RFC 8259 JSON that fits in a UTF-8 text frame, or no client can read them.


def direct_reply(outcome) -> str | None:
    if isinstance(outcome, ProtocolError):
        return protocol.error(outcome.code, outcome.message, **outcome.extra)
    if outcome.type == protocol.PING:
        return protocol.pong(outcome.t, outcome.ref)
    return None


@FUZZ
@given(text=st.one_of(encoded(echoing_frames), frame_texts))
# Found by this test: an infinite t is echoed as Infinity, and a lone surrogate in t or ref
# cannot be encoded as UTF-8 (on a live daphne the socket then closes with 1011).
@example(text='{"type":"ping","t":Infinity}')
@example(text='{"type":"ping","t":1e999}')
@example(text='{"type":"ping","t":"\\ud800"}')
@example(text='{"type":"ping","ref":"\\udfff"}')
@example(text='{"type":"dance","ref":"\\ud83d"}')
def test_the_reply_to_any_frame_is_strict_json_that_echoes_ref_and_t(text):
    outcome = parse_outcome(text, DEFAULT_FRAME_CHARS, DEFAULT_BODY_CHARS)
    reply = direct_reply(outcome)
    if reply is None:
        return
    decoded = strict_json(reply)
    if isinstance(outcome, ProtocolError):
        assert decoded["type"] == protocol.ERROR
        assert decoded["code"] == outcome.code
        assert decoded["ref"] == outcome.extra.get("ref")
    else:
        assert decoded == {"type": protocol.PONG, "t": outcome.t, "ref": outcome.ref}


# Builders, fed the values the server really passes them.

members = st.lists(
    st.fixed_dictionaries({"id": st.text(max_size=40), "name": st.text(max_size=40)}), max_size=5
)
refs = st.none() | st.integers(-(2**53) + 1, 2**53 - 1) | st.text(max_size=protocol.MAX_REF_CHARS)
moments = st.datetimes(
    min_value=datetime(1970, 1, 2),
    max_value=datetime(2200, 1, 1),
    timezones=st.sampled_from([UTC, timezone(timedelta(hours=5, minutes=30)), timezone(timedelta(hours=-8))]),
)
seqs = st.integers(1, 2**53 - 1)


def assert_sent_at(text: str, moment: datetime):
    assert SENT_AT_RE.fullmatch(text)
    parsed = datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)
    assert parsed == moment.replace(microsecond=moment.microsecond // 1000 * 1000)


@BUILDERS
@given(
    room=slugs,
    seq=seqs,
    author=st.text(max_size=150),
    body=st.text(min_size=1),
    sent_at=moments,
    client_id=client_ids,
    system=st.booleans(),
    deleted=st.booleans(),
)
def test_message_payload_is_json_with_the_message(
    room, seq, author, body, sent_at, client_id, system, deleted
):
    payload = protocol.message_payload(
        room=room,
        seq=seq,
        author=author,
        body=body,
        sent_at=sent_at,
        client_id=client_id,
        system=system,
        deleted=deleted,
    )
    frame = strict_json(protocol.dumps(payload))
    assert frame["type"] == protocol.MESSAGE
    assert (frame["room"], frame["seq"], frame["client_id"]) == (room, seq, client_id)
    assert (frame["author"], frame["body"]) == (("", "") if deleted else (author, body))
    assert frame.get("system", False) is system
    assert frame.get("deleted", False) is deleted
    assert_sent_at(frame["sent_at"], sent_at)


@BUILDERS
@given(room=slugs, client_id=client_ids, seq=seqs, sent_at=moments, duplicate=st.booleans(), ref=refs)
def test_ack_is_json_with_the_stored_position(room, client_id, seq, sent_at, duplicate, ref):
    frame = strict_json(
        protocol.ack(room=room, client_id=client_id, seq=seq, sent_at=sent_at, duplicate=duplicate, ref=ref)
    )
    assert {key: frame[key] for key in ("type", "room", "client_id", "seq", "duplicate", "ref")} == {
        "type": protocol.ACK,
        "room": room,
        "client_id": client_id,
        "seq": seq,
        "duplicate": duplicate,
        "ref": ref,
    }
    assert_sent_at(frame["sent_at"], sent_at)


@BUILDERS
@given(
    room=slugs,
    messages=st.lists(st.builds(dict, seq=seqs, body=st.text(max_size=20)), max_size=3),
    last_seq=st.integers(0, 2**53 - 1),
    complete=st.booleans(),
    members=members,
    ref=refs,
)
def test_subscribed_is_json_with_history_and_members(room, messages, last_seq, complete, members, ref):
    frame = strict_json(
        protocol.subscribed(
            room=room, messages=messages, last_seq=last_seq, complete=complete, members=members, ref=ref
        )
    )
    assert frame == {
        "type": protocol.SUBSCRIBED,
        "room": room,
        "messages": messages,
        "last_seq": last_seq,
        "complete": complete,
        "members": members,
        "ref": ref,
    }


@BUILDERS
@given(
    room=slugs,
    ref=refs,
    joins=members,
    leaves=members,
    seq_list=st.lists(seqs, max_size=5),
    reason=st.text(max_size=100),
    t_ms=st.integers(0, 2**53 - 1),
)
def test_room_event_frames_are_json_of_their_type(room, ref, joins, leaves, seq_list, reason, t_ms):
    built = {
        protocol.UNSUBSCRIBED: protocol.unsubscribed(room=room, ref=ref),
        protocol.PRESENCE: protocol.presence(room=room, joins=joins, leaves=leaves),
        protocol.DELETED: protocol.deleted(room=room, seqs=seq_list),
        protocol.ROOM_CLOSED: protocol.room_closed(room=room, reason=reason),
        protocol.ROOM_REOPENED: protocol.room_reopened(room=room),
        protocol.TYPING: protocol.typing(room=room, name=reason, kind=protocol.AUTHOR_GUEST),
        protocol.PING: protocol.ping(t_ms),
    }
    for frame_type, text in built.items():
        frame = strict_json(text)
        assert frame["type"] == frame_type
        assert frame.get("room", room) == room
    assert strict_json(built[protocol.PRESENCE])["joins"] == joins
    assert strict_json(built[protocol.DELETED])["seqs"] == seq_list
    assert strict_json(built[protocol.PING])["t"] == t_ms


@BUILDERS
@given(
    code=st.sampled_from(sorted(protocol.ERROR_CODES)),
    message=st.text(max_size=100),
    ref=refs,
    room=st.none() | slugs,
    client_id=st.none() | client_ids,
    field=st.none() | st.sampled_from(FIELD_NAMES),
)
def test_error_is_json_with_its_code_and_only_the_fields_given(code, message, ref, room, client_id, field):
    frame = strict_json(protocol.error(code, message, ref, room=room, client_id=client_id, field=field))
    expected = {"type": protocol.ERROR, "code": code, "message": message, "ref": ref}
    expected.update(
        (key, value) for key, value in [("room", room), ("client_id", client_id), ("field", field)] if value
    )
    assert frame == expected


@BUILDERS
@given(
    connection_id=st.uuids().map(lambda u: u.hex),
    user_name=st.text(min_size=1, max_size=150),
    authenticated=st.booleans(),
    intervals=st.tuples(st.integers(1, 10**7), st.integers(1, 10**7)),
    server_time_ms=st.integers(0, 2**53 - 1),
    limits=st.dictionaries(
        st.sampled_from(["max_body_chars", "max_frame_chars", "max_subscriptions"]), st.integers(1, 10**6)
    ),
)
def test_welcome_is_json_with_the_protocol_version(
    connection_id, user_name, authenticated, intervals, server_time_ms, limits
):
    frame = strict_json(
        protocol.welcome(
            connection_id=connection_id,
            user_name=user_name,
            authenticated=authenticated,
            heartbeat_interval_ms=intervals[0],
            heartbeat_timeout_ms=intervals[1],
            server_time_ms=server_time_ms,
            limits=limits,
        )
    )
    assert frame["type"] == protocol.WELCOME
    assert frame["protocol"] == protocol.PROTOCOL_VERSION
    assert frame["user"] == {"name": user_name, "authenticated": authenticated}
    assert (frame["heartbeat_interval_ms"], frame["heartbeat_timeout_ms"]) == intervals
    assert (frame["connection_id"], frame["server_time"], frame["limits"]) == (
        connection_id,
        server_time_ms,
        limits,
    )
