"""The engine: the only module that touches Alembic's internals (in progress)."""
