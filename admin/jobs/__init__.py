"""Jobs: migrations, stamps, backups and restores run by a worker process.

- ``queue``: job records in the store (submit with its checks, lines, finish, cancel,
  recovery), each change audited;
- ``worker``: ``python -m admin.jobs.worker JOB_ID``, the child process that runs a job;
- ``supervisor``: spawns a worker, stores its lines, records the outcome; also
  ``run_in_foreground`` for the CLI and the entrypoint;
- ``runner``: the web process's supervisors and periodic recovery;
- ``hub``: live log fan-out to viewers (Server-Sent Events).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from admin.jobs.hub import Finished, LogHub
    from admin.jobs.queue import JobRequest, NewLine
    from admin.jobs.record import Published
    from admin.jobs.runner import Runner
    from admin.jobs.supervisor import Supervisor, run_in_foreground

# Loaded on first use: the worker process (``python -m admin.jobs.worker``) imports this
# package first and needs neither asyncio (the hub) nor the runner.
_EXPORTS = {
    "Finished": "admin.jobs.hub",
    "LogHub": "admin.jobs.hub",
    "JobRequest": "admin.jobs.queue",
    "NewLine": "admin.jobs.queue",
    "Runner": "admin.jobs.runner",
    "Published": "admin.jobs.record",
    "Supervisor": "admin.jobs.supervisor",
    "run_in_foreground": "admin.jobs.supervisor",
}

__all__ = [
    "Finished",
    "JobRequest",
    "LogHub",
    "NewLine",
    "Published",
    "Runner",
    "Supervisor",
    "run_in_foreground",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'admin.jobs' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
