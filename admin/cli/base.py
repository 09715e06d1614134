"""What every command shares: the handler type and opening the runtime."""

from __future__ import annotations

import argparse
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, TypeAlias

from admin import audit, logs
from admin.config import Settings
from admin.runtime import Runtime
from admin.store.models import Source

Handler = Callable[[argparse.Namespace, Settings], int]
if TYPE_CHECKING:
    Commands: TypeAlias = argparse._SubParsersAction[argparse.ArgumentParser]
else:
    Commands = argparse._SubParsersAction


@contextmanager
def runtime(settings: Settings, *, upgrade_store: bool = True) -> Iterator[Runtime]:
    """Open the store for one command; its schema is brought up to date first."""
    logs.configure(settings.model_copy(update={"log_level": "WARNING"}))
    rt = Runtime.open(settings)
    try:
        if upgrade_store:
            rt.upgrade_store(cli_actor())
        yield rt
    finally:
        rt.close()


def cli_actor(source: Source = Source.CLI) -> audit.Actor:
    """The OS user running the command."""
    return audit.Actor.os_user(source)
