"""Signal receivers: logging out ends the session's sockets too."""

from __future__ import annotations

import logging
from typing import Any

from django.contrib.auth.signals import user_logged_out
from django.dispatch import receiver

from . import services
from .identity import session_tag

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
