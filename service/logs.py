"""Logs: lines for people by default, JSON lines for log pipelines
(``STATEWRIGHT_LOG_FORMAT=json``). A line written while working on an execution carries its
id (``execution_id`` in JSON, ``[execution ...]`` in text), whichever task wrote it.

Secrets never reach a log: connection and webhook secrets are opened only where a request is
sent, API keys are checked against their hashes, and nothing here prints request bodies.
"""

from __future__ import annotations

import json
import logging
import sys
from contextvars import ContextVar
from datetime import UTC, datetime

# The execution the current task works on (asyncio tasks each see their own value).
EXECUTION: ContextVar[str | None] = ContextVar("statewright_execution", default=None)
FORMATS = ("text", "json")


class _Context(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        execution = EXECUTION.get()
        record.execution_id = execution
        record.execution_suffix = f" [execution {execution}]" if execution else ""
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, execution_id, error."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        execution = getattr(record, "execution_id", None)
        if execution:
            line["execution_id"] = execution
        if record.exc_info:
            line["error"] = self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=False)


def configure(log_format: str = "text", level: int = logging.INFO) -> None:
    """Send every log record (Statewright's and uvicorn's) to stderr in ``log_format``."""
    if log_format not in FORMATS:
        raise ValueError(f"STATEWRIGHT_LOG_FORMAT must be text or json, not {log_format!r}")
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(_Context())
    if log_format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(
            logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s%(execution_suffix)s")
        )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logger = logging.getLogger(name)
        logger.handlers[:] = []
        logger.propagate = True
