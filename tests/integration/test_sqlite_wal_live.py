"""A worker on a SQLite file checkpoints its WAL with its own thread (chat/sqlite_wal.py): what
its messages committed reaches the database file itself within a moment, far below the 1,000
pages at which SQLite would make a commit do it. A real daphne process, read from outside."""

import json
import os
import subprocess
import sys

import pytest
import websockets

from tests.support.frames import recv_until
from tests.support.origins import same_origin
from tests.support.processes import ROOT, wait_until

pytestmark = pytest.mark.django_db(transaction=True)


async def test_a_workers_messages_are_checkpointed_into_the_database_file_by_its_thread(daphne, tmp_path):
    # A SQLite file of its own, whatever database this run uses (the PostgreSQL run included).
    database = tmp_path / "wal.sqlite3"
    database_url = f"sqlite:///{database}"
    migrated = subprocess.run(
        [sys.executable, "manage.py", "migrate", "--noinput"],
        cwd=ROOT,
        env={
            **os.environ,
            "DATABASE_URL": database_url,
            "DJANGO_DEBUG": "1",
            "DJANGO_SETTINGS_MODULE": "project.settings",
        },
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert migrated.returncode == 0, migrated.stderr
    server = daphne(DATABASE_URL=database_url)
    url = f"{server.ws_url}/ws/chat/"
    async with websockets.connect(url, origin=same_origin(url)) as ws:
        await recv_until(ws, "welcome")
        await ws.send(json.dumps({"type": "subscribe", "room": "wal"}))
        await recv_until(ws, "subscribed")
        before = database.stat().st_mtime_ns
        for number in range(20):
            await ws.send(
                json.dumps(
                    {"type": "message", "room": "wal", "body": f"m{number}", "client_id": f"c{number}"}
                )
            )
            await recv_until(ws, "ack")
    # 20 messages are a few dozen pages of WAL: no commit checkpoints that little, the thread does.
    wait_until(
        lambda: database.stat().st_mtime_ns > before,
        timeout_s=10,
        what="the worker's checkpointer to write the messages into the database file",
    )
