"""Writes: rooms and messages. Every way of posting (socket, view, admin, command) comes here."""

from __future__ import annotations

import contextlib
import functools
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, ClassVar, NotRequired, TypedDict, Unpack

from asgiref.sync import async_to_sync
from channels.db import database_sync_to_async
from django.conf import settings
from django.core.signals import setting_changed
from django.db import DEFAULT_DB_ALIAS, IntegrityError, connection, connections, transaction
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.models import (
    BooleanField,
    CharField,
    DateTimeField,
    Field,
    ForeignKey,
    PositiveBigIntegerField,
    TextField,
)
from django.dispatch import receiver
from django.utils import timezone
from django.utils.module_loading import import_string

from . import hub, protocol, removal, selectors
from .group_commit import GroupCommit
from .models import Message, Removal, Room

# Refusals: what a caller did wrong, in the terms of rooms and messages. Each way in words them
# its own way: the consumer maps them to wire codes, the admin form and manage.py post show
# ``reason`` and ``str(error)``.


class InvalidRoomSlug(ValueError):
    """The slug is not one a room may have (protocol.ROOM_SLUG_RE); ``str(error)`` says why."""

    reason = "invalid_room"


class InvalidMessage(ValueError):
    """A message that cannot be stored: ``field`` is the part at fault, ``reason`` names the rule."""

    field: ClassVar[str] = "body"
    reason: ClassVar[str]


class EmptyBody(InvalidMessage):
    reason = "body_empty"


class BodyTooLong(InvalidMessage):
    """Longer than RIPPLE_MAX_BODY_CHARS."""

    reason = "body_too_long"


class BodyNotStorable(InvalidMessage):
    """A NUL or a lone surrogate: text some database backend cannot store."""

    reason = "invalid_body"


class InvalidClientId(InvalidMessage):
    """Not a client_id (protocol.CLIENT_ID_RE)."""

    field = "client_id"
    reason = "invalid_field"


class ClientIdConflict(Exception):
    """The ``client_id`` is already used in the room by another author."""


class RoomClosed(Exception):
    """A moderator closed the room."""


class MessageRejected(Exception):
    """A RIPPLE_MESSAGE_VALIDATORS callable refused a message; ``str(error)`` says why."""


@dataclass(frozen=True, slots=True)
class Posted:
    """A stored message and whether this call stored it (False: an earlier send did)."""

    message: Message
    created: bool
    room_slug: str

    @property
    def frame_text(self) -> str:
        return protocol.dumps(selectors.message_payloads([self.message], self.room_slug)[0])


def room_get_or_create(*, slug: str, title: str = "") -> Room:
    return room_create_if_missing(slug=slug, title=title)[0]


def room_create_if_missing(*, slug: str, title: str = "") -> tuple[Room, bool]:
    """The room, and whether this call created it (False: it existed, or a concurrent caller made it)."""
    if not protocol.ROOM_SLUG_RE.fullmatch(slug):
        raise InvalidRoomSlug(f"{slug[:80]!r} is not a valid room slug")
    try:
        return Room.objects.get_or_create(slug=slug, defaults={"title": title})
    except IntegrityError:  # created by a concurrent caller between the get and the create
        return Room.objects.get(slug=slug), False


def room_creation_allowed(*, user: Any) -> bool:
    """Whether RIPPLE_ROOM_CREATION lets ``user`` (None or anonymous: a guest) create a room."""
    policy = settings.RIPPLE_ROOM_CREATION
    if policy == "anyone":
        return True
    if user is None or not user.is_authenticated:
        return False
    return policy == "users" or bool(user.is_staff)


