"""The message admin: read-only lists of messages, and their actions (soft delete, disconnect)."""

from __future__ import annotations

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.text import Truncator

from .. import services
from ..models import Message
from .filters import MessageDeletedFilter, RoomSlugFilter
from .moderation import ModerationAdmin, counted

BODY_PREVIEW_CHARS = 80


@admin.register(Message)
class MessageAdmin(ModerationAdmin):
    list_display = ["room", "seq", "author", "body_preview", "sent_at", "system", "is_deleted"]
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

    @admin.action(description="Disconnect the authors of the selected messages", permissions=["moderate"])
    def disconnect_authors(self, request: HttpRequest, queryset: QuerySet[Message]):
        authors = set(queryset.filter(system=False).values_list("user_id", "author", "room__slug").distinct())
        user_ids = sorted({user_id for user_id, _, _ in authors if user_id is not None})
        guests = {author for user_id, author, _ in authors if user_id is None}
        for user_id in user_ids:
            services.user_disconnect(user_id=user_id)
        if user_ids:
            self.log_moderation(
                request,
                "user_disconnect",
                rooms=sorted({slug for user_id, _, slug in authors if user_id is not None}),
                count=len(user_ids),
                users=user_ids,
            )
            self.message_user(request, f"Disconnected {counted(len(user_ids), 'user')}.")
        if guests:
            self.message_user(
                request,
                f"Skipped {counted(len(guests), 'guest author')}: guests have no account to disconnect.",
                messages.WARNING,
            )
        if not user_ids and not guests:
            self.message_user(
                request, "The selected messages have no authors to disconnect.", messages.WARNING
            )
