import pytest
from django.urls import reverse

from chat import services
from chat.models import Room

pytestmark = pytest.mark.django_db


def test_index_lists_rooms_with_counts(client):
    room = services.room_get_or_create(slug="lobby")
    services.message_post(room=room, author="a", body="one", client_id="x1")
    services.message_post(room=room, author="a", body="two", client_id="x2")
    page = client.get("/")
    assert page.status_code == 200
    row = page.content.decode().split('href="/rooms/lobby/"')[1].split("</tr>")[0]
    assert "<td>2</td>" in row


def test_index_form_opens_a_room_by_slugified_name(client):
    response = client.post("/", {"room": "Team Chat!"})
    assert response.status_code == 302
    assert response["Location"] == "/rooms/team-chat/"


def test_index_form_refuses_a_name_without_letters(client):
    response = client.post("/", {"room": "!!!"})
    assert response.status_code == 400
    assert "at least one letter" in response.content.decode()


def test_room_asks_a_guest_for_a_name_first(client):
    page = client.get("/rooms/general/")
    assert 'name="name"' in page.content.decode()
    response = client.post(reverse("chat:guest_name"), {"name": "Ann", "next": "/rooms/general/"})
    assert response["Location"] == "/rooms/general/"
    page = client.get("/rooms/general/")
    assert 'id="composer"' in page.content.decode()
    assert 'data-user="Ann"' in page.content.decode()


def test_guest_name_is_validated_and_next_must_be_local(client):
    assert client.post(reverse("chat:guest_name"), {"name": "<b>x</b>", "next": "/"}).status_code == 400
    response = client.post(reverse("chat:guest_name"), {"name": "Ann", "next": "https://evil.example/"})
    assert response["Location"] == "/"


def test_room_page_renders_messages_as_text_and_the_last_seq(client):
    room = services.room_get_or_create(slug="escape")
    services.message_post(
        room=room, author="<i>mallory</i>", body="<script>alert(1)</script>", client_id="e1"
    )
    session = client.session
    session["ripple_guest_name"] = "Ann"
    session.save()
    html = client.get("/rooms/escape/").content.decode()
    assert "<script>alert(1)</script>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "&lt;i&gt;mallory&lt;/i&gt;" in html
    assert 'data-last-seq="1"' in html
    assert 'src="/static/js/chat-room.js"' in html


def test_invalid_room_slug_is_404(client):
    assert client.get("/rooms/!!!/").status_code == 404
    assert client.get("/rooms/%E2%98%95/").status_code == 404


def test_a_room_name_in_the_address_redirects_to_the_room(client):
    services.room_get_or_create(slug="general")
    response = client.get("/rooms/General/")
    assert (response.status_code, response["Location"]) == (302, "/rooms/general/")
    assert client.get("/rooms/Team Chat/")["Location"] == "/rooms/team-chat/"


def test_a_room_created_from_the_index_keeps_its_name_as_title(client):
    response = client.post("/", {"room": "Café Talk ☕"})
    assert response["Location"] == "/rooms/cafe-talk/"
    session = client.session
    session["ripple_guest_name"] = "Ann"
    session.save()
    html = client.get("/rooms/cafe-talk/").content.decode()
    assert "<title>Café Talk ☕ – Ripple</title>" in html
    assert '<h1 id="room-title">Café Talk ☕</h1>' in html
    assert 'data-room="cafe-talk"' in html
    assert "Café Talk ☕" in client.get("/").content.decode()
    # A plain name needs no title: the slug says it all.
    client.post("/", {"room": "lobby"})
    assert Room.objects.get(slug="lobby").title == ""


def test_the_name_prompt_says_which_room(client):
    services.room_get_or_create(slug="general", title="General Chat")
    html = client.get("/rooms/general/").content.decode()
    assert "To join <strong>General Chat</strong>" in html


def test_a_guest_changes_their_name_and_returns_to_the_room(client):
    client.post(reverse("chat:guest_name"), {"name": "Ann", "next": "/rooms/general/"})
    room_page = client.get("/rooms/general/").content.decode()
    assert 'id="change-name"' in room_page
    assert "/name/?next=/rooms/general/" in room_page
    form = client.get("/name/?next=/rooms/general/").content.decode()
    assert 'value="Ann"' in form and "Change your display name" in form
    assert client.get("/name/?next=https://evil.example/").context["next"] == "/"
    response = client.post(reverse("chat:guest_name"), {"name": "Annie", "next": "/rooms/general/"})
    assert response["Location"] == "/rooms/general/"
    assert 'data-user="Annie"' in client.get("/rooms/general/").content.decode()


def test_the_room_page_has_a_log_a_composer_textarea_and_a_favicon(client):
    session = client.session
    session["ripple_guest_name"] = "Ann"
    session.save()
    html = client.get("/rooms/general/").content.decode()
    assert 'role="log" aria-live="polite"' in html
    assert '<textarea id="body"' in html
    assert 'rel="icon" href="/static/favicon.svg"' in html
    favicon = client.get("/favicon.ico")
    assert (favicon.status_code, favicon["Location"]) == (301, "/static/favicon.svg")


def test_echo_page_and_health(client):
    assert 'data-ws-url="/ws/echo/"' in client.get("/echo/").content.decode()
    health = client.get("/healthz")
    assert (health.status_code, health.content) == (200, b"ok\n")


def test_post_command_stores_and_reports(capsys):
    from django.core.management import call_command

    call_command("post", "news", "hello world", "--client-id", "cmd-1")
    call_command("post", "news", "hello world", "--client-id", "cmd-1")
    out = capsys.readouterr().out.splitlines()
    assert out == ["news#1 stored", "news#1 already stored"]


def test_post_command_refuses_bad_input():
    from django.core.management import CommandError, call_command

    with pytest.raises(CommandError, match="invalid_room"):
        call_command("post", "Bad Room", "x")
    with pytest.raises(CommandError, match="body_empty"):
        call_command("post", "ok", "   ")
    from django.utils import timezone

    from chat.models import Room

    Room.objects.create(slug="shut", closed_at=timezone.now())
    with pytest.raises(CommandError, match="room_closed"):
        call_command("post", "shut", "anyone there?")
