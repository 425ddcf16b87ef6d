"""Running the storm: connect every client, post, restart the workers, wait for everyone to come back."""

from __future__ import annotations

import argparse
import asyncio
import random
import secrets
import signal
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from .. import harness, loadgen, servers
from .cli import drain_window_s
from .client import StormClient
from .policy import (
    BACKOFF_BASE_S,
    BACKOFF_MAX_S,
    CONNECT_TIMEOUT_S,
    MAX_ATTEMPTS,
    QUICK_RECONNECT_S,
    STABLE_AFTER_S,
)
from .report import StormProgress, add_notes
from .state import Storm
from .stats import summarize

# Before the storm: how long setting up may take (CONNECT_CONCURRENCY at once: state.py).
SETUP_BASE_S = 60.0
SETUP_PER_CLIENT_S = 0.05
SETTLE_S = 30.0
# A signalled worker gets its drain window plus this long to exit before SIGKILL.
WORKER_EXIT_S = 30.0
# After every client is back: how long to wait for the messages posted during the storm.
MESSAGES_WAIT_S = 10.0
STATUS_EVERY_S = 0.25


async def measure(session: harness.Session, first: servers.BenchDaphne) -> dict[str, Any]:
    """The harness started Redis, the database and the first worker: start the others, run the storm."""
    args = session.args
    needed = 2 * args.clients + 200
    if session.open_files_limit < needed:
        raise RuntimeError(
            f"{args.clients} clients need an open-files limit of {needed}, not {session.open_files_limit}"
        )
    assert session.probe is not None  # --layer none is refused
    session.result["client_policy"] = {
        "backoff_base_s": BACKOFF_BASE_S,
        "backoff_max_s": BACKOFF_MAX_S,
        "quick_reconnect_s": QUICK_RECONNECT_S,
        "max_attempts": MAX_ATTEMPTS,
        "stable_after_s": STABLE_AFTER_S,
        "connect_timeout_s": CONNECT_TIMEOUT_S,
    }
    # Blocking, on purpose: no task of this loop runs yet, and start_workers stops what it started
    # if it is interrupted, where a thread would leave a worker no cleanup knows of.
    others = start_more_workers(session, first, args.workers - 1)
    workers = [first, *others]
    progress = StormProgress()
    progress.begin("storm")
    try:
        outcome = await run_storm(args, workers, redis_cpu_s=session.probe.cpu_s, progress=progress)
    finally:
        progress.end()
    outcome["worker_processes"] = [{"port": worker.port, "pid": worker.pid} for worker in workers]
    outcome["server_logs"] = {str(worker.port): worker.problems() for worker in workers}
    add_notes(session.result["notes"], outcome, timeout_s=args.timeout)
    return outcome


def start_more_workers(
    session: harness.Session, first: servers.BenchDaphne, count: int
) -> list[servers.BenchDaphne]:
    """``count`` more workers with the first one's environment, stopped when the session ends."""
    if count == 0:
        return []
    assert first.env is not None
    session.progress.note(f"starting {count} more daphne worker(s) with the same environment")
    others = servers.start_workers(
        count, env=first.env, app=servers.RIPPLE_APP, pinning=session.pinning, server=session.args.server
    )
    session.cleanup.callback(servers.stop_all, others)
    return others


def restart_worker(
    storm: Storm, index: int, worker: servers.BenchDaphne, abandon: threading.Event, exit_wait_s: float
) -> dict[str, Any]:
    """In a thread: wait until the signalled worker exits (SIGKILL after ``exit_wait_s``), start it again."""
    assert worker.proc is not None and storm.signal_at is not None
    timing: dict[str, Any] = {"port": worker.port, "pid_before": worker.pid, "killed_after_wait": False}
    try:
        timing["exit_code"] = worker.proc.wait(timeout=exit_wait_s)
    except subprocess.TimeoutExpired:
        worker.proc.kill()
        timing["killed_after_wait"] = True
        timing["exit_code"] = worker.proc.wait(timeout=WORKER_EXIT_S)
    storm.exited_at[index] = time.perf_counter()
    timing["exited_s"] = round(storm.exited_at[index] - storm.signal_at, 3)
    if abandon.is_set():
        return timing
    # Same object, same argv: the same port, and the log goes on in the same file.
    worker.start()
    storm.up_at[index] = time.perf_counter()
    timing["pid_after"] = worker.pid
    timing["up_s"] = round(storm.up_at[index] - storm.signal_at, 3)
    return timing


