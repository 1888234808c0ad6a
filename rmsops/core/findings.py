"""Findings: one judgement about one resource, and the ``findings.json`` document."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any

from rmsops.core import secrets

SCHEMA = "rmsops.findings/1"
MIME_TYPE = "application/vnd.rmsops.findings+json"


class Severity(StrEnum):
    OK = "ok"
    INFO = "info"
    WARNING = "warning"
    CRITICAL = "critical"
    ERROR = "error"

    @property
    def rank(self) -> int:
        """Order for sorting a report: most urgent first."""
        return {"critical": 0, "error": 1, "warning": 2, "info": 3, "ok": 4}[self.value]


@dataclass(frozen=True)
class Finding:
    check: str
    severity: Severity
    resource: str
    title: str
    detail: str = ""
    evidence: dict[str, Any] = field(default_factory=dict)
    resolution: str = ""
    runbook: str = ""
    guide_section: str = ""

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["severity"] = self.severity.value
        data["evidence"] = json.loads(json.dumps(self.evidence, default=_jsonable))
        # Findings quote what they saw (SQL text, log lines, event messages): no secret goes out.
        return {k: secrets.redact_all(data[k]) for k in FIELD_ORDER}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Finding:
        return cls(**{k: data.get(k, "") for k in FIELD_ORDER if k not in ("severity", "evidence")},
                   severity=Severity(data["severity"]), evidence=dict(data.get("evidence") or {}))

    def placed(self, runbook: str, guide_section: str) -> Finding:
        return replace(self, runbook=runbook, guide_section=guide_section)


FIELD_ORDER = ("check", "runbook", "severity", "resource", "title", "detail", "evidence",
               "resolution", "guide_section")


def _jsonable(value: Any) -> Any:
    if isinstance(value, datetime):
        return iso(value)
    if hasattr(value, "item"):  # numpy scalars
        return value.item()
    if isinstance(value, set | tuple):
        return list(value)
    return str(value)


def iso(moment: datetime) -> str:
    """UTC, second precision, with a Z: the one timestamp format of every output."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def sort_by_urgency(findings: Iterable[Finding]) -> list[Finding]:
    return sorted(findings, key=lambda f: (Severity(f.severity).rank, f.runbook, f.check, f.resource))


def exit_code(findings: Iterable[Finding]) -> int:
    """The spec's exit status: 3 if anything could not run, 1 for warning/critical, else 0."""
    severities = {f.severity for f in findings}
    if Severity.ERROR in severities:
        return 3
    if severities & {Severity.WARNING, Severity.CRITICAL}:
        return 1
    return 0


def counts(findings: Iterable[Finding]) -> dict[str, int]:
    tally = {s.value: 0 for s in Severity}
    for finding in findings:
        tally[finding.severity.value] += 1
    return tally


def document(findings: Iterable[Finding], environment: str, start: datetime, end: datetime,
             generated_at: datetime | None = None) -> dict[str, Any]:
    return {
        "schema": SCHEMA,
        "environment": environment,
        "window": {"start": iso(start), "end": iso(end)},
        "generated_at": iso(generated_at or datetime.now(UTC)),
        "findings": [f.to_dict() for f in findings],
    }


def write_document(path: Path, doc: dict[str, Any]) -> None:
    """Write atomically: a reader never sees half a file."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(doc, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def read_document(path: Path) -> tuple[dict[str, Any], list[Finding]]:
    doc = json.loads(path.read_text(encoding="utf-8"))
    if doc.get("schema") != SCHEMA:
        raise ValueError(f"{path}: not an rmsops findings document (schema {doc.get('schema')!r})")
    return doc, [Finding.from_dict(f) for f in doc["findings"]]
