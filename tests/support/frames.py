"""Reading server frames from a ``websockets`` client connection in tests: the one frame reader."""

import asyncio
import json
from collections.abc import Callable


async def recv_json(ws, timeout: float = 5) -> dict:
    """The next frame, whatever its type; TimeoutError after ``timeout`` s."""
    return json.loads(await asyncio.wait_for(ws.recv(), timeout))


async def recv_matching(ws, matches: Callable[[dict], bool], timeout: float = 5) -> dict:
    """The next frame ``matches`` accepts, skipping others; TimeoutError after ``timeout`` s in all."""
    async with asyncio.timeout(timeout):
        while True:
            frame = json.loads(await ws.recv())
            if matches(frame):
                return frame


async def recv_until(ws, frame_type: str, timeout: float = 5) -> dict:
    """The next frame of ``frame_type``, skipping others; TimeoutError after ``timeout`` s."""
    return await recv_matching(ws, lambda frame: frame["type"] == frame_type, timeout)


async def post_message(
    ws, room: str, client_id: str, body: str = "hi", timeout: float = 5
) -> tuple[dict, dict | None]:
    """Send one ``message`` frame; its reply (``ack`` or ``error``) and, after a new ``ack``, the
    socket's own copy from the room, in whichever order they come (docs/protocol.md: either
    order; one worker writes the copy first). Frames about other client ids are skipped."""
    await ws.send(json.dumps({"type": "message", "room": room, "body": body, "client_id": client_id}))
    reply: dict | None = None
    copy: dict | None = None
    async with asyncio.timeout(timeout):
        while reply is None or (reply["type"] == "ack" and not reply["duplicate"] and copy is None):
            frame = json.loads(await ws.recv())
            if frame.get("client_id") != client_id:
                continue
            if frame["type"] in ("ack", "error"):
                reply = frame
            elif frame["type"] == "message":
                copy = frame
    return reply, copy
