"""OAuth tokens of the amoCRM integration (one row per amoCRM account)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, DateTime, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base
from app.models.mixins import Timestamps


class AmoCrmToken(Timestamps, Base):
    __tablename__ = "amocrm_tokens"

    id: Mapped[int] = mapped_column(primary_key=True)
    account_id: Mapped[int] = mapped_column(BigInteger, unique=True)
    # The account's subdomain: "apexasia" for apexasia.amocrm.ru.
    subdomain: Mapped[str] = mapped_column(String(255))
    access_token: Mapped[str] = mapped_column(Text)
    refresh_token: Mapped[str] = mapped_column(Text)
    token_type: Mapped[str] = mapped_column(String(20), server_default="Bearer")
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
