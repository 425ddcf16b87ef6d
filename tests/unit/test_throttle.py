"""chat/throttle.py: one socket's buckets, as plain objects on a made-up clock."""

import uuid

import pytest

from chat import limits, protocol
from chat.throttle import Throttle


@pytest.fixture(autouse=True)
def small_limits(settings):
    settings.RIPPLE_RATE_FRAMES_PER_S = 2.0
    settings.RIPPLE_RATE_FRAMES_BURST = 4
    settings.RIPPLE_RATE_MESSAGES_PER_S = 1.0
    settings.RIPPLE_RATE_MESSAGES_BURST = 2
    settings.RIPPLE_RATE_USER_MESSAGES_PER_S = 1.0
    settings.RIPPLE_RATE_USER_MESSAGES_BURST = 3
    settings.RIPPLE_FLOOD_STRIKES = 2
    settings.RIPPLE_ROOM_CREATE_PER_MIN = 60.0
    settings.RIPPLE_ROOM_CREATE_BURST = 2


def unique(prefix: str) -> str:
    # The shared buckets are process-wide: each test uses keys of its own.
    return f"{prefix}-{uuid.uuid4().hex}"


def throttle(member_id=None, creator_key="", client_host=None, now=0.0):
    member_id = member_id or unique("member")
    return Throttle(member_id=member_id, creator_key=creator_key, client_host=client_host, now=now)


def test_frames_past_the_burst_wait_for_the_next_token():
    socket = throttle()
    assert [socket.check(protocol.PING, 0.0) for _ in range(4)] == [0.0] * 4
    assert socket.check(protocol.PING, 0.0) == pytest.approx(0.5)
    assert socket.check(None, 0.5) == 0.0  # an invalid frame takes its token all the same
    socket.release()


def test_the_servers_own_frames_take_no_frame_token_and_draw_no_strike():
    socket = throttle()
    for _ in range(10):
        assert socket.check(protocol.SUBSCRIBE, 0.0, from_server=True) == 0.0
    assert socket.check(protocol.PING, 0.0) == 0.0
    assert not any(socket.flooding(0.0, from_server=True) for _ in range(10))
    socket.release()


def test_a_message_takes_the_sockets_and_the_users_tokens():
    socket = throttle()
    assert socket.check(protocol.MESSAGE, 0.0) == 0.0
    assert socket.check(protocol.MESSAGE, 0.0) == 0.0
    # The socket's message burst (2) is spent; frames are not.
    assert socket.check(protocol.MESSAGE, 0.0) == pytest.approx(1.0)
    assert socket.check(protocol.PING, 0.0) == 0.0
    socket.release()


def test_a_users_sockets_share_one_message_bucket_until_the_last_lets_go():
    member = unique("ann")
    first, second = throttle(member), throttle(member)
    assert first.check(protocol.MESSAGE, 0.0) == 0.0
    assert first.check(protocol.MESSAGE, 0.0) == 0.0
    assert second.check(protocol.MESSAGE, 0.0) == 0.0
    # The user's burst (3) is spent across both sockets.
    assert second.check(protocol.MESSAGE, 0.0) == pytest.approx(1.0)
    first.release()
    second.release()
    # The last release dropped the user's bucket: a new socket starts with a full one.
    third = throttle(member)
    assert [third.check(protocol.MESSAGE, 0.0) for _ in range(2)] == [0.0, 0.0]
    third.release()
    assert member not in limits.user_message_buckets._buckets


def test_after_a_refused_message_later_ones_wait_for_its_retry_time():
    socket = throttle()
    socket.check(protocol.MESSAGE, 0.0)
    socket.check(protocol.MESSAGE, 0.0)
    assert socket.check(protocol.MESSAGE, 0.0) == pytest.approx(1.0)
    # Half a second later half a token is back: the refused message's retry time still holds.
    assert socket.check(protocol.MESSAGE, 0.5) == pytest.approx(0.5)
    assert socket.check(protocol.MESSAGE, 1.0) == 0.0
    socket.release()


def test_a_client_that_keeps_flooding_runs_out_of_strikes():
    socket = throttle()
    assert [socket.flooding(0.0) for _ in range(3)] == [False, False, True]
    # Strikes are forgiven at one a second.
    assert socket.flooding(1.0) is False
    socket.release()


def test_room_creations_are_limited_per_creator_and_per_address():
    creator, address = unique("u"), unique("10.0.0")
    first = throttle(creator_key=creator, client_host=address)
    assert [first.check_room_creation(0.0) for _ in range(2)] == [0.0, 0.0]
    assert first.check_room_creation(0.0) == pytest.approx(1.0)
    # Another socket of the same creator, from elsewhere, shares the creator's bucket.
    second = throttle(creator_key=creator, client_host=unique("10.0.1"))
    assert second.check_room_creation(0.0) == pytest.approx(1.0)
    # Another creator at the same address shares the address's bucket.
    third = throttle(creator_key=unique("u"), client_host=address)
    assert third.check_room_creation(0.0) == pytest.approx(1.0)
    for socket in (first, second, third):
        socket.release()


def test_a_socket_without_a_session_creates_rooms_from_a_bucket_of_its_own():
    first, second = throttle(), throttle()
    assert [first.check_room_creation(0.0) for _ in range(2)] == [0.0, 0.0]
    assert first.check_room_creation(0.0) == pytest.approx(1.0)
    assert second.check_room_creation(0.0) == 0.0
    first.release()
    second.release()


def test_a_room_creation_takes_from_every_bucket_or_from_none():
    address = unique("10.0.2")
    spender = throttle(creator_key=unique("u"), client_host=address)
    assert spender.check_room_creation(0.0) == 0.0
    other = throttle(creator_key=unique("u"), client_host=address)
    assert other.check_room_creation(0.0) == 0.0
    # The address is spent: the refused creation took nothing from ``other``'s own bucket.
    assert other.check_room_creation(0.0) == pytest.approx(1.0)
    assert limits.room_creations_per_member.get(other.creator_key, 1.0, 2, 0.0).tokens == 1.0
    spender.release()
    other.release()
