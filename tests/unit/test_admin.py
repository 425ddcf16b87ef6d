import json
import logging
import uuid
from datetime import timedelta

import pytest
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.contrib.auth.models import Permission
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from chat import presence, services
from chat.logs import JsonFormatter
from chat.models import Message, Room
from chat.presence import Member

pytestmark = pytest.mark.django_db

ROOMS_URL = reverse("admin:chat_room_changelist")
MESSAGES_URL = reverse("admin:chat_message_changelist")


def make_rooms(count: int, per_room: int, prefix: str = "room") -> list[Room]:
    """``count`` rooms of ``per_room`` messages each, in two bulk inserts."""
    now = timezone.now()
    rooms = Room.objects.bulk_create(
        [
            Room(slug=f"{prefix}-{i:03d}", title=f"Room {i}", last_seq=per_room, last_message_at=now)
            for i in range(count)
        ]
    )
    Message.objects.bulk_create(
        [
            Message(
                room=room,
                seq=seq,
                author=f"user{seq % 7}",
                body=f"message {seq} in {room.slug} " + "x" * 120,
                client_id=f"c{seq}",
                sent_at=now - timedelta(seconds=per_room - seq),
            )
            for room in rooms
            for seq in range(1, per_room + 1)
        ]
    )
    return rooms


def post(room, body, author="ann", user_id=None):
    client_id = f"{author}-{uuid.uuid4().hex}"
    return services.message_post(
        room=room, author=author, body=body, client_id=client_id, user_id=user_id
    ).message


def run_action(client, url, action, objects, **data):
    """POST an action as the changelist's form does (``apply`` for the intermediate page's submit)."""
    return client.post(
        url, {"action": action, ACTION_CHECKBOX_NAME: [obj.pk for obj in objects], "index": 0, **data}
    )


def page_messages(response) -> list[str]:
    """The notes the admin added while handling this request (not those left from earlier ones)."""
    return [str(message) for message in response.wsgi_request._messages._queued_messages]


@pytest.fixture
def no_presence(monkeypatch):
    """Counts presence reads; every room is empty."""
    calls = []

    def room_members(slugs):
        calls.append(list(slugs))
        return {slug: set() for slug in slugs}

    monkeypatch.setattr(presence, "room_members", room_members)
    return calls


@pytest.fixture
def moderation_log(caplog):
    caplog.set_level(logging.INFO, logger="ripple.events")

    def lines() -> list[dict]:
        formatter = JsonFormatter()
        return [
            json.loads(formatter.format(record))
            for record in caplog.records
            if record.name == "ripple.events" and record.getMessage() == "moderation"
        ]

    return lines


def changelist_queries(client, url) -> int:
    with CaptureQueriesContext(connection) as queries:
        response = client.get(url)
    assert response.status_code == 200
    return len(queries)


# Changelists.


def test_room_changelist_queries_do_not_grow_with_the_rows(admin_client, no_presence):
    make_rooms(3, 10)
    few = changelist_queries(admin_client, ROOMS_URL)
    make_rooms(27, 10, prefix="more")
    many = changelist_queries(admin_client, ROOMS_URL)
    assert many == few
    assert many <= 8
    assert len(no_presence) == 2


def test_message_changelist_queries_do_not_grow_with_the_rows(admin_client, django_assert_max_num_queries):
    make_rooms(3, 10)
    few = changelist_queries(admin_client, MESSAGES_URL)
    make_rooms(27, 10, prefix="more")
    assert Message.objects.count() == 300
    many = changelist_queries(admin_client, MESSAGES_URL)
    assert many == few
    with django_assert_max_num_queries(8):
        page = admin_client.get(MESSAGES_URL, {"p": 2})
    html = page.content.decode()
    assert "more-0" in html
    assert "x" * 120 not in html, "bodies are truncated"


def test_message_changelist_filters_by_room_slug_without_listing_rooms(admin_client):
    make_rooms(3, 4)
    page = admin_client.get(MESSAGES_URL, {"room": "room-001"})
    html = page.content.decode()
    assert "in room-001" in html
    assert "in room-000" not in html
    assert 'name="room" value="room-001"' in html
    assert "room-002" not in html


