"""The CRM's SQLAlchemy models: autogenerate's target metadata."""

from __future__ import annotations

from app.models.base import Base

__all__ = ["Base"]
