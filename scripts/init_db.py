"""Create the database when it is missing, then migrate it to head (the seed's init_db.py).

    python scripts/init_db.py

Runs ``schema-admin init-db``: the fix for "database does not exist".
"""

from __future__ import annotations

import sys
from pathlib import Path

# From a checkout without an installed package (python scripts/init_db.py).
sys.path.insert(1, str(Path(__file__).resolve().parents[1]))

from admin.cli import main  # noqa: E402

if __name__ == "__main__":
    raise SystemExit(main(["init-db"]))
