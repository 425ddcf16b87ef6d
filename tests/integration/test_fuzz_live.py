"""Property-based fuzzing of a live consumer: one real daphne, hypothesis-generated frames.

Every example opens a fresh socket and sends a sequence of frames: arbitrary text, arbitrary
bytes, and well-formed-ish JSON (subscribe, unsubscribe, message, ping, pong) with fuzzed
values, drawn from a small pool of rooms and client ids so that real stores, re-sends and
conflicts happen. After each frame the test sends a sentinel ``ping`` with a ref of its own
and reads up to its ``pong``: whatever came in between is the reply to that frame (plus
broadcasts), so every reply is matched to the frame that caused it.

Nothing is generated that daphne itself drops without a close frame (1006): no invalid UTF-8
(text frames are Python strings, so they cannot hold any) and nothing near 64 KiB (the
largest frame here is about 17,000 bytes, just over RIPPLE_MAX_FRAME_CHARS). A 1006 is
therefore a failure, as is a 1011 and any close code the protocol does not document.
"""

from __future__ import annotations

import json
import math
import uuid
from dataclasses import dataclass, field

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from chat import protocol
from chat.models import Message
from tests.support.origins import same_origin

pytestmark = pytest.mark.django_db(transaction=True)

REPLY_TIMEOUT_S = 5.0
MAX_FRAME_CHARS = 16384  # RIPPLE_MAX_FRAME_CHARS, the default
MAX_BODY_CHARS = 4000  # RIPPLE_MAX_BODY_CHARS, the default
DAPHNE_DROP_BYTES = 65536  # project/serving.py: daphne drops bigger frames with 1006

# Limits raised so that fuzzing is never throttled: a rate_limited error is then a failure.
UNTHROTTLED = {
    "RIPPLE_RATE_FRAMES_PER_S": "100000",
    "RIPPLE_RATE_FRAMES_BURST": "100000",
    "RIPPLE_RATE_MESSAGES_PER_S": "100000",
    "RIPPLE_RATE_MESSAGES_BURST": "100000",
    "RIPPLE_RATE_USER_MESSAGES_PER_S": "100000",
    "RIPPLE_RATE_USER_MESSAGES_BURST": "100000",
    "RIPPLE_FLOOD_STRIKES": "100000",
    "RIPPLE_MAX_CONNECTIONS_PER_IP": "100000",
    "RIPPLE_ROOM_CREATE_PER_MIN": "100000",
    "RIPPLE_ROOM_CREATE_BURST": "100000",
}

# The direct reply each client frame type gets; a client pong gets none (or an error).
REPLY_TYPE = {
    protocol.PING: protocol.PONG,
    protocol.SUBSCRIBE: protocol.SUBSCRIBED,
    protocol.UNSUBSCRIBE: protocol.UNSUBSCRIBED,
    protocol.MESSAGE: protocol.ACK,
    protocol.PONG: None,
}
DIRECT_REPLY_TYPES = {protocol.PONG, protocol.SUBSCRIBED, protocol.UNSUBSCRIBED, protocol.ACK, protocol.ERROR}
BROADCAST_TYPES = {protocol.MESSAGE, protocol.PRESENCE, protocol.PING, protocol.DELETED, protocol.ROOM_CLOSED}
DOCUMENTED_CLOSE_CODES = {
    value for name, value in vars(protocol).items() if name.startswith("CLOSE_") and isinstance(value, int)
}
# Documented, but with the limits above they mean the throttling ignored its settings.
THROTTLE_CLOSE_CODES = {protocol.CLOSE_FLOODING, protocol.CLOSE_TOO_MANY_CONNECTIONS}

# Strategies.

ROOMS = ["fuzz-a", "fuzz-b", "fuzz-c"]
# Shared by every session: a second socket (another guest) using one gets client_id_conflict.
CLIENT_IDS = ["c1", "c2", "c:3"]
# Made unique to one session by run_session (SESSION_MARK becomes the session's number), so
# they store once and come back as duplicates when the session re-sends them.
SESSION_MARK = "@session@"
SESSION_IDS = [f"{SESSION_MARK}m{n}" for n in range(3)]

