import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from chat import selectors, services
from chat.consumers import REFUSALS
from chat.models import Message, Room


@pytest.fixture
def room(db):
    return services.room_get_or_create(slug="general")


def store(room, body="hi", client_id="c1", author="ann", user_id=None):
    return services.message_store(room=room, author=author, user_id=user_id, body=body, client_id=client_id)


def test_sequence_numbers_count_up_per_room(db):
    first = services.room_get_or_create(slug="first")
    second = services.room_get_or_create(slug="second")
    seqs = [store(first, client_id=f"a{i}").message.seq for i in range(3)]
    seqs.append(store(second, client_id="b0").message.seq)
    assert seqs == [1, 2, 3, 1]
    assert Room.objects.get(slug="first").last_seq == 3


def test_a_stored_message_is_the_row_as_the_orm_reads_it(db, django_user_model):
    room = Room.objects.create(slug="rowcheck")
    user = django_user_model.objects.create_user("ann")
    posted = services.message_store(
        room=room, author="ann", user_id=user.pk, body="héllo ☃", client_id="r1", author_key=f"u{user.pk}"
    )
    mine = posted.message
    assert mine.pk is not None and not mine._state.adding
    row = Message.objects.get(pk=mine.pk)
    fields = [field.attname for field in Message._meta.concrete_fields]
    assert [getattr(row, name) for name in fields] == [getattr(mine, name) for name in fields]
    assert (row.room_id, row.seq, row.user_id, row.body, row.system, row.deleted_at) == (
        room.pk,
        1,
        user.pk,
        "héllo ☃",
        False,
        None,
    )
    system = services.message_post(room=room, author="ops", body="notice", client_id="r2", system=True)
    assert Message.objects.get(pk=system.message.pk).system is True


def test_same_client_id_is_stored_once(room):
    first = store(room, client_id="same")
    again = store(room, client_id="same", body="different text")
    assert first.created and not again.created
    assert again.message.seq == first.message.seq
    assert Message.objects.filter(room=room).count() == 1
    assert Room.objects.get(pk=room.pk).last_seq == 1


def test_a_resend_leaves_no_gap_in_the_sequence(room):
    store(room, client_id="one")
    store(room, client_id="one")  # rejected by the unique index; its seq is rolled back
    assert store(room, client_id="two").message.seq == 2


def test_a_resend_into_a_room_closed_since_gets_its_earlier_copy(room):
    first = store(room, client_id="before-close")
    services.room_close(room=room)
    again = store(room, client_id="before-close")
    assert not again.created and again.message.seq == first.message.seq
    with pytest.raises(services.RoomClosed):
        store(room, client_id="after-close")
    assert Message.objects.filter(room=room).count() == 1
    assert Room.objects.get(pk=room.pk).last_seq == 1


def test_client_id_of_another_author_is_a_conflict(room):
    store(room, client_id="mine", author="ann")
    with pytest.raises(services.ClientIdConflict):
        store(room, client_id="mine", author="bob")
    assert Message.objects.count() == 1


def test_bad_bodies_are_refused_before_storing(room):
    refusals = [
        ("", services.EmptyBody, "body_empty"),
        ("x" * 4001, services.BodyTooLong, "body_too_long"),
        ("a\x00", services.BodyNotStorable, "invalid_body"),
    ]
    for body, refusal, reason in refusals:
        with pytest.raises(refusal) as caught:
            store(room, body=body)
        assert (caught.value.reason, caught.value.field) == (reason, "body")
    assert Message.objects.count() == 0
    assert Room.objects.get(pk=room.pk).last_seq == 0


def test_an_invalid_client_id_is_refused_naming_its_field(room):
    with pytest.raises(services.InvalidClientId) as caught:
        store(room, client_id="no spaces")
    assert (caught.value.reason, caught.value.field) == ("invalid_field", "client_id")
    assert Message.objects.count() == 0


