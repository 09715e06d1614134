"""``python -m admin.migrations.probe FILE...``: import revision files the catalog cannot
read from their text, and print what they declare (JSON on stdout).

A child process of the panel: a revision module's import-time code never runs in the panel
itself. What the modules print goes to stderr; a file that does not load ends the probe
with one line on stderr and exit 1.
"""

from __future__ import annotations

import contextlib
import json
import sys
from pathlib import Path

from admin.migrations.catalog import probe_one


def main(argv: list[str]) -> int:
    out = sys.stdout
    entries = []
    with contextlib.redirect_stdout(sys.stderr):
        for name in argv:
            try:
                entries.append(probe_one(Path(name)))
            except Exception as exc:  # one line for the panel: which file and why
                reason = f"{type(exc).__name__}: {exc}"
                print(f"{Path(name).name} does not load: {reason}", file=sys.stderr)
                return 1
    json.dump(entries, out)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
