"""SQLite's WAL checkpoints, off the message path: a thread of the worker's own does them.

In WAL mode (project/settings.py) every commit is appended to the ``-wal`` file, and the commit
that takes it past ``wal_autocheckpoint`` pages (1,000) then copies it back into the database
file and syncs that file: a checkpoint, run by the committing connection. In a worker that
connection is the database thread, where every message is stored, so every message behind it
waited. At 100 messages a second (bench fanout, 10 rooms x 10 at 1,000 deliveries/s) that was
a 3.5-4.5 ms store every ~1.2 s, and it was the whole p99 (docs/benchmarks.md, sixth pass).

Here one daemon thread per process, with a connection of its own, runs a PASSIVE checkpoint
every ``CHECKPOINT_EVERY_S``: it copies what it can without waiting for or blocking anyone, and
once all of the WAL is copied the next writer starts it again from the beginning. The WAL so
stays far below the autocheckpoint limit, and no commit on the database thread checkpoints.
The limit stays as it was, a safety net if this thread falls behind or stops. A checkpoint
with nothing to copy syncs nothing: an idle worker pays a few microseconds a tick.

``start_for(settings_dict)`` starts it once per process for a SQLite database in a file, and
does nothing for PostgreSQL or an in-memory database. The group commit (chat/group_commit.py)
calls it with its first batch, for the database its thread writes messages to: a process that
stores no message (``manage.py``, a test that opens no socket) starts none. The connection
opens the file read-write without creating it (``mode=rw``): if the file goes away it warns
once a minute and tries again each tick.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import quote

logger = logging.getLogger(__name__)

# How often the thread checkpoints. At 100 messages a second the WAL grows ~800 pages a second:
# a quarter second keeps it near 200 pages, a fifth of the autocheckpoint limit.
CHECKPOINT_EVERY_S = 0.25
# A failing checkpoint (the file gone, a disk error) is logged at most this often.
WARN_EVERY_S = 60.0

_started: dict[str, Checkpointer] = {}
_lock = threading.Lock()


def database_file(settings_dict: Mapping[str, Any]) -> Path | None:
    """The file of a SQLite database (Django's ``DATABASES`` entry); None for anything else."""
    if not str(settings_dict.get("ENGINE", "")).endswith("sqlite3"):
        return None
    name = str(settings_dict.get("NAME") or "")
    if not name or name == ":memory:" or "mode=memory" in name or name.startswith("file:"):
        return None
    return Path(name)


def start_for(settings_dict: Mapping[str, Any], every_s: float = CHECKPOINT_EVERY_S) -> Checkpointer | None:
    """This process's checkpointer for the database of ``settings_dict``, started once; None
    when the database is not a SQLite file."""
    path = database_file(settings_dict)
    if path is None:
        return None
    key = str(path.resolve())
    with _lock:
        checkpointer = _started.get(key)
        if checkpointer is None or not checkpointer.running():
            checkpointer = _started[key] = Checkpointer(path, every_s=every_s)
            checkpointer.start()
        return checkpointer


class Checkpointer:
    """One thread that checkpoints one SQLite file's WAL every ``every_s`` until stopped."""

    def __init__(self, path: Path, *, every_s: float = CHECKPOINT_EVERY_S) -> None:
        self.path = path
        self.every_s = every_s
        # Checkpoints run since the start, and what the last one found: (frames in the WAL,
        # frames of them in the database file).
        self.checkpoints = 0
        self.last: tuple[int, int] | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._warned_at = -WARN_EVERY_S

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="ripple-wal-checkpoint", daemon=True)
        self._thread.start()

    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive() and not self._stop.is_set()

    def stop(self, timeout_s: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout_s)

    def _run(self) -> None:
        connection: sqlite3.Connection | None = None
        try:
            while not self._stop.wait(self.every_s):
                try:
                    if connection is None:
                        connection = self._connect()
                    self.checkpoint(connection)
                except sqlite3.Error as error:
                    if connection is not None:
                        connection.close()
                        connection = None
                    self._warn(error)
        finally:
            if connection is not None:
                connection.close()

    def _connect(self) -> sqlite3.Connection:
        # Read-write, never created: a checkpointer must not make an empty database file.
        uri = f"file:{quote(str(self.path.resolve()))}?mode=rw"
        return sqlite3.connect(uri, uri=True, timeout=0, isolation_level=None, check_same_thread=True)

    def checkpoint(self, connection: sqlite3.Connection) -> tuple[int, int]:
        """One PASSIVE checkpoint on ``connection``: the frames in the WAL, and how many of them
        are now in the database file (both -1 when the database is not in WAL mode)."""
        _busy, frames, copied = connection.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        self.checkpoints += 1
        self.last = (int(frames), int(copied))
        return self.last

    def _warn(self, error: Exception) -> None:
        now = time.monotonic()
        if now - self._warned_at >= WARN_EVERY_S:
            self._warned_at = now
            logger.warning("WAL checkpoint of %s failed (%s); repeats are muted for 60 s", self.path, error)
