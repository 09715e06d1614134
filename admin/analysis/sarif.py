"""Lint findings as SARIF 2.1.0, the format code-scanning pages read.

Each finding is a result on its revision file (the file that produced the SQL), with the
statement and the step in its message, squawk's rule as ``ruleId`` and its documentation
page as the rule's ``helpUri``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from admin import __version__
from admin.analysis.lint import Finding, LintReport

SCHEMA = "https://json.schemastore.org/sarif-2.1.0.json"


def _location(path: str) -> dict[str, Any]:
    return {"physicalLocation": {"artifactLocation": {"uri": path}, "region": {"startLine": 1}}}


def to_sarif(report: LintReport, paths: dict[str, str], squawk_version: str) -> dict[str, Any]:
    """The report as one SARIF run; ``paths`` maps revision ids to their files (relative
    URIs, forward slashes)."""
    rules: dict[str, dict[str, Any]] = {}
    results = []
    for finding in report.findings:
        rules.setdefault(
            finding.rule,
            {
                "id": finding.rule,
                "name": finding.rule,
                "shortDescription": {"text": finding.message},
                "helpUri": finding.url,
            },
        )
        results.append(_result(finding, paths.get(finding.revision, finding.revision)))
    return {
        "$schema": SCHEMA,
        "version": "2.1.0",
        "runs": [
            {
                "tool": {
                    "driver": {
                        "name": "squawk",
                        "version": squawk_version,
                        "informationUri": "https://squawkhq.com",
                        "rules": list(rules.values()),
                    }
                },
                "invocations": [
                    {
                        "executionSuccessful": True,
                        "properties": {"runner": f"schema-admin {__version__}"},
                    }
                ],
                "results": results,
            }
        ],
    }


def _result(finding: Finding, path: str) -> dict[str, Any]:
    text = (
        f"{finding.message} ({finding.direction} of revision {finding.revision}, line "
        f"{finding.statement_line} of its SQL: {finding.statement[:200]})"
    )
    if finding.help:
        text += f" Help: {finding.help}"
    return {
        "ruleId": finding.rule,
        "level": finding.level,
        "message": {"text": text},
        "locations": [_location(Path(path).as_posix())],
        "partialFingerprints": {
            "revisionStatement/v1": f"{finding.revision}:{finding.direction}:"
            f"{finding.rule}:{finding.statement_line}"
        },
    }
