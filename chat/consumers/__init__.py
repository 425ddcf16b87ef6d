"""WebSocket consumers: the chat socket (chat.py) and its frame handlers (frames.py), the
tutorial echo socket (echo.py), and what both sockets share (dispatch.py). Routing, the
fallback stream and tests import them from here."""

from .chat import SERVER_FRAME, ChatConsumer, Held, State
from .dispatch import NO_CHANNEL_LAYER, dispatch_without_db_hop
from .echo import EchoConsumer
from .frames import HANDLERS, REFUSALS

__all__ = [
    "HANDLERS",
    "NO_CHANNEL_LAYER",
    "REFUSALS",
    "SERVER_FRAME",
    "ChatConsumer",
    "EchoConsumer",
    "Held",
    "State",
    "dispatch_without_db_hop",
]
