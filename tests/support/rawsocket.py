"""Raw TCP for transport tests: hand-built HTTP and WebSocket bytes, and a worker's memory.

A normal client library reads what the server sends, completes requests at once and never
splits messages into fragments; the attacks these tests replay do all of that on purpose.
"""

from __future__ import annotations

import base64
import os
import select
import socket
import struct
import time
from dataclasses import dataclass, field

OPCODE_CONTINUATION = 0x0
OPCODE_TEXT = 0x1
OPCODE_CLOSE = 0x8
OPCODE_PING = 0x9


def upgrade_request(port: int, path: str, origin: str | None) -> bytes:
    """A WebSocket handshake request as a browser sends it."""
    key = base64.b64encode(os.urandom(16)).decode()
    lines = [
        f"GET {path} HTTP/1.1",
        f"Host: 127.0.0.1:{port}",
        "Upgrade: websocket",
        "Connection: Upgrade",
        f"Sec-WebSocket-Key: {key}",
        "Sec-WebSocket-Version: 13",
    ]
    if origin:
        lines.append(f"Origin: {origin}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def client_frame(opcode: int, payload: bytes, *, fin: bool = True) -> bytes:
    """One masked frame, as a client must send it (RFC 6455 5.2)."""
    header = bytearray([(0x80 if fin else 0) | opcode])
    if len(payload) < 126:
        header.append(0x80 | len(payload))
    elif len(payload) < 65536:
        header.append(0x80 | 126)
        header += struct.pack("!H", len(payload))
    else:
        header.append(0x80 | 127)
        header += struct.pack("!Q", len(payload))
    mask = os.urandom(4)
    return bytes(header) + mask + _masked(payload, mask)


def _masked(payload: bytes, mask: bytes) -> bytes:
    # XOR as one big integer: fast enough for the megabytes the fragment tests send.
    key = (mask * (len(payload) // 4 + 1))[: len(payload)]
    return (int.from_bytes(payload, "big") ^ int.from_bytes(key, "big")).to_bytes(len(payload), "big")


def connect(port: int, *, rcvbuf: int | None = None, timeout_s: float = 5) -> socket.socket:
    """A TCP connection to the worker; ``rcvbuf`` shrinks the receive buffer (a peer that stalls)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if rcvbuf is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.settimeout(timeout_s)
    sock.connect(("127.0.0.1", port))
    return sock


@dataclass
class HttpResponse:
    status: int
    headers: dict[str, str]
    body: bytes
    # Bytes that came after the head (and body): WebSocket frames after a 101.
    rest: bytes = b""


def read_response_head(sock: socket.socket) -> HttpResponse:
    """Read one response head, and its body when it has a Content-Length."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(4096)
        if not chunk:
            raise ConnectionError(f"closed before a response head: {data!r}")
        data += chunk
    head, rest = data.split(b"\r\n\r\n", 1)
    status_line, *lines = head.decode("latin1").split("\r\n")
    headers = {}
    for line in lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    length = int(headers.get("content-length", "0"))
    while len(rest) < length:
        chunk = sock.recv(4096)
        if not chunk:
            break
        rest += chunk
    return HttpResponse(int(status_line.split()[1]), headers, rest[:length], rest[length:])


def handshake(port: int, path: str, origin: str | None) -> HttpResponse:
    """Send a WebSocket handshake on a new connection and read the answer (then close)."""
    with connect(port) as sock:
        sock.sendall(upgrade_request(port, path, origin))
        return read_response_head(sock)


def open_websocket(port: int, path: str, origin: str, *, rcvbuf: int | None = None) -> socket.socket:
    """A raw socket past a successful handshake (101); what the server sends next is left unread."""
    sock = connect(port, rcvbuf=rcvbuf)
    sock.sendall(upgrade_request(port, path, origin))
    # Byte by byte: frames right after the head stay in the socket for the caller (or nobody).
    head = b""
    while not head.endswith(b"\r\n\r\n"):
        byte = sock.recv(1)
        if not byte:
            raise ConnectionError(f"closed during the handshake: {head!r}")
        head += byte
    assert head.startswith(b"HTTP/1.1 101"), head
    return sock


@dataclass
class FrameReader:
    """Server frames off a raw socket: (opcode, payload), unmasked as servers send them."""

    sock: socket.socket
    buffer: bytearray = field(default_factory=bytearray)

    def _parse(self) -> tuple[int, bytes] | None:
        data = self.buffer
        if len(data) < 2:
            return None
        length, offset = data[1] & 0x7F, 2
        if length == 126:
            if len(data) < 4:
                return None
            length, offset = struct.unpack("!H", data[2:4])[0], 4
        elif length == 127:
            if len(data) < 10:
                return None
            length, offset = struct.unpack("!Q", data[2:10])[0], 10
        if len(data) < offset + length:
            return None
        frame = (data[0] & 0x0F, bytes(data[offset : offset + length]))
        del data[: offset + length]
        return frame

    def frame(self, timeout_s: float = 5) -> tuple[int, bytes] | None:
        """The next frame; None when the connection ended first."""
        deadline = time.monotonic() + timeout_s
        while (found := self._parse()) is None:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError("no frame in time")
            self.sock.settimeout(remaining)
            try:
                chunk = self.sock.recv(65536)
            except ConnectionResetError:
                return None
            if not chunk:
                return None
            self.buffer += chunk
        return found


def ended_by_peer(sock: socket.socket, timeout_s: float) -> bool:
    """Read and discard until the server closes or resets the connection (True), or time is up."""
    deadline = time.monotonic() + timeout_s
    while (remaining := deadline - time.monotonic()) > 0:
        readable, _, _ = select.select([sock], [], [], remaining)
        if not readable:
            continue
        try:
            if not sock.recv(65536):
                return True
        except (ConnectionResetError, BrokenPipeError):
            return True
    return False


def rss_bytes(pid: int) -> int:
    """Resident memory of a process (VmRSS in /proc/<pid>/status)."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for process {pid}")
