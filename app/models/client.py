"""Clients (buyers, tenants, owners) and what they are looking for."""

from __future__ import annotations

from decimal import Decimal
from typing import TYPE_CHECKING

from sqlalchemy import JSON, BigInteger, CheckConstraint, ForeignKey, Numeric, String, Text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.models.base import Base
from app.models.mixins import Timestamps

if TYPE_CHECKING:
    from app.models.deal import Activity, Deal
    from app.models.user import Agent


class Client(Timestamps, Base):
    __tablename__ = "clients"

    id: Mapped[int] = mapped_column(primary_key=True)
    full_name: Mapped[str] = mapped_column(String(255))
    email: Mapped[str | None] = mapped_column(String(255), index=True)
    phone: Mapped[str | None] = mapped_column(String(32), index=True)
    nationality: Mapped[str | None] = mapped_column(String(2))
    # Where the lead came from: amocrm, website, referral, walk-in, ...
    source: Mapped[str | None] = mapped_column(String(50))
    amocrm_contact_id: Mapped[int | None] = mapped_column(BigInteger, unique=True)
    agent_id: Mapped[int | None] = mapped_column(
        ForeignKey("agents.id", ondelete="SET NULL"), index=True
    )
    notes: Mapped[str | None] = mapped_column(Text)

    agent: Mapped[Agent | None] = relationship(back_populates="clients")
    preferences: Mapped[ClientPreference | None] = relationship(back_populates="client")
    deals: Mapped[list[Deal]] = relationship(back_populates="client")
    activities: Mapped[list[Activity]] = relationship(back_populates="client")


class ClientPreference(Timestamps, Base):
    """What a client is looking for, for matching properties (one row per client)."""

    __tablename__ = "client_preferences"
    __table_args__ = (
        CheckConstraint(
            "min_price IS NULL OR max_price IS NULL OR min_price <= max_price", name="price_range"
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    client_id: Mapped[int] = mapped_column(
        ForeignKey("clients.id", ondelete="CASCADE"), unique=True
    )
    property_types: Mapped[list[str] | None] = mapped_column(JSON)
    cities: Mapped[list[str] | None] = mapped_column(JSON)
    min_price: Mapped[Decimal | None] = mapped_column(Numeric(14, 2))
    max_price: Mapped[Decimal | None] = mapped_column(Numeric(14, 2))
    currency: Mapped[str] = mapped_column(String(3), server_default="USD")
    min_bedrooms: Mapped[int | None]

    client: Mapped[Client] = relationship(back_populates="preferences")
