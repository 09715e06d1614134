"""A ScriptDirectory built from the catalog: revision modules imported only when they run.

Alembic's own ScriptDirectory imports every revision file to learn the graph. Here each
revision's ``Script`` gets a ``LazyModule`` that answers ``revision``, ``down_revision``,
``branch_labels``, ``depends_on`` and the docstring from the catalog, and imports the real
file the first time anything else (``upgrade``, ``downgrade``) is asked for: planning needs
no import at all, and a worker imports only the revisions of its plan. On import the file
must still have the catalog's sha256 and declare what the catalog says.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any, cast

from alembic.script import Script, ScriptDirectory
from alembic.util import load_python_file

from admin.migrations.catalog import Entry, _down, _tuple
from admin.migrations.errors import MigrationError
from admin.migrations.toposort import FastRevisionMap


class FileChanged(MigrationError):
    """A revision file is not what the plan was made from."""

    status = 409
    title = "Revision file changed"


class LazyModule:
    """A revision module as Alembic's Script sees it, imported on first real use."""

    def __init__(self, entry: Entry) -> None:
        self.entry = entry
        self.revision = entry.revision
        self.down_revision = entry.down_revision
        self.branch_labels = entry.branch_labels or None
        self.depends_on = entry.depends_on or None
        self.__doc__ = entry.doc
        self._module: ModuleType | None = None

    def __getattr__(self, name: str) -> Any:
        # Only reached for what the catalog does not hold.
        if name.startswith("__") or name in ("_alembic_source_encoding", "_module", "entry"):
            raise AttributeError(name)
        if name in ("upgrade", "downgrade"):
            # Alembic's plan steps take these functions when a plan is made: they import the
            # file only when the step runs (in a worker), never when the panel plans.
            return _Deferred(self, name)
        return getattr(self.load(), name)

    def load(self) -> ModuleType:
        """The real module (imported once per ``forget``), checked against the catalog."""
        if self._module is None:
            path = Path(self.entry.path)
            try:
                data = path.read_bytes()
            except OSError as exc:
                raise FileChanged(f"the file of revision {self.revision} is gone: {exc}") from exc
            if hashlib.sha256(data).hexdigest() != self.entry.sha256:
                raise FileChanged(
                    f"the file of revision {self.revision} ({path.name}) changed since the "
                    "plan was made: review the plan again"
                )
            module = load_python_file(str(path.parent), path.name)
            declared = (
                getattr(module, "revision", self.revision),
                _down(getattr(module, "down_revision", None)),
                _tuple(getattr(module, "branch_labels", None)),
                _tuple(getattr(module, "depends_on", None)),
            )
            expected = (
                self.entry.revision,
                self.entry.down_revision,
                self.entry.branch_labels,
                self.entry.depends_on,
            )
            if declared != expected:
                raise FileChanged(
                    f"{path.name} declares {declared[:2]} when imported but {expected[:2]} in "
                    "its text (computed at import time?): the panel cannot plan with it"
                )
            self._module = module
        return self._module

    def forget(self) -> None:
        """The next use imports the file again: a fresh module, no state from an earlier run."""
        self._module = None


class _Deferred:
    """A revision's ``upgrade`` or ``downgrade``, imported when called (from the module as it
    is then: after ``forget``, a fresh one)."""

    def __init__(self, module: LazyModule, name: str) -> None:
        self.module = module
        self.__name__ = name

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return getattr(self.module.load(), self.__name__)(*args, **kwargs)

    def __repr__(self) -> str:
        return f"<{self.__name__} of revision {self.module.revision}>"


def script_directory(base: ScriptDirectory, entries: Sequence[Entry]) -> ScriptDirectory:
    """``base`` (Alembic's, from the project's config) with its revisions from ``entries``
    (their modules made only when a plan needs Alembic's map: most reloads never do)."""
    entries = tuple(entries)

    def load() -> Iterator[Script]:
        for entry in entries:
            module = LazyModule(entry)
            yield Script(cast(ModuleType, module), module.revision, entry.path)

    base.revision_map = FastRevisionMap(load)
    return base


def forget_modules(script: ScriptDirectory) -> None:
    """Let every revision module be imported afresh at its next use."""
    for revision in script.revision_map._revision_map.values():
        module = getattr(revision, "module", None)
        if isinstance(module, LazyModule):
            module.forget()
