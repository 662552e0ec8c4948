"""Log formatters: one JSON object per line in production, readable lines in development.

Job events pass their context with ``extra={...}``; both formatters print the
fields in JOB_FIELDS when a record carries them.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime

JOB_FIELDS = ("job_id", "type", "queue", "attempt", "worker", "duration_ms", "outcome")


def _job_context(record: logging.LogRecord) -> dict:
    return {name: getattr(record, name) for name in JOB_FIELDS if hasattr(record, name)}


class JsonFormatter(logging.Formatter):
    """One JSON object per line, for log shippers."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
            "pid": record.process,
            **_job_context(record),
        }
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


class TextFormatter(logging.Formatter):
    """``12:00:01.123 INFO jobs.worker message key=value …`` for humans."""

    def format(self, record: logging.LogRecord) -> str:
        stamp = datetime.fromtimestamp(record.created).strftime("%H:%M:%S.%f")[:-3]
        context = " ".join(f"{key}={value}" for key, value in _job_context(record).items())
        line = f"{stamp} {record.levelname:<7} {record.name} {record.getMessage()}"
        if context:
            line = f"{line} {context}"
        if record.exc_info:
            line = f"{line}\n{self.formatException(record.exc_info)}"
        return line
