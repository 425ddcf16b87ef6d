"""Plain pings answered at daphne's transport (chat/daphne_pings.py), on a real daphne process.

The answer must be the consumer's to the byte, come after the answers to frames sent before
the ping, keep the heartbeat from pinging or expiring the socket, and stay under the rate
limits (a ping flood is closed with 4429).
"""

import asyncio
import json
import time

import pytest
import websockets

from chat import protocol
from tests.support import rawsocket
from tests.support.frames import recv_json
from tests.support.origins import same_origin
from tests.support.processes import DaphneServer, worker_env

pytestmark = pytest.mark.django_db(transaction=True)

# Each client ping and the exact pong the consumer answers it with (chat/protocol/build.py).
PINGS = [
    ('{"type":"ping","t":1733368800123}', protocol.pong(1733368800123, None)),
    ('{"type":"ping","t":"abc","ref":7}', protocol.pong("abc", 7)),
    ('{"type":"ping","t":1.5,"ref":"r-1"}', protocol.pong(1.5, "r-1")),
    ('{"type":"ping"}', protocol.pong(None, None)),
    ('{"type":"ping","t":"h\\u00e9"}', protocol.pong("hé", None)),
    # Not what the fast path reads as plain (spaces, another key order): the consumer answers.
    ('{ "type": "ping", "t": 3 }', protocol.pong(3, None)),
    ('{"t":4,"type":"ping"}', protocol.pong(4, None)),
]


async def welcomed(url: str):
    ws = await websockets.connect(url, origin=same_origin(url))
    assert (await recv_json(ws))["type"] == "welcome"
    return ws


async def test_each_ping_gets_the_consumers_pong_byte_for_byte(daphne):
    server = daphne()
    ws = await welcomed(f"{server.ws_url}/ws/chat/")
    try:
        for ping, pong in PINGS:
            await ws.send(ping)
            assert await asyncio.wait_for(ws.recv(), 5) == pong
        # A ping the parser refuses gets the consumer's error, as before.
        await ws.send('{"type":"ping","t":true}')
        error = await recv_json(ws)
        assert (error["type"], error["code"], error["field"]) == ("error", protocol.INVALID_FIELD, "t")
    finally:
        await ws.close()


async def test_a_pong_comes_after_the_answers_to_frames_sent_before_its_ping(daphne):
    # Limits that 40 frames and 20 new rooms stay under.
    server = daphne(RIPPLE_RATE_FRAMES_BURST="100", RIPPLE_ROOM_CREATE_BURST="100")
    ws = await welcomed(f"{server.ws_url}/ws/chat/")
    try:
        for i in range(20):
            # Sent back to back: the subscribe is still being handled when the ping arrives.
            await ws.send(json.dumps({"type": "subscribe", "room": f"order-{i}", "ref": i}))
            await ws.send(json.dumps({"type": "ping", "t": i}))
            frames = []
            async with asyncio.timeout(5):
                while not frames or frames[-1]["type"] != "pong":
                    frames.append(json.loads(await ws.recv()))
            assert [f["type"] for f in frames if f["type"] != "presence"] == ["subscribed", "pong"], frames
    finally:
        await ws.close()


async def test_a_socket_that_pings_is_neither_pinged_nor_expired_and_a_silent_one_is(daphne):
    server = daphne(RIPPLE_HEARTBEAT_INTERVAL_S="0.4", RIPPLE_HEARTBEAT_TIMEOUT_S="0.4")
    url = f"{server.ws_url}/ws/chat/"
    pinging, silent = await welcomed(url), await welcomed(url)

    async def ping_for(seconds: float) -> int:
        """Ping every 0.2 s; every frame received must be the pong (no server ping, no close)."""
        loop = asyncio.get_running_loop()
        until, t = loop.time() + seconds, 0
        while loop.time() < until:
            t += 1
            await pinging.send(json.dumps({"type": "ping", "t": t}))
            assert await recv_json(pinging) == {"type": "pong", "t": t, "ref": None}
            await asyncio.sleep(0.2)
        return t

    async def read_until_closed() -> tuple[int | None, int]:
        """Read the server's pings, never answer them: (the close code, pings read)."""
        pings = 0
        try:
            async with asyncio.timeout(5):
                while True:
                    pings += json.loads(await silent.recv())["type"] == "ping"
        except websockets.ConnectionClosed as closed:
            return (closed.rcvd.code if closed.rcvd else None), pings
        return None, pings

    try:
        # Three times interval + timeout: long enough for the heartbeat to expire it thrice over.
        sent, (code, server_pings) = await asyncio.gather(ping_for(2.4), read_until_closed())
        assert (code, server_pings >= 1) == (4408, True)
        assert sent >= 8
        # Still open: the close handshake goes through normally.
        await pinging.close()
        assert pinging.close_code == 1000
    finally:
        await pinging.close()
        await silent.close()


