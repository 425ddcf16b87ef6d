"""One room as this process sees it: its subscribers, and its messages handed out in order.

The stream hands a room's messages out strictly by ``seq``: an early arrival waits
(``RIPPLE_GAP_FILL_S``) for the ones before it, after which they are read from the database.
It keeps the last ``RECENT_FRAMES`` frames for subscribers that attach mid-burst. Every frame
is encoded once, by its sender, and written as is to each subscriber (``fan_out``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Iterable

from channels.db import database_sync_to_async
from django.conf import settings

from .. import protocol, selectors
from ..models import Room
from ..presence import Member
from ..selectors import History
from ..stats import stats
from .subscriber import Subscriber
from .tasks import TaskSet

logger = logging.getLogger(__name__)

# How many encoded frames each room keeps for subscribers that attach mid-burst.
RECENT_FRAMES = 512


async def fan_out(subscribers: Iterable[Subscriber], text: str) -> int:
    """Write one encoded frame to each subscriber; how many were tried.

    A send that fails (a socket closing meanwhile) is logged and passed over: one socket must
    not stop the room.
    """
    # One event dict for every recipient: the server only reads it.
    event = {"type": "websocket.send", "text": text}
    tried = 0
    for subscriber in subscribers:
        tried += 1
        try:
            send_text = getattr(subscriber, "send_text", None)
            if send_text is None or not send_text(text):
                await subscriber.base_send(event)
        except Exception:
            logger.debug("send to a closing socket failed", exc_info=True)
    return tried


class Subscription:
    """One socket's subscription to a room on this process."""

    __slots__ = ("mark", "member")

    def __init__(self, mark: int, member: Member) -> None:
        # The seq the socket had when it attached: it is sent every message above that, and
        # since deliveries only go up, the mark never needs moving.
        self.mark = mark
        self.member = member


