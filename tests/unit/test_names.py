"""Guest names that cannot pass for a user's or the operators', and client_ids owned by identity."""

import pytest
from django.contrib.auth.models import User
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from chat import names, protocol, selectors, services
from chat.identity import GUEST_NAME_KEY, check_guest_name, clean_guest_name, identity_from_request
from chat.models import Message, NameClaim


@pytest.mark.parametrize(
    "lookalike",
    [
        "alice",
        "Alice",
        " ALICE ",
        "\u0410lice",  # Cyrillic capital A
        "\u0430lice",  # Cyrillic small a
        "al\u0456c\u0435",  # Cyrillic і and е
        "\u0391LICE",  # Greek capital alpha
        "AL\u0399CE",  # Greek capital iota
        "AIice",  # capital I for the small l
        "a1ice",  # digit one
        "al\u200bice",  # zero-width space
        "al\u00adice",  # soft hyphen
        "\u202ealice",  # right-to-left override
        "\uff41\uff4c\uff49\uff43\uff45",  # fullwidth, folded by NFKC
        "ali\u0301ce",  # a combining accent
        "\u00e1lice",  # a precomposed accent
        "alice\u3164",  # Hangul filler
    ],
)
def test_lookalikes_fold_to_the_same_skeleton(lookalike):
    assert names.skeleton(lookalike) == names.skeleton("alice")


def test_skeleton_folds_greek_and_cyrillic_capitals_by_their_look():
    assert names.skeleton("\u0397\u039f\u039d\u0395\u03a5") == names.skeleton("HONEY")  # Greek ΗΟΝΕΥ
    assert names.skeleton("0scar") == names.skeleton("oscar")
    assert names.skeleton("rnary") == names.skeleton("mary")


def test_skeleton_keeps_different_names_apart():
    assert names.skeleton("alice") != names.skeleton("alicia")
    assert names.skeleton("bob") != names.skeleton("rob")
    assert names.skeleton("guest-ab12") != names.skeleton("guest")


def test_skeleton_collapses_and_strips_whitespace():
    assert names.skeleton("  Mary \u00a0 Ann\t") == names.skeleton("mary ann")


@pytest.fixture
def alice(db):
    return User.objects.create_user("alice", password="pw-long-enough-1")


@pytest.mark.parametrize(
    "name", ["alice", " ALICE ", "\u0410lice", "system", "Announcement", "ADMIN", "m0derator", "Guest"]
)
def test_the_name_form_refuses_users_and_reserved_names(client, alice, name):
    response = client.post(reverse("chat:guest_name"), {"name": name, "next": "/rooms/general/"})
    assert response.status_code == 400
    assert "That name is taken" in response.content.decode()
    assert GUEST_NAME_KEY not in client.session


@pytest.mark.parametrize(
    "name", ["Ann", "Bob Smith", "O'Brien", "guest-ab12", "Zoë", "\u041c\u0430\u0448\u0430"]
)
def test_the_name_form_accepts_ordinary_names(client, alice, name):
    response = client.post(reverse("chat:guest_name"), {"name": name, "next": "/rooms/general/"})
    assert (response.status_code, response["Location"]) == (302, "/rooms/general/")
    assert client.session[GUEST_NAME_KEY] == name


def test_the_name_form_still_explains_the_allowed_characters(client, db):
    response = client.post(reverse("chat:guest_name"), {"name": "<b>x</b>", "next": "/"})
    assert response.status_code == 400
    assert "Use 1-32 letters" in response.content.decode()


def test_clean_guest_name_refuses_what_the_form_refuses(alice):
    assert clean_guest_name(" Ann  Lee ") == "Ann Lee"
    assert clean_guest_name("\u0410lice") is None
    with pytest.raises(Exception, match="taken"):
        check_guest_name("announcements")


def test_reserved_names_come_from_the_setting(db, settings):
    settings.RIPPLE_RESERVED_NAMES = ["wizard"]
    assert names.is_taken("W1zard")
    assert not names.is_taken("system")


def test_a_username_is_claimed_on_save_and_a_rename_moves_the_claim(db):
    user = User.objects.create_user("carol", password="pw-long-enough-1")
    assert names.is_claimed("C\u0430rol")
    user.username = "dave"
    user.save()
    assert names.is_claimed("dave") and not names.is_claimed("carol")
    user.delete()
    assert not NameClaim.objects.exists()


def test_a_login_save_does_not_touch_the_claim(alice):
    with CaptureQueriesContext(connection) as queries:
        alice.save(update_fields=["last_login"])
    assert len(queries) == 1


def test_the_claim_lookup_is_one_indexed_query(alice):
    with CaptureQueriesContext(connection) as queries:
        assert names.is_taken("\u0430lice")
    assert len(queries) == 1
    assert "skeleton" in queries[0]["sql"]
    with connection.cursor() as cursor:
        constraints = connection.introspection.get_constraints(cursor, NameClaim._meta.db_table)
    indexed = {tuple(c["columns"]) for c in constraints.values() if c["index"] or c["unique"]}
    assert ("skeleton",) in indexed


def test_a_session_name_registered_since_is_not_used_by_the_page(rf, alice):
    from django.contrib.auth.models import AnonymousUser
    from django.contrib.sessions.backends.db import SessionStore

    request = rf.get("/rooms/general/")
    request.user = AnonymousUser()
    request.session = SessionStore()
    request.session[GUEST_NAME_KEY] = "ALICE"
    request.session.create()
    assert identity_from_request(request) is None
    request.session[GUEST_NAME_KEY] = "Ann"
    assert identity_from_request(request).name == "Ann"


