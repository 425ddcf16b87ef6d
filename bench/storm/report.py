"""What the storm prints: live status, notes on doubtful figures, the results table with text histograms."""

from __future__ import annotations

import time
from typing import Any

from .. import harness
from .. import report as bench_report
from .policy import CLOSE_DRAINING, CLOSE_NAMES

HISTOGRAM_WIDTH = 50


class StormProgress(bench_report.Progress):
    """``report.Progress`` with a free-form status line instead of a delivery counter."""

    LIVE_EVERY_S = 0.1

    def status(self, text: str) -> None:
        now = time.monotonic()
        every_s = self.PLAIN_EVERY_S if self.live is None else self.LIVE_EVERY_S
        if now - self.last_print < every_s:
            return
        self.last_print = now
        if self.live is not None:
            self.live.update(bench_report.Text(f"{self.label}: {text}"), refresh=True)
        else:
            print(f"{self.label}: {text}", flush=True)


def add_notes(notes: list[str], r: dict[str, Any], *, timeout_s: float) -> None:
    """Notes on what went wrong and on anything that makes a figure doubtful."""
    setup = r.get("setup")
    if setup and setup["failed"]:
        notes.append(
            f"{setup['failed']} of {setup['wanted']} clients never subscribed before the restart "
            f"(left out of the storm): {setup['why']}; handshake failures {setup['handshake_failures']}, "
            f"e.g. {setup['failure_examples'][:2]}"
        )
    if setup and not setup["caught_up_before_restart"]:
        notes.append("not every client had the room's messages when the restart began")
    if r["timed_out"]:
        notes.append(
            f"{r['not_reconnected']} of {r['dropped']} clients were not back "
            f"{timeout_s:g} s after the signal (--timeout)"
        )
    if r["gave_up"]:
        notes.append(f"clients that gave up: {r['gave_up']}")
    if r["handshake_errors_after_up"]:
        notes.append(
            f"{r['handshake_errors_after_up']} connection attempts failed after their worker answered "
            f"/healthz again: {r['handshake_failures']['after_up']}, e.g. {r['failure_examples'][:2]}"
        )
    if r["other_failures_while_restarting"]:
        notes.append(
            "failures other than a draining worker's 403 or a stopped worker's refusal while a worker "
            f"was stopping or starting: {r['other_failures_while_restarting']}"
        )
    if r["stop"] == "drain":
        others = {code: n for code, n in r["close_codes"].items() if int(code) != CLOSE_DRAINING}
        if others:
            notes.append(f"--stop drain, yet sockets closed with other codes than 4512: {others}")
        window_ms = (r["drain_window_s"] or 0.0) * 1000
        latest = r["closed_after_signal_ms"]["max"]
        if latest is not None and latest > window_ms + 1000:
            notes.append(
                f"the last socket closed {latest:,.0f} ms after the signal, past a {window_ms:,.0f} ms drain"
            )
    if r["unexpected_drops"]:
        notes.append(f"{r['unexpected_drops']} clients of a worker that kept running lost their socket")
    if r["subscribe_errors"]:
        notes.append(f"subscribe errors: {r['subscribe_errors']}")
    messages = r.get("messages", {})
    if messages.get("missing") or messages.get("duplicated") or messages.get("gaps"):
        notes.append(
            f"across the resume: {messages['missing']} messages missing, {messages['duplicated']} "
            f"duplicated, {messages['gaps']} gaps repaired by re-subscribing"
        )
    if messages.get("resets"):
        notes.append(f"{messages['resets']} re-subscribes came back with complete: false (history reset)")
    if messages.get("refused"):
        notes.append(f"messages refused by the server: {messages['refused']}")
    handshake_max = r["handshake_ms"]["max"]
    if handshake_max is not None and handshake_max >= 1000:
        notes.append(
            f"the slowest successful handshake took {handshake_max:,.0f} ms: a worker busy with the storm, "
            "or a SYN dropped from a full listen backlog (the kernel retries it after 1 s)"
        )
    if r["other_cpu_s"] > 0.25 * r["storm_s"]:
        notes.append(
            f"other processes used {r['other_cpu_s']:.1f} CPU s during the {r['storm_s']:.0f} s storm "
            "(the stopped workers' shutdown included): the machine was not quiet"
        )
    share = r["loadgen_cpu_s"] / r["storm_s"] if r["storm_s"] else 0
    if share > 0.85:
        notes.append(f"the clients used {share:.0%} of their CPU during the storm; they may be the limit")
    # The harness notes the first worker's log; these are the others'.
    count = sum(item["count"] for item in list(r["server_logs"].values())[1:])
    if count:
        notes.append(f"{count} warning/error lines in the other workers' logs (see results.server_logs)")


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:,.0f}"


def _seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f} s"


def _counts(total: int, kinds: dict[str, int]) -> str:
    return f"{total:,} {kinds}" if kinds else f"{total:,}"


PERCENTILES = ("p10", "p50", "p90", "p99", "max")