# Lone surrogates reach the server as \udxxx escapes (see sendable_json), never as raw text.
odd_text = st.one_of(
    st.text(max_size=40),
    st.text(st.sampled_from(" \t\n\r\u00a0\u2028\u3000"), max_size=5),
    st.sampled_from(["\x00", "a\x00b", "\ufeff", "é€😀", "NaN", "Infinity", "x" * 64, "x" * 65]),
    st.sampled_from(["\ud800", "a\udfff", "\ud83d", "\udc00z"]),
)
# json.dumps writes these as NaN, Infinity and -Infinity; Python's json.loads reads them back.
special_floats = st.sampled_from([math.nan, math.inf, -math.inf, 1e308, -0.0])
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | special_floats | odd_text,
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3)
    ),
    max_leaves=8,
)
rooms = st.one_of(
    st.sampled_from(ROOMS),
    st.from_regex(protocol.ROOM_SLUG_RE, fullmatch=True),
    st.sampled_from(["", "Fuzz", "-a", "a b", "x" * 65, "é"]),
    json_values,
)
client_ids = st.one_of(
    st.sampled_from(CLIENT_IDS),
    st.from_regex(protocol.CLIENT_ID_RE, fullmatch=True),
    st.sampled_from(["", "a b", "c" * 65, "é", "a/b"]),
    json_values,
)
bodies = st.one_of(
    st.text(min_size=1, max_size=60),
    odd_text,
    st.integers(MAX_BODY_CHARS - 1, MAX_BODY_CHARS + 1).map(lambda n: "b" * n),
    json_values,
)
refs = st.one_of(
    st.integers(-(2**53), 2**53), st.text(max_size=70), odd_text, st.sampled_from([True, 1.5, [], {}, None])
)
ts = st.one_of(st.integers(), st.floats(), special_floats, st.text(max_size=70), odd_text, json_values)
sinces = st.one_of(st.integers(-2, 5), st.sampled_from([2**53 - 1, 2**53, True, "1", 1.5]), json_values)


def frame(frame_type, required: dict, optional: dict):
    return st.fixed_dictionaries({"type": st.just(frame_type), **required}, optional=optional)


optional_ref = {"ref": refs}
json_frames = st.one_of(
    frame(protocol.SUBSCRIBE, {"room": rooms}, {"since": sinces, **optional_ref}),
    frame(protocol.SUBSCRIBE, {"room": st.sampled_from(ROOMS)}, {}),
    frame(protocol.UNSUBSCRIBE, {"room": rooms}, optional_ref),
    frame(
        protocol.MESSAGE,
        {
            "room": st.sampled_from(ROOMS),
            "client_id": st.sampled_from(CLIENT_IDS),
            "body": st.text(min_size=1),
        },
        optional_ref,
    ),
    frame(protocol.MESSAGE, {}, {"room": rooms, "client_id": client_ids, "body": bodies, **optional_ref}),
    frame(protocol.PING, {}, {"t": ts, **optional_ref}),
    frame(protocol.PONG, {}, {"t": ts, **optional_ref}),
    st.fixed_dictionaries({}, optional={"type": json_values, "room": rooms, "ref": refs}),
)


def sendable_json(obj, ascii_only: bool) -> str:
    """JSON text for a WebSocket text frame: escaped to ASCII when it holds a lone surrogate."""
    text = json.dumps(obj, ensure_ascii=ascii_only)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return json.dumps(obj)
    return text


json_texts = st.builds(sendable_json, json_frames, st.booleans())


@st.composite
def mangled_json(draw) -> str:
    text = draw(json_texts)
    start = draw(st.integers(0, len(text)))
    end = draw(st.integers(start, len(text)))
    return text[:start] + draw(st.text(max_size=4)) + text[end:]


odd_frames = st.one_of(
    json_texts,
    mangled_json(),
    st.text(max_size=200),
    st.binary(max_size=300),
    st.sampled_from(
        [
            "",
            "null",
            "[]",
            "{}",
            "[" * 3000 + "]" * 3000,
            '{"type":"ping"}' * 2,
            # Numbers JSON cannot carry back, and a lone surrogate in an echoed field.
            '{"type":"ping","t":1e999}',
            '{"type":"ping","t":-Infinity}',
            '{"type":"ping","t":NaN}',
            '{"type":"nope","ref":"\\ud800"}',
        ]
    ),
    # Around RIPPLE_MAX_FRAME_CHARS, far below daphne's 64 KiB.
    st.integers(MAX_FRAME_CHARS - 30, MAX_FRAME_CHARS + 600).map(
        lambda n: '{"type":"ping","t":"' + "y" * n + '"}'
    ),
)


