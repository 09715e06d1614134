"""Risk badges: what kind of risk a revision's step carries, each with a one-line reason."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


class Kind(StrEnum):
    """The closed set of badges, in the order pages show them (worst first)."""

    IRREVERSIBLE = "irreversible"
    DESTRUCTIVE = "destructive"
    DATA_MIGRATION = "data migration"
    LONG_LOCK = "long lock"
    NON_TRANSACTIONAL = "non-transactional"
    NEEDS_DATABASE = "needs a live database"

    @property
    def slug(self) -> str:
        return self.value.replace(" ", "-")

    @property
    def order(self) -> int:
        return list(Kind).index(self)


# Kinds that make an upgrade ask for a typed confirmation (and a backup first by default).
CONFIRMED_KINDS = frozenset({Kind.IRREVERSIBLE, Kind.DESTRUCTIVE})
BACKUP_KINDS = frozenset({Kind.IRREVERSIBLE, Kind.DESTRUCTIVE, Kind.DATA_MIGRATION})


@dataclass(frozen=True)
class Badge:
    """One risk of one step: its kind, why (one line), and what it names.

    ``objects`` are what a destructive step drops (``clients.passport_number``, ``table
    deals``): the typed confirmation asks for them. ``fails`` marks a downgrade that is
    proven to raise: a plan crossing it cannot finish.
    """

    kind: Kind
    reason: str
    objects: tuple[str, ...] = ()
    fails: bool = False

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind.value,
            "reason": self.reason,
            "objects": list(self.objects),
            "fails": self.fails,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Badge:
        return cls(
            Kind(data["kind"]),
            str(data["reason"]),
            tuple(data.get("objects") or ()),
            bool(data.get("fails")),
        )


def one_line(text: str, limit: int = 200) -> str:
    """The first line of ``text``, at most ``limit`` characters."""
    first = " ".join((text or "").strip().split())
    return first if len(first) <= limit else first[: limit - 1].rstrip() + "…"


@dataclass
class BadgeSet:
    """Badges being collected for one step: one per kind, reasons counted, objects merged."""

    found: dict[Kind, list[Badge]] = field(default_factory=dict)

    def add(self, badge: Badge) -> None:
        self.found.setdefault(badge.kind, []).append(badge)

    def extend(self, badges: tuple[Badge, ...] | list[Badge]) -> None:
        for badge in badges:
            self.add(badge)

    def has(self, kind: Kind) -> bool:
        return kind in self.found

    def result(self) -> tuple[Badge, ...]:
        merged = []
        for kind in sorted(self.found, key=lambda k: k.order):
            badges = self.found[kind]
            reasons = list(dict.fromkeys(b.reason for b in badges))
            reason = reasons[0] + (f" (and {len(reasons) - 1} more)" if len(reasons) > 1 else "")
            objects = tuple(dict.fromkeys(o for b in badges for o in b.objects))
            merged.append(Badge(kind, reason, objects, any(b.fails for b in badges)))
        return tuple(merged)
