"""The storm scenario runs end to end: real workers restarted under real clients, abruptly and by draining."""

import json

import pytest

from tests.support.bench_run import run_bench

pytestmark = pytest.mark.django_db(transaction=True)

RESULT_KEYS = {
    "setup",
    "stop",
    "route",
    "workers_restarted",
    "dropped",
    "reconnected",
    "not_reconnected",
    "all_back_s",
    "closed_after_signal_ms",
    "reconnect_ms",
    "back_after_signal_ms",
    "after_worker_up_ms",
    "attempts_per_client",
    "handshake_failures",
    "refused_while_draining",
    "refused_while_down",
    "other_failures_while_restarting",
    "handshake_errors_after_up",
    "rerouted_by_balancer",
    "close_codes",
    "close_1006_causes",
    "subscribe_errors",
    "histograms",
    "messages",
    "server_logs",
}


def storm_report(tmp_path, options, *, redis_url, database_url, timeout_s):
    json_path = tmp_path / "storm.json"
    backing = [f"--redis-url={redis_url}", f"--database-url={database_url}", "--no-pin"]
    done = run_bench(["storm", *options, *backing, f"--json={json_path}"], timeout_s=timeout_s)
    assert done.returncode == 0, done.stdout + done.stderr
    report = json.loads(json_path.read_text())
    assert report["scenario"] == "storm"
    assert report.keys() >= {"command_line", "machine", "versions", "options", "results", "notes"}
    assert report["results"].keys() >= RESULT_KEYS, report["results"].keys()
    return report


def histogram_total(result, name):
    return sum(bucket["clients"] for bucket in result["histograms"][name]["buckets"])


def test_storm_brings_every_client_back_after_both_workers_stop_without_draining(
    tmp_path, redis_url, live_database_url
):
    clients, rooms, messages = 40, 2, 3
    options = [f"--clients={clients}", f"--rooms={rooms}", "--workers=2", "--restart=all", "--stop=term"]
    options += [f"--messages={messages}", "--timeout=30"]
    report = storm_report(
        tmp_path, options, redis_url=redis_url, database_url=live_database_url, timeout_s=100
    )

    result = report["results"]
    assert result["setup"]["subscribed"] == clients
    assert [worker["exit_code"] for worker in result["workers_restarted"]] == [0, 0]
    assert result["dropped"] == result["reconnected"] == clients, report["notes"]
    assert result["not_reconnected"] == 0
    assert result["all_back_s"] is not None
    # daphne's own SIGTERM: every socket drops without a close frame, its TCP connection closed.
    assert result["close_codes"] == {"1006": clients}
    assert result["close_1006_causes"] == {"eof": clients}
    assert result["refused_while_draining"] == 0
    assert result["handshake_errors_after_up"] == 0, result["failure_examples"]
    assert result["reconnect_ms"]["samples"] == clients
    for name in ("closed", "reconnect", "back"):
        assert histogram_total(result, name) == clients
    assert sum(result["attempts_per_client"]["counts"].values()) == clients
    messages_seen = result["messages"]
    assert messages_seen["acked"] == rooms * 2 * messages  # posted before the restart and during the storm
    assert messages_seen["missing"] == messages_seen["duplicated"] == 0


def test_storm_of_1000_clients_moves_a_draining_workers_clients_to_the_other_without_errors(
    tmp_path, redis_url, live_database_url
):
    # Two workers behind the emulated nginx balancer; the first one drains (SIGTERM, the default
    # RIPPLE_DRAIN_S of 5 s) and is started again: its 500 clients move to the second one.
    clients, workers, messages, drain_s = 1000, 2, 3, 5.0
    options = [f"--clients={clients}", "--rooms=10", f"--workers={workers}", "--restart=one"]
    options += ["--stop=drain", "--route=balancer", f"--messages={messages}", "--timeout=30"]
    options += [f"--server-env=RIPPLE_DRAIN_S={drain_s:g}"]
    # Connecting 1,000 clients takes ~5 s here, the storm ~6 s, the tool's start and stop ~5 s.
    report = storm_report(
        tmp_path, options, redis_url=redis_url, database_url=live_database_url, timeout_s=85
    )

    result = report["results"]
    moved = clients // workers
    assert result["setup"]["subscribed"] == clients
    assert result["workers_restarted"][0]["exit_code"] == 0
    assert not result["workers_restarted"][0]["killed_after_wait"]
    # Every client of the drained worker is back; none of the other worker lost its socket.
    assert result["dropped"] == result["reconnected"] == moved, report["notes"]
    assert result["unexpected_drops"] == 0
    assert result["gave_up"] == {}
    # Each socket was closed by the drain, none dropped by the process exiting: that shows as
    # 1006 with a clean end of TCP ("eof"), as on daphne's own SIGTERM (the test above). On a
    # saturated machine a few 4512 closes can still arrive as 1006 by reset: autobahn aborts a
    # connection whose closing handshake takes over 1 s (closeHandshakeTimeout), and a close
    # frame not yet read is lost with it. Seen at 0-3 % of the sockets here; a cap of 5 % keeps
    # the test about the drain (without one, every socket is a 1006).
    codes = result["close_codes"]
    assert set(codes) <= {"4512", "1006"}, codes
    assert set(result["close_1006_causes"]) <= {"ConnectionResetError"}, result["close_1006_causes"]
    assert codes.get("1006", 0) <= 0.05 * moved, codes
    assert codes.get("4512", 0) + codes.get("1006", 0) == moved, codes
    # The balancer moves past the draining worker's 403s: no client sees a failed attempt.
    assert result["handshake_failures"] == {"stopping": {}, "down": {}, "after_up": {}}, result[
        "failure_examples"
    ]
    assert result["handshake_errors_after_up"] == 0
    assert result["subscribe_errors"] == {}
    assert result["attempts_per_client"]["max"] == 1

    # Spread, not a burst. Close moments are uniform over the drain window: p10 ≈ 0.1 × 5 s and
    # p90 ≈ 0.9 × 5 s, 4 s apart; at least half the window leaves room for a slow machine.
    closed = result["closed_after_signal_ms"]
    assert closed["p90"] - closed["p10"] >= 0.5 * drain_s * 1000, closed
    # Reconnect (close → subscribed) is the client's own random() × 1 s after 4512 plus one
    # handshake and subscribe: p10 ≈ 100 ms and p90 ≈ 900 ms, 800 ms apart; server latency adds
    # to both ends. Without that jitter every client would be back one handshake (tens of ms)
    # after its close, and p10 and p90 would be tens of ms apart.
    reconnect = result["reconnect_ms"]
    assert reconnect["p90"] - reconnect["p10"] >= 400, reconnect
    for name in ("closed", "reconnect", "back"):
        assert histogram_total(result, name) == moved

    messages_seen = result["messages"]
    assert messages_seen["acked"] == 10 * 2 * messages
    assert messages_seen["missing"] == messages_seen["duplicated"] == 0
