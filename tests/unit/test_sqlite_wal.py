"""chat/sqlite_wal.py: a SQLite WAL checkpointed by a thread of its own, so that no commit on the
database thread has to. Real SQLite files in WAL mode, written by a second connection."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import pytest

from chat import sqlite_wal
from chat.sqlite_wal import Checkpointer, database_file, start_for
from tests.support.processes import wait_until

PAGE = 4096


def writer(path: Path, *, autocheckpoint: int) -> sqlite3.Connection:
    connection = sqlite3.connect(path, isolation_level=None)
    connection.execute("PRAGMA journal_mode=WAL")
    connection.execute("PRAGMA synchronous=NORMAL")
    connection.execute(f"PRAGMA wal_autocheckpoint={autocheckpoint}")
    connection.execute("CREATE TABLE IF NOT EXISTS t (id INTEGER PRIMARY KEY, body BLOB)")
    return connection


def commit_rows(connection: sqlite3.Connection, count: int) -> None:
    for _ in range(count):  # one page of data a commit, each its own transaction
        connection.execute("INSERT INTO t (body) VALUES (?)", (b"x" * (PAGE - 200),))


def wal_pages(path: Path) -> float:
    wal = Path(f"{path}-wal")
    return wal.stat().st_size / PAGE if wal.exists() else 0.0


@pytest.mark.parametrize(
    ("settings_dict", "expected"),
    [
        (
            {"ENGINE": "django.db.backends.sqlite3", "NAME": "/srv/ripple/db.sqlite3"},
            Path("/srv/ripple/db.sqlite3"),
        ),
        ({"ENGINE": "django.db.backends.sqlite3", "NAME": Path("/tmp/x.sqlite3")}, Path("/tmp/x.sqlite3")),
        ({"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}, None),
        (
            {
                "ENGINE": "django.db.backends.sqlite3",
                "NAME": "file:memorydb_default?mode=memory&cache=shared",
            },
            None,
        ),
        ({"ENGINE": "django.db.backends.postgresql", "NAME": "ripple"}, None),
    ],
)
def test_only_a_sqlite_file_gets_a_checkpointer(settings_dict, expected):
    assert database_file(settings_dict) == expected


def test_a_checkpoint_from_another_connection_lets_the_writer_start_the_wal_again(tmp_path):
    # The writer never checkpoints here (0 turns SQLite's own off): only the checkpointer does.
    path = tmp_path / "db.sqlite3"
    connection = writer(path, autocheckpoint=0)
    checkpointer = Checkpointer(path)
    reader = checkpointer._connect()
    for _ in range(20):
        commit_rows(connection, 50)
        frames, copied = checkpointer.checkpoint(reader)
        assert frames == copied > 0  # all of it is in the database file now
    # 1,000 commits of a page of data each (the control below piles up over 1,000 pages); the
    # WAL was started again after every checkpoint, so it never held more than a round of 50.
    assert wal_pages(path) < 400
    assert connection.execute("SELECT count(*) FROM t").fetchone() == (1000,)
    reader.close()
    connection.close()


def test_without_it_the_same_writes_pile_up_in_the_wal(tmp_path):
    # The control for the test above: the same writes, nobody checkpointing.
    path = tmp_path / "db.sqlite3"
    connection = writer(path, autocheckpoint=0)
    for _ in range(20):
        commit_rows(connection, 50)
    assert wal_pages(path) >= 1000
    connection.close()


def test_the_thread_checkpoints_what_is_committed_and_stops(tmp_path):
    path = tmp_path / "db.sqlite3"
    connection = writer(path, autocheckpoint=0)
    checkpointer = Checkpointer(path, every_s=0.01)
    checkpointer.start()
    try:
        commit_rows(connection, 300)
        wait_until(
            lambda: checkpointer.last is not None and checkpointer.last[0] == checkpointer.last[1] >= 300,
            timeout_s=10,
            what="the checkpointer to copy the 300 commits into the database file",
        )
        assert checkpointer.running()
    finally:
        checkpointer.stop()
    assert not checkpointer.running()
    connection.close()


def test_it_waits_for_the_database_file_and_never_creates_it(tmp_path, caplog):
    path = tmp_path / "not-yet.sqlite3"
    checkpointer = Checkpointer(path, every_s=0.01)
    checkpointer.start()
    try:
        wait_until(
            lambda: "WAL checkpoint" in caplog.text, timeout_s=5, what="the failed checkpoint's warning"
        )
        assert not path.exists()
        connection = writer(path, autocheckpoint=0)  # `migrate` makes the file
        commit_rows(connection, 10)
        wait_until(
            lambda: checkpointer.last is not None and checkpointer.last[1] >= 10,
            timeout_s=10,
            what="the checkpointer to open the file once it exists",
        )
        connection.close()
    finally:
        checkpointer.stop()


def test_start_for_starts_one_thread_per_database_file(tmp_path, monkeypatch):
    monkeypatch.setattr(sqlite_wal, "_started", {})
    settings_dict = {"ENGINE": "django.db.backends.sqlite3", "NAME": str(tmp_path / "db.sqlite3")}
    first = start_for(settings_dict, every_s=0.05)
    try:
        assert first is not None and first.running()
        assert start_for(settings_dict) is first
        assert start_for({"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}) is None
    finally:
        first.stop()
    started = time.monotonic()
    again = start_for(settings_dict, every_s=0.05)  # a stopped one is replaced
    try:
        assert again is not first and again.running()
    finally:
        again.stop()
    assert time.monotonic() - started < 5