def message_store(
    *,
    room: Room,
    author: str,
    user_id: int | None,
    body: str,
    client_id: str,
    system: bool = False,
    author_key: str | None = None,
) -> Posted:
    """Store one message with the room's next sequence number, or find the earlier copy.

    The hot path is two statements in one transaction: take the next ``seq`` and insert. A
    re-send (same ``client_id``) fails the insert on the unique ``(room, client_id)`` index; the
    transaction rolls back, ``seq`` included, and the earlier copy is returned, but only to the
    same ``author_key`` (identity.Identity.member_id; "system" for the operators; ``u<id>`` when
    only ``user_id`` is given): anyone else gets ``ClientIdConflict``, whatever name they use.
    A message that breaks a rule gets an ``InvalidMessage`` before any query.
    """
    if author_key is None:
        author_key = "system" if system else (f"u{user_id}" if user_id is not None else None)
    message_body_check(body)
    if not protocol.CLIENT_ID_RE.fullmatch(client_id):
        raise InvalidClientId("invalid client_id")
    now = timezone.now()
    message = Message(
        room=room,
        seq=0,  # taken in the transaction
        user_id=user_id,
        author=author,
        body=body,
        client_id=client_id,
        sent_at=now,
        system=system,
        author_key=author_key,
    )
    try:
        db = connections[DEFAULT_DB_ALIAS]
        db.ensure_connection()
        if db.in_atomic_block or not db.autocommit or db.vendor not in ("sqlite", "postgresql"):
            with transaction.atomic():
                _take_seq_and_insert(message)
        else:
            _take_seq_and_insert_alone(db, message)
        return Posted(message=message, created=True, room_slug=room.slug)
    except (IntegrityError, RoomClosed):
        # A re-send is answered with its earlier copy, even in a room closed since.
        earlier = _message_by_client_id(room, client_id)
        if earlier is None:
            raise
    if not _same_sender(earlier, author_key=author_key, author=author, user_id=user_id):
        raise ClientIdConflict(client_id)
    return Posted(message=earlier, created=False, room_slug=room.slug)


def message_body_check(body: str) -> None:
    """Raise an ``InvalidMessage`` unless ``body`` may be stored: every way of posting checks it."""
    limit = settings.RIPPLE_MAX_BODY_CHARS
    if not body.strip():
        raise EmptyBody("the body is empty")
    if len(body) > limit:
        raise BodyTooLong(f"bodies are limited to {limit} characters")
    if not protocol.body_is_storable(body):
        raise BodyNotStorable("the body holds NUL or text that is not valid Unicode")


def _same_sender(earlier: Message, *, author_key: str | None, author: str, user_id: int | None) -> bool:
    """Whether ``earlier`` was sent by the identity now re-sending its client_id."""
    earlier_key = earlier.author_key
    if earlier_key is None and earlier.user_id is not None:
        earlier_key = f"u{earlier.user_id}"  # a row from before author_key
    elif earlier_key is None and earlier.system:
        earlier_key = "system"
    if author_key is None and earlier_key is None:
        # A caller that knows no identity (a script, a test) re-sending a keyless guest row:
        # only the name is left to compare.
        return earlier.author == author and earlier.user_id == user_id
    return author_key == earlier_key


def _take_seq_and_insert(message: Message) -> None:
    """Give ``message`` the room's next ``seq`` and INSERT it, inside the caller's transaction.

    The ``UPDATE ... RETURNING`` takes the room's row lock (PostgreSQL), or the write lock
    taken at ``BEGIN IMMEDIATE`` (SQLite) serialises the room's writers until commit, so each
    ``seq`` is handed out exactly once. ``RoomClosed`` when the room is closed or gone.

    The INSERT is a statement built once (``Message.objects.create`` compiles it anew on every
    call: 140 µs of the 320 µs a message cost in a batch of ten on SQLite, docs/benchmarks.md);
    values are what the model's own fields would prepare, as ``save()`` does (``_db_values``).
    Like ``bulk_create``, no ``pre_save``/``post_save`` signal is sent: nothing in Ripple
    listens for messages (chat/signals.py matches rooms and memberships only).
    """
    fields, insert = _insert_message_sql()
    with connection.cursor() as cursor:
        _seq_and_insert(cursor, connection, message, fields, _next_seq_sql(), insert)


def _seq_and_insert(
    cursor: Any, db: BaseDatabaseWrapper, message: Message, fields: list[Field], next_seq: str, insert: str
) -> None:
    """The two statements on ``cursor``, inside a transaction: ``message`` gets its ``seq``
    (``RoomClosed`` when the room is closed or gone), is inserted, and gets its id."""
    cursor.execute(next_seq, [db.ops.adapt_datetimefield_value(message.sent_at), message.room_id])
    row = cursor.fetchone()
    if row is None:
        raise RoomClosed(message.room.slug)
    message.seq = int(row[0])
    cursor.execute(insert, _db_values(message, fields, db))
    message.pk = cursor.fetchone()[0]
    message._state.adding = False
    message._state.db = db.alias


