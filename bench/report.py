"""What a run prints and writes: the machine, the versions, live progress, the results table, JSON."""

from __future__ import annotations

import json
import os
import platform
import shlex
import sys
import time
from importlib import metadata
from pathlib import Path
from typing import Any

try:
    from rich.console import Console
    from rich.live import Live
    from rich.table import Table
    from rich.text import Text
except ImportError:  # plain text without rich
    Console = None  # type: ignore[assignment,misc]

PACKAGES = (
    "Django",
    "channels",
    "channels-redis",
    "daphne",
    "uvicorn",
    "granian",
    "python-socketio",
    "python-engineio",
    "redis",
    "websockets",
    "Twisted",
    "uvloop",
)


def machine() -> dict[str, Any]:
    model = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "nproc": os.cpu_count(),
        "cpus_allowed": sorted(os.sched_getaffinity(0)),
        "cpu_model": model,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "python_implementation": platform.python_implementation(),
    }


def versions() -> dict[str, str | None]:
    found: dict[str, str | None] = {}
    for name in PACKAGES:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = None
    return found


def code_state(root: Path) -> dict[str, Any]:
    """The commit, files changed since it, and a digest of the Python code the servers import."""
    import hashlib
    import subprocess

    def git(*args: str) -> str:
        try:
            done = subprocess.run(
                ["git", *args], cwd=root, capture_output=True, text=True, timeout=10, check=False
            )
        except (OSError, subprocess.TimeoutExpired):
            return ""
        return done.stdout.strip()

    digest = hashlib.sha256()
    for path in sorted(root.glob("*/**/*.py")):
        if path.parts[len(root.parts)] in ("chat", "project", "bench"):
            digest.update(str(path.relative_to(root)).encode())
            digest.update(path.read_bytes())
    return {
        "commit": git("rev-parse", "HEAD") or None,
        "changed_files": git("status", "--porcelain", "--", "chat", "project", "bench").splitlines(),
        "digest": digest.hexdigest()[:16],
    }


def command_line() -> str:
    return f"{shlex.quote(sys.executable)} -m bench {shlex.join(sys.argv[1:])}"


class Progress:
    """A live status line on a terminal; a plain line every few seconds otherwise."""

    PLAIN_EVERY_S = 2.0

    def __init__(self) -> None:
        self.tty = sys.stdout.isatty()
        self.live: Any = None
        self.label = ""
        self.last_print = 0.0
        self.last_sample: tuple[float, int] = (0.0, 0)
        self.rate = 0.0

    def begin(self, label: str) -> None:
        self.label = label
        self.last_sample = (0.0, 0)
        self.rate = 0.0
        self.last_print = 0.0
        if self.tty and Console is not None:
            self.live = Live(Text(f"{label}: starting"), auto_refresh=False, transient=True)
            self.live.start()

    def update(self, phase: str, elapsed_s: float, deliveries: int) -> None:
        then_s, then_count = self.last_sample
        if elapsed_s - then_s >= 0.5:
            self.rate = (deliveries - then_count) / (elapsed_s - then_s)
            self.last_sample = (elapsed_s, deliveries)
        line = (
            f"{self.label}: {phase:<7} {elapsed_s:6.1f} s  "
            f"deliveries {deliveries:>10,}  {self.rate:>10,.0f}/s"
        )
        if self.live is not None:
            self.live.update(Text(line), refresh=True)
        elif time.monotonic() - self.last_print >= self.PLAIN_EVERY_S:
            self.last_print = time.monotonic()
            print(line, flush=True)

    def note(self, text: str) -> None:
        if self.live is not None:
            self.live.console.print(text)
        else:
            print(text, flush=True)

    def end(self) -> None:
        if self.live is not None:
            self.live.stop()
            self.live = None


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:,.1f}"


def _num(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


COLUMNS = (
    "target",
    "layer",
    "deliv/s",
    "p50 ms",
    "p90 ms",
    "p99 ms",
    "max ms",
    "lost",
    "dup",
    "server CPU s",
    "redis CPU s",
    "µs/deliv",
    # Each target's µs/deliv ÷ Ripple's on the same layer: baseline÷ripple, socketio÷ripple.
    "target÷ripple",
)


def result_rows(report: dict[str, Any]) -> list[list[str]]:
    rows = []
    for result in report["results"]:
        if "error" in result:
            rows.append([result["target"], result["layer"], "failed (see notes)"] + [""] * 10)
            continue
        latency = result["latency_ms"]
        ratio = report["ratios"].get(result["layer"], {}).get(result["target"])
        rows.append(
            [
                result["target"],
                result["layer"],
                f"{result['deliveries_per_s']:,.0f}",
                _ms(latency["p50"]),
                _ms(latency["p90"]),
                _ms(latency["p99"]),
                _ms(latency["max"]),
                # "*": the drain was cut while deliveries still arrived, so some may only be late.
                f"{result['lost']}*" if result["drain"]["ended"] == "cut" else str(result["lost"]),
                str(result["duplicated"]),
                _num(result["server_cpu_s"], 2),
                _num(result["redis_cpu_s"], 2),
                _num(result["cpu_us_per_delivery"]),
                "-" if ratio is None else f"{ratio:.2f}×",
            ]
        )
    return rows


def print_report(report: dict[str, Any]) -> None:
    info = report["machine"]
    lines = [
        f"command: {report['command_line']}",
        f"machine: {info['nproc']} CPUs ({info['cpu_model']}), Linux {info['kernel']}, "
        f"Python {info['python']}; pinning: {report['pinning']}",
        "versions: "
        + ", ".join(f"{name} {version}" for name, version in report["versions"].items() if version)
        + f", redis-server {report.get('redis_server_version', '?')}",
    ]
    rows = result_rows(report)
    if Console is not None:
        # Off a terminal rich would wrap at 80 columns; a log file can take the whole table.
        console = Console() if sys.stdout.isatty() else Console(width=160)
        for line in lines:
            console.print(line, highlight=False, markup=False)
        table = Table(title=f"fanout: {report['load']}")
        for index, name in enumerate(COLUMNS):
            table.add_column(name, justify="left" if index < 2 else "right")
        for row in rows:
            table.add_row(*row)
        console.print(table)
        for note in report["notes"]:
            console.print(f"note: {note}", highlight=False, markup=False)
        return
    for line in lines:
        print(line)
    print(f"fanout: {report['load']}")
    widths = [max(len(row[i]) for row in [list(COLUMNS), *rows]) for i in range(len(COLUMNS))]
    for row in [list(COLUMNS), *rows]:
        print(
            "  ".join(
                cell.rjust(width) if i >= 2 else cell.ljust(width)
                for i, (cell, width) in enumerate(zip(row, widths, strict=True))
            )
        )
    for note in report["notes"]:
        print(f"note: {note}")


def write_json(path: str, report: dict[str, Any]) -> None:
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    temporary = target.with_name(target.name + ".tmp")
    temporary.write_text(json.dumps(report, indent=2, default=str) + "\n")
    temporary.replace(target)
