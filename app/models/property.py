"""Properties on the exchange and their photos."""

from __future__ import annotations

from decimal import Decimal
from typing import TYPE_CHECKING

from sqlalchemy import (
    CheckConstraint,
    ForeignKey,
    Index,
    Numeric,
    String,
    Text,
    UniqueConstraint,
    false,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.models.base import Base
from app.models.mixins import CreatedAt, Timestamps

if TYPE_CHECKING:
    from app.models.deal import Deal
    from app.models.user import Agent

PROPERTY_STATUSES = ("available", "reserved", "sold", "rented", "withdrawn")


class Property(Timestamps, Base):
    __tablename__ = "properties"
    __table_args__ = (
        CheckConstraint(
            "status IN ('available', 'reserved', 'sold', 'rented', 'withdrawn')", name="status"
        ),
        CheckConstraint("length(currency) = 3 AND currency = upper(currency)", name="currency"),
        CheckConstraint("price >= 0", name="price"),
        Index("ix_properties_city_district", "city", "district"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    title: Mapped[str] = mapped_column(String(255))
    description: Mapped[str | None] = mapped_column(Text)
    # condo, apartment, villa, townhouse, land, commercial
    property_type: Mapped[str] = mapped_column(String(32))
    status: Mapped[str] = mapped_column(String(20), server_default="available", index=True)
    price: Mapped[Decimal] = mapped_column(Numeric(14, 2), index=True)
    # ISO 4217 code: USD, THB, VND, IDR, ...
    currency: Mapped[str] = mapped_column(String(3), server_default="USD")
    city: Mapped[str] = mapped_column(String(100))
    district: Mapped[str | None] = mapped_column(String(100))
    address: Mapped[str | None] = mapped_column(String(500))
    latitude: Mapped[Decimal | None] = mapped_column(Numeric(9, 6))
    longitude: Mapped[Decimal | None] = mapped_column(Numeric(9, 6))
    bedrooms: Mapped[int | None]
    area_sqm: Mapped[Decimal | None] = mapped_column(Numeric(10, 2))
    agent_id: Mapped[int | None] = mapped_column(
        ForeignKey("agents.id", ondelete="SET NULL"), index=True
    )

    agent: Mapped[Agent | None] = relationship(back_populates="properties")
    photos: Mapped[list[PropertyPhoto]] = relationship(
        back_populates="property", order_by="PropertyPhoto.position"
    )
    deals: Mapped[list[Deal]] = relationship(back_populates="property")


class PropertyPhoto(CreatedAt, Base):
    __tablename__ = "property_photos"
    __table_args__ = (
        UniqueConstraint("property_id", "position", name="uq_property_photos_property_id_position"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    property_id: Mapped[int] = mapped_column(ForeignKey("properties.id", ondelete="CASCADE"))
    url: Mapped[str] = mapped_column(String(1024))
    caption: Mapped[str | None] = mapped_column(String(255))
    position: Mapped[int] = mapped_column(server_default=text("0"))
    is_cover: Mapped[bool] = mapped_column(server_default=false())

    property: Mapped[Property] = relationship(back_populates="photos")
