"""The room admin: the list (with who is online), the form, the members of a private room.

And the room actions (announce, close, reopen, delete), each through ``chat.services``.
"""

from __future__ import annotations

import logging

from django import forms
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html

from .. import presence, services
from ..forms import AnnouncementForm, CloseRoomsForm, RemoveMembersForm, RoomForm
from ..models import Room, RoomMembership
from .filters import RoomActivityFilter, RoomSlugFilter, RoomStatusFilter
from .moderation import ModerationAdmin, counted, short_time

logger = logging.getLogger(__name__)


def online_counts(slugs: list[str]) -> dict[str, int] | None:
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


class RoomMembershipInline(admin.TabularInline):
    """Members of a private room; deleting one ends their open subscriptions to it at once."""

    model = RoomMembership
    extra = 1
    raw_id_fields = ["user"]
    readonly_fields = ["added_at"]


@admin.register(Room)
class RoomAdmin(ModerationAdmin):
    form = RoomForm
    inlines = [RoomMembershipInline]
    # Seven short columns fit 1280 px beside the navigation and the filters; the creation date
    # is the date hierarchy's, and on the room's page.
    list_display = ["slug", "title", "message_count", "last_active", "is_closed", "private", "online_now"]
    search_fields = ["slug", "title"]
    list_filter = [RoomStatusFilter, RoomActivityFilter]
    date_hierarchy = "created_at"
    actions = ["announce", "close_rooms", "reopen_rooms", "delete_rooms", "remove_members"]
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
            counts = online_counts([room.slug for room in rooms])
            for room in rooms:
                room.online_count = None if counts is None else counts[room.slug]
        return changelist

    @admin.display(description="messages", ordering="last_seq")
    def message_count(self, room: Room):
        url = reverse("admin:chat_message_changelist")
        return format_html(
            '<a href="{}?{}={}">{}</a>', url, RoomSlugFilter.parameter_name, room.slug, room.last_seq
        )

    @admin.display(description="last message", ordering="last_message_at")
    def last_active(self, room: Room) -> str:
        return short_time(room.last_message_at)

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
            self.log_moderation(
                request, "room_announce", rooms=[room.slug for room in open_rooms], count=len(open_rooms)
            )
            self.message_user(request, f"Posted the announcement to {counted(len(open_rooms), 'room')}.")
        if skipped:
            self.message_user(
                request,
                f"Skipped {counted(skipped, 'closed room')}: reopen a room to announce in it.",
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
            self.log_moderation(request, "room_close", rooms=[room.slug for room in rooms], count=len(rooms))
            self.message_user(request, f"Closed {counted(len(rooms), 'room')}.")
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
            self.log_moderation(request, "room_delete", rooms=slugs, count=len(slugs))
            self.message_user(request, f"Deleted {counted(len(slugs), 'room')} and their messages.")
        else:
            self.message_user(request, "The selected rooms were already deleted.", messages.WARNING)
        return None

    @admin.action(description="Remove people who are in the selected rooms…", permissions=["change"])
    def remove_members(self, request: HttpRequest, queryset: QuerySet[Room]):
        """Anyone present, guest or user, posted or not: their sockets close with 4403 and they are
        kept out for RIPPLE_REMOVAL_S (services.member_remove)."""
        slugs = list(queryset.values_list("slug", flat=True))
        try:
            present = presence.room_members(slugs)
        except Exception:
            logger.warning("presence read for removing members failed", exc_info=True)
            self.message_user(request, "Could not read who is in the rooms; try again.", messages.ERROR)
            return None
        # Maps each identity key (identity.Identity.member_id) to its name and the rooms it is in.
        people: dict[str, tuple[str, set[str]]] = {}
        for slug, members in present.items():
            for member in members:
                people.setdefault(member.id, (member.name, set()))[1].add(slug)
        choices = [
            (key, f"{name} ({'user' if key.startswith('u') else 'guest'}, in {', '.join(sorted(rooms))})")
            for key, (name, rooms) in sorted(people.items(), key=lambda item: item[1][0].casefold())
        ]
        if not choices:
            self.message_user(request, "Nobody is in the selected rooms now.", messages.WARNING)
            return None
        form = RemoveMembersForm(request.POST if "apply" in request.POST else None, choices=choices)
        if not form.is_valid():
            return self.action_page(
                request,
                queryset,
                action="remove_members",
                form=form,
                title="Remove people",
                intro="Who is in these rooms now; the people you tick are removed from the chat:",
                submit_label="Remove them",
            )
        keys = sorted(form.cleaned_data["members"])
        until = services.member_remove(keys=keys, by=request.user.get_username())
        self.log_moderation(request, "member_remove", rooms=sorted(slugs), count=len(keys), keys=keys)
        names = ", ".join(sorted(people[key][0] for key in keys))
        who = "1 person" if len(keys) == 1 else f"{len(keys)} people"
        self.message_user(request, f"Removed {who} ({names}) until {until:%H:%M} UTC.")
        return None

    @admin.action(description="Reopen the selected rooms", permissions=["change"])
    def reopen_rooms(self, request: HttpRequest, queryset: QuerySet[Room]):
        rooms = list(queryset.filter(closed_at__isnull=False))
        for room in rooms:
            services.room_reopen(room=room)
        if rooms:
            self.log_moderation(request, "room_reopen", rooms=[room.slug for room in rooms], count=len(rooms))
            self.message_user(request, f"Reopened {counted(len(rooms), 'room')}.")
        else:
            self.message_user(request, "The selected rooms were already open.", messages.WARNING)