def test_every_refusal_of_the_services_has_its_wire_code():
    refusals = [
        services.InvalidRoomSlug,
        services.EmptyBody,
        services.BodyTooLong,
        services.BodyNotStorable,
        services.InvalidClientId,
        services.ClientIdConflict,
        services.RoomClosed,
        services.MessageRejected,
    ]
    assert set(REFUSALS) == set(refusals)
    # The refusals that carry a reason use the wire's own word for it.
    for refusal in refusals:
        reason = getattr(refusal, "reason", None)
        assert reason is None or REFUSALS[refusal][0] == reason


def test_invalid_room_slug_is_refused(db):
    with pytest.raises(services.InvalidRoomSlug) as caught:
        services.room_get_or_create(slug="No Spaces")
    assert caught.value.reason == "invalid_room"
    assert not Room.objects.exists()


def history(room, since=None, history_size=3, resume_limit=5):
    return selectors.message_history(
        room_id=room.pk,
        room_slug=room.slug,
        since=since,
        history_size=history_size,
        resume_limit=resume_limit,
    )


def test_history_without_since_is_the_last_messages(room):
    for i in range(5):
        store(room, client_id=f"c{i}")
    result = history(room)
    assert [m["seq"] for m in result.messages] == [3, 4, 5]
    assert (result.last_seq, result.complete) == (5, True)


def test_resume_since_returns_only_missed_messages(room):
    for i in range(6):
        store(room, client_id=f"c{i}")
    result = history(room, since=2)
    assert [m["seq"] for m in result.messages] == [3, 4, 5, 6]
    assert result.complete


def test_resume_beyond_the_limit_returns_the_newest_and_says_incomplete(room):
    for i in range(9):
        store(room, client_id=f"c{i}")
    result = history(room, since=1)
    assert [m["seq"] for m in result.messages] == [5, 6, 7, 8, 9]
    assert (result.last_seq, result.complete) == (9, False)


def test_resume_from_the_future_says_incomplete(room):
    store(room)
    result = history(room, since=40)
    assert [m["seq"] for m in result.messages] == [1]
    assert not result.complete


def test_resume_when_nothing_was_missed_is_empty_and_complete(room):
    store(room)
    result = history(room, since=1)
    assert (result.messages, result.last_seq, result.complete) == ([], 1, True)


def test_message_post_stores_and_reports(room):
    posted = services.message_post(room=room, author="system", body="hello", client_id="sys-1")
    assert posted.created and posted.message.seq == 1
    again = services.message_post(room=room, author="system", body="hello", client_id="sys-1")
    assert not again.created and again.message.seq == 1


def test_message_post_refuses_a_misspelt_or_missing_keyword(room):
    with pytest.raises(TypeError, match="unexpected \\['user'\\]"):
        services.message_post(room=room, author="ann", body="hi", client_id="k1", user=None)
    with pytest.raises(TypeError, match="missing \\['client_id'\\]"):
        services.message_post(room=room, author="ann", body="hi")
    assert not Message.objects.filter(room=room).exists()


# A message stored outside any transaction goes on the driver's connection, in a transaction of
# its own (services._take_seq_and_insert_alone); inside one it goes through Django's cursor.


def idle_in_autocommit() -> bool:
    """Django's connection is open, in autocommit mode, and the driver holds no transaction."""
    raw = connection.connection
    if connection.vendor == "sqlite":
        open_transaction = raw.in_transaction
    else:
        open_transaction = raw.info.transaction_status != 0  # psycopg: IDLE
    return connection.get_autocommit() and not connection.in_atomic_block and not open_transaction


@pytest.mark.django_db(transaction=True)
def test_a_lone_store_takes_its_seq_and_commits_on_the_drivers_connection():
    room = services.room_get_or_create(slug="alone")
    with CaptureQueriesContext(connection) as queries:
        first = store(room, client_id="a1", user_id=None)
        second = store(room, client_id="a2")
    assert len(queries) == 0  # nothing went through Django's cursor
    assert (first.message.seq, second.message.seq) == (1, 2)
    assert idle_in_autocommit()
    row = Message.objects.get(pk=second.message.pk)
    fields = [field.attname for field in Message._meta.concrete_fields]
    assert [getattr(row, name) for name in fields] == [getattr(second.message, name) for name in fields]
    assert Room.objects.get(pk=room.pk).last_seq == 2


