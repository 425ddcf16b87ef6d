"""The Origin a browser page would send to a server: the server's own, scheme, host and port."""

from urllib.parse import urlsplit


def same_origin(url: str) -> str:
    """``ws://127.0.0.1:8123/ws/chat/`` -> ``http://127.0.0.1:8123`` (wss -> https)."""
    parts = urlsplit(url)
    scheme = {"ws": "http", "wss": "https"}.get(parts.scheme, parts.scheme)
    return f"{scheme}://{parts.netloc}"
