"""What Alembic and the project log during a run, kept as the run's events whatever env.py
does to logging.

Most env.py files call ``logging.config.fileConfig(alembic.ini)`` (the ``alembic init``
templates do): that replaces the root logger's handlers, clears the ``alembic`` logger's,
and with ``disable_existing_loggers`` (the default) disables every logger the file does not
name. ``Capture.reclaim`` undoes what matters for the run, and is called again when env.py
configures its context (after any fileConfig of its own): the ``alembic`` loggers are
enabled and report to the run at INFO, the root logger's console handlers (the templates'
``StreamHandler(sys.stderr)``) are replaced by the capture, so a line keeps its level
instead of arriving as text on stderr. Other handlers env.py adds (a file, a collector) are
left as they are.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable

# The capture's levels: the job log's names for them.
LEVELS = ((logging.ERROR, "error"), (logging.WARNING, "warning"), (logging.INFO, "info"))


def level_name(levelno: int) -> str:
    for threshold, name in LEVELS:
        if levelno >= threshold:
            return name
    return "debug"


class Capture(logging.Handler):
    """A handler that turns records into ``(level, text)`` for the run."""

    def __init__(self, emit: Callable[[str, str, logging.LogRecord], None]) -> None:
        super().__init__(logging.DEBUG)
        self._emit = emit
        self._saved: dict[str, tuple[int, bool, bool]] = {}

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = record.getMessage()
        except Exception:  # a bad format string in someone's log call: still one line
            text = str(record.msg)
        if record.exc_info and record.exc_info[1] is not None:
            text = f"{text}: {type(record.exc_info[1]).__name__}: {record.exc_info[1]}"
        if record.name != "alembic" and not record.name.startswith("alembic."):
            text = f"{record.name}: {text}"
        self._emit(level_name(record.levelno), text, record)

    def install(self) -> None:
        """Start capturing (remembering the ``alembic`` logger's settings for ``remove``)."""
        alembic_log = logging.getLogger("alembic")
        self._saved["alembic"] = (alembic_log.level, alembic_log.propagate, alembic_log.disabled)
        self.reclaim()

    def reclaim(self) -> None:
        """Make sure the run still hears Alembic and the console's records (see module)."""
        root = logging.getLogger()
        for handler in list(root.handlers):
            if _is_console(handler):
                root.removeHandler(handler)
        if self not in root.handlers:
            root.addHandler(self)
        if root.level > logging.WARNING or root.level == logging.NOTSET:
            root.setLevel(logging.WARNING)
        alembic_log = logging.getLogger("alembic")
        for handler in list(alembic_log.handlers):
            if _is_console(handler):
                alembic_log.removeHandler(handler)
        if self not in alembic_log.handlers:
            alembic_log.addHandler(self)
        alembic_log.propagate = False
        alembic_log.disabled = False
        if alembic_log.level == logging.NOTSET or alembic_log.level > logging.INFO:
            alembic_log.setLevel(logging.INFO)
        for name, logger in list(logging.Logger.manager.loggerDict.items()):
            if name.startswith("alembic.") and isinstance(logger, logging.Logger):
                logger.disabled = False

    def remove(self) -> None:
        logging.getLogger().removeHandler(self)
        alembic_log = logging.getLogger("alembic")
        alembic_log.removeHandler(self)
        saved = self._saved.get("alembic")
        if saved is not None:
            alembic_log.setLevel(saved[0])
            alembic_log.propagate = saved[1]
            alembic_log.disabled = saved[2]


def _is_console(handler: logging.Handler) -> bool:
    """A handler that writes to this process's stdout or stderr."""
    stream = getattr(handler, "stream", None)
    if not isinstance(handler, logging.StreamHandler) or isinstance(handler, logging.FileHandler):
        return False
    return stream in (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__)
