"""Rows of figures and the RESULTS.md they are written to (with machine, date, versions)."""

from __future__ import annotations

import os
import platform
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path


@dataclass(frozen=True)
class Row:
    """One figure of the panel beside the raw tool's, for one project size."""

    size: int | None
    ours: str
    ours_ms: float
    theirs: str | None = None
    theirs_ms: float | None = None
    target: str = ""
    met: bool | None = None
    ours_best: float | None = None

    @property
    def ratio(self) -> float | None:
        if self.theirs_ms is None or self.theirs_ms == 0:
            return None
        return self.ours_ms / self.theirs_ms


@dataclass
class Section:
    """What one measurement module reports: its rows and notes on method and findings."""

    title: str
    rows: list[Row] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def _ms(value: float | None) -> str:
    if value is None:
        return ""
    if value >= 1000:
        return f"{value / 1000:,.2f} s"
    if value >= 10:
        return f"{value:,.1f} ms"
    if value < 0.1:
        return f"{value * 1000:.1f} µs"
    return f"{value:.2f} ms"


def _met(value: bool | None) -> str:
    return {True: "yes", False: "**no**", None: ""}[value]


def table(sections: Sequence[Section]) -> str:
    out = [
        "| measurement | revisions | panel | median | best | raw tool | median | ratio "
        "| target | met |",
        "| --- | ---: | --- | ---: | ---: | --- | ---: | ---: | --- | --- |",
    ]
    for section in sections:
        for row in section.rows:
            ratio = f"{row.ratio:.3f}×" if row.ratio is not None else ""
            out.append(
                f"| {section.title} | {row.size if row.size is not None else ''} | {row.ours} | "
                f"{_ms(row.ours_ms)} | {_ms(row.ours_best)} | {row.theirs or ''} | "
                f"{_ms(row.theirs_ms)} | {ratio} | "
                f"{row.target} | {_met(row.met)} |"
            )
    return "\n".join(out)


def _cpu() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _memory() -> str:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
    except OSError:
        pass
    return "?"


def load_average() -> str:
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "?"


def environment(extra: dict[str, str]) -> list[str]:
    versions = {name: version(name) for name in ("alembic", "sqlalchemy", "psycopg2-binary")}
    lines = [
        f"- date: {datetime.now(UTC).strftime('%Y-%m-%d %H:%M UTC')}",
        f"- machine: {_cpu()}, {os.cpu_count()} CPUs, {_memory()} RAM, "
        f"{platform.system()} {platform.release()}",
        f"- Python {platform.python_version()}, "
        + ", ".join(f"{name} {v}" for name, v in versions.items()),
        f"- apex-schema-admin {version('apex-schema-admin')}",
    ]
    lines.extend(f"- {key}: {value}" for key, value in extra.items())
    return lines


def write(path: Path, sections: Sequence[Section], extra: dict[str, str], command: str) -> str:
    parts = [
        "# Benchmarks",
        "",
        f"Written by `{command}` (`make bench`); every figure below comes from one run on one "
        "machine, the panel and the raw tool side by side. *median* and *best* are over "
        "several runs (the best shows the cost without other processes' interference); a "
        "raw tool's time is wall time of the command as a person types it (process "
        "start included). *ratio* = panel ÷ raw tool.",
        "",
        *environment(extra),
        "",
        table(sections),
        "",
    ]
    for section in sections:
        if section.notes:
            parts.append(f"## {section.title}")
            parts.append("")
            parts.extend(f"- {note}" for note in section.notes)
            parts.append("")
    text = "\n".join(parts)
    path.write_text(text)
    return text
