"""Reads: history, resume and room listings."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.db import connection
from django.db.models import Field, Q, QuerySet

from . import protocol
from .models import Message, Room, RoomMembership


@dataclass(frozen=True, slots=True)
class History:
    """What a ``subscribed`` frame carries."""

    messages: list[dict[str, Any]]
    last_seq: int
    complete: bool
    # ``messages`` holds every stored message with ``after < seq <= last_seq`` (the room's hub
    # keeps them as the start of its ring: chat/hub/stream.py).
    after: int = 0


def message_payloads(messages: QuerySet[Message] | list[Message], room_slug: str) -> list[dict[str, Any]]:
    return [
        protocol.message_payload(
            room=room_slug,
            seq=message.seq,
            author=message.author,
            body=message.body,
            sent_at=message.sent_at,
            client_id=message.client_id,
            system=message.system,
            deleted=message.deleted_at is not None,
            author_kind=message.author_kind,
        )
        for message in messages
    ]


def history_window(
    *, last_seq: int, since: int | None, history_size: int, resume_limit: int
) -> tuple[int, bool]:
    """(the seq a history starts after, whether it is complete) for a subscribe up to ``last_seq``:
    the last ``history_size`` messages, or those after ``since`` up to ``resume_limit`` of them."""
    if since is None:
        return max(0, last_seq - history_size), True
    if since > last_seq:
        # The client remembers a history this server does not have (a reset database).
        return max(0, last_seq - history_size), False
    if last_seq - since > resume_limit:
        return last_seq - resume_limit, False
    return since, True


def newest_that_fit(sizes: list[int], max_bytes: int | None) -> int:
    """How many of the last of ``sizes`` (encoded bytes, each sent with a separator) fit in
    ``max_bytes``; all of them when there is no limit."""
    if max_bytes is None:
        return len(sizes)
    kept, total = 0, 0
    for size in reversed(sizes):
        total += size + 1
        if total > max_bytes:
            break
        kept += 1
    return kept


def message_history(
    *,
    room_id: int,
    room_slug: str,
    since: int | None,
    history_size: int,
    resume_limit: int,
    max_bytes: int | None = None,
) -> History:
    """The last ``history_size`` messages, or every message after ``since`` up to ``resume_limit``.

    At most ``max_bytes`` of encoded messages: the newest that fit. A resume cut short that way
    is incomplete, as one cut by ``resume_limit`` is.
    """
    last_seq = Room.objects.filter(pk=room_id).values_list("last_seq", flat=True).get()
    low, complete = history_window(
        last_seq=last_seq, since=since, history_size=history_size, resume_limit=resume_limit
    )
    # Bounded by last_seq: messages commit in seq order, so everything up to it is visible and
    # nothing newer slips in between the two reads.
    rows = Message.objects.filter(room_id=room_id, seq__gt=low, seq__lte=last_seq).order_by("seq")
    messages = message_payloads(rows, room_slug)
    if max_bytes is not None:
        kept = newest_that_fit([len(protocol.dumps(payload).encode()) for payload in messages], max_bytes)
        if kept < len(messages):
            messages = messages[len(messages) - kept :]
            complete = complete and since is None
            low = messages[0]["seq"] - 1 if messages else last_seq
    return History(messages=messages, last_seq=last_seq, complete=complete, after=low)


def message_range(*, room_id: int, room_slug: str, after: int, upto: int) -> list[tuple[int, str]]:
    """Encoded ``message`` frames with ``after < seq <= upto``, oldest first."""
    rows = Message.objects.filter(room_id=room_id, seq__gt=after, seq__lte=upto).order_by("seq")
    return [(payload["seq"], protocol.dumps(payload)) for payload in message_payloads(rows, room_slug)]


def room_row(*, room_id: int) -> Room | None:
    """The room's row as stored now (None once deleted)."""
    return Room.objects.filter(pk=room_id).first()


def room_last_seqs(*, room_ids: list[int]) -> dict[int, int]:
    return dict(_room_column_by_id(room_ids, "last_seq"))


# Ids bound per query by ``_room_column_by_id`` (SQLite allows 32,766 variables; PostgreSQL
# 65,535).
ROOM_IDS_PER_QUERY = 1000


def _room_column_by_id(
    room_ids: list[int], column: str, *, private_only: bool = False
) -> list[tuple[int, Any]]:
    """``(id, <column>)`` of each room in ``room_ids`` (only the private ones if asked), in SQL
    built here from the model's metadata, each id a bound parameter.

    The hub's janitor asks for every room with subscribers here: the tail check every 5 s, the
    access audit every 10 s. Django's ``pk__in`` prepares each id in Python: 4.4 ms (last seqs)
    and 3.4 ms (private ids) of the database thread for 1,000 rooms on SQLite, 0.9 and 0.4 ms
    this way (docs/benchmarks.md).
    """
    ids = [int(room_id) for room_id in room_ids]  # ints only, whatever the caller passed

    def name(field_name: str) -> str:
        field = Room._meta.get_field(field_name)
        assert isinstance(field, Field) and field.column
        return connection.ops.quote_name(field.column)

    assert Room._meta.pk is not None
    pk = connection.ops.quote_name(Room._meta.pk.column)
    head = f"SELECT {pk}, {name(column)} FROM {connection.ops.quote_name(Room._meta.db_table)} WHERE "  # noqa: S608 - identifiers from the model's metadata
    if private_only:
        head += f"{name('private')} AND "
    rows: list[tuple[int, Any]] = []
    with connection.cursor() as cursor:
        for start in range(0, len(ids), ROOM_IDS_PER_QUERY):
            chunk = ids[start : start + ROOM_IDS_PER_QUERY]
            cursor.execute(f"{head}{pk} IN ({', '.join(['%s'] * len(chunk))})", chunk)
            rows.extend((int(row[0]), row[1]) for row in cursor.fetchall())
    return rows


def room_list_active(*, user_id: int | None = None, limit: int = 100) -> QuerySet[Room]:
    """Rooms with the most recent activity first: public ones, and private ones ``user_id`` is in.

    A public room is listed once it has a message or a title (set only in the admin or from
    code): rooms that anyone can create by subscribing do not fill the list while empty.
    """
    visible = Q(private=False) & (Q(last_seq__gt=0) | ~Q(title=""))
    if user_id is not None:
        visible |= Q(memberships__user_id=user_id)
    return Room.objects.filter(visible).distinct().order_by("-last_message_at", "slug")[:limit]


def room_find(*, slug: str) -> Room | None:
    return Room.objects.filter(slug=slug).first()


def message_list_recent(*, room: Room, limit: int) -> list[Message]:
    """The room's last ``limit`` messages, oldest first."""
    newest = Message.objects.filter(room=room).order_by("-seq")[:limit]
    return list(reversed(newest))


def room_allows(*, room: Room, user_id: int | None) -> bool:
    """Whether a user (None: a guest) may subscribe to, read and post in ``room``."""
    if not room.private:
        return True
    return user_id is not None and RoomMembership.objects.filter(room_id=room.pk, user_id=user_id).exists()


def room_member_ids(*, room_id: int) -> tuple[bool, set[int]]:
    """(is the room private, its members' user ids)."""
    private = Room.objects.filter(pk=room_id).values_list("private", flat=True).first()
    if not private:
        return False, set()
    return True, set(RoomMembership.objects.filter(room_id=room_id).values_list("user_id", flat=True))


def private_room_ids(*, room_ids: list[int]) -> set[int]:
    """Which of ``room_ids`` are private now."""
    return {room_id for room_id, _ in _room_column_by_id(room_ids, "private", private_only=True)}