async def run_storm(
    args: argparse.Namespace,
    workers: list[servers.BenchDaphne],
    *,
    redis_cpu_s: Callable[[], float],
    progress: StormProgress,
) -> dict[str, Any]:
    """Connect, post, restart, wait for every client to come back, drain, close; returns the figures."""
    seed = args.seed if args.seed is not None else secrets.randbits(32)
    storm = Storm(
        ports=[worker.port for worker in workers],
        rng=random.Random(seed),
        messages=args.messages,
        route=args.route,
    )
    run_id = secrets.token_hex(3)
    rooms = [f"storm-{run_id}-{index}" for index in range(args.rooms)]
    clients = [
        StormClient(storm, room=rooms[index % len(rooms)], worker=index % len(workers))
        for index in range(args.clients)
    ]
    restarted = range(len(workers)) if args.restart == "all" else range(1)
    started = time.perf_counter()
    outcome: dict[str, Any] = {"seed": seed, "rooms": f"storm-{run_id}-0 … storm-{run_id}-{len(rooms) - 1}"}
    try:
        outcome["setup"] = await set_up(storm, clients, rooms, args, progress, started)
        if outcome["setup"]["subscribed"] == 0:
            raise RuntimeError(f"no client could subscribe: {outcome['setup']}")
        outcome.update(
            await restart_and_wait(storm, clients, workers, restarted, args, progress, redis_cpu_s)
        )
        outcome["messages"] = await wait_for_messages(storm, clients, progress, args.messages)
        # Before closing: the sockets closed below would count as lost.
        outcome.update(summarize(storm, clients, restarted, args, drain_s=drain_window_s(args)))
    finally:
        storm.closing = True
        for client in clients:
            client.cancel_timers()
        await loadgen.close_all([client.conn for client in clients if client.conn is not None])
        for task in list(storm.tasks):
            task.cancel()
        if storm.tasks:
            await asyncio.wait(list(storm.tasks), timeout=5)
    return outcome


async def set_up(
    storm: Storm,
    clients: list[StormClient],
    rooms: list[str],
    args: argparse.Namespace,
    progress: StormProgress,
    started: float,
) -> dict[str, Any]:
    """Connect every client (no more than CONNECT_CONCURRENCY at once) and post the first messages."""
    limit_s = SETUP_BASE_S + SETUP_PER_CLIENT_S * len(clients)

    in_time = True
    try:
        async with asyncio.timeout(limit_s):
            for count, client in enumerate(clients, 1):
                await storm.setup_gate.acquire()
                storm.holding_gate.add(client)
                client.connect()
                progress.status(f"connecting {count - len(storm.holding_gate):>5}/{len(clients)}")
            while storm.holding_gate:
                progress.status(f"connecting {len(clients) - len(storm.holding_gate):>5}/{len(clients)}")
                await asyncio.sleep(STATUS_EVERY_S)
    except TimeoutError:
        in_time = False
    connect_s = time.perf_counter() - started
    for client in clients:
        if not client.active:
            client.left_out = True
            client.gave_up = client.gave_up or "not subscribed within the setup time"
            client.cancel_timers()
            if client.conn is not None:
                client.conn.abort()
    live = [client for client in clients if client.active]
    # The first client of each room posts; everyone waits until all of it arrived.
    for room in rooms:
        poster = next((client for client in live if client.room == room), None)
        if poster is not None:
            poster.post("before", args.messages)
    settle_deadline = time.perf_counter() + SETTLE_S
    while not caught_up(storm, live) and time.perf_counter() < settle_deadline:
        progress.status("posting before the restart")
        await asyncio.sleep(0.05)
    failures = {kind: count for (phase, kind), count in storm.failures.items() if phase == "setup"}
    return {
        "wanted": len(clients),
        "subscribed": len(live),
        "failed": len(clients) - len(live),
        "why": dict(Counter(client.gave_up for client in clients if client.left_out)),
        "within_time": in_time,
        "connect_s": round(connect_s, 3),
        "handshake_failures": failures,
        "failure_examples": list(storm.failure_examples),
        "caught_up_before_restart": caught_up(storm, live),
        "room_last_seq_before": dict(storm.room_last),
    }


def caught_up(storm: Storm, clients: list[StormClient]) -> bool:
    """Every posted message acked or refused, and every subscribed client has each room's last one."""
    return all(
        not client.outbox and (client.last_seq or 0) >= storm.room_last.get(client.room, 0)
        for client in clients
        if client.active
    )


