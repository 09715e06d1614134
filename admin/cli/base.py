"""What every command shares: the handler type and opening the runtime."""

from __future__ import annotations

import argparse
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, TypeAlias

from admin.config import Settings

if TYPE_CHECKING:
    from admin import audit
    from admin.runtime import Runtime
    from admin.store.models import Source

# The store, the ORM and the audit trail load only in commands that use them (the read
# commands start faster without them).
Handler = Callable[[argparse.Namespace, Settings], int]
if TYPE_CHECKING:
    Commands: TypeAlias = argparse._SubParsersAction[argparse.ArgumentParser]
else:
    Commands = argparse._SubParsersAction


@contextmanager
def runtime(settings: Settings, *, upgrade_store: bool = True) -> Iterator[Runtime]:
    """Open the store for one command; its schema is brought up to date first."""
    from admin import logs
    from admin.runtime import Runtime

    logs.configure(settings.model_copy(update={"log_level": "WARNING"}))
    rt = Runtime.open(settings)
    try:
        if upgrade_store:
            rt.upgrade_store(cli_actor())
        yield rt
    finally:
        rt.close()


def cli_actor(source: Source | None = None) -> audit.Actor:
    """The OS user running the command (source ``cli`` unless given)."""
    from admin import audit
    from admin.store.models import Source

    return audit.Actor.os_user(source or Source.CLI)
