"""The moderation admin: rooms and messages, and the actions that go through ``chat.services``.

Actions never write rows themselves: each service stores the change and then tells every
server process, so live subscribers see a deletion, an announcement or a closed room at once.

One concept per module:

- ``filters``: the changelists' filters (open/closed, has messages, deleted, room by slug).
- ``moderation``: ``ModerationAdmin``, what every action shares: the intermediate page it
  may show first, its moderation log line, the wording of its notes.
- ``rooms``: ``RoomAdmin``: the room list and form, members inline, who is online, and its
  actions: announce, close, reopen, delete.
- ``messages``: ``MessageAdmin``, read-only, and its actions: soft delete, disconnect authors.

Django's admin autodiscovery imports this package; importing ``rooms`` and ``messages`` here
is what registers their ModelAdmins.
"""

from .messages import MessageAdmin
from .rooms import RoomAdmin, RoomMembershipInline

__all__ = ["MessageAdmin", "RoomAdmin", "RoomMembershipInline"]
