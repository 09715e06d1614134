"""Render children: one process per offline render, one kept ready where it pays.

``Renderer.request`` hands one request to a child (``python -m admin.migrations.offline``)
and reads its answer from a pipe of its own. A process that renders often (the web panel)
calls ``keep_ready()``: a spare child is then started in advance, loads the project and
builds Alembic's revision map while no one waits, and the next request only pays for the
render itself. Children start with ``PYTHONHASHSEED=0`` (the same SQL in every process).
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import threading
from collections import deque
from pathlib import Path
from typing import IO, Any

from admin.migrations.errors import MigrationError

# Seconds a render may take before its child is killed.
RENDER_TIMEOUT = 300.0
# Renders at once per process: each is a CPU-bound child.
CONCURRENT = 2
_STDERR_LINES = 40


class RenderFailed(MigrationError):
    status = 503
    title = "SQL could not be rendered"


class RenderStopped(RenderFailed):
    """The render's child was stopped by ``Renderer.close`` (the panel shutting down): no
    one waits for its answer, and nothing is rendered in its place."""


class _Child:
    """One render process, its request pipe (stdin) and its answer pipe."""

    def __init__(self, config_path: Path, cache_dir: Path | None) -> None:
        read_end, write_end = os.pipe()
        command = [
            sys.executable,
            "-m",
            "admin.migrations.offline",
            "--config",
            str(config_path),
            "--result-fd",
            str(write_end),
        ]
        if cache_dir is not None:
            command += ["--cache-dir", str(cache_dir)]
        env = dict(os.environ)
        env["PYTHONHASHSEED"] = "0"
        try:
            self.proc = subprocess.Popen(
                command,
                stdin=subprocess.PIPE,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                pass_fds=(write_end,),
                env=env,
                text=True,
                encoding="utf-8",
                errors="replace",
            )
        except OSError as exc:
            os.close(read_end)
            raise RenderFailed(f"the SQL renderer could not start: {exc}") from exc
        finally:
            os.close(write_end)
        self.answer = os.fdopen(read_end, "r", encoding="utf-8")
        self.stopped = False
        self.stderr: deque[str] = deque(maxlen=_STDERR_LINES)
        self._drain = threading.Thread(target=self._read_stderr, daemon=True)
        self._drain.start()

    def _read_stderr(self) -> None:
        stream: IO[str] | None = self.proc.stderr
        if stream is None:
            return
        for line in stream:
            if line.strip():
                self.stderr.append(line.rstrip())

    def alive(self) -> bool:
        return self.proc.poll() is None

    def ask(self, payload: dict[str, Any], timeout: float) -> dict[str, Any]:
        stdin = self.proc.stdin
        assert stdin is not None
        with contextlib.suppress(BrokenPipeError):
            stdin.write(json.dumps(payload) + "\n")
            stdin.close()
        box: list[str] = []
        reader = threading.Thread(target=lambda: box.append(self.answer.read()), daemon=True)
        reader.start()
        reader.join(timeout)
        if reader.is_alive():
            self.kill()
            raise RenderFailed(f"rendering the SQL took longer than {timeout:g}s and was stopped")
        self.proc.wait()
        self._drain.join(5)
        self._close_pipes()
        try:
            answer = json.loads(box[0]) if box and box[0] else None
        except ValueError:
            answer = None
        if self.stopped:
            raise RenderStopped("the SQL renderer was stopped: the panel is shutting down")
        if not isinstance(answer, dict):
            last = self.stderr[-1] if self.stderr else f"exit code {self.proc.returncode}"
            raise RenderFailed(f"the SQL renderer stopped without an answer: {last}")
        if "error" in answer:
            raise MigrationError(str(answer["error"]))
        return answer

    def stop(self) -> None:
        """End the process under a caller still waiting in ``ask`` (which then raises
        RenderStopped and closes the pipes itself)."""
        self.stopped = True
        with contextlib.suppress(ProcessLookupError):
            self.proc.kill()

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            self.proc.kill()
        self.proc.wait()
        self._drain.join(5)
        self._close_pipes()

    def _close_pipes(self) -> None:
        for stream in (self.answer, self.proc.stdin, self.proc.stderr):
            if stream is not None:
                with contextlib.suppress(OSError):
                    stream.close()


class Renderer:
    """Render children for one project."""

    def __init__(self, config_path: Path, cache_dir: Path | None) -> None:
        self.config_path = config_path
        self.cache_dir = cache_dir
        self._spare: _Child | None = None
        # Children answering a request now (stopped with the renderer).
        self._busy: set[_Child] = set()
        self._closed = False
        self._keep = False
        # Panels in this process that asked keep_ready and have not released it.
        self._holders = 0
        self._starting = False
        self._lock = threading.Lock()
        self._slots = threading.BoundedSemaphore(CONCURRENT)

    def keep_ready(self) -> None:
        """From the next request on, keep one child started in advance (the web panel: the
        first render pays for a child's start, the ones after it do not). Each panel that
        asks ``release``s it when it stops."""
        with self._lock:
            self._keep = True
            self._holders += 1

    def release(self) -> bool:
        """A panel that asked ``keep_ready`` stops; the last one closes the renderer (True)."""
        with self._lock:
            self._holders = max(0, self._holders - 1)
            last = self._holders == 0
        if last:
            self.close()
        return last

    def close(self) -> None:
        """Stop the spare child and every render under way (their callers get
        RenderStopped): a panel that stops leaves no child rendering behind it."""
        with self._lock:
            self._keep = False
            self._closed = True
            spare, self._spare = self._spare, None
            busy = list(self._busy)
        if spare is not None:
            spare.kill()
        for child in busy:
            child.stop()

    def _prepare(self) -> None:
        with self._lock:
            ready = self._spare is not None and self._spare.alive()
            if not self._keep or ready or self._starting:
                return
            self._starting = True
        try:
            child = _Child(self.config_path, self.cache_dir)
        except RenderFailed:
            child = None
        with self._lock:
            self._starting = False
            if child is not None and self._keep and self._spare is None:
                self._spare, child = child, None
        if child is not None:
            child.kill()

    def _take(self) -> _Child:
        with self._lock:
            spare, self._spare = self._spare, None
        if spare is not None and spare.alive():
            return spare
        if spare is not None:
            spare.kill()
        return _Child(self.config_path, self.cache_dir)

    def request(self, payload: dict[str, Any], timeout: float = RENDER_TIMEOUT) -> dict[str, Any]:
        """Send ``payload`` to a child and return its answer (MigrationError on failure)."""
        with self._slots:
            child = self._take()
            if self._keep:
                threading.Thread(target=self._prepare, name="renderer-spare", daemon=True).start()
            with self._lock:
                self._busy.add(child)
                closed = self._closed
            if closed:  # closed while the child started: stopped like the others
                child.stop()
            try:
                return child.ask(payload, timeout)
            finally:
                with self._lock:
                    self._busy.discard(child)
