"""Group commit: writes that arrive while the database is busy share one transaction.

Each message a socket sends is stored before it is acknowledged. Stored one by one, every
message costs a hop to the database thread and a commit of its own, and while one is being
stored the next ones wait their turn anyway. ``GroupCommit`` lets them wait together: the
first write goes to the database thread at once, alone; the writes that arrive meanwhile are
stored together in the next hop, each in a savepoint of one transaction, committed once.

- Nothing is acknowledged before its transaction commits: ``submit`` returns (or raises) only
  then. A commit that fails fails every write of the batch.
- One write that fails (a duplicate, a closed room, a validator) rolls back its own savepoint
  and gets its own exception; the others in the batch are stored.
- A caller cancelled while waiting does not cancel the batch: its write is stored (or not)
  with the others, as a write already handed to the database thread always was.
- A lone write costs what it did: no savepoint, no outer transaction.
"""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Callable
from concurrent.futures import Executor
from typing import Generic, TypeVar
from weakref import WeakKeyDictionary

from asgiref.sync import AsyncToSync, SyncToAsync
from channels.db import database_sync_to_async
from django.db import close_old_connections, connection, transaction

from . import sqlite_wal

T = TypeVar("T")
R = TypeVar("R")


def database_thread(loop: asyncio.AbstractEventLoop) -> Executor | None:
    """The executor ``database_sync_to_async`` would run a call made here in, when that is its
    one database thread (a server's event loop); None inside ``async_to_sync`` or a
    thread-sensitive context (Django's HTTP handler, some tests), where it picks otherwise.

    Handing the batch to that thread directly keeps its database connection and costs the
    event loop a third of what ``database_sync_to_async``'s machinery does (a task, a shield,
    its context bookkeeping: docs/benchmarks.md).
    """
    if getattr(AsyncToSync.executors, "current", None) is not None:
        return None
    if SyncToAsync.thread_sensitive_context.get(None) is not None:
        return None
    if loop in AsyncToSync.loop_thread_executors:
        return None
    return SyncToAsync.single_thread_executor


class _Queue(Generic[T, R]):
    """One event loop's writes waiting for the batch in flight, and that batch."""

    def __init__(self) -> None:
        self.waiting: list[tuple[T, asyncio.Future[R]]] = []
        self.in_flight: asyncio.Future[list[tuple[bool, object]]] | None = None


class GroupCommit(Generic[T, R]):
    """Runs ``store_one`` in the database thread, batching the calls that queue behind a batch."""

    def __init__(self, store_one: Callable[[T], R]) -> None:
        self.store_one = store_one
        self._queues: WeakKeyDictionary[asyncio.AbstractEventLoop, _Queue[T, R]] = WeakKeyDictionary()
        # Batches run and writes stored in them (tests and docs/benchmarks.md read them).
        self.batches = 0
        self.writes = 0
        # Whether the first batch has started the WAL checkpointer of the database it writes to.
        self._checkpointer_asked = False

    async def submit(self, item: T) -> R:
        """Store ``item`` with ``store_one``; its result once the transaction has committed."""
        loop = asyncio.get_running_loop()
        queue = self._queues.get(loop)
        if queue is None:
            queue = self._queues[loop] = _Queue()
        done: asyncio.Future[R] = loop.create_future()
        queue.waiting.append((item, done))
        if queue.in_flight is None:
            self._start(queue)
        return await done

    def _start(self, queue: _Queue[T, R]) -> None:
        batch, queue.waiting = queue.waiting, []
        items = [item for item, _ in batch]
        loop = asyncio.get_running_loop()
        executor = database_thread(loop)
        in_flight: asyncio.Future[list[tuple[bool, object]]]
        if executor is None:
            in_flight = loop.create_task(database_sync_to_async(self._store_batch)(items))
        else:
            context = contextvars.copy_context()
            in_flight = loop.run_in_executor(executor, context.run, self._run_batch, items)
        queue.in_flight = in_flight
        in_flight.add_done_callback(lambda finished: self._settle(queue, batch, finished))

    def _settle(
        self,
        queue: _Queue[T, R],
        batch: list[tuple[T, asyncio.Future[R]]],
        finished: asyncio.Future[list[tuple[bool, object]]],
    ) -> None:
        queue.in_flight = None
        if finished.cancelled():
            failure: BaseException | None = ConnectionError("the database write was cancelled")
        else:
            failure = finished.exception()
        if failure is not None:
            for _, done in batch:
                if not done.done():
                    done.set_exception(failure)
        else:
            for (_, done), (ok, value) in zip(batch, finished.result(), strict=True):
                if done.done():
                    continue
                if ok:
                    done.set_result(value)  # type: ignore[arg-type]
                else:
                    assert isinstance(value, BaseException)
                    done.set_exception(value)
        if queue.waiting:
            self._start(queue)

    def _run_batch(self, items: list[T]) -> list[tuple[bool, object]]:
        """``_store_batch`` as ``database_sync_to_async`` runs it: stale connections closed around it."""
        close_old_connections()
        try:
            return self._store_batch(items)
        finally:
            close_old_connections()

    def _store_batch(self, items: list[T]) -> list[tuple[bool, object]]:
        """In the database thread: every item, each in a savepoint of one transaction."""
        if not self._checkpointer_asked:
            # The process writes here from now on: no commit of it should checkpoint a SQLite
            # WAL (chat/sqlite_wal.py). Asked once, of the database this thread writes to.
            self._checkpointer_asked = True
            sqlite_wal.start_for(connection.settings_dict)
        self.batches += 1
        self.writes += len(items)
        if len(items) == 1:
            return [self._store(items[0])]
        with transaction.atomic():
            return [self._store_in_savepoint(item) for item in items]

    def _store(self, item: T) -> tuple[bool, object]:
        try:
            return True, self.store_one(item)
        except Exception as error:
            return False, error

    def _store_in_savepoint(self, item: T) -> tuple[bool, object]:
        try:
            with transaction.atomic():
                return True, self.store_one(item)
        except Exception as error:
            return False, error