def table(r: dict[str, Any]) -> harness.Table:
    """One row per figure, then the close codes and the three histograms as text bars."""
    rows = [["clients back / dropped", f"{r['reconnected']:,} / {r['dropped']:,} (of {r['clients']:,})"]]
    rows.append(["all back after (from the signal)", _seconds(r["all_back_s"])])
    for timing in r["workers_restarted"]:
        rows.append(
            [
                f"worker :{timing['port']} exited / answered again",
                f"{timing['exited_s']:.2f} s / {_seconds(timing.get('up_s'))} (exit {timing['exit_code']})",
            ]
        )
    if len(r["back_on_worker"]) > 1 or r["route"] == "balancer":
        rows.append(
            ["clients back on worker", ", ".join(f":{p} {n:,}" for p, n in r["back_on_worker"].items())]
        )
    rows.append([f"ms {' / '.join(PERCENTILES)}", ""])
    for label, key in (
        ("  close seen, from the signal", "closed_after_signal_ms"),
        ("  reconnect: close → subscribed", "reconnect_ms"),
        ("  subscribed again, from the signal", "back_after_signal_ms"),
        ("  subscribed, from the worker's return", "after_worker_up_ms"),
        ("  handshake", "handshake_ms"),
    ):
        rows.append([label, " / ".join(_ms(r[key][p]) for p in PERCENTILES)])
    a = r["attempts_per_client"]
    mean = "-" if a["mean"] is None else f"{a['mean']:.2f}"
    rows.append(["attempts per client mean/p50/p99/max", f"{mean} / {a['p50']} / {a['p99']} / {a['max']}"])
    rows.append(["refused while draining (HTTP 403)", f"{r['refused_while_draining']:,}"])
    rows.append(["refused while down (no listener)", f"{r['refused_while_down']:,}"])
    other = r["other_failures_while_restarting"]
    rows.append(["other failures while restarting", _counts(sum(other.values()), other)])
    up = r["handshake_failures"]["after_up"]
    rows.append(["handshake errors after up", _counts(r["handshake_errors_after_up"], up)])
    if r["route"] == "balancer":
        moved = {
            f"{phase} {kind}": n
            for phase, kinds in r["rerouted_by_balancer"].items()
            for kind, n in kinds.items()
        }
        rows.append(["moved on by the balancer (unseen)", _counts(sum(moved.values()), moved)])
    rows.append(["subscribe errors", _counts(r["subscribe_errors_total"], r["subscribe_errors"])])
    m = r["messages"]
    rows.append(
        [
            "messages acked / missing / dup / gaps",
            f"{m['acked']} / {m['missing']} / {m['duplicated']} / {m['gaps']} (wait {m['wait']['ended']})",
        ]
    )
    cpu_s = (sum(r["server_cpu_s_by_port"].values()), r["redis_cpu_s"], r["loadgen_cpu_s"])
    rows.append(
        [
            "CPU s: workers / redis / clients",
            " / ".join(f"{value:.2f}" for value in cpu_s) + f" in {r['storm_s']:.2f} s",
        ]
    )
    rows.append(["close codes seen", "sockets"])
    codes = r["close_codes"]
    peak = max(codes.values(), default=0)
    for code, count in codes.items():
        rows.append([f"  {code} {CLOSE_NAMES.get(int(code), '')}".rstrip(), bar_cell(count, peak)])
    for title, key in (
        ("socket closed, from the signal", "closed"),
        ("reconnect: close → subscribed", "reconnect"),
        ("subscribed again, from the signal", "back"),
    ):
        hist = r["histograms"][key]
        rows.append([f"{title} ({hist['bucket_ms']} ms)", "clients"])
        rows.extend(histogram_rows(hist["buckets"]))
    return ["measure", "value"], rows


def bar_cell(count: int, peak: int) -> str:
    """A fixed-width text bar and the count, so any alignment shows it."""
    bar = "█" * max(1 if count else 0, round(count / (peak or 1) * HISTOGRAM_WIDTH))
    return f"{bar:<{HISTOGRAM_WIDTH}} {count:>6,}"


def histogram_rows(buckets: list[dict[str, int]]) -> list[list[str]]:
    """A text bar per bucket; three or more empty buckets in a row make one row."""
    if not buckets:
        return []
    peak = max(bucket["clients"] for bucket in buckets)
    rows: list[list[str]] = []
    index = 0
    while index < len(buckets):
        end = index
        while end < len(buckets) and buckets[end]["clients"] == 0:
            end += 1
        if end - index >= 3:
            rows.append(
                [f"  {buckets[index]['from_ms'] / 1000:6.2f}–{buckets[end - 1]['to_ms'] / 1000:6.2f} s", "0"]
            )
            index = end
            continue
        span = f"{buckets[index]['from_ms'] / 1000:6.2f}–{buckets[index]['to_ms'] / 1000:6.2f} s"
        rows.append([f"  {span}", bar_cell(buckets[index]["clients"], peak)])
        index += 1
    return rows
