"""The echo and capacity scenarios run end to end on a tiny load: a real worker, real Redis, JSON out."""

import json

import pytest

from tests.support import bench_run

pytestmark = pytest.mark.django_db(transaction=True)

REPORT_KEYS = {
    "scenario",
    "command_line",
    "machine",
    "versions",
    "options",
    "results",
    "notes",
    "server_logs",
}


def run_bench(tmp_path, redis_url: str, database_url: str, *args: str) -> dict:
    """Run ``python -m bench *args`` on the test run's Redis and database; its JSON report."""
    out = tmp_path / "report.json"
    servers = [f"--redis-url={redis_url}", f"--database-url={database_url}"]
    completed = bench_run.run_bench([*args, *servers, "--no-pin", f"--json={out}"], timeout_s=90)
    assert completed.returncode == 0, completed.stdout + completed.stderr
    report = json.loads(out.read_text())
    assert report.keys() >= REPORT_KEYS
    assert report["versions"]["daphne"]
    assert report["server_logs"]["count"] == 0, report["server_logs"]
    return report


def test_echo_scenario_times_every_message_and_its_ack(tmp_path, redis_url, live_database_url):
    report = run_bench(
        tmp_path, redis_url, live_database_url, "echo", "--count=30", "--warmup-count=5", "--layer=pubsub"
    )
    result = report["results"]
    assert report["scenario"] == "echo"
    assert result["messages_measured"] == 30
    assert result["timeouts"] == result["failures"] == 0
    assert result["seq_repeats"] == 0
    ack, delivery = result["ack_ms"], result["delivery_ms"]
    assert ack["samples"] == delivery["samples"] == 30
    assert 0 < ack["p50"] <= ack["p90"] <= ack["p99"] <= ack["max"]
    assert 0 < delivery["p50"] <= delivery["max"]
    # One worker writes the room's copies, the sender's among them, before the ack.
    assert delivery["p50"] <= ack["p50"]
    assert result["delivered_before_ack"] == 35  # the 5 warm-up messages too
    assert result["server_cpu_us_per_message"] > 0


@pytest.mark.parametrize("server", ["uvicorn", "granian"])
def test_echo_scenario_runs_ripple_on_the_other_asgi_servers(tmp_path, redis_url, live_database_url, server):
    report = run_bench(
        tmp_path, redis_url, live_database_url, "echo", "--count=20", "--warmup-count=2", f"--server={server}"
    )
    result = report["results"]
    assert result["server"] == server
    assert result["messages_measured"] == 20
    assert result["timeouts"] == result["failures"] == 0
    # The CPU is read from the process that serves (granian's worker, not its supervisor).
    assert result["server_cpu_us_per_message"] > 0


def test_echo_scenario_with_target_all_measures_ripple_and_both_peers(tmp_path, redis_url, live_database_url):
    report = run_bench(
        tmp_path, redis_url, live_database_url, "echo", "--target=all", "--count=10", "--warmup-count=2"
    )
    result = report["results"]
    by_target = {outcome["target"]: outcome for outcome in result["targets"]}
    assert list(by_target) == ["ripple", "baseline", "socketio"]
    for target, outcome in by_target.items():
        assert outcome["messages_measured"] > 0, target
        assert outcome["timeouts"] == outcome["failures"] == 0, (target, outcome["failure_examples"])
        assert outcome["delivery_ms"]["p50"] > 0, target
    # The peers send no ack: only post → own copy is measured for them.
    assert by_target["ripple"]["ack_ms"]["samples"] == by_target["ripple"]["messages_measured"]
    assert by_target["baseline"]["ack_ms"] is None and by_target["socketio"]["ack_ms"] is None
    assert by_target["socketio"]["server"] == "uvicorn"
    assert set(result["ratios"]) == {"baseline", "socketio"}
    assert all(ratios["delivery_p50"] > 0 for ratios in result["ratios"].values())


def test_capacity_scenario_keeps_every_idle_socket_open(tmp_path, redis_url, live_database_url):
    report = run_bench(
        tmp_path,
        redis_url,
        live_database_url,
        "capacity",
        "--sockets=50",
        "--rooms=5",
        "--idle=2",
        # Heartbeats within the short idle window: pings both ways must keep every socket open.
        "--server-env=RIPPLE_HEARTBEAT_INTERVAL_S=0.5",
        "--server-env=RIPPLE_HEARTBEAT_TIMEOUT_S=0.5",
    )
    result = report["results"]
    assert report["scenario"] == "capacity"
    sockets = result["sockets"]
    assert sockets["open"] == sockets["wanted"] == 50
    assert sockets["handshake_failures"] == sockets["subscribe_failures"] == 0
    assert result["connects_per_s"] > 0
    assert result["memory_kib"]["after_idle"]["rss"] > result["memory_kib"]["before"]["rss"] > 0
    assert result["kib_per_socket"] > 0
    assert result["idle_server_cpu_pct"] >= 0
    assert result["heartbeat"] == {"interval_s": 0.5, "timeout_s": 0.5}
    # The clients ping every interval, so the server never pings them (docs/protocol.md).
    assert result["frames_received_in_idle"].get("ping", 0) == 0
    assert result["frames_received_in_idle"]["pong"] > 0  # answers to the client's own pings
    assert result["closed_by_server_in_idle"] == result["closed_by_server_before_idle"] == 0
    assert result["late_or_missing_pongs"] == 0


def test_capacity_scenario_with_target_all_keeps_every_peer_socket_open(
    tmp_path, redis_url, live_database_url
):
    report = run_bench(
        tmp_path,
        redis_url,
        live_database_url,
        "capacity",
        "--target=all",
        "--sockets=30",
        "--rooms=3",
        "--idle=1",
    )
    result = report["results"]
    by_target = {outcome["target"]: outcome for outcome in result["targets"]}
    assert list(by_target) == ["ripple", "baseline", "socketio"]
    for target, outcome in by_target.items():
        sockets = outcome["sockets"]
        assert sockets["open"] == sockets["wanted"] == 30, target
        assert sockets["handshake_failures"] == sockets["subscribe_failures"] == 0, target
        assert outcome["connects_per_s"] > 0, target
        assert outcome["memory_kib"]["after_idle"]["rss"] > 0, target
        assert outcome["closed_by_server_in_idle"] == outcome["closed_by_server_before_idle"] == 0, target
    assert by_target["baseline"]["heartbeat"] is None and by_target["socketio"]["heartbeat"] is None
    assert by_target["socketio"]["server"] == "uvicorn"
    assert set(result["ratios"]) == {"baseline", "socketio"}
    assert all(ratios["connects_per_s"] > 0 for ratios in result["ratios"].values())