def _take_seq_and_insert_alone(db: BaseDatabaseWrapper, message: Message) -> None:
    """``_take_seq_and_insert`` in a transaction of its own, on the driver's connection.

    The same statements as Django would send, between a ``BEGIN`` (SQLite: the configured
    ``transaction_mode``, IMMEDIATE) and a ``COMMIT``, on a cursor of the DB-API connection:
    ``transaction.atomic`` and Django's cursor wrappers cost twice what SQLite's work does
    (docs/benchmarks.md). Errors are Django's (``wrap_database_errors``), and anything that
    fails rolls the transaction back before it is raised. Only used on a connection that is
    open, in autocommit mode and outside any atomic block, so Django's view of it stays true.
    """
    fields, begin, next_seq, insert = _alone_sql(db.vendor, getattr(db, "transaction_mode", None))
    with db.wrap_database_errors:
        cursor = db.connection.cursor()
        try:
            cursor.execute(begin)
            try:
                _seq_and_insert(cursor, db, message, fields, next_seq, insert)
                cursor.execute("COMMIT")
            except BaseException:
                with contextlib.suppress(Exception):
                    cursor.execute("ROLLBACK")
                raise
        finally:
            cursor.close()


# Fields whose ``get_db_prep_save`` gives a ``str``, ``int`` or ``bool`` value back as it is
# (exact types: a subclass may prepare differently).
_PLAIN_FIELDS = frozenset({CharField, TextField, PositiveBigIntegerField, BooleanField, ForeignKey})


def _db_values(message: Message, fields: list[Field], db: BaseDatabaseWrapper) -> list[Any]:
    """What ``field.get_db_prep_save`` gives for each of ``message``'s ``fields``, without its
    calls where the answer is known: None, a plain value in a plain field, an aware datetime."""
    values: list[Any] = []
    for field in fields:
        value = getattr(message, field.attname)
        kind = type(value)
        if value is None or (kind in (str, int, bool) and type(field) in _PLAIN_FIELDS):
            values.append(value)
        elif kind is datetime and value.tzinfo is not None and type(field) is DateTimeField:
            values.append(db.ops.adapt_datetimefield_value(value))
        else:
            values.append(field.get_db_prep_save(value, db))
    return values


@functools.cache
def _alone_sql(vendor: str, transaction_mode: str | None) -> tuple[list[Field], str, str, str]:
    """The insert's fields, and ``BEGIN``, the seq ``UPDATE`` and the ``INSERT`` as the driver
    takes them (sqlite3's placeholder is ``?``; the statements hold no other ``%``)."""
    fields, insert = _insert_message_sql()
    next_seq = _next_seq_sql()
    begin = "BEGIN"
    if vendor == "sqlite":
        next_seq, insert = next_seq.replace("%s", "?"), insert.replace("%s", "?")
        if transaction_mode:
            begin = f"BEGIN {transaction_mode}"
    return fields, begin, next_seq, insert


@functools.cache
def _next_seq_sql() -> str:
    def column(name: str) -> str:
        field = Room._meta.get_field(name)
        assert isinstance(field, Field) and field.column
        return connection.ops.quote_name(field.column)

    table = connection.ops.quote_name(Room._meta.db_table)
    last_seq = column("last_seq")
    # Identifiers come from the model's metadata; the values are bound parameters.
    return (
        f"UPDATE {table} SET {last_seq} = {last_seq} + 1, {column('last_message_at')} = %s"  # noqa: S608
        f" WHERE {column('id')} = %s AND {column('closed_at')} IS NULL RETURNING {last_seq}"
    )


@functools.cache
def _insert_message_sql() -> tuple[list[Field], str]:
    fields = [field for field in Message._meta.concrete_fields if not field.primary_key]
    quote = connection.ops.quote_name
    assert Message._meta.pk is not None
    columns = ", ".join(quote(field.column) for field in fields)
    placeholders = ", ".join(["%s"] * len(fields))
    # Identifiers come from the model's metadata; the values are bound parameters.
    return fields, (
        f"INSERT INTO {quote(Message._meta.db_table)} ({columns}) VALUES ({placeholders})"  # noqa: S608
        f" RETURNING {quote(Message._meta.pk.column)}"
    )