def test_message_changelist_filters_deleted_and_system(admin_client):
    room = services.room_get_or_create(slug="lobby")
    kept = post(room, "kept")
    gone = post(room, "gone")
    services.message_delete(message_ids=[gone.pk])
    services.room_announce(rooms=[room], body="hello all")
    deleted = admin_client.get(MESSAGES_URL, {"deleted": "yes"}).context["cl"].result_list
    assert [message.pk for message in deleted] == [gone.pk]
    system = admin_client.get(MESSAGES_URL, {"system__exact": "1"}).context["cl"].result_list
    assert [message.body for message in system] == ["hello all"]
    newest_first = admin_client.get(MESSAGES_URL, {"deleted": "no"}).context["cl"].result_list
    assert [message.body for message in newest_first] == ["hello all", kept.body]


def test_room_changelist_shows_online_counts_from_one_presence_read_per_page(admin_client, monkeypatch):
    make_rooms(120, 1)  # two pages of 100
    calls = []

    def room_members(slugs):
        calls.append(list(slugs))
        return {
            slug: {Member(name="ann", id="u1"), Member(name="bob", id="g:x")} if slug == "room-001" else set()
            for slug in slugs
        }

    monkeypatch.setattr(presence, "room_members", room_members)
    html = admin_client.get(ROOMS_URL).content.decode()
    assert len(calls) == 1
    assert len(calls[0]) == 100
    assert '<td class="field-online_now">2</td>' in html
    assert html.count('<td class="field-online_now">0</td>') == 99

    admin_client.get(ROOMS_URL, {"p": 2})
    assert len(calls) == 2
    assert len(calls[1]) == 20


def test_room_changelist_still_renders_when_presence_fails(admin_client, monkeypatch):
    make_rooms(2, 1)

    def room_members(slugs):
        raise ConnectionError("redis is away")

    monkeypatch.setattr(presence, "room_members", room_members)
    page = admin_client.get(ROOMS_URL)
    assert page.status_code == 200
    assert "room-001" in page.content.decode()


def test_room_changelist_reads_real_presence(admin_client):
    make_rooms(2, 1)
    html = admin_client.get(ROOMS_URL).content.decode()
    assert html.count('<td class="field-online_now">0</td>') == 2


def test_room_detail_shows_computed_fields_read_only(admin_client, no_presence):
    room = services.room_get_or_create(slug="lobby", title="Lobby")
    post(room, "hi")
    page = admin_client.get(reverse("admin:chat_room_change", args=[room.pk]))
    html = page.content.decode()
    assert page.status_code == 200
    assert 'name="title"' in html
    assert 'name="slug"' not in html
    assert 'name="last_seq"' not in html
    assert 'name="closed_at"' not in html
    assert no_presence == [["lobby"]]


def test_room_added_by_hand_needs_a_valid_slug(admin_client):
    url = reverse("admin:chat_room_add")
    no_members = {"memberships-TOTAL_FORMS": "0", "memberships-INITIAL_FORMS": "0"}
    assert admin_client.post(url, {"slug": "Not Valid", "title": "", **no_members}).status_code == 200
    assert not Room.objects.exists()
    assert admin_client.post(url, {"slug": "team", "title": "Team", **no_members}).status_code == 302
    assert Room.objects.get().slug == "team"


def test_a_private_room_and_its_members_are_set_in_the_admin(admin_client):
    from django.contrib.auth.models import User

    from chat.models import RoomMembership

    member = User.objects.create_user("member", password="pw-long-enough-1")
    form = {
        "slug": "staff-only",
        "title": "",
        "private": "on",
        "memberships-TOTAL_FORMS": "1",
        "memberships-INITIAL_FORMS": "0",
        "memberships-0-user": str(member.pk),
    }
    assert admin_client.post(reverse("admin:chat_room_add"), form).status_code == 302
    room = Room.objects.get(slug="staff-only")
    assert room.private
    assert list(RoomMembership.objects.filter(room=room).values_list("user_id", flat=True)) == [member.pk]


