"""Signal receivers: logging out ends the session's sockets; losing access to a private room
ends the subscriptions to it."""

from __future__ import annotations

import logging
from typing import Any

from django.contrib.auth.signals import user_logged_out
from django.db import transaction
from django.db.models.signals import post_delete, post_save
from django.dispatch import receiver

from . import services
from .identity import session_tag
from .models import Room, RoomMembership

logger = logging.getLogger(__name__)


@receiver(user_logged_out)
def close_sockets_on_logout(sender: Any, request: Any, user: Any, **kwargs: Any) -> None:
    # Sent before the session is flushed, so its key is still there to name its sockets.
    session = getattr(request, "session", None)
    try:
        services.session_end(tag=session_tag(session))
    except Exception:
        # The logout itself must still succeed; the deleted session also fails the socket's
        # expiry check (consumers.ChatConsumer._session_check).
        logger.warning("telling the workers about a logout failed", exc_info=True)


def _tell_access_changed(slug: str) -> None:
    try:
        services.room_access_changed(slug=slug)
    except Exception:
        logger.warning("telling the workers that %s's members changed failed", slug, exc_info=True)


@receiver(post_delete, sender=RoomMembership)
def revoke_on_membership_removed(sender: Any, instance: RoomMembership, **kwargs: Any) -> None:
    slug = Room.objects.filter(pk=instance.room_id).values_list("slug", flat=True).first()
    if slug is not None:
        transaction.on_commit(lambda: _tell_access_changed(slug))


@receiver(post_save, sender=Room)
def revoke_on_room_made_private(sender: Any, instance: Room, created: bool, **kwargs: Any) -> None:
    if instance.private and not created:
        transaction.on_commit(lambda: _tell_access_changed(instance.slug))