class RoomStream:
    """One room here: local subscribers, the room's members, and the ordered message stream."""

    def __init__(self, slug: str, room_id: int, *, tasks: TaskSet, private: bool = True) -> None:
        self.slug = slug
        self.room_id = room_id
        # Whether the room is private, as its subscribers' Room rows (and room.access events)
        # said: /metrics never names a private room (chat/metrics.py).
        self.private = private
        # False once the hub let go of the room: a new stream of the same room may follow.
        self.live = True
        self.subscribers: dict[Subscriber, Subscription] = {}
        # The room's members across all processes, as last read and told to subscribers here.
        self.members: set[Member] = set()
        # ``members`` as sent in a ``subscribed`` frame, built once per change of the set.
        self._members_json: tuple[set[Member], list[dict[str, str]]] | None = None
        self.presence_timer: asyncio.TimerHandle | None = None
        # What the next presence sync starts from: members this process wrote into the store
        # since the last one (added as they are), and whether the store must be read (another
        # process announced a change, or a member left here: it may still be in elsewhere).
        self.arrived: set[Member] = set()
        self.read_due = False
        # Newest seq handed to subscribers here; None until the group is joined.
        self.delivered: int | None = None
        # Frames that arrived ahead of a hole, by seq.
        self.pending: dict[int, str] = {}
        # The last RECENT_FRAMES delivered (seq, frame text) pairs, oldest first.
        self.recent: deque[tuple[int, str]] = deque(maxlen=RECENT_FRAMES)
        # ``recent`` holds every stored message above this seq (up to ``delivered``): a history
        # that starts at or above it is served from memory (``history``).
        self.recent_from = 0
        # The room's row as read after the group was joined, while no moderation event has
        # changed it since (``forget_row``): a subscribe to a room live here reads no database.
        self.row: Room | None = None
        # Bumped by every ``forget_row``: a read that was under way meanwhile is not kept.
        self.row_version = 0
        # Bumped by every ``forget_recent``: a history read meanwhile does not seed the ring.
        self.recent_version = 0
        self.lock = asyncio.Lock()
        self.joined = asyncio.Event()
        self.join_error: BaseException | None = None
        # Attaches in progress: the stream stays joined while one is running.
        self.attaching = 0
        self.fill_timer: asyncio.TimerHandle | None = None
        self._tasks = tasks

    def members_json(self, including: Member) -> list[dict[str, str]]:
        """The members for a newcomer's ``subscribed``: everyone known here, and the newcomer."""
        cached = self._members_json
        if cached is None or cached[0] is not self.members:
            cached = self._members_json = (self.members, [m.as_json() for m in sorted(self.members)])
        return cached[1] if including in self.members else [*cached[1], including.as_json()]

    def keep_row(self, row: Room, version: int) -> None:
        """Keep ``row`` for later subscribes, unless it was forgotten since it was read."""
        if version == self.row_version and self.live and row.pk == self.room_id:
            self.row = row

    def forget_row(self) -> None:
        """A moderation event changed the room (closed, reopened, access, deleted)."""
        self.row = None
        self.row_version += 1

    def forget_recent(self) -> None:
        """Empty the ring (deleted messages, a deleted room): histories read the database."""
        self.recent.clear()
        self.recent_from = self.delivered or 0
        self.recent_version += 1

    def seed_recent(self, history: History, version: int) -> None:
        """Start an empty ring with the history just read, when it ends where delivery stands
        and no ``forget_recent`` came after ``version`` (taken before the read). Lock held.

        The next subscribers of the room get their history from memory.
        """
        if self.recent or history.last_seq != self.delivered or version != self.recent_version:
            return
        self.recent.extend((payload["seq"], protocol.dumps(payload)) for payload in history.messages)
        self.recent_from = history.after

    def history(
        self, since: int | None, *, history_size: int, resume_limit: int, max_bytes: int | None
    ) -> tuple[list[str], bool] | None:
        """A newcomer's history from the ring, as ``selectors.message_history`` would read it up
        to ``delivered``: (encoded ``message`` frames, complete), or None when the ring does not
        reach back far enough (the database is read instead). Lock held.
        """
        delivered = self.delivered
        assert delivered is not None
        if since is not None and since > delivered:
            return None  # the client saw messages not delivered here yet: the database knows
        low, complete = selectors.history_window(
            last_seq=delivered, since=since, history_size=history_size, resume_limit=resume_limit
        )
        if low < self.recent_from:
            return None
        texts = [text for seq, text in self.recent if seq > low]
        if max_bytes is None:
            return texts, complete
        sizes = [len(text) if text.isascii() else len(text.encode()) for text in texts]
        kept = selectors.newest_that_fit(sizes, max_bytes)
        if kept < len(texts):
            texts = texts[len(texts) - kept :]
            complete = complete and since is None
        return texts, complete

    def recent_after(self, seq: int) -> list[tuple[int, str]] | None:
        """Delivered frames above ``seq``, or None when the ring no longer reaches back that far."""
        if not self.recent or self.recent[0][0] > seq + 1:
            return None
        return [item for item in self.recent if item[0] > seq]

    async def delivered_after(self, seq: int) -> list[tuple[int, str]]:
        """The frames delivered here above ``seq`` (a newcomer's history ends there). Lock held."""
        assert self.delivered is not None
        if self.delivered <= seq:
            return []
        recent = self.recent_after(seq)
        if recent is None:
            recent = await database_sync_to_async(selectors.message_range)(
                room_id=self.room_id, room_slug=self.slug, after=seq, upto=self.delivered
            )
        return recent

    async def send_subscribed(
        self, subscriber: Subscriber, subscribed: str, behind: list[tuple[int, str]]
    ) -> None:
        """A newcomer's ``subscribed`` frame, then what was delivered while its history was read."""
        for text in (subscribed, *(text for _, text in behind)):
            send_text = getattr(subscriber, "send_text", None)
            if send_text is None or not send_text(text):
                await subscriber.base_send({"type": "websocket.send", "text": text})
        stats.frame_out(protocol.SUBSCRIBED)
        stats.frame_out(protocol.MESSAGE, len(behind))

    async def send_all(self, text: str, frame_type: str) -> None:
        """One frame, encoded once, to every subscriber of the room here."""
        await fan_out(list(self.subscribers), text)
        stats.frame_out(frame_type, len(self.subscribers))

    async def send_others(self, text: str, frame_type: str, sender: str) -> None:
        """An ephemeral frame (``typing``) to every subscriber here but the ``sender`` connection.

        Not under the lock and not kept in ``recent``: it orders against nothing and is never
        resent; a subscriber attaching meanwhile may or may not get it.
        """
        due = [subscriber for subscriber in self.subscribers if subscriber.connection_id != sender]
        stats.frame_out(frame_type, await fan_out(due, text))

    def retire(self) -> None:
        """The hub let go of the room: no fill and no presence read is due any more."""
        self.live = False
        for timer in (self.fill_timer, self.presence_timer):
            if timer is not None:
                timer.cancel()
        self.fill_timer = self.presence_timer = None

    # Ordering.

    async def offer(self, seq: int, text: str, stored_at: float | None = None) -> None:
        """Take one message frame from the channel layer (or this process) for delivery."""
        async with self.lock:
            if self.delivered is not None and seq <= self.delivered:
                return
            if self.delivered is None or seq > self.delivered + 1:
                self.pending[seq] = text
                if self.delivered is not None:
                    self.arm_fill()
                return
            await self.deliver(seq, text)
            if stored_at is not None:
                stats.observe_latency(time.time() - stored_at)
            await self.release_ready()

    async def deliver(self, seq: int, text: str) -> None:
        """Hand message ``seq`` to every subscriber that attached before it. Lock held."""
        self.delivered = seq
        if len(self.recent) == RECENT_FRAMES:
            self.recent_from = self.recent[0][0]  # about to leave the ring
        self.recent.append((seq, text))
        # The generator's list() is taken now: a subscriber attaching meanwhile is not sent it.
        due = (subscriber for subscriber, sub in list(self.subscribers.items()) if seq > sub.mark)
        stats.frame_out("message", await fan_out(due, text))

    async def release_ready(self) -> None:
        """Deliver the pending frames that are now next in line; wait for a fill if a hole is left."""
        assert self.delivered is not None
        for seq in [seq for seq in self.pending if seq <= self.delivered]:
            del self.pending[seq]
        while self.pending:
            text = self.pending.pop(self.delivered + 1, None)
            if text is None:
                self.arm_fill()
                return
            await self.deliver(self.delivered + 1, text)
        if self.fill_timer is not None:
            self.fill_timer.cancel()
            self.fill_timer = None

    # Gap fill.

    def arm_fill(self) -> None:
        """Read the hole from the database unless it fills within ``RIPPLE_GAP_FILL_S``."""
        if self.fill_timer is None:
            loop = asyncio.get_running_loop()
            self.fill_timer = loop.call_later(settings.RIPPLE_GAP_FILL_S, self.start_fill, None)

    def start_fill(self, upto: int | None) -> None:
        if self.fill_timer is not None:
            self.fill_timer.cancel()  # harmless when this call is that timer firing
            self.fill_timer = None
        self._tasks.start(self._fill(upto))

    async def _fill(self, upto: int | None) -> None:
        """Read the messages up to ``upto`` (default: the newest pending) from the database."""
        try:
            async with self.lock:
                if upto is None:
                    upto = max(self.pending, default=0)
                if self.delivered is None or upto <= self.delivered:
                    return
                rows = await database_sync_to_async(selectors.message_range)(
                    room_id=self.room_id, room_slug=self.slug, after=self.delivered, upto=upto
                )
                for seq, text in rows:
                    if seq > self.delivered:
                        self.pending.pop(seq, None)
                        await self.deliver(seq, text)
                # Numbers with no row (deleted messages) are passed over.
                self.delivered = max(self.delivered, upto)
                await self.release_ready()
        except Exception:
            logger.exception("filling room %s from the database failed; retrying", self.slug)
            if self.live:
                self.arm_fill()
