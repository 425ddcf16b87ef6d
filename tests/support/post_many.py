"""Child process for the concurrency test: post COUNT messages into ROOM as fast as it can.

Run as ``python -m tests.support.post_many ROOM COUNT PREFIX`` with DATABASE_URL set.
"""

import os
import sys

import django


def main() -> None:
    room_slug, count, prefix = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")
    django.setup()
    from chat import services

    room = services.room_get_or_create(slug=room_slug)
    for i in range(count):
        services.message_store(
            room=room, author=prefix, user_id=None, body=f"{prefix}-{i}", client_id=f"{prefix}-{i}"
        )


if __name__ == "__main__":
    main()
