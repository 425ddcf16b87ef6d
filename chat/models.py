from django.conf import settings
from django.db import models


class Room(models.Model):
    """A chat room; ``last_seq`` is the sequence number of its newest message."""

    slug = models.SlugField(max_length=64, unique=True)
    title = models.CharField(max_length=120, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    # Assigned under a row lock by services.message_store: the room's message count so far.
    last_seq = models.PositiveBigIntegerField(default=0)
    last_message_at = models.DateTimeField(null=True, blank=True)
    # Set by a moderator: subscribers are sent away and new subscribes refused until reopened.
    closed_at = models.DateTimeField(null=True, blank=True)
    # Only its members (RoomMembership) may subscribe, read its history, post or see presence.
    private = models.BooleanField(default=False)

    class Meta:
        ordering = ["slug"]

    def __str__(self) -> str:
        return self.title or self.slug


class Message(models.Model):
    """One stored chat message, numbered within its room."""

    room = models.ForeignKey(Room, on_delete=models.CASCADE, related_name="messages")
    seq = models.PositiveBigIntegerField()
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    author = models.CharField(max_length=150)
    body = models.TextField()
    # Chosen by the sending client; (room, client_id) makes a re-send idempotent.
    client_id = models.CharField(max_length=64)
    sent_at = models.DateTimeField()
    # Posted by the operators (announcements), not by a chat user.
    system = models.BooleanField(default=False)
    # Soft delete: the row keeps its seq (resume stays gap-free) but its body is never sent again.
    deleted_at = models.DateTimeField(null=True, blank=True)
    # Who sent it, as identity.Identity.member_id ("u<id>", "g<opaque session>", "c<socket>")
    # or "system": a re-send of its client_id is a duplicate only from the same key.
    # Null on rows stored before the column existed; nullable also keeps adding the column a
    # metadata change instead of a copy of the table (SQLite).
    author_key = models.CharField(max_length=40, null=True, blank=True)  # noqa: DJ001

    class Meta:
        ordering = ["room", "seq"]
        constraints = [
            models.UniqueConstraint(fields=["room", "seq"], name="chat_message_room_seq_unique"),
            models.UniqueConstraint(fields=["room", "client_id"], name="chat_message_room_client_id_unique"),
        ]
        # The admin's date hierarchy and newest-first listing.
        indexes = [models.Index(fields=["sent_at"], name="chat_message_sent_at_idx")]

    def __str__(self) -> str:
        return f"{self.room.slug}#{self.seq} {self.author}"

    @property
    def author_kind(self) -> str:
        """Who stands behind ``author``: "system", "user" or "guest" (sent as author_kind)."""
        if self.system:
            return "system"
        # A user deleted since leaves user_id null but their key.
        if self.user_id is not None or (self.author_key or "").startswith("u"):
            return "user"
        return "guest"


class RoomMembership(models.Model):
    """A user allowed into a private room. Removing it removes them from open sockets too."""

    room = models.ForeignKey(Room, on_delete=models.CASCADE, related_name="memberships")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    added_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["room", "user"], name="chat_membership_room_user_unique")
        ]

    def __str__(self) -> str:
        return f"{self.user} in {self.room}"


class NameClaim(models.Model):
    """A registered username's skeleton (chat.names): guests may not take a look-alike of it."""

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, primary_key=True, on_delete=models.CASCADE, related_name="+"
    )
    # Indexed, not unique: usernames are case-sensitive, so "ann" and "Ann" share a skeleton.
    skeleton = models.CharField(max_length=255, db_index=True)

    def __str__(self) -> str:
        return self.skeleton


class Removal(models.Model):
    """An identity a moderator removed: its sockets are refused until ``until`` (chat/removal.py)."""

    # identity.Identity.member_id: "u<id>" for a user, "g<opaque session>" for a guest.
    key = models.CharField(max_length=40, unique=True)
    until = models.DateTimeField(db_index=True)
    removed_at = models.DateTimeField(auto_now=True)
    # The moderator's username, for the record.
    by = models.CharField(max_length=150, blank=True)

    def __str__(self) -> str:
        return f"{self.key} until {self.until:%Y-%m-%d %H:%M}"