def test_messages_are_read_only_in_the_admin(admin_client):
    room = services.room_get_or_create(slug="lobby")
    message = post(room, "hi")
    assert admin_client.get(reverse("admin:chat_message_add")).status_code == 403
    assert admin_client.post(reverse("admin:chat_message_delete", args=[message.pk])).status_code == 403
    change_url = reverse("admin:chat_message_change", args=[message.pk])
    page = admin_client.get(change_url)
    assert page.status_code == 200
    assert 'name="body"' not in page.content.decode()
    admin_client.post(change_url, {"body": "edited"})
    message.refresh_from_db()
    assert message.body == "hi"
    actions = admin_client.get(MESSAGES_URL).context["action_form"].fields["action"].choices
    assert "delete_selected" not in [name for name, _ in actions]
    assert admin_client.post(reverse("admin:chat_room_delete", args=[room.pk])).status_code == 403


# Access.


@pytest.fixture
def non_staff_client(client, django_user_model):
    client.force_login(django_user_model.objects.create_user(username="eve", password="pw"))
    return client


@pytest.mark.parametrize("who", ["anonymous", "non_staff"])
def test_only_staff_reach_the_changelists_and_actions(who, client, non_staff_client):
    room = services.room_get_or_create(slug="lobby")
    message = post(room, "hi")
    web = client if who == "anonymous" else non_staff_client
    for url in (ROOMS_URL, MESSAGES_URL, reverse("admin:chat_room_change", args=[room.pk])):
        response = web.get(url)
        assert response.status_code == 302
        assert response["Location"].startswith(reverse("admin:login"))
    attempts = [
        (ROOMS_URL, "announce", room, {"apply": "1", "body": "hi all"}),
        (ROOMS_URL, "close_rooms", room, {"apply": "1"}),
        (MESSAGES_URL, "soft_delete", message, {}),
        (MESSAGES_URL, "disconnect_authors", message, {}),
    ]
    for url, action, obj, data in attempts:
        response = run_action(web, url, action, [obj], **data)
        assert response.status_code == 302
        assert response["Location"].startswith(reverse("admin:login"))
    room.refresh_from_db()
    message.refresh_from_db()
    assert room.closed_at is None
    assert message.deleted_at is None
    assert Message.objects.count() == 1


def test_staff_who_may_only_view_messages_cannot_moderate_them(client, django_user_model):
    viewer = django_user_model.objects.create_user(username="viv", password="pw", is_staff=True)
    viewer.user_permissions.add(Permission.objects.get(codename="view_message"))
    client.force_login(viewer)
    message = post(services.room_get_or_create(slug="lobby"), "hi")
    page = client.get(MESSAGES_URL)
    assert page.status_code == 200
    assert "soft_delete" not in page.content.decode()
    run_action(client, MESSAGES_URL, "soft_delete", [message])
    message.refresh_from_db()
    assert message.deleted_at is None


# Actions.


def test_soft_delete_marks_the_messages_and_keeps_the_rows(admin_client, moderation_log):
    room = services.room_get_or_create(slug="lobby")
    first, second, third = (post(room, body) for body in ("one", "secret two", "three"))
    response = run_action(admin_client, MESSAGES_URL, "soft_delete", [first, second])
    assert response.status_code == 302
    assert page_messages(response) == ["Deleted 2 messages in 1 room."]
    rows = {message.seq: message for message in Message.objects.filter(room=room)}
    assert sorted(rows) == [1, 2, 3]
    assert rows[1].deleted_at is not None and rows[2].deleted_at is not None
    assert rows[3].deleted_at is None
    assert Room.objects.get(pk=room.pk).last_seq == 3
    [line] = moderation_log()
    assert line["action"] == "message_delete"
    assert line["by"] == "admin"
    assert line["rooms"] == ["lobby"]
    assert line["count"] == 2
    assert "secret two" not in json.dumps(line)

    again = run_action(admin_client, MESSAGES_URL, "soft_delete", [first, third])
    assert page_messages(again) == ["Deleted 1 message in 1 room."]
    assert Message.objects.filter(deleted_at__isnull=True).count() == 0


