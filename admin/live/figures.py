"""A job's figures for /metrics: its steps' durations and lock waits as histogram counts,
and its lock retries; written once, at the job's end, and summed at scrape time."""

from __future__ import annotations

import bisect
from collections.abc import Iterable
from typing import Any

# Seconds: a catalog-only step, a small table, a backfill, a long index build.
STEP_BUCKETS = (0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 15.0, 60.0, 300.0, 1800.0)
# Seconds a wait for a lock lasted (as sampled).
LOCK_WAIT_BUCKETS = (0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)


def histogram(values: Iterable[float], buckets: tuple[float, ...]) -> dict[str, Any]:
    """Counts per bucket (not cumulative), the count and the sum."""
    counts = [0] * len(buckets)
    total, number = 0.0, 0
    for value in values:
        number += 1
        total += value
        index = bisect.bisect_left(buckets, value)
        if index < len(buckets):
            counts[index] += 1
    return {"buckets": counts, "count": number, "sum": round(total, 6)}


def of_job(
    step_seconds: Iterable[float], waits: Iterable[float], lock_retries: int
) -> dict[str, Any]:
    return {
        "steps": histogram(step_seconds, STEP_BUCKETS),
        "lock_waits": histogram(waits, LOCK_WAIT_BUCKETS),
        "lock_retries": lock_retries,
    }


def add(total: dict[str, Any] | None, job: dict[str, Any], name: str, size: int) -> dict[str, Any]:
    """``total`` (or a new one) plus one job's histogram ``name``."""
    total = total or {"buckets": [0] * size, "count": 0, "sum": 0.0}
    found = job.get(name) or {}
    counts = list(found.get("buckets") or [])
    if len(counts) == size:
        total["buckets"] = [a + b for a, b in zip(total["buckets"], counts, strict=True)]
    total["count"] += int(found.get("count") or 0)
    total["sum"] += float(found.get("sum") or 0.0)
    return total
