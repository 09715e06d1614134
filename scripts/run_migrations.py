"""Apply every pending migration (the seed's scripts/run_migrations.py).

    python scripts/run_migrations.py

Runs ``schema-admin migrate``: an audited job that takes the migration lock and streams its
log here; exit code 0 when the database is at the head.
"""

from __future__ import annotations

import sys
from pathlib import Path

# From a checkout without an installed package (python scripts/run_migrations.py).
sys.path.insert(1, str(Path(__file__).resolve().parents[1]))

from admin.cli import main  # noqa: E402

if __name__ == "__main__":
    raise SystemExit(main(["migrate"]))
