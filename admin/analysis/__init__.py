"""Know the risk before Apply: badges per revision, SQL lint, plans refused up front.

A room beside the engine (``admin.migrations``): it reads revision files (parsed, never
imported) and their offline SQL (through ``rendering``, the one door to the engine), and
keeps its results by file hash.
"""

from __future__ import annotations

from admin.analysis import lint, sarif
from admin.analysis.badges import Badge, Kind
from admin.analysis.rendering import Rendered, rendered_steps
from admin.analysis.risk import RevisionRisk, StepRisk, analyze

__all__ = [
    "Badge",
    "Kind",
    "Rendered",
    "RevisionRisk",
    "StepRisk",
    "analyze",
    "lint",
    "rendered_steps",
    "sarif",
]
