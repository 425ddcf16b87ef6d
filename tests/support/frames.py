"""Reading server frames from a ``websockets`` client connection in tests."""

import asyncio
import json


async def recv_until(ws, frame_type: str, timeout: float = 5) -> dict:
    """The next frame of ``frame_type``, skipping others; TimeoutError after ``timeout`` s."""
    async with asyncio.timeout(timeout):
        while True:
            frame = json.loads(await ws.recv())
            if frame["type"] == frame_type:
                return frame