async def restart_and_wait(
    storm: Storm,
    clients: list[StormClient],
    workers: list[servers.BenchDaphne],
    restarted: range,
    args: argparse.Namespace,
    progress: StormProgress,
    redis_cpu_s: Callable[[], float],
) -> dict[str, Any]:
    """Signal the workers, restart them in threads, and wait until every client is back or time is up."""
    survivors = [worker.pid for index, worker in enumerate(workers) if index not in restarted]
    cpu_before = {pid: servers.process_cpu_s(pid) for pid in survivors}
    redis_before = redis_cpu_s()
    loadgen_before = time.process_time()
    machine_before = servers.cpu_busy_s()["all"]
    storm.restarting = frozenset(restarted)
    storm.posters_wanted = {client.room for client in clients if client.active}
    signum = signal.SIGKILL if args.stop == "kill" else signal.SIGTERM
    # A draining worker exits after its window (and the hub's 2 s drain grace for the last closes).
    exit_wait_s = WORKER_EXIT_S + (drain_window_s(args) if args.stop == "drain" else 0.0)
    storm.signal_at = time.perf_counter()
    for index in restarted:
        workers[index].signal(signum)
    # Rooms with a client on a worker that keeps running post at once: the others miss it all.
    for client in clients:
        if client.worker not in storm.restarting and client.active and client.room in storm.posters_wanted:
            storm.posters_wanted.discard(client.room)
            client.post("storm", args.messages)
    abandon = threading.Event()
    pool = ThreadPoolExecutor(max_workers=len(restarted), thread_name_prefix="restart")
    futures = [
        storm.loop.run_in_executor(pool, restart_worker, storm, index, workers[index], abandon, exit_wait_s)
        for index in restarted
    ]
    timed_out = False
    try:
        while True:
            now = time.perf_counter()
            elapsed_s = now - storm.signal_at
            restarts_done = all(future.done() for future in futures)
            if restarts_done and any(future.exception() for future in futures):
                break
            waiting = [client for client in clients if client.waiting]
            if restarts_done and not waiting:
                break
            if elapsed_s > args.timeout:
                timed_out = True
                break
            back = sum(1 for client in clients if client.back)
            dropped = sum(1 for client in clients if client.dropped_at is not None)
            expected = sum(n for (phase, kind), n in storm.failures.items() if storm.expected(phase, kind))
            after_up = sum(count for (phase, _), count in storm.failures.items() if phase == "after_up")
            workers_up = f"{len(storm.exited_at)}/{len(restarted)} exited, {len(storm.up_at)} up"
            progress.status(
                f"storm {elapsed_s:5.1f} s  {workers_up}  back {back:>5}/{dropped:<5} "
                f"waiting {len(waiting):>5}  refused while restarting {expected:>6}  after up {after_up}"
            )
            await asyncio.sleep(STATUS_EVERY_S / 5)
    finally:
        abandon.set()
        # Bounded by the worker exit wait and daphne's start timeout; no process is left behind.
        await asyncio.gather(*futures, return_exceptions=True)
        pool.shutdown(wait=True)
    ended_s = time.perf_counter() - storm.signal_at
    failed = [
        f"port {workers[index].port}: {type(future.exception()).__name__}: {future.exception()}"
        for index, future in zip(restarted, futures, strict=True)
        if future.exception() is not None
    ]
    if failed:
        raise RuntimeError(f"restarting a worker failed: {'; '.join(failed)}")
    cpu_s = {
        str(worker.port): servers.process_cpu_s(worker.pid) - cpu_before.get(worker.pid, 0.0)
        for worker in workers
        if worker.alive()
    }
    used_s = sum(cpu_s.values()) + redis_cpu_s() - redis_before + time.process_time() - loadgen_before
    return {
        "workers_restarted": [future.result() for future in futures],
        "timed_out": timed_out,
        "storm_s": round(ended_s, 3),
        # CPU from the signal until every client was back: a restarted worker's includes its start.
        "server_cpu_s_by_port": cpu_s,
        "redis_cpu_s": redis_cpu_s() - redis_before,
        "loadgen_cpu_s": time.process_time() - loadgen_before,
        # Busy CPU of the machine not used by the above: the stopped workers' shutdown, and
        # whatever else runs on the machine (near 0 on a quiet one).
        "other_cpu_s": servers.cpu_busy_s()["all"] - machine_before - used_s,
    }


async def wait_for_messages(
    storm: Storm, clients: list[StormClient], progress: StormProgress, messages: int
) -> dict[str, Any]:
    """Wait (at most MESSAGES_WAIT_S) until every client that is back has every message of its room."""
    started = time.perf_counter()
    ended = "complete"
    while not caught_up(storm, clients):
        if time.perf_counter() - started > MESSAGES_WAIT_S:
            ended = "cut"
            break
        progress.status("waiting for the messages posted during the storm")
        await asyncio.sleep(0.05)
    back = [client for client in clients if client.active]
    return {
        "per_room_before_restart": messages,
        "per_room_during_storm": messages,
        "rooms_posted_during_storm": len({client.room for client in clients}) - len(storm.posters_wanted),
        "acked": sum(storm.room_last.values()),
        "unacked": sum(len(client.outbox) for client in clients),
        "refused": dict(storm.message_errors),
        # Messages up to each room's last acked seq that a client that is back never saw.
        "missing": sum(max(0, storm.room_last.get(c.room, 0) - (c.last_seq or 0)) for c in back),
        "duplicated": storm.duplicates,
        "gaps": storm.gaps,
        "resets": storm.resets,
        "wait": {"seconds": round(time.perf_counter() - started, 3), "ended": ended},
    }