# client_id ownership


@pytest.fixture
def room(db):
    return services.room_get_or_create(slug="general")


def store(room, *, author="ann", key=None, client_id="c1", user_id=None):
    return services.message_store(
        room=room, author=author, user_id=user_id, body="hi", client_id=client_id, author_key=key
    )


def test_a_resend_from_the_same_identity_is_a_duplicate_even_under_a_new_name(room):
    first = store(room, author="ann", key="gAAAA")
    again = store(room, author="ann-renamed", key="gAAAA")
    assert not again.created and again.message.seq == first.message.seq


def test_the_same_name_from_another_identity_is_a_conflict(room):
    store(room, author="ann", key="gAAAA")
    with pytest.raises(services.ClientIdConflict):
        store(room, author="ann", key="gBBBB")
    with pytest.raises(services.ClientIdConflict):
        store(room, author="ann", key="c0123")
    assert Message.objects.get().author_key == "gAAAA"


def test_a_keyless_caller_cannot_claim_a_keyed_message(room):
    store(room, author="ann", key="gAAAA")
    with pytest.raises(services.ClientIdConflict):
        store(room, author="ann", key=None)


def test_users_and_system_posts_get_their_key_without_passing_one(room, alice):
    store(room, author="alice", user_id=alice.pk, client_id="u1")
    services.message_post(room=room, author="announcement", body="hi", client_id="s1", system=True)
    keys = dict(Message.objects.values_list("client_id", "author_key"))
    assert keys == {"u1": f"u{alice.pk}", "s1": "system"}
    with pytest.raises(services.ClientIdConflict):
        store(room, author="announcement", key="gAAAA", client_id="s1")


def test_a_row_from_before_author_key_still_matches_its_user(room, alice):
    store(room, author="alice", user_id=alice.pk, client_id="old")
    Message.objects.update(author_key=None)
    assert not store(room, author="alice", user_id=alice.pk, key=f"u{alice.pk}", client_id="old").created
    with pytest.raises(services.ClientIdConflict):
        store(room, author="alice", key="gAAAA", client_id="old")


def test_message_frames_say_who_stands_behind_the_name(room, alice):
    store(room, author="alice", user_id=alice.pk, client_id="u1")
    store(room, author="alice", key="gAAAA", client_id="g1")
    services.message_post(room=room, author="announcement", body="hi", client_id="s1", system=True)
    payloads = selectors.message_payloads(list(Message.objects.order_by("seq")), "general")
    assert [p["author_kind"] for p in payloads] == [
        protocol.AUTHOR_USER,
        protocol.AUTHOR_GUEST,
        protocol.AUTHOR_SYSTEM,
    ]
    alice.delete()  # user_id becomes null; the key still says user
    again = selectors.message_payloads(list(Message.objects.order_by("seq")), "general")
    assert again[0]["author_kind"] == protocol.AUTHOR_USER


def test_the_room_page_marks_guests_and_announcements(client, room, alice):
    store(room, author="mallory", key="gAAAA", client_id="g1")
    services.message_post(
        room=room, author="announcement", body="Deploy at noon", client_id="s1", system=True
    )
    session = client.session
    session[GUEST_NAME_KEY] = "Ann"
    session.save()
    html = client.get("/rooms/general/").content.decode()
    guest_row = html.split('data-client-id="g1"')[1].split("</li>")[0]
    system_row = html.split('data-client-id="s1"')[1].split("</li>")[0]
    assert 'data-author-kind="guest"' in guest_row and '<span class="author-kind">guest</span>' in guest_row
    assert 'class="msg system"' in html.split('data-client-id="s1"')[0].rsplit("<li", 1)[1]
    assert '<span class="author-kind">Announcement</span>' in system_row
    assert 'data-user-kind="guest"' in html


def test_the_post_command_posts_as_the_operators(db):
    from django.core.management import call_command

    call_command("post", "news", "hello", "--client-id", "cmd-1")
    message = Message.objects.get()
    assert (message.system, message.author_key, message.author_kind) == (True, "system", "system")


def test_storing_with_an_author_key_keeps_the_two_statement_hot_path(room):
    with CaptureQueriesContext(connection) as queries:
        store(room, key="gAAAA", client_id="hot")
    statements = [q["sql"] for q in queries if not q["sql"].upper().startswith(("SAVEPOINT", "RELEASE"))]
    assert len(statements) == 2, statements
    assert statements[0].upper().startswith("UPDATE") and statements[1].upper().startswith("INSERT")


@pytest.mark.django_db(transaction=True)
def test_the_migration_claims_the_usernames_of_existing_users():
    from django.db.migrations.executor import MigrationExecutor

    latest = MigrationExecutor(connection).loader.graph.leaf_nodes("chat")
    MigrationExecutor(connection).migrate([("chat", "0003_private_rooms")])
    try:
        # bulk_create sends no post_save: these users exist before any claim does.
        User.objects.bulk_create([User(username="Erin"), User(username="frank")])
        executor = MigrationExecutor(connection)
        executor.loader.build_graph()
        executor.migrate([("chat", "0004_identity_keys")])
        assert names.is_claimed("ERlN") and names.is_claimed("Frank")
        assert NameClaim.objects.count() == 2
    finally:
        executor = MigrationExecutor(connection)
        executor.loader.build_graph()
        executor.migrate(latest)
