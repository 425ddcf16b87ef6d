import uuid

from django.core.management.base import BaseCommand, CommandError

from chat import protocol, services


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
            posted = services.message_post(
                room=found, author=author, body=text, client_id=client_id or f"cli-{uuid.uuid4().hex}"
            )
        except protocol.ProtocolError as error:
            raise CommandError(f"{error.code}: {error.message}") from None
        except services.ClientIdConflict:
            raise CommandError("client_id_conflict: that client id is taken in this room") from None
        state = "stored" if posted.created else "already stored"
        self.stdout.write(f"{posted.room_slug}#{posted.message.seq} {state}")