async def test_a_ping_flood_is_answered_rate_limited_then_closed_with_4429(daphne):
    server = daphne(RIPPLE_RATE_FRAMES_PER_S="2", RIPPLE_RATE_FRAMES_BURST="10", RIPPLE_FLOOD_STRIKES="5")
    ws = await welcomed(f"{server.ws_url}/ws/chat/")
    answers: list[str] = []
    with pytest.raises(websockets.ConnectionClosed) as closed:
        async with asyncio.timeout(10):
            for i in range(200):
                await ws.send(json.dumps({"type": "ping", "t": i}))
            while True:
                answers.append(json.loads(await ws.recv())["type"])
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 4429
    # The burst is answered, then each refused ping draws a strike until none is left.
    assert answers[:10] == ["pong"] * 10
    assert answers[10:] == ["error"] * (len(answers) - 10)
    assert 1 <= len(answers) - 10 <= 6


async def test_the_echo_socket_still_echoes_a_ping_shaped_text(daphne):
    """Only the chat consumer hands its pings over: other sockets get every frame."""
    server = daphne()
    async with websockets.connect(f"{server.ws_url}/ws/echo/", origin=same_origin(server.ws_url)) as ws:
        assert await asyncio.wait_for(ws.recv(), 5) == "Hello Client"
        await ws.send('{"type":"ping","t":1}')
        assert await asyncio.wait_for(ws.recv(), 5) == 'received: {"type":"ping","t":1}(From Server)'


@pytest.fixture
def daphne_pinging(live_database_url):
    """A daphne that sends protocol pings after 1 s of inbound silence (its default: 20 s)."""
    server = DaphneServer(worker_env(live_database_url))
    server.argv[-1:-1] = ["--ping-interval", "1"]
    try:
        server.start()
        yield server
    finally:
        server.cleanup()


def opcodes_received(port: int, path: str, seconds: float) -> list[int]:
    """The opcodes of the frames a raw socket on ``path`` receives in ``seconds``, sending nothing."""
    sock = rawsocket.open_websocket(port, path, same_origin(f"ws://127.0.0.1:{port}"))
    reader = rawsocket.FrameReader(sock)
    opcodes: list[int] = []
    deadline = time.monotonic() + seconds
    try:
        while (remaining := deadline - time.monotonic()) > 0:
            try:
                frame = reader.frame(remaining)
            except TimeoutError:
                break
            if frame is None:
                break
            opcodes.append(frame[0])
    finally:
        sock.close()
    return opcodes


async def test_daphne_pings_a_quiet_echo_socket_but_not_a_chat_socket_the_heartbeat_watches(daphne_pinging):
    port = daphne_pinging.port
    # daphne looks every 2 s: past 1 s of silence, its next look pings.
    chat, echo = await asyncio.gather(
        asyncio.to_thread(opcodes_received, port, "/ws/chat/", 4.5),
        asyncio.to_thread(opcodes_received, port, "/ws/echo/", 4.5),
    )
    assert rawsocket.OPCODE_PING in echo
    assert chat == [rawsocket.OPCODE_TEXT]  # the welcome, and no ping (the heartbeat's is 20 s away)


def raw_pings(port: int) -> dict[str, object]:
    """Pings written the ways a client's TCP may deliver them, on one raw socket."""
    sock = rawsocket.open_websocket(port, "/ws/chat/", same_origin(f"ws://127.0.0.1:{port}"))
    reader = rawsocket.FrameReader(sock)

    def texts(count: int) -> list[dict]:
        found = []
        while len(found) < count:
            frame = reader.frame(5)
            assert frame is not None, "the server closed the socket"
            if frame[0] == rawsocket.OPCODE_TEXT and json.loads(frame[1])["type"] != "presence":
                found.append(json.loads(frame[1]))
        return found

    def ping(t: int) -> bytes:
        return rawsocket.client_frame(rawsocket.OPCODE_TEXT, json.dumps({"type": "ping", "t": t}).encode())

    try:
        seen: dict[str, object] = {"welcome": texts(1)[0]["type"]}
        # One frame in two writes: the second half may come in a read of its own.
        frame = ping(1)
        sock.sendall(frame[:3])
        sock.sendall(frame[3:])
        seen["split"] = texts(1)
        # Two pings, then a ping behind a subscribe, each pair in one write.
        sock.sendall(ping(2) + ping(3))
        seen["two"] = texts(2)
        subscribe = json.dumps({"type": "subscribe", "room": "raw-pings", "ref": 1}).encode()
        sock.sendall(rawsocket.client_frame(rawsocket.OPCODE_TEXT, subscribe) + ping(4))
        seen["behind"] = [frame["type"] for frame in texts(2)]
        # A lone ping frame that is not UTF-8: the connection fails, as autobahn fails it.
        sock.sendall(rawsocket.client_frame(rawsocket.OPCODE_TEXT, b'{"type":"ping","t":"\xff"}'))
        seen["not_utf8_ended"] = rawsocket.ended_by_peer(sock, 5)
        return seen
    finally:
        sock.close()


async def test_pings_split_over_reads_or_sharing_one_are_answered_in_order(daphne):
    server = daphne()
    seen = await asyncio.to_thread(raw_pings, server.port)
    assert seen["welcome"] == "welcome"
    assert seen["split"] == [{"type": "pong", "t": 1, "ref": None}]
    assert seen["two"] == [{"type": "pong", "t": 2, "ref": None}, {"type": "pong", "t": 3, "ref": None}]
    assert seen["behind"] == ["subscribed", "pong"]
    assert seen["not_utf8_ended"] is True
