"""One run of a client program: its stderr forwarded line by line, progress, stop on request.

The caller's thread does all the calling back (``on_line``, ``progress``, ``should_stop``):
helper threads only read stderr into a queue and feed stdin, so a job's log is written
from one thread, in order.
"""

from __future__ import annotations

import contextlib
import queue
import signal
import subprocess
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import IO

_POLL = 0.2
_KEEP = 40  # stderr lines kept for the error message


@dataclass(frozen=True)
class Outcome:
    """How a program ended, with the last lines it printed on stderr."""

    program: str
    returncode: int
    tail: tuple[str, ...]
    stopped: bool

    @property
    def ok(self) -> bool:
        return self.returncode == 0 and not self.stopped

    def error(self) -> str:
        """The program's own error line (and its detail), or how it ended."""
        lines = [line.strip() for line in self.tail if line.strip()]
        for index, line in enumerate(lines):
            if _is_error(line):
                details = [d for d in lines[index + 1 : index + 3] if _is_detail(d)]
                return "; ".join([line, *details])
        if self.returncode < 0:
            try:
                name = signal.Signals(-self.returncode).name
            except ValueError:
                name = f"signal {-self.returncode}"
            return f"{self.program} was killed by {name}"
        if lines:
            return lines[-1]
        return f"{self.program} exited with code {self.returncode}"


def _is_error(line: str) -> bool:
    return any(mark in line for mark in ("error:", "ERROR:", "FATAL:", "fatal:", "PANIC:"))


def _is_detail(line: str) -> bool:
    return any(mark in line for mark in ("detail:", "DETAIL:", "HINT:", "hint:"))


def run(
    argv: list[str],
    *,
    env: dict[str, str],
    on_line: Callable[[str], None],
    redact: Callable[[str], str],
    should_stop: Callable[[], bool] | None = None,
    progress: Callable[[], str | None] | None = None,
    progress_every: float = 1.0,
    feed: Callable[[IO[bytes]], None] | None = None,
    grace: float = 5.0,
) -> Outcome:
    """Run ``argv`` (never through a shell) until it exits; see the module docstring.

    ``progress`` is called about every ``progress_every`` seconds; a line it returns is
    passed to ``on_line``. A stop request sends SIGTERM, then SIGKILL after ``grace``.
    ``feed`` writes the program's stdin from a helper thread; should it raise, the program
    is killed before its stdin is closed (so psql never sees a clean end of a half script)
    and the exception is raised here.
    """
    program = argv[0].rsplit("/", 1)[-1]
    proc = subprocess.Popen(
        argv,
        stdin=subprocess.PIPE if feed else subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env=env,
        close_fds=True,
    )
    lines: queue.Queue[str | None] = queue.Queue()
    feed_errors: list[BaseException] = []
    helpers = [threading.Thread(target=_read_lines, args=(proc, lines), daemon=True)]
    if feed is not None:
        helpers.append(threading.Thread(target=_feed, args=(proc, feed, feed_errors), daemon=True))
    for helper in helpers:
        helper.start()
    tail: deque[str] = deque(maxlen=_KEEP)
    stopped_at: float | None = None
    last_progress = time.monotonic()
    try:
        while True:
            try:
                item = lines.get(timeout=_POLL)
            except queue.Empty:
                item = ""
            if item is None:
                break
            if item:
                text = redact(item)
                tail.append(text)
                on_line(text)
            now = time.monotonic()
            if progress is not None and now - last_progress >= progress_every:
                last_progress = now
                if (message := progress()) is not None:
                    on_line(message)
            if stopped_at is None and should_stop is not None and should_stop():
                stopped_at = now
                proc.terminate()
            elif stopped_at is not None and now - stopped_at > grace:
                proc.kill()
        returncode = proc.wait()
    except BaseException:
        proc.kill()
        proc.wait()
        raise
    finally:
        for helper in helpers:
            helper.join(timeout=grace)
    if feed_errors:
        raise feed_errors[0]
    return Outcome(program, returncode, tuple(tail), stopped=stopped_at is not None)


def _read_lines(proc: subprocess.Popen[bytes], lines: queue.Queue[str | None]) -> None:
    assert proc.stderr is not None
    with proc.stderr:
        for raw in proc.stderr:
            lines.put(raw.decode("utf-8", errors="replace").rstrip("\r\n"))
    lines.put(None)


def _feed(
    proc: subprocess.Popen[bytes],
    feed: Callable[[IO[bytes]], None],
    errors: list[BaseException],
) -> None:
    assert proc.stdin is not None
    try:
        feed(proc.stdin)
    except BrokenPipeError:
        pass  # the program stopped reading (it failed): its stderr says why
    except BaseException as exc:
        errors.append(exc)
        proc.kill()
    finally:
        with contextlib.suppress(OSError):
            proc.stdin.close()
