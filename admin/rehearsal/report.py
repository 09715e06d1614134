"""A rehearsal's summary: what a reviewer reads first, and the warnings."""

from __future__ import annotations

from typing import Any

from admin.backups.files import human_size


def summarize(report: dict[str, Any], lock_warning: float) -> dict[str, Any]:
    """Duration, the longest ACCESS EXCLUSIVE hold (table, rows), rewrites, indexes, WAL,
    size change, round trip; a warning per hold longer than ``lock_warning`` seconds."""
    upgrade = report.get("upgrade") or {}
    steps = upgrade.get("steps") or []
    longest: dict[str, Any] | None = None
    warnings: list[str] = []
    for step in steps:
        for hold in step.get("access_exclusive") or []:
            if longest is None or hold["seconds"] > longest["seconds"]:
                longest = {**hold, "step": step["step"], "revision": step["revision"]}
            if hold["seconds"] > lock_warning:
                warnings.append(
                    f"step {step['step']} ({step['revision']}) holds ACCESS EXCLUSIVE on "
                    f"{hold['relation']} for {hold['seconds']:.2f}s (over {lock_warning:g}s): "
                    "reads and writes of it wait that long in production"
                )
    wal = [step["wal_bytes"] for step in steps if step.get("wal_bytes") is not None]
    rewrites = sorted({name for step in steps for name in step.get("rewrites") or []})
    indexes = [name for step in steps for name in step.get("indexes_built") or []]
    before, after = report.get("size_before"), report.get("size_after")
    round_trip = report.get("round_trip") or {}
    result = round_trip.get("result") or "not run"
    if result == "stopped":
        result_text = f"stopped at {round_trip.get('stopped_at', '?')}: {round_trip.get('reason')}"
    elif result == "different":
        result_text = f"{len(round_trip.get('differences') or [])} difference(s)"
    else:
        result_text = result
    headline = f"{upgrade.get('seconds', 0):.2f}s, round trip: {result_text}"
    if longest is not None:
        headline += f", longest ACCESS EXCLUSIVE {longest['seconds']:.3f}s on {longest['relation']}"
    if rewrites:
        headline += f", rewrites {', '.join(rewrites)}"
    return {
        "seconds": upgrade.get("seconds"),
        "longest_access_exclusive": longest,
        "rewrites": rewrites,
        "indexes_built": indexes,
        "wal_bytes": sum(wal) if wal else None,
        "wal": human_size(sum(wal)) if wal else None,
        "size_before": before,
        "size_after": after,
        "size_change": (after - before) if before is not None and after is not None else None,
        "round_trip": result,
        "round_trip_text": result_text,
        "warnings": warnings,
        "headline": headline,
    }