def plausible_frames(opened: list[str]):
    """Frames that mostly succeed: messages to the rooms this socket opened, re-sends, ..."""
    room = st.sampled_from(opened)
    client_id = st.sampled_from(SESSION_IDS) | st.sampled_from(SESSION_IDS) | st.sampled_from(CLIENT_IDS)
    message = frame(
        protocol.MESSAGE, {"room": room, "client_id": client_id, "body": st.text(min_size=1)}, optional_ref
    )
    return st.one_of(
        message,
        message,
        message,
        frame(protocol.SUBSCRIBE, {"room": st.sampled_from(ROOMS)}, {"since": st.integers(0, 3)}),
        frame(protocol.UNSUBSCRIBE, {"room": st.sampled_from(ROOMS)}, optional_ref),
        frame(protocol.PING, {}, {"t": ts, **optional_ref}),
    ).map(lambda obj: sendable_json(obj, ascii_only=False))


@st.composite
def sessions(draw) -> list:
    """Subscribe to a room or two of the pool, a mix of plausible and odd frames, some re-sent."""
    opened = draw(st.lists(st.sampled_from(ROOMS), min_size=1, max_size=2, unique=True))
    opening = [json.dumps({"type": "subscribe", "room": room}) for room in opened]
    frames = draw(st.lists(plausible_frames(opened) | odd_frames, min_size=1, max_size=20))
    for index in draw(st.lists(st.integers(0, len(frames) - 1), max_size=3)):
        frames.append(frames[index])  # a re-send: a message is then acked as a duplicate
    return opening + frames


# The test's record of the server's answers, kept across examples (the database is too).


@dataclass
class Ledger:
    # Message rows from before the run.
    preexisting: set[int] = field(default_factory=set)
    # Maps (room, client_id) to (seq, body, author) for each ack with duplicate=false.
    stored: dict[tuple[str, str], tuple[int, str, str]] = field(default_factory=dict)
    # The same for rows found in the database but never acked (see reconcile).
    unacked: dict[tuple[str, str], tuple[int, str, str]] = field(default_factory=dict)
    # Maps (room, seq) to client_id, for checking history and broadcasts.
    by_seq: dict[tuple[str, int], str] = field(default_factory=dict)
    frames_sent: int = 0
    sessions: int = 0
    codes_seen: dict[str, int] = field(default_factory=dict)
    closes_seen: dict[int, int] = field(default_factory=dict)

    def count(self, key: str) -> None:
        self.codes_seen[key] = self.codes_seen.get(key, 0) + 1

    def known(self, room: str, client_id: str) -> tuple[int, str, str] | None:
        return self.stored.get((room, client_id)) or self.unacked.get((room, client_id))

    def database_rows(self) -> dict[tuple[str, str], tuple[int, str, str]]:
        rows = Message.objects.exclude(pk__in=self.preexisting).values_list(
            "room__slug", "client_id", "seq", "body", "author"
        )
        return {(room, client_id): (seq, body, author) for room, client_id, seq, body, author in rows}

    def reconcile(self) -> None:
        """Set apart rows stored without an ack (a socket that crashed between storing a
        message and acking it), so that every later example is not failed by the same row; the
        run still fails at the end while there are any."""
        for key, row in self.database_rows().items():
            if self.known(*key) is None:
                self.unacked[key] = row
                self.by_seq[(key[0], row[0])] = key[1]


def strict_json(text) -> dict:
    assert isinstance(text, str), f"the server sent a binary frame: {text!r}"

    def refuse(token):
        raise AssertionError(f"the server sent {token}, which is not JSON: {text[:300]!r}")

    frame = json.loads(text, parse_constant=refuse)
    assert isinstance(frame, dict) and isinstance(frame.get("type"), str), text[:300]
    return frame


def decoded(payload) -> dict | None:
    """The frame as the server reads it, when it is a JSON object; None otherwise."""
    if isinstance(payload, bytes):
        return None
    try:
        data = json.loads(payload)
    except (ValueError, RecursionError):
        return None
    return data if isinstance(data, dict) else None


