"""Rehearsal rows in the store: started by the worker, finished with the report, looked up
by plan for the preview, the Apply form and REQUIRE_REHEARSAL."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from admin.errors import NotFound
from admin.runtime import Runtime
from admin.store.models import ACTIVE_JOB_STATUSES, Job, Rehearsal, utcnow

SUCCEEDED = "succeeded"
FAILED = "failed"
_MAX_ID = 2**63 - 1


def parse_id(value: object) -> int:
    text_ = str(value).strip()
    if not text_.isascii() or not text_.isdigit() or len(text_) > 19 or int(text_) > _MAX_ID:
        raise NotFound(f"there is no rehearsal {text_[:40]!r}")
    return int(text_)


def get(session: Session, rehearsal_id: int) -> Rehearsal:
    row = session.get(Rehearsal, rehearsal_id)
    if row is None:
        raise NotFound(f"there is no rehearsal {rehearsal_id}")
    return row


def of_job(session: Session, job_id: int) -> Rehearsal | None:
    return session.scalar(
        select(Rehearsal).where(Rehearsal.job_id == job_id).order_by(Rehearsal.id.desc()).limit(1)
    )


def recent(session: Session, target_key: str, limit: int = 50) -> list[Rehearsal]:
    query = (
        select(Rehearsal)
        .where(Rehearsal.target_key == target_key)
        .order_by(Rehearsal.id.desc())
        .limit(limit)
    )
    return list(session.scalars(query))


def newest_for(
    session: Session,
    target_key: str,
    plan_fingerprint: str,
    sql_fingerprint: str | None,
    *,
    succeeded: bool = False,
) -> Rehearsal | None:
    """The newest rehearsal of this plan (and SQL, when known) on this target."""
    query = select(Rehearsal).where(
        Rehearsal.target_key == target_key, Rehearsal.plan_fingerprint == plan_fingerprint
    )
    if sql_fingerprint is not None:
        query = query.where(Rehearsal.sql_fingerprint == sql_fingerprint)
    if succeeded:
        query = query.where(Rehearsal.status == SUCCEEDED)
    return session.scalar(query.order_by(Rehearsal.id.desc()).limit(1))


def start(rt: Runtime, **values: Any) -> int:
    with rt.transaction() as session:
        row = Rehearsal(status="running", created_at=utcnow(), scratch_kept=False, **values)
        session.add(row)
        session.flush()
        return row.id


def update(rt: Runtime, rehearsal_id: int, **values: Any) -> None:
    with rt.transaction() as session:
        row = get(session, rehearsal_id)
        for name, value in values.items():
            setattr(row, name, value)


def abandoned(session: Session, target_key: str) -> list[Rehearsal]:
    """Rehearsals of this target left running by a job that has ended (its worker killed):
    their scratch databases were never dropped."""
    active = select(Job.id).where(Job.status.in_(ACTIVE_JOB_STATUSES))
    query = select(Rehearsal).where(
        Rehearsal.target_key == target_key,
        Rehearsal.status == "running",
        Rehearsal.job_id.not_in(active),
    )
    return list(session.scalars(query))
