"""What the database holds, read back for assertions (sync; wrap for async)."""

from chat.models import Message


def room_messages(room: str) -> list[tuple[int, str, str, str]]:
    """Every stored message of ``room`` in seq order: (seq, author, body, client_id)."""
    return list(
        Message.objects.filter(room__slug=room)
        .order_by("seq")
        .values_list("seq", "author", "body", "client_id")
    )