def valid_ref(ref) -> bool:
    if ref is None:
        return True
    if isinstance(ref, str):
        # A lone surrogate cannot be echoed (it has no UTF-8 form): refused as invalid_field.
        return (
            len(ref) <= protocol.MAX_REF_CHARS
            and ref.encode("utf-8", "surrogatepass").decode("utf-8", "ignore") == ref
        )
    return isinstance(ref, int) and not isinstance(ref, bool) and abs(ref) < 2**53


def check_reply(payload, reply: dict, author: str, ledger: Ledger) -> None:
    """One direct reply, against the frame that caused it."""
    data = decoded(payload)
    frame_type = data.get("type") if data is not None else None
    if reply["type"] == protocol.ERROR:
        code = reply.get("code")
        ledger.count(code)
        assert code != protocol.RATE_LIMITED, "rate_limited despite RIPPLE_RATE_* raised to 100000"
        assert code in protocol.ERROR_CODES, reply
        if isinstance(payload, bytes):
            assert code == protocol.BINARY_NOT_SUPPORTED, reply
        elif len(payload) > MAX_FRAME_CHARS:
            assert code == protocol.FRAME_TOO_LARGE, reply
        elif data is None:
            assert code in (protocol.INVALID_JSON, protocol.INVALID_FRAME), reply
        elif valid_ref(data.get("ref")):
            assert reply.get("ref") == data.get("ref"), "the error does not echo the frame's ref"
        if code == protocol.CLIENT_ID_CONFLICT:
            earlier = ledger.known(reply["room"], reply["client_id"])
            assert earlier is not None and earlier[2] != author, "a conflict with no other author's message"
        return
    ledger.count(reply["type"])
    expected = REPLY_TYPE.get(frame_type) if isinstance(frame_type, str) else None
    assert data is not None and reply["type"] == expected, f"a {reply['type']} in reply to {payload!r:.300}"
    assert reply.get("ref") == data.get("ref")
    if reply["type"] == protocol.PONG:
        assert reply["t"] == data.get("t")
    elif reply["type"] in (protocol.SUBSCRIBED, protocol.UNSUBSCRIBED):
        assert reply["room"] == data["room"]
    if reply["type"] == protocol.SUBSCRIBED:
        for message in reply["messages"]:
            ledger.count("history message")
            check_message(message, ledger)
            assert message["seq"] <= reply["last_seq"]
    if reply["type"] == protocol.ACK:
        room, client_id, seq = data["room"], data["client_id"], reply["seq"]
        earlier = ledger.known(room, client_id)
        if reply["duplicate"] is False:
            # Recorded before any check, so that a failed check does not also fail later examples.
            taken = ledger.by_seq.get((room, seq))
            ledger.stored[(room, client_id)] = (seq, data["body"], author)
            ledger.by_seq[(room, seq)] = client_id
            assert (reply["room"], reply["client_id"]) == (room, client_id)
            assert isinstance(seq, int) and seq >= 1
            assert earlier is None, f"{room}/{client_id} acked as new twice: seq {earlier} and {seq}"
            assert taken is None, f"{room}#{seq} handed out twice"
        else:
            assert (reply["room"], reply["client_id"]) == (room, client_id)
            assert reply["duplicate"] is True
            ledger.count("duplicate")
            assert earlier is not None and earlier[0] == seq, f"duplicate ack {reply} for {earlier}"
            assert earlier[2] == author


def check_message(message: dict, ledger: Ledger) -> None:
    """A stored message (broadcast or history) is one that was acked, with the acked body."""
    room, seq = message["room"], message["seq"]
    client_id = ledger.by_seq.get((room, seq))
    assert client_id is not None, f"{room}#{seq} was never acked: {message}"
    _, body, author = ledger.known(room, client_id)
    assert (message["client_id"], message["body"], message["author"]) == (client_id, body, author)


