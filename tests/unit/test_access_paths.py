"""Losing access to a private room ends open subscriptions whatever path changed it: the
ORM's delete and save (signals, historical models of a data migration included), and changes
no signal sees (QuerySet.update, raw SQL), caught by the hub's periodic re-check."""

import pytest
from channels.db import database_sync_to_async
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

from chat.models import Room, RoomMembership
from tests.support.sessions import logged_in_session

pytestmark = pytest.mark.django_db(transaction=True)

REVOKED = {"type": "unsubscribed", "room": "vault", "ref": None, "reason": "access_revoked"}


def private_room(slug: str, *members: int) -> Room:
    room = Room.objects.create(slug=slug, private=True)
    for user_id in members:
        RoomMembership.objects.create(room=room, user_id=user_id)
    return room


def historical_membership_model():
    """RoomMembership as a data migration sees it: another class, the same table."""
    state = MigrationExecutor(connection).loader.project_state()
    model = state.apps.get_model("chat", "RoomMembership")
    assert model is not RoomMembership
    return model


def delete_in_a_data_migration(user_id: int) -> None:
    historical_membership_model().objects.filter(user_id=user_id).delete()


def move_membership_to_another_user(user_id: int, other_id: int) -> None:
    membership = RoomMembership.objects.get(user_id=user_id)
    membership.user_id = other_id
    membership.save()


def delete_one_by_one(user_id: int) -> None:
    for membership in RoomMembership.objects.filter(user_id=user_id):
        membership.delete()


@pytest.mark.parametrize(
    "change",
    [delete_one_by_one, delete_in_a_data_migration],
    ids=["instance-delete", "data-migration"],
)
async def test_a_membership_removed_by_the_orm_ends_the_subscription_at_once(ws_client, settings, change):
    settings.RIPPLE_ACCESS_RECHECK_S = 3600.0  # the signal alone must do it
    ann_id, ann_key = await database_sync_to_async(logged_in_session)("ann")
    await database_sync_to_async(private_room)("vault", ann_id)
    async with ws_client(session_cookie=ann_key) as ann:
        await ann.subscribe("vault")
        await database_sync_to_async(change)(ann_id)
        assert await ann.recv_type("unsubscribed", timeout=5) == REVOKED


async def test_a_membership_moved_to_another_user_ends_the_old_members_subscription(ws_client, settings):
    settings.RIPPLE_ACCESS_RECHECK_S = 3600.0
    ann_id, ann_key = await database_sync_to_async(logged_in_session)("ann")
    bob_id, _ = await database_sync_to_async(logged_in_session)("bob")
    await database_sync_to_async(private_room)("vault", ann_id)
    async with ws_client(session_cookie=ann_key) as ann:
        await ann.subscribe("vault")
        await database_sync_to_async(move_membership_to_another_user)(ann_id, bob_id)
        assert await ann.recv_type("unsubscribed", timeout=5) == REVOKED


def remove_with_raw_sql(user_id: int) -> None:
    with connection.cursor() as cursor:
        cursor.execute(f"DELETE FROM {RoomMembership._meta.db_table} WHERE user_id = %s", [user_id])


def make_private_with_update(slug: str) -> None:
    Room.objects.filter(slug=slug).update(private=True)


async def test_changes_no_signal_sees_are_caught_by_the_periodic_recheck(ws_client, settings):
    settings.RIPPLE_ACCESS_RECHECK_S = 0.3
    ann_id, ann_key = await database_sync_to_async(logged_in_session)("ann")
    await database_sync_to_async(private_room)("vault", ann_id)
    await database_sync_to_async(Room.objects.create)(slug="lobby")
    async with ws_client(session_cookie=ann_key) as ann, ws_client() as guest:
        await ann.subscribe("vault")
        await guest.subscribe("lobby")
        await database_sync_to_async(remove_with_raw_sql)(ann_id)
        assert await ann.recv_type("unsubscribed", timeout=5) == REVOKED
        await database_sync_to_async(make_private_with_update)("lobby")
        ended = await guest.recv_type("unsubscribed", timeout=5)
        assert ended["room"] == "lobby" and ended["reason"] == "access_revoked"
        await guest.send({"type": "message", "room": "lobby", "body": "still here?", "client_id": "g1"})
        assert (await guest.recv_type("error"))["code"] == "not_subscribed"
