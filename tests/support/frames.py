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
