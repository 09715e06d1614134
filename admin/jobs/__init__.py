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

from admin.jobs.hub import Finished, LogHub
from admin.jobs.queue import JobRequest, NewLine
from admin.jobs.runner import Runner
from admin.jobs.supervisor import Published, Supervisor, run_in_foreground

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
