"""Structured operational logs: one JSON line per connection event and moderation action.

Lines carry ids, names, codes and durations; never message bodies, session keys or secrets.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

event_logger = logging.getLogger("ripple.events")


class JsonFormatter(logging.Formatter):
    """Formats a record as one JSON object per line."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": round(record.created, 3),
            "level": record.levelname.lower(),
            "logger": record.name,
            "event": record.getMessage(),
        }
        line.update(getattr(record, "fields", {}))
        if record.exc_info:
            line["exc"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str, ensure_ascii=False)


def log_event(event: str, **fields: Any) -> None:
    """Log one operational event (``connect``, ``disconnect``, ``heartbeat_timeout``, ...)."""
    if event_logger.isEnabledFor(logging.INFO):
        event_logger.info(event, extra={"fields": {"t": round(time.time(), 3), **fields}})
