"""Moderation from another process, as the admin or a management command on another host does it.

``moderate(action, arg, env)`` runs ``python -m tests.support.moderate ACTION ARG`` with
DATABASE_URL and REDIS_URL in ``env``, where ACTION is delete (ARG: comma-separated message
ids), announce (ARG: room slug), close (ARG: room slug), disconnect (ARG: user id) or revoke
(ARG: room slug:user id, removes a membership).
"""

import os
import subprocess
import sys

import django

from tests.support.processes import ROOT


def moderation_env(database_url: str, redis_url: str) -> dict[str, str]:
    """What ``moderate`` needs to reach the workers' database and Redis."""
    return {
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        "DJANGO_SECRET_KEY": "ripple-tests-only-not-secret",
        "DJANGO_LOG_LEVEL": "WARNING",
    }


def moderate(action: str, arg: str, env: dict[str, str]) -> None:
    """Run one moderation service in a separate process; return when it finished."""
    result = subprocess.run(
        [sys.executable, "-m", "tests.support.moderate", action, arg],
        cwd=ROOT,
        env={**os.environ, **env, "DJANGO_SETTINGS_MODULE": "project.settings"},
        capture_output=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr.decode()


def main() -> None:
    action, arg = sys.argv[1], sys.argv[2]
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")
    django.setup()
    from chat import services
    from chat.models import Room

    if action == "delete":
        services.message_delete(message_ids=[int(pk) for pk in arg.split(",")])
    elif action == "announce":
        services.room_announce(rooms=[Room.objects.get(slug=arg)], body="Maintenance at noon")
    elif action == "close":
        services.room_close(room=Room.objects.get(slug=arg), reason="closed for the night")
    elif action == "disconnect":
        services.user_disconnect(user_id=int(arg))
    elif action == "revoke":
        from chat.models import RoomMembership

        slug, user_id = arg.split(":")
        deleted, _ = RoomMembership.objects.filter(room__slug=slug, user_id=int(user_id)).delete()
        assert deleted == 1, f"no membership of user {user_id} in {slug}"
    else:
        raise SystemExit(f"unknown action {action}")


if __name__ == "__main__":
    main()