def test_announcement_posts_a_system_message_in_each_open_room(admin_client, moderation_log):
    lobby = services.room_get_or_create(slug="lobby")
    post(lobby, "hi")
    empty = services.room_get_or_create(slug="empty")
    closed = services.room_get_or_create(slug="closed")
    services.room_close(room=closed)

    page = run_action(admin_client, ROOMS_URL, "announce", [lobby, empty, closed])
    assert page.status_code == 200
    html = page.content.decode()
    assert '<textarea name="body"' in html
    assert html.count(f'name="{ACTION_CHECKBOX_NAME}"') == 3

    response = run_action(
        admin_client, ROOMS_URL, "announce", [lobby, empty, closed], apply="1", body="Maintenance at 5"
    )
    assert response.status_code == 302
    assert page_messages(response) == [
        "Posted the announcement to 2 rooms.",
        "Skipped 1 closed room: reopen a room to announce in it.",
    ]
    announced = Message.objects.filter(system=True).select_related("room")
    assert sorted((m.room.slug, m.seq, m.body) for m in announced) == [
        ("empty", 1, "Maintenance at 5"),
        ("lobby", 2, "Maintenance at 5"),
    ]
    assert Room.objects.get(slug="lobby").last_seq == 2
    assert not Message.objects.filter(room=closed).exists()
    [line] = moderation_log()
    assert (line["action"], sorted(line["rooms"]), line["count"]) == ("room_announce", ["empty", "lobby"], 2)
    assert "Maintenance" not in json.dumps(line)


@pytest.mark.parametrize("body", ["", "   \r\n  ", "x" * 41])
def test_announcement_form_refuses_an_empty_or_too_long_body(admin_client, settings, body, moderation_log):
    settings.RIPPLE_MAX_BODY_CHARS = 40
    room = services.room_get_or_create(slug="lobby")
    response = run_action(admin_client, ROOMS_URL, "announce", [room], apply="1", body=body)
    assert response.status_code == 200
    assert response.context["form"].errors["body"]
    assert 'class="errorlist' in response.content.decode()
    assert not Message.objects.exists()
    assert moderation_log() == []


def test_announcement_accepts_a_body_of_exactly_the_limit(admin_client, settings):
    settings.RIPPLE_MAX_BODY_CHARS = 40
    room = services.room_get_or_create(slug="lobby")
    run_action(admin_client, ROOMS_URL, "announce", [room], apply="1", body="x" * 40)
    assert Message.objects.get(system=True).body == "x" * 40


def test_close_and_reopen_set_and_clear_closed_at(admin_client, moderation_log):
    lobby = services.room_get_or_create(slug="lobby")
    other = services.room_get_or_create(slug="other")

    page = run_action(admin_client, ROOMS_URL, "close_rooms", [lobby])
    assert page.status_code == 200
    assert 'name="reason"' in page.content.decode()
    response = run_action(admin_client, ROOMS_URL, "close_rooms", [lobby], apply="1", reason="spam wave")
    assert page_messages(response) == ["Closed 1 room."]
    lobby.refresh_from_db()
    other.refresh_from_db()
    assert lobby.closed_at is not None
    assert other.closed_at is None
    with pytest.raises(services.RoomClosed):
        post(lobby, "still here?")

    too_long = run_action(admin_client, ROOMS_URL, "close_rooms", [other], apply="1", reason="r" * 201)
    assert too_long.status_code == 200
    assert Room.objects.get(pk=other.pk).closed_at is None

    response = run_action(admin_client, ROOMS_URL, "reopen_rooms", [lobby, other])
    assert page_messages(response) == ["Reopened 1 room."]
    assert Room.objects.filter(closed_at__isnull=False).count() == 0
    assert post(lobby, "back again").seq == 1
    assert [(line["action"], line["rooms"], line["count"]) for line in moderation_log()] == [
        ("room_close", ["lobby"], 1),
        ("room_reopen", ["lobby"], 1),
    ]


