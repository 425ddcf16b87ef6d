"""Signal receivers: logging out ends the session's sockets; losing access to a private room
ends the subscriptions to it.

The access receivers match models by label, not class, so the historical models of a data
migration trigger them too. Changes no signal sees (``QuerySet.update``, raw SQL) are caught by
the hub's periodic re-check (``RIPPLE_ACCESS_RECHECK_S``, chat/hub/janitor.py ``Janitor.audit_access``).
"""

from __future__ import annotations

import functools
import logging
from typing import Any

from django.contrib.auth.signals import user_logged_out
from django.db import transaction
from django.db.models.signals import post_delete, post_save, pre_save
from django.dispatch import receiver

from . import services
from .identity import session_tag
from .models import Room

logger = logging.getLogger(__name__)

MEMBERSHIP = "chat.roommembership"
ROOM = "chat.room"


@receiver(user_logged_out)
def close_sockets_on_logout(sender: Any, request: Any, user: Any, **kwargs: Any) -> None:
    # Sent before the session is flushed, so its key is still there to name its sockets.
    session = getattr(request, "session", None)
    try:
        services.session_end(tag=session_tag(session))
    except Exception:
        # The logout itself must still succeed; the deleted session also fails the socket's
        # expiry check (chat/session_watch.py).
        logger.warning("telling the workers about a logout failed", exc_info=True)


def _label(sender: Any) -> str:
    meta = getattr(sender, "_meta", None)
    return meta.label_lower if meta is not None else ""


def _tell_access_changed(slug: str) -> None:
    try:
        services.room_access_changed(slug=slug)
    except Exception:
        logger.warning("telling the workers that %s's members changed failed", slug, exc_info=True)


def _after_commit(using: str | None, room_ids: set[int]) -> None:
    slugs = list(Room.objects.using(using).filter(pk__in=room_ids).values_list("slug", flat=True))
    for slug in slugs:
        transaction.on_commit(functools.partial(_tell_access_changed, slug), using=using)


@receiver(pre_save)
def remember_membership_room(sender: Any, instance: Any, raw: bool = False, **kwargs: Any) -> None:
    """A membership moved to another room or user leaves the old one: remember where it was."""
    if _label(sender) != MEMBERSHIP or instance.pk is None or raw:
        return
    instance._ripple_was = (
        sender._default_manager.using(kwargs.get("using"))
        .filter(pk=instance.pk)
        .values_list("room_id", "user_id")
        .first()
    )


@receiver(post_save)
def revoke_on_membership_moved(sender: Any, instance: Any, created: bool, **kwargs: Any) -> None:
    if _label(sender) != MEMBERSHIP or created:
        return
    was = getattr(instance, "_ripple_was", None)
    if was is not None and was != (instance.room_id, instance.user_id):
        _after_commit(kwargs.get("using"), {was[0]})


@receiver(post_delete)
def revoke_on_membership_removed(sender: Any, instance: Any, **kwargs: Any) -> None:
    if _label(sender) == MEMBERSHIP:
        _after_commit(kwargs.get("using"), {instance.room_id})


@receiver(post_save)
def tell_room_saved(sender: Any, instance: Any, created: bool, **kwargs: Any) -> None:
    """A saved room (made private or public, closed or edited in the admin): every hub re-checks
    its subscribers and reads the row again (the hub keeps it for subscribes: chat/hub/core.py)."""
    if _label(sender) == ROOM and not created:
        transaction.on_commit(lambda: _tell_access_changed(instance.slug), using=kwargs.get("using"))
