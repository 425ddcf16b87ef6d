import uuid

from django.core.management.base import BaseCommand, CommandError

from chat import services


class Command(BaseCommand):
    help = "Post a message into a room: stored, sequenced and fanned out like a socket message."

    def add_arguments(self, parser):
        parser.add_argument("room", help="room slug (created if missing)")
        parser.add_argument("text", help="message body")
        parser.add_argument("--author", default="system", help="display name (default: system)")
        parser.add_argument("--client-id", default=None, help="idempotency key (default: random)")

    def handle(self, *args, room, text, author, client_id, **options):
        try:
            found = services.room_get_or_create(slug=room)
            # An operator's post: a system message (author_kind "system", author key "system"),
            # which no chat user can pass for.
            posted = services.message_post(
                room=found,
                author=author,
                body=text,
                client_id=client_id or f"cli-{uuid.uuid4().hex}",
                system=True,
            )
        except (services.InvalidRoomSlug, services.InvalidMessage) as error:
            raise CommandError(f"{error.reason}: {error}") from None
        except services.MessageRejected as error:
            raise CommandError(f"message_rejected: {error}") from None
        except services.ClientIdConflict:
            raise CommandError("client_id_conflict: that client id is taken in this room") from None
        except services.RoomClosed:
            raise CommandError(f"room_closed: {room} was closed by a moderator") from None
        state = "stored" if posted.created else "already stored"
        self.stdout.write(f"{posted.room_slug}#{posted.message.seq} {state}")
