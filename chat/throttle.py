"""Throttling of one chat socket: how long a frame must wait, and when a flood ends the socket.

Every frame, valid or not, takes a token from the socket's frame bucket; a message also takes
one from the socket's message bucket and one from its user's, which every socket of that user
in this process shares (chat/limits.py). A refused frame is answered with ``rate_limited`` and
its wait, and draws a flood strike; strikes are forgiven at one a second, and a client that
runs out of them is closed (4429). Creating a room takes a token from its creator's bucket and
from its client address's. Frames the server makes for a client (chat/sse.py's resume) take
no frame token and draw no strike.
"""

from __future__ import annotations

from django.conf import settings

from . import limits, protocol
from .limits import TokenBucket


class Throttle:
    """The rate limits of one socket; ``release()`` when the socket closes."""

    def __init__(self, *, member_id: str, creator_key: str, client_host: str | None, now: float) -> None:
        """``creator_key``: whose room creations these are (``u<id>``, a session tag, or "")."""
        self.member_id = member_id
        self.creator_key = creator_key
        self.client_host = client_host
        self.frames = TokenBucket(settings.RIPPLE_RATE_FRAMES_PER_S, settings.RIPPLE_RATE_FRAMES_BURST, now)
        self.messages = TokenBucket(
            settings.RIPPLE_RATE_MESSAGES_PER_S, settings.RIPPLE_RATE_MESSAGES_BURST, now
        )
        self.user_messages = limits.user_message_buckets.acquire(
            member_id, settings.RIPPLE_RATE_USER_MESSAGES_PER_S, settings.RIPPLE_RATE_USER_MESSAGES_BURST
        )
        # Once a message is refused, later ones wait until its retry time too: a token freed
        # meanwhile must not let message 3 in before the re-sent message 2.
        self.messages_held_until = 0.0
        # Refused frames forgiven at one a second: a client that keeps flooding runs out.
        self.strikes = TokenBucket(1.0, settings.RIPPLE_FLOOD_STRIKES, now)
        # Room creations of a socket without a session: a bucket of its own, gone with it
        # (shared keys would be free to make).
        self.own_creations: TokenBucket | None = None

    def check(self, frame_type: str | None, now: float, *, from_server: bool = False) -> float:
        """Take a frame's tokens (``frame_type`` None: an invalid frame); the seconds to wait, or 0.0."""
        wait_s = 0.0 if from_server else self.frames.take(now)
        if wait_s == 0.0 and frame_type == protocol.MESSAGE:
            wait_s = max(0.0, self.messages_held_until - now)
            if wait_s == 0.0:
                wait_s = limits.take_all((self.messages, self.user_messages), now)
                if wait_s > 0.0:
                    self.messages_held_until = now + wait_s
        return wait_s

    def flooding(self, now: float, *, from_server: bool = False) -> bool:
        """Draw a strike for a refused frame: True when none was left, and the socket must close."""
        return not from_server and self.strikes.take(now) > 0.0

    def check_room_creation(self, now: float) -> float:
        """Take a room creation's tokens from every bucket or from none; the seconds to wait, or 0.0."""
        return limits.take_all(self._creation_buckets(now), now)

    def refund_room_creation(self, now: float) -> None:
        """Give back what ``check_room_creation`` took when no room was created after all: many
        sockets subscribing to a new room at once each take a token, and one creates it."""
        limits.give_back(self._creation_buckets(now), now)

    def _creation_buckets(self, now: float) -> tuple[TokenBucket, ...]:
        rate_per_s = settings.RIPPLE_ROOM_CREATE_PER_MIN / 60
        burst = settings.RIPPLE_ROOM_CREATE_BURST
        if self.creator_key:
            buckets = [limits.room_creations_per_member.get(self.creator_key, rate_per_s, burst, now)]
        else:
            if self.own_creations is None:
                self.own_creations = TokenBucket(rate_per_s, burst, now)
            buckets = [self.own_creations]
        if self.client_host is not None:
            buckets.append(limits.room_creations_per_address.get(self.client_host, rate_per_s, burst, now))
        return tuple(buckets)

    def release(self) -> None:
        """Let go of the user's shared message bucket (the last socket's release drops it)."""
        limits.user_message_buckets.release(self.member_id)
