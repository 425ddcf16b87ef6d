"""The moderation admin: rooms and messages, and the actions that go through ``chat.services``.

Actions never write rows themselves: each service stores the change and then tells every
server process, so live subscribers see a deletion, an announcement or a closed room at once.
"""

from __future__ import annotations

import logging
from urllib.parse import parse_qsl

from django import forms
from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.contrib.admin.views.main import PAGE_VAR
from django.db.models import QuerySet
from django.http import HttpRequest
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.html import format_html
from django.utils.text import Truncator

from . import presence, services
from .forms import AnnouncementForm, CloseRoomsForm, RoomForm
from .logs import log_event
from .models import Message, Room, RoomMembership

logger = logging.getLogger(__name__)

BODY_PREVIEW_CHARS = 80


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


def _online_counts(slugs: list[str]) -> dict[str, int] | None:
    """How many members each room has online now, in one presence read; None when it failed."""
    if not slugs:
        return {}
    try:
        members = presence.room_members(slugs)
    except Exception:
        # The admin stays usable while Redis is away; the column shows the empty value.
        logger.warning("presence read for the room admin failed", exc_info=True)
        return None
    return {slug: len(members.get(slug, ())) for slug in slugs}


class IsSetFilter(admin.SimpleListFilter):
    """Yes/no on whether a nullable field holds a value."""

    field_name = ""
    yes_label = "Yes"
    no_label = "No"

    def lookups(self, request, model_admin):
        return [("yes", self.yes_label), ("no", self.no_label)]

    def queryset(self, request, queryset):
        if self.value() in ("yes", "no"):
            return queryset.filter(**{f"{self.field_name}__isnull": self.value() == "no"})
        return queryset


class RoomStatusFilter(IsSetFilter):
    title = "status"
    parameter_name = "closed"
    field_name = "closed_at"
    yes_label = "Closed"
    no_label = "Open"


class RoomActivityFilter(IsSetFilter):
    title = "activity"
    parameter_name = "active"
    field_name = "last_message_at"
    yes_label = "Has messages"
    no_label = "No messages yet"


class MessageDeletedFilter(IsSetFilter):
    title = "deleted"
    parameter_name = "deleted"
    field_name = "deleted_at"


class RoomSlugFilter(admin.SimpleListFilter):
    """Messages of one room, by its slug typed in: a list of every room would not scale."""

    title = "room"
    parameter_name = "room"
    template = "admin/chat/room_slug_filter.html"

    def lookups(self, request, model_admin):
        return ()

    def has_output(self) -> bool:
        return True

    def queryset(self, request, queryset):
        if self.value():
            return queryset.filter(room__slug=self.value().strip().lower())
        return queryset

    def choices(self, changelist):
        others = changelist.get_query_string(remove=[self.parameter_name, PAGE_VAR])
        yield {
            "value": self.value() or "",
            "parameter_name": self.parameter_name,
            # The other filters and the search, kept as the form's hidden fields.
            "hidden": parse_qsl(others.lstrip("?")),
            "clear_query_string": changelist.get_query_string(remove=[self.parameter_name, PAGE_VAR]),
        }


class ModerationActionsMixin(admin.ModelAdmin):
    """Rendering of the intermediate page that some actions show before they run."""

    def action_page(
        self,
        request: HttpRequest,
        queryset: QuerySet,
        *,
        action: str,
        form,
        title: str,
        intro: str,
        submit_label: str,
    ) -> TemplateResponse:
        opts = self.model._meta
        context = {
            **self.admin_site.each_context(request),
            "title": title,
            "intro": intro,
            "opts": opts,
            "form": form,
            "queryset": queryset,
            "action": action,
            "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
            "submit_label": submit_label,
            "changelist_url": reverse(f"admin:{opts.app_label}_{opts.model_name}_changelist"),
            "media": self.media + form.media,
        }
        request.current_app = self.admin_site.name
        return TemplateResponse(request, "admin/chat/action_form.html", context)


