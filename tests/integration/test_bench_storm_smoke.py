"""The storm scenario runs end to end on a tiny load: two real workers restarted under real clients."""

import json

import pytest

from tests.support.bench_run import run_bench

pytestmark = pytest.mark.django_db(transaction=True)

CLIENTS = 40
ROOMS = 2
MESSAGES = 3
RESULT_KEYS = {
    "setup",
    "workers_restarted",
    "dropped",
    "reconnected",
    "not_reconnected",
    "all_back_s",
    "reconnect_ms",
    "after_worker_up_ms",
    "attempts_per_client",
    "handshake_failures",
    "handshake_errors_after_up",
    "histogram",
    "messages",
    "server_logs",
}


def test_storm_scenario_brings_every_client_back_after_both_workers_restart(
    tmp_path, redis_url, live_database_url
):
    json_path = tmp_path / "storm.json"
    storm = [f"--clients={CLIENTS}", f"--rooms={ROOMS}", "--workers=2", "--restart=all"]
    storm += [f"--messages={MESSAGES}", "--timeout=30", "--no-pin"]
    backing = [f"--redis-url={redis_url}", f"--database-url={live_database_url}"]
    done = run_bench(["storm", *storm, *backing, f"--json={json_path}"], timeout_s=100)
    assert done.returncode == 0, done.stdout + done.stderr

    report = json.loads(json_path.read_text())
    assert report["scenario"] == "storm"
    assert report.keys() >= {"command_line", "machine", "versions", "options", "results", "notes"}
    result = report["results"]
    assert result.keys() >= RESULT_KEYS, result.keys()
    assert result["setup"]["subscribed"] == CLIENTS
    assert [worker["exit_code"] for worker in result["workers_restarted"]] == [0, 0]
    assert result["dropped"] == result["reconnected"] == CLIENTS, report["notes"]
    assert result["not_reconnected"] == 0
    assert result["all_back_s"] is not None
    assert result["handshake_errors_after_up"] == 0, result["failure_examples"]
    assert result["reconnect_ms"]["samples"] == CLIENTS
    assert sum(bucket["clients"] for bucket in result["histogram"]["buckets"]) == CLIENTS
    assert sum(result["attempts_per_client"]["counts"].values()) == CLIENTS
    messages = result["messages"]
    assert messages["acked"] == ROOMS * 2 * MESSAGES  # posted before the restart and during the storm
    assert messages["missing"] == messages["duplicated"] == 0
