"""New revision files: autogenerate against the models, refusing an empty one by default."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from alembic import command
from alembic.util import CommandError
from sqlalchemy.exc import SQLAlchemyError

from admin.migrations import database
from admin.migrations.project import ALEMBIC_LOCK, MigrationError, Project, _translate

_MESSAGE = re.compile(r"^[^\r\n\x00]{1,200}$")


def check_message(message: str) -> str:
    message = (message or "").strip()
    if not _MESSAGE.match(message):
        raise MigrationError("a migration message is one line of 1 to 200 characters")
    return message


def create_revision(
    project: Project,
    url: str,
    message: str,
    *,
    autogenerate: bool = True,
    allow_empty: bool = False,
) -> Path:
    """Write a new revision file; with autogenerate, compared against the target database."""
    message = check_message(message)
    empty = False

    def refuse_empty(context: Any, revision: Any, directives: list[Any]) -> None:
        nonlocal empty
        if autogenerate and directives and directives[0].upgrade_ops.is_empty():
            empty = True
            if not allow_empty:
                directives[:] = []

    try:
        with ALEMBIC_LOCK:
            if autogenerate:
                database.check_exists(url)
                engine = database.new_engine(url)
                try:
                    with engine.connect() as connection:
                        cfg = project.config(connection=connection)
                        result = command.revision(
                            cfg,
                            message=message,
                            autogenerate=True,
                            process_revision_directives=refuse_empty,
                        )
                finally:
                    engine.dispose()
            else:
                result = command.revision(project.config(), message=message)
    except CommandError as exc:
        raise _translate(exc) from exc
    except SQLAlchemyError as exc:
        raise database.unreachable(url, exc) from exc
    if empty and not allow_empty:
        raise MigrationError(
            "no difference between app/models and the database: nothing to migrate "
            "(pass --empty to write an empty revision anyway)"
        )
    scripts = result if isinstance(result, list) else [result]
    if not scripts or scripts[0] is None:
        raise MigrationError("Alembic wrote no revision file")
    return Path(scripts[0].path)
