"""Deals (a client and a property moving through the pipeline) and activities on them."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    DateTime,
    ForeignKey,
    Index,
    Numeric,
    String,
    Text,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.models.base import Base
from app.models.mixins import CreatedAt, Timestamps

if TYPE_CHECKING:
    from app.models.client import Client
    from app.models.property import Property
    from app.models.user import Agent

DEAL_STAGES = ("lead", "viewing", "negotiation", "reserved", "won", "lost")
ACTIVITY_KINDS = ("call", "meeting", "viewing", "email", "message", "note")


class Deal(Timestamps, Base):
    __tablename__ = "deals"
    __table_args__ = (
        CheckConstraint(
            "stage IN ('lead', 'viewing', 'negotiation', 'reserved', 'won', 'lost')",
            name="stage",
        ),
        CheckConstraint("amount IS NULL OR amount >= 0", name="amount"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    property_id: Mapped[int] = mapped_column(
        ForeignKey("properties.id", ondelete="RESTRICT"), index=True
    )
    client_id: Mapped[int] = mapped_column(
        ForeignKey("clients.id", ondelete="RESTRICT"), index=True
    )
    agent_id: Mapped[int | None] = mapped_column(
        ForeignKey("agents.id", ondelete="SET NULL"), index=True
    )
    stage: Mapped[str] = mapped_column(String(32), server_default="lead", index=True)
    amount: Mapped[Decimal | None] = mapped_column(Numeric(14, 2))
    currency: Mapped[str] = mapped_column(String(3), server_default="USD")
    # The agent's commission on this deal: amount x the agent's commission_rate / 100.
    commission_amount: Mapped[Decimal | None] = mapped_column(Numeric(14, 2))
    amocrm_lead_id: Mapped[int | None] = mapped_column(BigInteger, unique=True)
    closed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    property: Mapped[Property] = relationship(back_populates="deals")
    client: Mapped[Client] = relationship(back_populates="deals")
    agent: Mapped[Agent | None] = relationship(back_populates="deals")
    activities: Mapped[list[Activity]] = relationship(back_populates="deal")


class Activity(CreatedAt, Base):
    """A call, meeting, viewing, message or note in a client's timeline."""

    __tablename__ = "activities"
    __table_args__ = (
        CheckConstraint(
            "kind IN ('call', 'meeting', 'viewing', 'email', 'message', 'note')", name="kind"
        ),
        # The client timeline (newest first); built CONCURRENTLY by revision f19b3a6c4e85.
        Index("ix_activities_client_id_occurred_at", "client_id", "occurred_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    client_id: Mapped[int] = mapped_column(ForeignKey("clients.id", ondelete="CASCADE"))
    deal_id: Mapped[int | None] = mapped_column(
        ForeignKey("deals.id", ondelete="CASCADE"), index=True
    )
    agent_id: Mapped[int | None] = mapped_column(
        ForeignKey("agents.id", ondelete="SET NULL"), index=True
    )
    kind: Mapped[str] = mapped_column(String(32))
    subject: Mapped[str] = mapped_column(String(255))
    body: Mapped[str | None] = mapped_column(Text)
    occurred_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))

    client: Mapped[Client] = relationship(back_populates="activities")
    deal: Mapped[Deal | None] = relationship(back_populates="activities")
