"""The changelists' filters: rooms by status and activity, messages by deletion and by room."""

from __future__ import annotations

from urllib.parse import parse_qsl

from django.contrib import admin
from django.contrib.admin.views.main import PAGE_VAR


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
