"""Structured logs: one format for every logger (JSON lines, or readable text in development).

``ripple.events`` carries one line per connection event and moderation action: ids, names,
codes and durations; never message bodies, session keys or secrets.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from typing import Any

event_logger = logging.getLogger("ripple.events")

# The attributes every LogRecord has; anything else on a record came from ``extra=``.
_RECORD_ATTRS = frozenset(logging.makeLogRecord({}).__dict__) | {"message", "asctime", "taskName"}
# Django's request loggers attach the request and a socket object: not JSON, and too much.
_SKIPPED_EXTRAS = frozenset({"request", "server_time", "fields"})


def _timestamp(record: logging.LogRecord) -> str:
    """The record's time as ISO 8601 UTC with milliseconds (the one timestamp of a line)."""
    return datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds")


def _extras(record: logging.LogRecord) -> dict[str, Any]:
    """The record's own fields: ``log_event``'s, and plain values passed through ``extra=``."""
    fields: dict[str, Any] = dict(getattr(record, "fields", {}))
    for name, value in record.__dict__.items():
        if name in _RECORD_ATTRS or name in _SKIPPED_EXTRAS or name.startswith("_"):
            continue
        if isinstance(value, str | int | float | bool) or value is None:
            fields.setdefault(name, value)
    return fields


class JsonFormatter(logging.Formatter):
    """Formats a record as one JSON object per line: ts, level, logger, event, fields, exc."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": _timestamp(record),
            "level": record.levelname.lower(),
            "logger": record.name,
            "event": record.getMessage(),
        }
        for name, value in _extras(record).items():
            line.setdefault(name, value)
        if record.exc_info:
            line["exc"] = self.formatException(record.exc_info)
        if record.stack_info:
            line["stack"] = self.formatStack(record.stack_info)
        return json.dumps(line, default=str, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    """Formats a record as one readable line (time, level, logger, message, key=value fields)."""

    def format(self, record: logging.LogRecord) -> str:
        text = f"{_timestamp(record)} {record.levelname:<7} {record.name}: {record.getMessage()}"
        fields = _extras(record)
        if fields:
            text += " " + " ".join(
                f"{name}={json.dumps(value, default=str)}" for name, value in fields.items()
            )
        if record.exc_info:
            text += "\n" + self.formatException(record.exc_info)
        if record.stack_info:
            text += "\n" + self.formatStack(record.stack_info)
        return text


class ClientErrorFilter(logging.Filter):
    """Drops the traceback of ``django.security.*`` records: a client's bad request (answered
    400), not a fault of the server, logged as a warning line."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.name.startswith("django.security.") and record.exc_info:
            record.exc_info = None
            record.exc_text = None
            record.levelno, record.levelname = logging.WARNING, "WARNING"
        return True


def log_event(event: str, **fields: Any) -> None:
    """Log one operational event (``connect``, ``disconnect``, ``heartbeat_timeout``, ...)."""
    if event_logger.isEnabledFor(logging.INFO):
        event_logger.info(event, extra={"fields": fields})
