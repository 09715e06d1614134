"""Timing helpers: in-process calls and subprocesses, median of several runs."""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

ALEMBIC = str(Path(sys.executable).with_name("alembic"))


@dataclass(frozen=True)
class Timing:
    """Seconds per run: the median and the fastest of ``runs`` runs."""

    median: float
    best: float
    runs: int

    @property
    def ms(self) -> float:
        return self.median * 1000


def time_call(fn: Callable[[], object], *, runs: int, warmup: int = 1) -> Timing:
    for _ in range(warmup):
        fn()
    samples = []
    for _ in range(runs):
        started = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - started)
    return Timing(statistics.median(samples), min(samples), runs)


def run_tool(args: Sequence[str], *, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    result = subprocess.run(
        list(args), cwd=cwd, env=env, capture_output=True, text=True, timeout=1800
    )
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed: {result.stderr.strip()[-500:]}")
    return result


def time_tool(args: Sequence[str], *, cwd: Path, runs: int) -> tuple[Timing, str]:
    """Wall time of a command (process start included, as a person runs it)."""
    samples = []
    output = ""
    for _ in range(runs):
        started = time.perf_counter()
        output = run_tool(args, cwd=cwd).stdout
        samples.append(time.perf_counter() - started)
    return Timing(statistics.median(samples), min(samples), runs), output
