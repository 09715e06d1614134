"""APEX Schema Admin: web panel, CLI and container entrypoint for Alembic migrations."""

__version__ = "0.1.0"
