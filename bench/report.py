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
    # "ms" (times, shown as µs / ms / s) or another unit shown as it is ("MiB").
    unit: str = "ms"

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


def _value(value: float | None, unit: str) -> str:
    if unit == "ms" or value is None:
        return _ms(value)
    return f"{value:,.1f} {unit}"


def _met(value: bool | None) -> str:
    return {True: "yes", False: "**no**", None: ""}[value]


TABLE_HEAD = [
    "| measurement | revisions | panel | median | best | raw tool | median | ratio "
    "| target | met |",
    "| --- | ---: | --- | ---: | ---: | --- | ---: | ---: | --- | --- |",
]


def rows(section: Section) -> list[str]:
    out = []
    for row in section.rows:
        ratio = f"{row.ratio:.3f}×" if row.ratio is not None else ""
        out.append(
            f"| {section.title} | {row.size if row.size is not None else ''} | {row.ours} | "
            f"{_value(row.ours_ms, row.unit)} | {_value(row.ours_best, row.unit)} | "
            f"{row.theirs or ''} | "
            f"{_ms(row.theirs_ms)} | {ratio} | "
            f"{row.target} | {_met(row.met)} |"
        )
    return out


def table(sections: Sequence[Section]) -> str:
    return "\n".join([*TABLE_HEAD, *(line for s in sections for line in rows(s))])


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


def _row_title(line: str) -> str | None:
    if not line.startswith("| ") or line in TABLE_HEAD:
        return None
    return line.split("|")[1].strip()


def _notes(section: Section, run: str) -> list[str]:
    return [f"## {section.title}", "", f"- {run}", *(f"- {note}" for note in section.notes), ""]


def merge(path: Path, sections: Sequence[Section], extra: dict[str, str], command: str) -> str:
    """Re-run some measurements: replace their rows and notes in RESULTS.md, keep the rest.

    Each replaced section's notes start with the command, date and load of the run that
    measured it, since the file's header describes the run that wrote the whole file.
    """
    if not path.exists():
        return write(path, sections, extra, command)
    by_title = {section.title: section for section in sections}
    when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    load = next((v for k, v in extra.items() if k.startswith("load average")), "?")
    run = f"Measured in a separate run (`{command}`, {when}, load average before / after {load})."
    lines = path.read_text().splitlines()
    out: list[str] = []
    placed: set[str] = set()
    last_row = -1
    skipping = False
    for line in lines:
        if line.startswith("## "):
            title = line[3:].strip()
            skipping = title in by_title
            if skipping:
                out.extend(_notes(by_title[title], run))
                placed.add("## " + title)
                continue
        elif skipping:
            continue
        title = _row_title(line)
        if title in by_title:
            if title not in placed:
                out.extend(rows(by_title[title]))
                placed.add(title)
                last_row = len(out) - 1
            continue
        out.append(line)
        if title is not None:
            last_row = len(out) - 1
    for section in sections:
        if section.title not in placed:
            new = rows(section)
            out[last_row + 1 : last_row + 1] = new
            last_row += len(new)
        if "## " + section.title not in placed:
            out.extend(["", *_notes(section, run)])
    text = "\n".join(out).rstrip("\n") + "\n"
    path.write_text(text)
    return text
