"""A test client for the HTTP fallback (chat/sse.py): the event stream over a raw HTTP/1.1
connection, frames over POST with the session and CSRF token a browser page would have.

Each stream's token (its ``event: stream``, before ``welcome``) is kept in ``STREAM_TOKENS`` by
connection id, and a POST carries the token of the stream it names unless told otherwise, as
the bundled client does; a test that plays a stranger passes ``stream_token`` itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import urllib.error
import urllib.request
from http.cookies import SimpleCookie
from typing import Any

CSRF_META = re.compile(r'<meta name="csrf-token" content="([^"]+)">')
STREAM_TOKEN_HEADER = "X-Ripple-Stream-Token"
# Maps the connection id of each stream this process opened to that stream's token.
STREAM_TOKENS: dict[str, str] = {}
# ``stream_token`` default: the token of the stream the POST names, if this process opened it.
KNOWN_TOKEN = "<the stream's own>"


def page_credentials(
    http_url: str, session_cookie: str | None, path: str = "/rooms/lobby/"
) -> dict[str, str]:
    """The cookies and CSRF token a page load leaves in a browser (sessionid, csrftoken)."""
    request = urllib.request.Request(f"{http_url}{path}")
    if session_cookie:
        request.add_header("Cookie", f"sessionid={session_cookie}")
    with urllib.request.urlopen(request, timeout=10) as response:
        page = response.read().decode()
        cookies = SimpleCookie()
        for header in response.headers.get_all("Set-Cookie") or []:
            cookies.load(header)
    found = CSRF_META.search(page)
    assert found, "the page carries no csrf-token meta"
    jar = {name: morsel.value for name, morsel in cookies.items()}
    if session_cookie:
        jar.setdefault("sessionid", session_cookie)
    return {"cookie": "; ".join(f"{k}={v}" for k, v in jar.items()), "token": found.group(1)}


class SseStream:
    """``GET /sse/chat/``: frames as they arrive, and the close code if the server closes."""

    def __init__(
        self, host: str, port: int, cookie: str, origin: str | None = None, last_event_id: str | None = None
    ) -> None:
        self.host, self.port, self.cookie, self.origin = host, port, cookie, origin
        self.last_event_id = last_event_id
        # Sent with the GET as they are (e.g. Sec-Fetch-Site).
        self.extra_headers: dict[str, str] = {}
        # "latin1" sends characters up to U+00FF as one byte each, as the server reads them.
        self.header_encoding = "utf-8"
        self.status: int | None = None
        self.close_code: int | None = None
        self.connection_id: str | None = None
        # From the stream's first event (``event: stream``), which only this client sees.
        self.token: str | None = None
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._chunked = False
        self._buffer = b""

    async def open(self) -> int:
        self._reader, self._writer = await asyncio.open_connection(self.host, self.port)
        lines = [
            "GET /sse/chat/ HTTP/1.1",
            f"Host: {self.host}:{self.port}",
            "Accept: text/event-stream",
            f"Cookie: {self.cookie}",
        ]
        if self.origin:
            lines.append(f"Origin: {self.origin}")
        if self.last_event_id is not None:
            lines.append(f"Last-Event-ID: {self.last_event_id}")
        lines.extend(f"{name}: {value}" for name, value in self.extra_headers.items())
        self._writer.write(("\r\n".join(lines) + "\r\n\r\n").encode(self.header_encoding))
        await self._writer.drain()
        head = await asyncio.wait_for(self._reader.readuntil(b"\r\n\r\n"), 10)
        status_line, *headers = head.decode("latin1").split("\r\n")
        self.status = int(status_line.split()[1])
        self._chunked = any(h.lower() == "transfer-encoding: chunked" for h in headers)
        return self.status

    async def _more(self) -> bool:
        """Read more of the body; False at its end or when the connection dropped."""
        try:
            return await self._read_more()
        except (asyncio.IncompleteReadError, ConnectionError):
            return False

    async def _read_more(self) -> bool:
        assert self._reader is not None
        if not self._chunked:
            data = await self._reader.read(65536)
            self._buffer += data
            return bool(data)
        size_line = await self._reader.readuntil(b"\r\n")
        size = int(size_line.strip().split(b";")[0], 16)
        if size == 0:
            return False
        self._buffer += (await self._reader.readexactly(size + 2))[:-2]
        return True

    async def event(self, timeout: float = 5) -> tuple[str, str] | None:
        """The next event as (event type, data), skipping comments; None at the end."""
        async with asyncio.timeout(timeout):
            while True:
                while b"\n\n" not in self._buffer:
                    if not await self._more():
                        return None
                block, self._buffer = self._buffer.split(b"\n\n", 1)
                kind, data = "message", []
                for line in block.decode().split("\n"):
                    if line.startswith(":") or not line:
                        continue
                    field, _, value = line.partition(":")
                    value = value[1:] if value.startswith(" ") else value
                    if field == "event":
                        kind = value
                    elif field == "id":
                        self.last_event_id = value
                    elif field == "data":
                        data.append(value)
                if data:
                    return kind, "\n".join(data)

    async def frame(self, timeout: float = 5) -> dict[str, Any] | None:
        """The next server frame; None once the server closed (``close_code`` says how)."""
        while True:
            found = await self.event(timeout)
            if found is None:
                return None
            kind, data = found
            if kind == "stream":
                self.token = json.loads(data)["token"]
                continue
            if kind == "close":
                self.close_code = json.loads(data)["code"]
                return None
            frame = json.loads(data)
            if frame["type"] == "welcome":
                self.connection_id = frame["connection_id"]
                if self.token is not None:
                    STREAM_TOKENS[frame["connection_id"]] = self.token
            return frame

    async def frame_of(self, frame_type: str, timeout: float = 5) -> dict[str, Any]:
        async with asyncio.timeout(timeout):
            while True:
                frame = await self.frame(timeout)
                assert frame is not None, f"the stream ended (close {self.close_code}) before {frame_type}"
                if frame["type"] == frame_type:
                    return frame

    async def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            with contextlib.suppress(OSError):
                await self._writer.wait_closed()


def post_frame(
    http_url: str,
    connection_id: str,
    frame: dict[str, Any] | str,
    credentials: dict[str, str],
    origin: str,
    stream_token: str | None = KNOWN_TOKEN,
) -> tuple[int, dict[str, Any]]:
    """``POST /sse/chat/send/``: the status and JSON answer."""
    body = frame if isinstance(frame, str) else json.dumps(frame)
    return post_bytes(http_url, connection_id, body.encode(), credentials, origin, stream_token)


def post_bytes(
    http_url: str,
    connection_id: str,
    body: bytes,
    credentials: dict[str, str],
    origin: str | None = None,
    stream_token: str | None = KNOWN_TOKEN,
) -> tuple[int, dict[str, Any]]:
    """``POST /sse/chat/send/`` with any body: the status and JSON answer.

    ``stream_token``: by default the token of the stream ``connection_id`` names (none when this
    process did not open it); None sends no token header; any other text is sent as it is.
    """
    origin = origin or http_url
    if stream_token == KNOWN_TOKEN:
        stream_token = STREAM_TOKENS.get(connection_id)
    headers = {
        "Content-Type": "text/plain;charset=UTF-8",
        "Cookie": credentials["cookie"],
        "X-CSRFToken": credentials["token"],
        "Origin": origin,
        "Referer": f"{origin}/",
    }
    if stream_token is not None:
        headers[STREAM_TOKEN_HEADER] = stream_token
    request = urllib.request.Request(
        f"{http_url}/sse/chat/send/?connection={connection_id}", data=body, method="POST", headers=headers
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as error:
        raw = error.read()
        try:
            return error.code, json.loads(raw)
        except ValueError:
            return error.code, {"raw": raw.decode(errors="replace")[:200]}
