"""The message admin: read-only lists of messages, and their actions (soft delete, disconnect)."""

from __future__ import annotations

from django.conf import settings
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.text import Truncator

from .. import services
from ..models import Message
from .filters import MessageDeletedFilter, RoomSlugFilter
from .moderation import ModerationAdmin, counted, short_time

BODY_PREVIEW_CHARS = 80


@admin.register(Message)
class MessageAdmin(ModerationAdmin):
    # Five narrow columns and one wide one (the body): the list fits 1280 px beside the admin's
    # navigation and the filter sidebar. System and deleted are one short column (and filters).
    list_display = ["room", "seq", "author", "body_preview", "sent", "flags"]
    list_display_links = ["seq", "body_preview"]
    list_select_related = ["room"]
    search_fields = ["body", "author", "room__slug"]
    list_filter = [RoomSlugFilter, MessageDeletedFilter, "system"]
    date_hierarchy = "sent_at"
    ordering = ["-sent_at"]
    # Both would count the whole table on every page.
    show_full_result_count = False
    show_facets = admin.ShowFacets.NEVER
    fields = ["room", "seq", "author", "user", "body", "client_id", "sent_at", "system", "deleted_at"]
    actions = ["soft_delete", "disconnect_authors"]

    # Messages are written by chat users and announcements only, and removed by soft delete
    # (the row keeps its seq so that resume stays gap-free): the admin only reads them.
    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False

    def has_moderate_permission(self, request) -> bool:
        opts = self.opts
        return request.user.has_perm(f"{opts.app_label}.change_{opts.model_name}")

    def get_actions(self, request):
        actions = super().get_actions(request)
        actions.pop("delete_selected", None)
        return actions

    @admin.display(description="body")
    def body_preview(self, message: Message) -> str:
        return Truncator(message.body).chars(BODY_PREVIEW_CHARS)

    @admin.display(description="deleted", boolean=True, ordering="deleted_at")
    def is_deleted(self, message: Message) -> bool:
        return message.deleted_at is not None

    @admin.display(description="sent", ordering="sent_at")
    def sent(self, message: Message) -> str:
        return short_time(message.sent_at)

    @admin.display(description="notes")
    def flags(self, message: Message) -> str:
        notes = (["announcement"] if message.system else []) + (["deleted"] if message.deleted_at else [])
        return ", ".join(notes)

    @admin.action(description="Delete the selected messages (soft)", permissions=["moderate"])
    def soft_delete(self, request: HttpRequest, queryset: QuerySet[Message]):
        ids = list(queryset.filter(deleted_at__isnull=True).values_list("pk", flat=True))
        deleted = services.message_delete(message_ids=ids) if ids else {}
        count = sum(len(seqs) for seqs in deleted.values())
        if count:
            self.log_moderation(request, "message_delete", rooms=sorted(deleted), count=count)
            self.message_user(
                request, f"Deleted {counted(count, 'message')} in {counted(len(deleted), 'room')}."
            )
        else:
            self.message_user(request, "The selected messages were already deleted.", messages.WARNING)

    @admin.action(
        description="Remove the authors of the selected messages (users and guests)", permissions=["moderate"]
    )
    def disconnect_authors(self, request: HttpRequest, queryset: QuerySet[Message]):
        """Close the authors' sockets and keep them out for RIPPLE_REMOVAL_S (services.member_remove).

        Guests are removed by their identity key (``Message.author_key``), as users are.
        """
        rows = set(queryset.filter(system=False).values_list("author_key", "user_id", "author", "room__slug"))
        keys: dict[str, str] = {}
        rooms: set[str] = set()
        unknown = set()
        for key, user_id, author, slug in rows:
            # Rows stored before author_key existed name a user by id, a guest not at all.
            key = key or (f"u{user_id}" if user_id is not None else None)
            if key is None or key[0] not in "ug":
                unknown.add(author)
                continue
            keys[key] = author
            rooms.add(slug)
        if keys:
            until = services.member_remove(keys=sorted(keys), by=request.user.get_username())
            self.log_moderation(
                request, "member_remove", rooms=sorted(rooms), count=len(keys), keys=sorted(keys)
            )
            minutes = max(1, round(settings.RIPPLE_REMOVAL_S / 60))
            self.message_user(
                request,
                f"Removed {counted(len(keys), 'author')} ({', '.join(sorted(set(keys.values())))}) "
                f"for {minutes} min, until {until:%H:%M} UTC.",
            )
        if unknown:
            self.message_user(
                request,
                f"Skipped {counted(len(unknown), 'author')} whose messages predate identity keys.",
                messages.WARNING,
            )
        if not keys and not unknown:
            self.message_user(request, "The selected messages have no authors to remove.", messages.WARNING)