def _message_by_client_id(room: Room, client_id: str) -> Message | None:
    # No ORDER BY: (room, client_id) is unique.
    found = list(Message.objects.filter(room=room, client_id=client_id).order_by()[:1])
    return found[0] if found else None


async def message_publish(posted: Posted) -> None:
    """Fan a newly stored message out to the room, on every process."""
    await message_deliver_here(posted)
    await message_send_out(posted)


async def message_deliver_here(posted: Posted) -> None:
    """``message_publish``'s first half: the room's subscribers on this process (a socket sends
    its ``ack`` between the halves, chat/consumers/frames.py)."""
    if posted.created:
        await hub.message_deliver_here(**_published(posted))


async def message_send_out(posted: Posted) -> None:
    """``message_publish``'s second half: every other process, through the channel layer."""
    if posted.created:
        await hub.message_send_out(**_published(posted))


def _published(posted: Posted) -> dict[str, Any]:
    message = posted.message
    return {
        "room_slug": posted.room_slug,
        "seq": message.seq,
        "text": posted.frame_text,
        "stored_at": message.sent_at.timestamp(),
    }


class PostFields(TypedDict):
    """What ``message_post`` and ``amessage_post`` take, all by keyword."""

    room: Room
    author: str
    body: str
    client_id: str
    user_id: NotRequired[int | None]
    system: NotRequired[bool]


# PostFields' required keys (its __required_keys__ counts the NotRequired ones too while this
# module's annotations are strings).
POST_REQUIRED = frozenset({"room", "author", "body", "client_id"})


def _accepted(fields: PostFields) -> Posted:
    # Keyword arguments are only checked by type checkers: a misspelt one must still fail here.
    unknown, missing = fields.keys() - PostFields.__annotations__, POST_REQUIRED - fields.keys()
    if unknown or missing:
        raise TypeError(f"message_post: unexpected {sorted(unknown)}, missing {sorted(missing)}")
    return message_accept(
        room=fields["room"],
        author=fields["author"],
        user_id=fields.get("user_id"),
        body=fields["body"],
        client_id=fields["client_id"],
        system=fields.get("system", False),
    )


def message_post(**fields: Unpack[PostFields]) -> Posted:
    """Store a message and fan it out to the room; for views, admin actions and commands."""
    posted = _accepted(fields)
    async_to_sync(message_publish)(posted)
    return posted


async def amessage_post(**fields: Unpack[PostFields]) -> Posted:
    """``message_post`` for async callers: the database work in a thread, the publish awaited."""
    posted = await database_sync_to_async(_accepted)(fields)
    await message_publish(posted)
    return posted


# Message validation (RIPPLE_MESSAGE_VALIDATORS, docs/extending.md).

MessageValidator = Callable[[str, str, str], None]


class MessageFields(TypedDict):
    """``message_store``'s arguments, for the functions that pass them on unchanged."""

    room: Room
    author: str
    user_id: int | None
    body: str
    client_id: str
    system: NotRequired[bool]
    author_key: NotRequired[str | None]


def message_accept(**fields: Unpack[MessageFields]) -> Posted:
    """Run the message validators, then ``message_store``; the socket and both posts come here.

    System messages (announcements by staff) skip the validators.
    """
    if not fields.get("system", False):
        for validator in message_validators():
            validator(fields["room"].slug, fields["author"], fields["body"])
    return message_store(**fields)


def _accept(fields: MessageFields) -> Posted:
    return message_accept(**fields)


# Messages sent on sockets meanwhile are stored together (chat/group_commit.py).
message_writes: GroupCommit[MessageFields, Posted] = GroupCommit(_accept)


async def amessage_accept(**fields: Unpack[MessageFields]) -> Posted:
    """``message_accept`` for the event loop: stored with the messages queued beside it.

    While one write is in the database thread, the ones that arrive wait and go in the next,
    each in a savepoint of one transaction committed once; it returns once the message's
    transaction has committed, as ``message_accept`` does.
    """
    return await message_writes.submit(fields)


@functools.cache
def message_validators() -> tuple[MessageValidator, ...]:
    """The RIPPLE_MESSAGE_VALIDATORS callables, imported once: an empty tuple costs nothing."""
    return tuple(import_string(path) for path in settings.RIPPLE_MESSAGE_VALIDATORS)