@pytest.mark.django_db(transaction=True)
def test_a_lone_store_that_fails_rolls_back_its_seq_and_leaves_the_connection_idle():
    room = services.room_get_or_create(slug="alone-fails")
    first = store(room, client_id="once")
    again = store(room, client_id="once", body="again")  # the unique index refuses the INSERT
    assert not again.created and again.message.seq == first.message.seq
    assert idle_in_autocommit()
    with pytest.raises(services.ClientIdConflict):
        store(room, client_id="once", author="bob")
    assert idle_in_autocommit()
    assert store(room, client_id="next").message.seq == 2  # no gap: the refused seqs rolled back
    services.room_close(room=room)
    with pytest.raises(services.RoomClosed):
        store(room, client_id="after-close")
    assert idle_in_autocommit()
    assert Room.objects.get(pk=room.pk).last_seq == 2
    assert list(Message.objects.filter(room=room).values_list("seq", flat=True).order_by("seq")) == [1, 2]


@pytest.mark.django_db(transaction=True)
def test_a_store_inside_a_transaction_is_part_of_it():
    room = services.room_get_or_create(slug="inside")
    with pytest.raises(RuntimeError), transaction.atomic():
        assert store(room, client_id="in").message.seq == 1
        raise RuntimeError("the caller's transaction fails")
    assert not Message.objects.filter(room=room).exists()
    assert Room.objects.get(pk=room.pk).last_seq == 0
    assert store(room, client_id="in").message.seq == 1


@pytest.mark.parametrize("system", [False, True])
@pytest.mark.parametrize("user", [False, True])
def test_the_insert_values_are_what_the_fields_would_prepare(db, django_user_model, system, user):
    room = services.room_get_or_create(slug="values")
    user_id = django_user_model.objects.create_user("ann").pk if user else None
    message = Message(
        room=room,
        seq=7,
        user_id=user_id,
        author="ann ☃",
        body="x" * 64,
        client_id="c1",
        sent_at=timezone.now(),
        system=system,
        author_key=None if system else "g-ann",
    )
    fields, _ = services._insert_message_sql()
    expected = [field.get_db_prep_save(getattr(message, field.attname), connection) for field in fields]
    assert services._db_values(message, fields, connection) == expected


def test_the_janitors_room_reads_take_the_ids_given_in_chunks(db, monkeypatch):
    rooms = [Room.objects.create(slug=f"j{i}", private=i % 3 == 0) for i in range(7)]
    for room, seq in zip(rooms, [0, 4, 1, 9, 2, 0, 5], strict=True):
        Room.objects.filter(pk=room.pk).update(last_seq=seq)
    asked = [room.pk for room in rooms[1:]] + [10**9]  # the first left out; one id with no room
    monkeypatch.setattr(selectors, "ROOM_IDS_PER_QUERY", 2)
    with CaptureQueriesContext(connection) as queries:
        last_seqs = selectors.room_last_seqs(room_ids=asked)
    assert len(queries) == 4  # 7 ids, 2 a query
    expected = dict(Room.objects.filter(pk__in=asked).values_list("pk", "last_seq"))
    assert last_seqs == expected and len(expected) == 6
    private = selectors.private_room_ids(room_ids=asked)
    assert private == set(Room.objects.filter(pk__in=asked, private=True).values_list("pk", flat=True))
    assert private == {rooms[3].pk, rooms[6].pk}
    assert selectors.room_last_seqs(room_ids=[]) == {} and selectors.private_room_ids(room_ids=[]) == set()
    with pytest.raises(ValueError):
        selectors.room_last_seqs(room_ids=["1) OR (1=1"])  # type: ignore[list-item]
