"""The benchmark tool runs end to end on a tiny load: real daphne workers, real Redis, JSON out."""

import json

import pytest

from tests.support.bench_run import run_bench

pytestmark = pytest.mark.django_db(transaction=True)

RESULT_KEYS = {
    "target",
    "layer",
    "sockets",
    "messages_sent",
    "deliveries",
    "deliveries_per_s",
    "latency_ms",
    "lost",
    "duplicated",
    "server_cpu_s",
    "redis_cpu_s",
    "cpu_us_per_delivery",
    "server_logs",
}


def run_tiny_fanout(tmp_path, redis_url: str, database_url: str, *options: str) -> dict:
    """``bench fanout`` on 2 rooms of 3 for 2 s (pub/sub layer, no pinning), ``options`` on top;
    its JSON report."""
    out = tmp_path / "fanout.json"
    command = [
        "fanout",
        "--rooms=2",
        "--subs=3",
        "--duration=2",
        "--warmup=0.5",
        "--layer=pubsub",
        "--no-pin",
        f"--redis-url={redis_url}",
        f"--database-url={database_url}",
        f"--json={out}",
        *options,
    ]
    completed = run_bench(command, timeout_s=100)
    assert completed.returncode == 0, completed.stdout + completed.stderr
    return json.loads(out.read_text())


def test_fanout_scenario_measures_all_three_targets_without_losing_ripple_or_socketio_messages(
    tmp_path, redis_url, live_database_url
):
    report = run_tiny_fanout(
        tmp_path, redis_url, live_database_url, "--workers=2", "--target=all", "--aftermath=20"
    )
    assert report.keys() >= {"command_line", "machine", "versions", "options", "results", "ratios", "notes"}
    assert report["machine"].keys() >= {"nproc", "cpu_model", "python"}
    assert report["versions"]["channels"]
    assert report["versions"]["python-socketio"]
    pairs = [(r["target"], r["layer"]) for r in report["results"]]
    assert pairs == [("ripple", "pubsub"), ("baseline", "pubsub"), ("socketio", "pubsub")]
    for result in report["results"]:
        assert result.keys() >= RESULT_KEYS, result
        assert result["sockets"]["open"] == 2 * (3 + 1)
        # Opened in rooms of 10 on both workers and all closed before the load began.
        assert (result["aftermath"]["sockets"], result["aftermath"]["failures"]) == (20, 0), result
        assert result["deliveries"] > 0
        assert result["server_cpu_s"] > 0
        assert result["latency_ms"].keys() >= {"p50", "p90", "p99", "max"}
    ripple, _, socketio = report["results"]
    assert ripple["lost"] == 0
    assert ripple["duplicated"] == 0
    # python-socketio's AsyncServer on uvicorn, fanning out across both workers through Redis.
    assert socketio["server"] == "uvicorn"
    assert (socketio["lost"], socketio["duplicated"]) == (0, 0), socketio
    assert report["ratios"]["pubsub"].keys() == {"baseline", "socketio"}


def test_the_open_loop_keeps_its_schedule_and_says_how_late_each_send_was(
    tmp_path, redis_url, live_database_url
):
    report = run_tiny_fanout(
        tmp_path, redis_url, live_database_url, "--workers=1", "--target=ripple", "--mode=open", "--rate=20"
    )
    (result,) = report["results"]
    assert (result["lost"], result["duplicated"]) == (0, 0)
    # Two publishers at 20 a second for the 2 s window: about 80 messages, each paced.
    lag, latency, from_write = result["send_lag_ms"], result["latency_ms"], result["latency_from_write_ms"]
    assert 70 <= lag["samples"] <= 90, lag
    assert 0 <= lag["p50"] <= lag["max"]
    # The same deliveries, less each message's lag: never later than from the schedule.
    assert from_write["samples"] == latency["samples"] > 0
    assert from_write["p50"] <= latency["p50"] and from_write["max"] <= latency["max"]