@receiver(setting_changed)
def _validators_changed(*, setting: str, **kwargs: Any) -> None:
    # Tests override the setting; a running server never changes it.
    if setting == "RIPPLE_MESSAGE_VALIDATORS":
        message_validators.cache_clear()


# Moderation: each change is stored first, then told to every process.


def message_delete(*, message_ids: list[int]) -> dict[str, list[int]]:
    """Soft-delete messages; open pages remove them. Returns the deleted seqs by room slug."""
    rows = list(
        Message.objects.filter(pk__in=message_ids, deleted_at__isnull=True)
        .select_related("room")
        .only("pk", "seq", "room__slug")
    )
    Message.objects.filter(pk__in=[row.pk for row in rows]).update(deleted_at=timezone.now())
    by_room: dict[str, list[int]] = {}
    for row in rows:
        by_room.setdefault(row.room.slug, []).append(row.seq)
    for slug, seqs in by_room.items():
        seqs.sort()
        async_to_sync(hub.room_event)(slug, hub.EVENT_DELETED, {"seqs": seqs})
    return by_room


def room_announce(*, rooms: list[Room], body: str, author: str = "announcement") -> list[Posted]:
    """Post a system message into each room: stored, sequenced and fanned out."""
    client_id = f"announce-{uuid.uuid4().hex}"
    return [
        message_post(room=room, author=author, body=body, client_id=client_id, system=True) for room in rooms
    ]


def room_close(*, room: Room, reason: str = "") -> None:
    """Close a room: its subscribers are told and unsubscribed, new subscribes are refused."""
    Room.objects.filter(pk=room.pk).update(closed_at=timezone.now())
    async_to_sync(hub.room_event)(room.slug, hub.EVENT_CLOSED, {"reason": reason})


def room_delete(*, room_ids: list[int]) -> list[str]:
    """Delete rooms with their messages and memberships; returns the deleted rooms' slugs.

    After the commit every process sends the rooms' subscribers ``unsubscribed`` (reason
    ``room_deleted``) and lets go of them, so a later subscribe to the slug makes a new room.
    """
    with transaction.atomic():
        rooms = Room.objects.filter(pk__in=room_ids)
        slugs = sorted(rooms.values_list("slug", flat=True))
        # Messages have no signal receivers or relations of their own: one DELETE for them all.
        rooms.delete()

        def tell() -> None:
            for slug in slugs:
                async_to_sync(hub.room_event)(slug, hub.EVENT_ROOM_DELETED, {})

        transaction.on_commit(tell)
    return slugs


def room_reopen(*, room: Room) -> None:
    """Reopen a room; pages that were in it when it closed subscribe again (``room_reopened``)."""
    Room.objects.filter(pk=room.pk).update(closed_at=None)
    async_to_sync(hub.control_event)(hub.EVENT_REOPENED, {"room": room.slug})


def member_remove(*, keys: list[str], by: str = "") -> datetime:
    """Remove users and guests (identity member ids: ``u<id>``, ``g<session>``) from the chat.

    Their sockets close with 4403 on every process, and their handshakes and subscribes are
    refused for ``RIPPLE_REMOVAL_S`` (chat/removal.py). Returns when the removal ends.
    """
    until = timezone.now() + timedelta(seconds=settings.RIPPLE_REMOVAL_S)
    for key in keys:
        Removal.objects.update_or_create(key=key, defaults={"until": until, "by": by})
    removal.remember(keys, until)
    async_to_sync(hub.control_event)(hub.EVENT_REMOVE_MEMBERS, {"keys": sorted(keys)})
    return until


def user_disconnect(*, user_id: int) -> None:
    """Close every socket of a user, on every process, with the "do not reconnect" code."""
    async_to_sync(hub.control_event)(hub.EVENT_DISCONNECT_USER, {"user_id": user_id})


def session_end(*, tag: str) -> None:
    """Close every socket opened with the session ``tag`` (identity.session_tag), everywhere."""
    if tag:
        async_to_sync(hub.control_event)(hub.EVENT_END_SESSION, {"session": tag})


def room_access_changed(*, slug: str) -> None:
    """Tell every process: sockets of users no longer allowed in the room leave it now."""
    async_to_sync(hub.room_event)(slug, hub.EVENT_ACCESS, {})
