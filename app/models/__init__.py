"""The CRM's SQLAlchemy models: autogenerate's target metadata (they match the head revision)."""

from __future__ import annotations

from app.models.amocrm import AmoCrmToken
from app.models.base import Base
from app.models.client import Client, ClientPreference
from app.models.deal import Activity, Deal
from app.models.property import Property, PropertyPhoto
from app.models.user import Agent, User

__all__ = [
    "Activity",
    "Agent",
    "AmoCrmToken",
    "Base",
    "Client",
    "ClientPreference",
    "Deal",
    "Property",
    "PropertyPhoto",
    "User",
]
