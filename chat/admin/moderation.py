"""What every moderation action shares: the page it may show first, its log line, its notes."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.contrib import admin
from django.contrib.admin import helpers
from django.db.models import QuerySet
from django.http import HttpRequest
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils import timezone

from ..logs import log_event


def short_time(moment: datetime | None) -> str:
    """``2026-12-04 18:30`` in the admin's time zone, ``–`` for none: one short line in a list."""
    return "–" if moment is None else timezone.localtime(moment).strftime("%Y-%m-%d %H:%M")


def counted(n: int, noun: str) -> str:
    """``3 rooms``, ``1 room``: the notes' wording."""
    return f"{n} {noun}{'' if n == 1 else 's'}"


class ModerationAdmin(admin.ModelAdmin):
    """A ModelAdmin whose actions may ask first (``action_page``) and log what they did."""

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
        """The intermediate page: the selected objects, the action's form and a submit button.

        Its submit posts the same action again with ``apply`` set, which is how an action
        tells the first request from the confirmed one.
        """
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

    def log_moderation(
        self, request: HttpRequest, action: str, *, rooms: list[str], count: int, **more: Any
    ) -> None:
        """One ``moderation`` event line: what was done, by whom, in which rooms, to how many."""
        log_event(
            "moderation",
            action=action,
            by=request.user.get_username(),
            rooms=rooms,
            count=count,
            **more,
        )