class RoomMembershipInline(admin.TabularInline):
    """Members of a private room; deleting one ends their open subscriptions to it at once."""

    model = RoomMembership
    extra = 1
    raw_id_fields = ["user"]
    readonly_fields = ["added_at"]


@admin.register(Room)
class RoomAdmin(ModerationActionsMixin, admin.ModelAdmin):
    form = RoomForm
    inlines = [RoomMembershipInline]
    list_display = [
        "slug",
        "title",
        "created_at",
        "message_count",
        "last_message_at",
        "is_closed",
        "private",
        "online_now",
    ]
    search_fields = ["slug", "title"]
    list_filter = [RoomStatusFilter, RoomActivityFilter]
    date_hierarchy = "created_at"
    actions = ["announce", "close_rooms", "reopen_rooms", "delete_rooms"]
    computed_fields = ["created_at", "message_count", "last_message_at", "closed_at", "online_members"]

    # Django's own delete would strand the room's live subscribers: the delete_rooms action
    # goes through services.room_delete, which tells every process.
    def has_delete_permission(self, request, obj=None) -> bool:
        return False

    def has_moderate_permission(self, request) -> bool:
        # Deleting a room deletes its messages: the message moderators' permission, and the room's.
        user = request.user
        return user.has_perm("chat.change_room") and user.has_perm("chat.change_message")

    def get_fields(self, request, obj=None):
        return (
            ["slug", "title", "private"]
            if obj is None
            else ["slug", "title", "private", *self.computed_fields]
        )

    def get_readonly_fields(self, request, obj=None):
        # The slug names the room in URLs, frames and presence keys: fixed once created.
        return [] if obj is None else ["slug", *self.computed_fields]

    def get_changelist_instance(self, request):
        changelist = super().get_changelist_instance(request)
        if request.method == "GET":
            # One presence read for the page; the counts ride on the page's own Room objects,
            # which the template then lists without another query.
            rooms = list(changelist.result_list)
            counts = _online_counts([room.slug for room in rooms])
            for room in rooms:
                room.online_count = None if counts is None else counts[room.slug]
        return changelist

    @admin.display(description="messages", ordering="last_seq")
    def message_count(self, room: Room):
        url = reverse("admin:chat_message_changelist")
        return format_html(
            '<a href="{}?{}={}">{}</a>', url, RoomSlugFilter.parameter_name, room.slug, room.last_seq
        )

    @admin.display(description="closed", boolean=True, ordering="closed_at")
    def is_closed(self, room: Room) -> bool:
        return room.closed_at is not None

    @admin.display(description="online now")
    def online_now(self, room: Room) -> int | None:
        return getattr(room, "online_count", None)

    @admin.display(description="online now")
    def online_members(self, room: Room) -> str | None:
        try:
            members = presence.room_members([room.slug]).get(room.slug, set())
        except Exception:
            logger.warning("presence read for the room admin failed", exc_info=True)
            return None
        names = sorted(member.name for member in members)
        return f"{len(names)}: {', '.join(names)}" if names else "0"

    @admin.action(description="Post an announcement to the selected rooms", permissions=["change"])
    def announce(self, request: HttpRequest, queryset: QuerySet[Room]):
        form = AnnouncementForm(request.POST if "apply" in request.POST else None)
        if not form.is_valid():
            return self.action_page(
                request,
                queryset,
                action="announce",
                form=form,
                title="Post an announcement",
                intro="The announcement is posted as a system message to each of these rooms:",
                submit_label="Post the announcement",
            )
        rooms = list(queryset)
        open_rooms = [room for room in rooms if room.closed_at is None]
        skipped = len(rooms) - len(open_rooms)
        if open_rooms:
            try:
                services.room_announce(rooms=open_rooms, body=form.cleaned_data["body"])
            except services.RoomClosed as closed:
                # Closed by someone else meanwhile; the rooms before it have the announcement.
                self.message_user(
                    request,
                    f"Room {closed} was closed meanwhile: the announcement reached only the rooms "
                    "listed before it. Check them before posting again.",
                    messages.ERROR,
                )
                return None
            log_event(
                "moderation",
                action="room_announce",
                by=request.user.get_username(),
                rooms=[room.slug for room in open_rooms],
                count=len(open_rooms),
            )
            self.message_user(request, f"Posted the announcement to {_count(len(open_rooms), 'room')}.")
        if skipped:
            self.message_user(
                request,
                f"Skipped {_count(skipped, 'closed room')}: reopen a room to announce in it.",
                messages.WARNING,
            )
        return None

    @admin.action(description="Close the selected rooms", permissions=["change"])
    def close_rooms(self, request: HttpRequest, queryset: QuerySet[Room]):
        form = CloseRoomsForm(request.POST if "apply" in request.POST else None)
        if not form.is_valid():
            return self.action_page(
                request,
                queryset,
                action="close_rooms",
                form=form,
                title="Close rooms",
                intro=(
                    "Everyone in these rooms is sent away, and nobody can enter or post "
                    "until the room is reopened:"
                ),
                submit_label="Close the rooms",
            )
        rooms = [room for room in queryset if room.closed_at is None]
        for room in rooms:
            services.room_close(room=room, reason=form.cleaned_data["reason"])
        if rooms:
            log_event(
                "moderation",
                action="room_close",
                by=request.user.get_username(),
                rooms=[room.slug for room in rooms],
                count=len(rooms),
            )
            self.message_user(request, f"Closed {_count(len(rooms), 'room')}.")
        else:
            self.message_user(request, "The selected rooms were already closed.", messages.WARNING)
        return None

    @admin.action(description="Delete rooms and their messages", permissions=["moderate"])
    def delete_rooms(self, request: HttpRequest, queryset: QuerySet[Room]):
        if "apply" not in request.POST:
            return self.action_page(
                request,
                queryset,
                action="delete_rooms",
                form=forms.Form(),
                title="Delete rooms and their messages",
                intro=(
                    "These rooms and every message in them are deleted for good; everyone in them is "
                    "sent away. Closing a room keeps its history:"
                ),
                submit_label="Delete the rooms",
            )
        slugs = services.room_delete(room_ids=list(queryset.values_list("pk", flat=True)))
        if slugs:
            log_event(
                "moderation",
                action="room_delete",
                by=request.user.get_username(),
                rooms=slugs,
                count=len(slugs),
            )
            self.message_user(request, f"Deleted {_count(len(slugs), 'room')} and their messages.")
        else:
            self.message_user(request, "The selected rooms were already deleted.", messages.WARNING)
        return None

    @admin.action(description="Reopen the selected rooms", permissions=["change"])
    def reopen_rooms(self, request: HttpRequest, queryset: QuerySet[Room]):
        rooms = list(queryset.filter(closed_at__isnull=False))
        for room in rooms:
            services.room_reopen(room=room)
        if rooms:
            log_event(
                "moderation",
                action="room_reopen",
                by=request.user.get_username(),
                rooms=[room.slug for room in rooms],
                count=len(rooms),
            )
            self.message_user(request, f"Reopened {_count(len(rooms), 'room')}.")
        else:
            self.message_user(request, "The selected rooms were already open.", messages.WARNING)


@admin.register(Message)
class MessageAdmin(admin.ModelAdmin):
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
            log_event(
                "moderation",
                action="message_delete",
                by=request.user.get_username(),
                rooms=sorted(deleted),
                count=count,
            )
            self.message_user(
                request, f"Deleted {_count(count, 'message')} in {_count(len(deleted), 'room')}."
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
            log_event(
                "moderation",
                action="user_disconnect",
                by=request.user.get_username(),
                rooms=sorted({slug for user_id, _, slug in authors if user_id is not None}),
                count=len(user_ids),
                users=user_ids,
            )
            self.message_user(request, f"Disconnected {_count(len(user_ids), 'user')}.")
        if guests:
            self.message_user(
                request,
                f"Skipped {_count(len(guests), 'guest author')}: guests have no account to disconnect.",
                messages.WARNING,
            )
        if not user_ids and not guests:
            self.message_user(
                request, "The selected messages have no authors to disconnect.", messages.WARNING
            )