def run_session(url: str, frames: list, ledger: Ledger, server_log) -> None:
    """Send ``frames`` on a fresh socket; check every reply and broadcast."""
    broadcasts: list[dict] = []
    ledger.sessions += 1
    mark = f"s{ledger.sessions}."
    frames = [
        payload.replace(SESSION_MARK, mark) if isinstance(payload, str) else payload for payload in frames
    ]
    with connect(
        url, origin=same_origin(url), open_timeout=10, close_timeout=2, compression=None, proxy=None
    ) as ws:
        welcome = strict_json(ws.recv(timeout=REPLY_TIMEOUT_S))
        assert welcome["type"] == protocol.WELCOME
        author = welcome["user"]["name"]
        for index, payload in enumerate(frames):
            size = len(payload) if isinstance(payload, bytes) else len(payload.encode())
            assert size < DAPHNE_DROP_BYTES  # see the module docstring
            sentinel = f"sentinel:{uuid.uuid4().hex}"
            try:
                ws.send(payload)
                ledger.frames_sent += 1
                ws.send(json.dumps({"type": "ping", "ref": sentinel}))
                replies = read_until_sentinel(ws, sentinel, broadcasts)
            except AssertionError as error:
                raise AssertionError(f"{error}\nafter frame {index}: {payload!r:.300}") from None
            except ConnectionClosed as closed:
                code = closed.rcvd.code if closed.rcvd is not None else 1006
                ledger.closes_seen[code] = ledger.closes_seen.get(code, 0) + 1
                where = f"closed with {code} after frame {index} {payload!r:.300}\n{server_log()[-3000:]}"
                assert code not in THROTTLE_CLOSE_CODES, f"throttled despite RIPPLE_RATE_* raised: {where}"
                assert code in DOCUMENTED_CLOSE_CODES and code != 1011, where
                return
            data = decoded(payload)
            silent_ok = data is not None and data.get("type") == protocol.PONG
            assert len(replies) == 1 or (silent_ok and not replies), (
                f"{len(replies)} replies to {payload!r:.300}: {replies}"
            )
            for reply in replies:
                check_reply(payload, reply, author, ledger)
    for message in broadcasts:
        ledger.count(f"broadcast {message['type']}")
        if message["type"] == protocol.MESSAGE:
            check_message(message, ledger)


def read_until_sentinel(ws: ClientConnection, sentinel: str, broadcasts: list[dict]) -> list[dict]:
    replies = []
    while True:
        try:
            frame = strict_json(ws.recv(timeout=REPLY_TIMEOUT_S))
        except TimeoutError:
            raise AssertionError(f"no pong to the sentinel ping within {REPLY_TIMEOUT_S} s") from None
        if frame["type"] == protocol.PONG and frame.get("ref") == sentinel:
            return replies
        if frame["type"] in DIRECT_REPLY_TYPES:
            replies.append(frame)
        else:
            assert frame["type"] in BROADCAST_TYPES, frame
            broadcasts.append(frame)


def test_fuzzed_frames_get_documented_replies_and_only_acked_messages_are_stored(daphne):
    server = daphne(**UNTHROTTLED)
    url = f"{server.ws_url}/ws/chat/"
    ledger = Ledger(preexisting=set(Message.objects.values_list("pk", flat=True)))

    @settings(
        max_examples=150,
        deadline=None,
        derandomize=True,
        database=None,
        # No shrinking: daphne notices a crashed application only once a second, so shrinking
        # a crash took five minutes. A failure names the frame, the close code and the log.
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=[
            HealthCheck.too_slow,
            HealthCheck.data_too_large,
            HealthCheck.large_base_example,
        ],
    )
    @given(frames=sessions())
    def fuzz(frames):
        ledger.reconcile()
        run_session(url, frames, ledger, server.output)

    fuzz()

    # Exactly what was acked is stored: one row per ack with duplicate=false, and nothing else.
    assert ledger.database_rows() == {**ledger.stored, **ledger.unacked}
    assert not ledger.unacked, f"stored, but the sender never got an ack: {ledger.unacked}"
    # The strategies are tuned so that every kind of outcome happens; say so if that changes.
    assert len(ledger.stored) >= 10 and ledger.codes_seen.get("duplicate", 0) >= 1, ledger.codes_seen
    assert ledger.codes_seen.get(protocol.CLIENT_ID_CONFLICT, 0) >= 1, ledger.codes_seen
    assert ledger.codes_seen.get("broadcast message", 0) >= 1, ledger.codes_seen
    assert ledger.codes_seen.get("history message", 0) >= 1, ledger.codes_seen
    log = server.output()
    assert "Traceback" not in log, log[-5000:]
    assert server.alive()