def test_remove_authors_removes_each_distinct_user_and_guest_once(
    admin_client, django_user_model, monkeypatch, moderation_log
):
    calls = []

    def member_remove(*, keys, by):
        calls.append((sorted(keys), by))
        return timezone.now()

    monkeypatch.setattr(services, "member_remove", member_remove)
    ann = django_user_model.objects.create_user(username="ann")
    bob = django_user_model.objects.create_user(username="bob")
    room = services.room_get_or_create(slug="lobby")
    selected = [
        post(room, "one", author="ann", user_id=ann.pk),
        post(room, "two", author="ann", user_id=ann.pk),
        post(room, "three", author="bob", user_id=bob.pk),
        post(room, "four", author="guest-gil"),
        post(room, "five", author="guest-gil"),
        post(room, "six", author="guest-gus"),
    ]
    # Guests are named by their identity key (their session's), as the socket stores it.
    Message.objects.filter(author="guest-gil").update(author_key="gGIL")
    Message.objects.filter(author="guest-gus").update(author_key="gGUS")
    services.room_announce(rooms=[room], body="hello")
    selected.append(Message.objects.get(system=True))

    response = run_action(admin_client, MESSAGES_URL, "disconnect_authors", selected)
    assert response.status_code == 302
    assert calls == [(sorted(["gGIL", "gGUS", f"u{ann.pk}", f"u{bob.pk}"]), "admin")]
    [note] = page_messages(response)
    assert note.startswith("Removed 4 authors (ann, bob, guest-gil, guest-gus) for 15 min")
    [line] = moderation_log()
    assert (line["action"], line["rooms"], line["count"]) == ("member_remove", ["lobby"], 4)
    assert Message.objects.filter(deleted_at__isnull=False).count() == 0


def test_remove_people_lists_everyone_present_and_removes_the_ticked(
    admin_client, monkeypatch, moderation_log
):

    lobby, cafe = services.room_get_or_create(slug="lobby"), services.room_get_or_create(slug="cafe")
    present = {
        "lobby": {Member(name="ann", id="u7"), Member(name="Lurker", id="gLURK")},
        "cafe": {Member(name="Lurker", id="gLURK"), Member(name="guest-1a2b", id="cNOCOOKIE")},
    }
    monkeypatch.setattr(presence, "room_members", lambda slugs: {slug: present[slug] for slug in slugs})
    calls = []

    def member_remove(*, keys, by):
        calls.append((keys, by))
        return timezone.now()

    monkeypatch.setattr(services, "member_remove", member_remove)
    page = run_action(admin_client, ROOMS_URL, "remove_members", [lobby, cafe])
    assert page.status_code == 200
    listed = page.content.decode()
    # Everyone present, whether they ever posted or not, guests with or without a cookie.
    for label in ("ann (user, in lobby)", "Lurker (guest, in cafe, lobby)", "guest-1a2b (guest, in cafe)"):
        assert label in listed
    assert calls == []
    done = run_action(
        admin_client, ROOMS_URL, "remove_members", [lobby, cafe], apply="1", members=["gLURK", "cNOCOOKIE"]
    )
    assert done.status_code == 302
    assert calls == [(["cNOCOOKIE", "gLURK"], "admin")]
    [note] = page_messages(done)
    assert note.startswith("Removed 2 people (Lurker, guest-1a2b) until ")
    [line] = moderation_log()
    assert (line["action"], line["rooms"], line["count"]) == ("member_remove", ["cafe", "lobby"], 2)


def test_remove_people_says_so_when_nobody_is_present(admin_client, monkeypatch):
    lobby = services.room_get_or_create(slug="lobby")
    monkeypatch.setattr(presence, "room_members", lambda slugs: {slug: set() for slug in slugs})
    response = run_action(admin_client, ROOMS_URL, "remove_members", [lobby])
    assert page_messages(response) == ["Nobody is in the selected rooms now."]
