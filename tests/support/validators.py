"""Message validators for the extension tests (RIPPLE_MESSAGE_VALIDATORS, docs/extending.md)."""

import threading

from chat.services import MessageRejected

# Arguments of every call to ``record``, in order.
calls: list[tuple[str, str, str]] = []

# Set by a test from the event loop; ``gate`` waits for it in the thread that posts.
released = threading.Event()


def no_shouting(room_slug: str, author: str, body: str) -> None:
    """Refuse a body written in capitals only (the docs/extending.md example)."""
    if body.isupper():
        raise MessageRejected("please do not shout")


def record(room_slug: str, author: str, body: str) -> None:
    """Accept everything, and remember what was asked."""
    calls.append((room_slug, author, body))


def gate(room_slug: str, author: str, body: str) -> None:
    """Accept once ``released`` is set: only an event loop left running can set it."""
    if not released.wait(timeout=5):
        raise MessageRejected("the event loop was blocked while the message was validated")
