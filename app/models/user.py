"""CRM users (people who sign in) and the agents among them."""

from __future__ import annotations

from decimal import Decimal
from typing import TYPE_CHECKING

from sqlalchemy import CheckConstraint, ForeignKey, Numeric, String, text, true
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.models.base import Base
from app.models.mixins import CreatedAt, Timestamps

if TYPE_CHECKING:
    from app.models.client import Client
    from app.models.deal import Deal
    from app.models.property import Property

USER_ROLES = ("admin", "manager", "agent")


class User(Timestamps, Base):
    __tablename__ = "users"
    __table_args__ = (CheckConstraint("role IN ('admin', 'manager', 'agent')", name="role"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(String(255), unique=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    full_name: Mapped[str] = mapped_column(String(255))
    role: Mapped[str] = mapped_column(String(20), server_default="agent")
    is_active: Mapped[bool] = mapped_column(server_default=true())

    agent: Mapped[Agent | None] = relationship(back_populates="user")


class Agent(CreatedAt, Base):
    __tablename__ = "agents"
    __table_args__ = (
        CheckConstraint("commission_rate >= 0 AND commission_rate <= 100", name="commission_rate"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), unique=True)
    phone: Mapped[str | None] = mapped_column(String(32))
    license_number: Mapped[str | None] = mapped_column(String(64))
    # Percent of the deal amount, e.g. 3.00.
    commission_rate: Mapped[Decimal] = mapped_column(Numeric(5, 2), server_default=text("3.00"))
    is_active: Mapped[bool] = mapped_column(server_default=true())

    user: Mapped[User] = relationship(back_populates="agent")
    clients: Mapped[list[Client]] = relationship(back_populates="agent")
    properties: Mapped[list[Property]] = relationship(back_populates="agent")
    deals: Mapped[list[Deal]] = relationship(back_populates="agent")
