"""Application logging: plain text by default, JSON lines with LOG_FORMAT=json."""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

from admin.config import Settings

_STANDARD = set(logging.makeLogRecord({}).__dict__) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    """One JSON object per line; extra fields (such as job_id) are kept."""

    def format(self, record: logging.LogRecord) -> str:
        payload: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key not in _STANDARD and not key.startswith("_"):
                payload[key] = value
        if record.exc_info:
            payload["exception"] = self.formatException(record.exc_info)
        return json.dumps(payload, default=str, ensure_ascii=False)


class PlainFormatter(logging.Formatter):
    """Time, level, logger and message; a job's lines say which job (``[job 12]``)."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)-7s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        job_id = getattr(record, "job_id", None)
        if job_id is None:
            return super().format(record)
        saved = record.msg, record.args
        record.msg, record.args = f"[job {job_id}] {record.getMessage()}", None
        try:
            return super().format(record)
        finally:
            record.msg, record.args = saved


def _quiet_alembic(record: logging.LogRecord) -> bool:
    """Drop Alembic's "Context impl ..." notes, which come with every status read."""
    # A filter on the application handler only (not a logger level), so that a migration's
    # own capture of Alembic's messages (migrations.online) is untouched.
    return not (record.name == "alembic.runtime.migration" and record.levelno < logging.WARNING)


def configure(settings: Settings) -> None:
    handler = logging.StreamHandler(sys.stderr)
    if settings.log_format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(PlainFormatter())
    if settings.log_level != "DEBUG":
        handler.addFilter(_quiet_alembic)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(settings.log_level)
    # The audit trail as JSON lines for a log collector, only when asked for.
    logging.getLogger("admin.audit.events").disabled = not settings.audit_log_json


# A job's stored lines in the application log too (level names as the worker writes them).
_JOB_LEVELS = {
    "debug": logging.DEBUG,
    "sql": logging.DEBUG,
    "info": logging.INFO,
    "step": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
}
JobPublisher = Callable[[int, Sequence[Any], str | None], None]


def job_lines_to_log(publish: JobPublisher | None = None) -> JobPublisher:
    """A runner publisher that logs each job line (with ``job_id``), then passes it on.

    ``Runner(rt, publish=logs.job_lines_to_log(hub.publish))``: the lines of jobs run by
    the panel reach the container's log (``docker-compose logs backend | grep -i migration``)
    as well as the store and the live viewers.
    """
    logger = logging.getLogger("admin.jobs.log")

    def tee(job_id: int, lines: Sequence[Any], status: str | None) -> None:
        for line in lines:
            level = _JOB_LEVELS.get(getattr(line, "level", "info"), logging.INFO)
            logger.log(level, "%s", line.text, extra={"job_id": job_id})
        if status is not None:
            logger.info("job %s %s", job_id, status, extra={"job_id": job_id})
        if publish is not None:
            publish(job_id, lines, status)

    return tee
