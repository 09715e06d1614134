"""Lines stored by another process wake the panel's hub at once (PostgreSQL store): the
notification names the job and its last stored line, and the hub's poller reads them."""

from __future__ import annotations

import queue as queue_module
from collections.abc import Callable
from pathlib import Path
from typing import Any

from projects import Rev

from admin import audit, migrations
from admin.config import Settings
from admin.jobs import JobRequest, queue, run_in_foreground, wakeup
from admin.runtime import Runtime
from admin.store.models import JobKind, Source

ALICE = audit.Actor("alice", "operator", Source.CLI, None)


def test_a_cli_job_announces_each_batch_of_lines(
    make_settings: Callable[..., Settings], alembic_project: Callable[..., Path], pg_databases: Any
) -> None:
    settings = make_settings(
        database_url=pg_databases.create("wake"),
        admin_database_url=pg_databases.create("wakestore"),
        alembic_config=alembic_project([Rev("aaa111", None, "one", "op.execute('SELECT 1')")]),
    )
    rt = Runtime.open(settings)
    heard: queue_module.Queue[tuple[int, int]] = queue_module.Queue()
    listener = wakeup.Listener(settings.admin_database_url, lambda j, s: heard.put((j, s)))
    try:
        rt.upgrade_store(audit.Actor("test", None, Source.CLI))
        listener.start()
        # LISTEN is in place once a notification sent after it arrives.
        for _ in range(60):
            with rt.store_engine.begin() as connection:
                wakeup.announce(connection, 0, 0)
            try:
                assert heard.get(timeout=0.5) == (0, 0)
                break
            except queue_module.Empty:
                continue
        else:
            raise AssertionError("the listener heard nothing in 30 s")
        while not heard.empty():
            heard.get()
        job = run_in_foreground(rt, JobRequest(JobKind.UPGRADE, "head"), ALICE, echo=lambda _: None)
        assert job.status == "succeeded", job.error
        with rt.reads() as session:
            last = queue.last_seq(session, job.id)
        said: list[tuple[int, int]] = []
        while not said or said[-1] != (job.id, last):
            said.append(heard.get(timeout=30))
        assert all(j == job.id for j, _ in said)
        seqs = [s for _, s in said]
        assert seqs == sorted(seqs) and len(seqs) > 1  # one per batch, in order
    finally:
        listener.stop()
        rt.close()
        migrations.dispose_engines()
