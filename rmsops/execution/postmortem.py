"""A post-mortem draft from a triage bundle (``rmsops postmortem BUNDLE [AFTER]``).

The bundle already holds the facts of a write-up: the window, the verdict, the 5xx counts, what
changed, which alarms fired, what was done (the audit logs) and every file with its SHA-256. The
author should spend the time on the root cause, not on copying those. So:

* ``draft`` reads the bundle into a ``Draft``: plain data, no markup;
* ``blocks`` lays a draft out as headings, paragraphs, lists and tables of ``Span``s;
* ``markdown`` and ``html_page`` render those blocks (the same structure in both formats).

Every text that came from the inspected systems (titles, table cells, audit details, file names)
is a span's text, and only the renderers turn spans into markup: each passes the text through
``clean`` (controls stripped, secrets redacted by ``rmsops.core.secrets.redact``, length capped),
then escapes it for its format. A finding title cannot add a link, a table column, a heading, a
line or a script.

Evidence links. When the bundle lies in the draft's folder or below it (the default output,
``BUNDLE/../NAME-postmortem.md``, or any folder above the bundle), each file is linked relative to
the draft, and the links work as they are. Written anywhere else (``docs/example-postmortem.md`` for
a bundle in /tmp), a link relative to the draft would point into one machine's /tmp; the links are
then ``NAME/<path in the bundle>``: they work once the draft sits beside the bundle folder (as in
the bundle's zip), and the draft says so.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pandas as pd

from rmsops.core import secrets
from rmsops.core.errors import UserError
from rmsops.core.findings import Finding, Severity, counts, read_document, sort_by_urgency
from rmsops.execution import bundle as bundles
from rmsops.render import timeline
from rmsops.render.report import MAX_CELL, STYLE, badge, clean, esc
from rmsops.sources.alb import DISTINCT_5XX

# The ELB's own 5xx (its 502s and 503s included) and the application's: each response counted once.
ELB_5XX, TARGET_5XX = DISTINCT_5XX
ESCALATION = "escalation.level"
FIVE_XX = "app.alb.5xx"
FIX_HINT = "pass the folder `rmsops triage -o DIR` wrote (not its zip)"


# --- the draft: plain data ---------------------------------------------------------------------

@dataclass(frozen=True)
class Event:
    """One row of the timeline (``at`` in UTC)."""

    at: datetime
    what: str
    source: str


@dataclass(frozen=True)
class Impact:
    """What users felt, from the ALB 5xx table (or the app.alb.5xx finding's totals without it)."""

    source: str = ""  # where the numbers come from; "" = not measured
    table: bool = False  # the per-period table was there (else no duration can be said)
    threshold: float | None = None  # 5xx per period, as app.alb.5xx judged
    period_seconds: int = 60
    first_above: datetime | None = None
    end_above: datetime | None = None  # the end of the last period above the threshold
    periods_above: int = 0
    ongoing: bool = False  # still above at the end of the window
    totals: dict[str, int] = field(default_factory=dict)  # per 5xx metric

    @property
    def elb_5xx(self) -> int | None:
        return self.totals.get(ELB_5XX, 0) if self.source else None

    @property
    def failed(self) -> dict[str, int]:
        """The metrics that add up to failed requests (the ELB's 5xx and the targets' 5xx)."""
        return {name: self.totals.get(name, 0) for name in DISTINCT_5XX} if self.source else {}


@dataclass(frozen=True)
class EvidenceFile:
    path: str  # inside the bundle, as the manifest lists it
    href: str  # the link; "" when the path is not one to follow (absolute, ``..``)
    sha256: str
    present: bool


@dataclass(frozen=True)
class FixCheck:
    """A later triage against this one, by (check, resource): did the fix work?"""

    name: str
    environment: str
    status: str
    window: tuple[str, str]
    resolved: list[Finding]
    unchecked: list[Finding]  # gone only because the later triage did not run their runbook
    new: list[Finding]
    still: list[tuple[Finding, Finding]]


@dataclass(frozen=True)
class Draft:
    bundle_name: str
    environment: str
    window: tuple[str, str]
    status: str  # complete | incomplete
    stopped: str
    started_at: datetime | None
    ended_at: datetime | None
    run_by: str
    runbooks: int
    unfinished: list[str]  # runbooks (and checks) that did not finish, with why
    escalation: str  # "level 0 (critical issue)"; "" when not judged
    escalation_why: str
    impact: Impact
    affected: list[str]
    timeline: list[Event]
    not_in_bundle: list[str]  # timeline sources a partial triage did not keep
    problems: list[tuple[str, list[Finding]]]  # (runbook heading, its warning/critical/error findings)
    tally: dict[str, int]
    evidence: list[tuple[str, list[EvidenceFile]]]  # (runbook folder or "", files)
    digest: str
    links_relative: bool  # True: relative to the draft; False: to the folder holding the bundle
    fix: FixCheck | None = None


# --- reading the bundle --------------------------------------------------------------------------

def load(folder: Path) -> tuple[dict[str, Any], list[Finding]]:
    """The manifest and merged findings of a bundle; a UserError naming what is wrong otherwise."""
    if not folder.is_dir():
        raise UserError(f"{folder} is not a folder: {FIX_HINT}")
    if not (folder / bundles.MANIFEST).is_file():
        raise UserError(f"{folder} is not an rmsops bundle (no {bundles.MANIFEST}): {FIX_HINT}")
    path = folder / "findings.json"
    if not path.is_file():
        raise UserError(f"{folder} has no findings.json: not a triage bundle; {FIX_HINT}")
    try:
        manifest = bundles.read_manifest(folder)
        findings = read_document(path)[1]
    except OSError as exc:
        raise UserError(f"cannot read {folder}: {exc.strerror or exc}; check its permissions") from None
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise UserError(f"{path} is not a valid findings document ({_one_line(exc)}); take the bundle "
                        "from its zip again") from None
    if not isinstance(manifest.get("files"), dict):
        raise UserError(f"{folder / bundles.MANIFEST}: no file list; the manifest was damaged")
    return manifest, findings


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:200] or type(exc).__name__


def _mapping(value: object) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _when(value: object) -> datetime | None:
    """An ISO 8601 time from a bundle as an aware UTC datetime; None when it is not one."""
    if not isinstance(value, str) or not value.strip():
        return None
    try:
        moment = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _number(value: object) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _table(folder: Path, name: str, columns: set[str]) -> pd.DataFrame | None:
    """One of the tables the bundle's timeline reads (``timeline.TABLES``); None when it is not in the
    bundle, which is normal after a partial triage. A table that is there but unreadable is not."""
    runbook, check = timeline.TABLES[name]
    path = folder / runbook / "tables" / f"{check}.csv"
    if not path.is_file():
        return None
    try:
        with path.open("rb") as handle:
            handle.read(1)
    except OSError as exc:
        raise UserError(f"cannot read {path}: {exc.strerror or exc}; check its permissions") from None
    frame = timeline.table(folder, name)
    if frame.empty and not len(frame.columns):
        return pd.DataFrame(columns=sorted(columns))  # an empty file: no rows
    if not columns <= set(frame.columns):
        raise UserError(f"{path} is not the table rmsops writes (expected the columns "
                        f"{', '.join(sorted(columns))}); take the bundle from its zip again")
    return frame


def _timed(frame: pd.DataFrame, column: str) -> pd.DataFrame:
    """Rows with a readable time in ``column`` (as UTC), oldest first."""
    return frame.assign(**{column: timeline.times(frame[column])}).dropna(subset=[column]).sort_values(column)


# --- summary -------------------------------------------------------------------------------------

def impact(folder: Path, findings: list[Finding], window_end: datetime | None = None) -> Impact:
    """How long and how many: from the first period in which any ALB 5xx metric was above the
    app.alb.5xx threshold (the check's own judgement, per metric) to the end of the last such
    period; totals per metric summed from the same table."""
    evidence = next((f.evidence for f in findings if f.check == FIVE_XX), None)
    threshold = _number(_mapping(evidence).get("threshold_per_period"))
    period = int(_number(_mapping(evidence).get("period_seconds")) or 60)
    raw = _table(folder, "5xx", {"timestamp", "label", "value"})
    if raw is None:
        return _impact_from_finding(evidence, threshold, period)
    rows = _timed(raw.assign(value=pd.to_numeric(raw["value"], errors="coerce")).dropna(subset=["value"]),
                  "timestamp")
    totals = {str(label): int(total) for label, total in rows.groupby("label")["value"].sum().items()}
    moments = sorted(set(rows.loc[rows["value"] > threshold, "timestamp"])) if threshold is not None else []
    first = moments[0].to_pydatetime() if moments else None
    end = moments[-1].to_pydatetime() + timedelta(seconds=period) if moments else None
    runbook, check = timeline.TABLES["5xx"]
    return Impact(source=f"{runbook}/tables/{check}.csv", table=True, threshold=threshold,
                  period_seconds=period, first_above=first, end_above=end, periods_above=len(moments),
                  ongoing=bool(end and window_end and end >= window_end), totals=totals)


def _impact_from_finding(evidence: dict[str, Any] | None, threshold: float | None, period: int) -> Impact:
    """No table: the finding's totals still count the 5xx, but not when they happened."""
    if evidence is None:
        return Impact()
    metrics = _mapping(evidence.get("metrics"))
    totals = {str(name): int(_number(_mapping(stats).get("total")) or 0) for name, stats in metrics.items()}
    return Impact(source=f"the {FIVE_XX} finding's evidence", threshold=threshold, period_seconds=period,
                  totals=totals)


_NAMED = (("ecs:", "ECS service"), ("targetgroup:", "ALB target group"), ("alb:", "load balancer"))


def affected(findings: list[Finding]) -> list[str]:
    """The services, target groups and load balancers that warning/critical/error findings name by
    their resource (``ecs:CLUSTER/SERVICE``, ``targetgroup:NAME``, ``alb:NAME``), worst first. Other
    resources (databases, URLs, log groups) stay in the findings, where their context is."""
    named: dict[str, None] = {}
    for finding in sort_by_urgency(findings):
        if finding.severity not in bundles.PROBLEMS:
            continue
        for prefix, kind in _NAMED:
            if finding.resource.startswith(prefix):
                name = finding.resource[len(prefix):]
                cluster, _, service = name.partition("/")
                named.setdefault(f"{kind} {service} (cluster {cluster})" if prefix == "ecs:" and service
                                 else f"{kind} {name}")
    return list(named)


def escalation(findings: list[Finding]) -> tuple[str, str]:
    """(the level, why): the escalation.level finding's own reasons at that level; ("", "") without it."""
    finding = next((f for f in findings if f.check == ESCALATION), None)
    if finding is None:
        return "", ""
    evidence = finding.evidence
    level = evidence.get("level")
    if level is None:
        return finding.title, finding.detail
    head = f"level {level} ({evidence.get('name', '')})"
    if evidence.get("lower_bound"):
        head += ", at least: evidence is missing"
    reasons = [r for r in evidence.get("reasons") or [] if isinstance(r, dict) and r.get("level") == level]
    whys = list(dict.fromkeys(str(r.get("why", "")) for r in reasons if r.get("why")))
    shown = [f"{r.get('check', '')}: {r.get('title', '')}" for r in reasons[:3]]
    more = f"; and {len(reasons) - 3} more" if len(reasons) > 3 else ""
    because = f" ({'; '.join(shown)}{more})" if shown else ""
    return head, ("; ".join(whys) or finding.title) + because


def unfinished(manifest: dict[str, Any], findings: list[Finding]) -> list[str]:
    """Runbooks that did not finish (their status and error), and what escalation could not see."""
    missing = [f"{stem} ({info.get('status', '?')}{': ' + str(info['error']) if info.get('error') else ''})"
               for stem, info in _mapping(manifest.get("runbooks")).items()
               if _mapping(info).get("status") != "done"]
    named = {item.split(" ", 1)[0] for item in missing}
    judged = next((f.evidence for f in findings if f.check == ESCALATION), {})
    missing += [f"{stem} (not run)" for stem in judged.get("runbooks_not_run") or [] if stem not in named]
    checks = judged.get("missing_inputs") or []
    if checks:
        more = f" and {len(checks) - 8} more" if len(checks) > 8 else ""
        missing.append(f"{len(checks)} check(s) that could not run: {', '.join(map(str, checks[:8]))}{more}")
    return missing


# --- timeline ------------------------------------------------------------------------------------

_CHANGE_SOURCE = {"api change": "CloudTrail", "deployment": "ECS", "task definition": "ECS"}


def change_events(folder: Path) -> list[Event] | None:
    """Deployments, task definitions and API changes (escalation.recent_changes); None: not kept."""
    changes = _table(folder, "changes", {"time", "kind", "what"})
    if changes is None:
        return None
    events = []
    for row in _timed(changes, "time").to_dict("records"):
        who = f" by {row['who']}" if pd.notna(row.get("who")) else ""
        detail = f": {str(row['detail'])[:160]}" if pd.notna(row.get("detail")) else ""
        events.append(Event(row["time"].to_pydatetime(), f"{row['kind']}: {row['what']}{who}{detail}",
                            _CHANGE_SOURCE.get(str(row["kind"]), "recent changes")))
    return events


def alarm_events(folder: Path) -> list[Event] | None:
    """Alarms that went to ALARM (metrics.alarms, ``since``); None: not kept."""
    alarms = _table(folder, "alarms", {"alarm", "since"})
    if alarms is None:
        return None
    events = []
    for row in _timed(alarms, "since").to_dict("records"):
        metric = f" ({row['metric']})" if pd.notna(row.get("metric")) else ""
        about = f": {row['description']}" if pd.notna(row.get("description")) else ""
        events.append(Event(row["since"].to_pydatetime(), f"Alarm {row['alarm']}{metric} went to ALARM{about}",
                            "CloudWatch alarm"))
    return events


def symptom_events(findings: list[Finding], impact_: Impact, seen_at: datetime | None) -> list[Event]:
    """The first sign of each critical symptom: from its table or evidence where they say when; else
    the time the triage saw it (and the row says so). The same symptom seen by two runbooks is one row."""
    merged: dict[tuple[datetime, str], list[str]] = {}
    for finding in findings:
        if finding.severity != Severity.CRITICAL or finding.check == ESCALATION:
            continue
        placed = first_sign(finding, impact_)
        if placed is None and seen_at is None:
            continue
        at, what = placed or (seen_at, f"{finding.title} (seen by the triage at {_clock(seen_at)}; its evidence "
                                       "does not say since when)")
        merged.setdefault((at, what), []).append(f"{finding.check} ({finding.runbook})")
    return [Event(at, what, "finding " + ", ".join(sources)) for (at, what), sources in merged.items()]


def first_sign(finding: Finding, impact_: Impact) -> tuple[datetime, str] | None:
    """When a critical finding's problem first shows: the first 5xx period above the threshold for
    app.alb.5xx, a ``first_*`` time in its evidence (e.g. latency's ``first_over_warning``), else None."""
    if finding.check == FIVE_XX and impact_.first_above and impact_.threshold is not None:
        return impact_.first_above, (f"First ALB 5xx period above the threshold ({impact_.threshold:g} per "
                                     f"{impact_.period_seconds} s): {finding.title}")
    for key, value in sorted(finding.evidence.items()):
        if key.startswith("first_") and (moment := _when(value)):
            return moment, f"{finding.title}: {key.replace('_', ' ')}"
    return None


def triage_events(facts: dict[str, Any]) -> tuple[list[Event], list[Event]]:
    """The triage's start and its end (``_facts``), as separate lists: actions of the same second go
    between them."""
    start = ([Event(facts["started_at"], f"Triage started: {facts['runbooks']} runbook(s) over "
                    f"{_clock(_when(facts['window'][0]))} → {_clock(_when(facts['window'][1]))}, run by "
                    f"{facts['run_by']}", "manifest.json")] if facts["started_at"] else [])
    verdict = f"; escalation {facts['escalation']}" if facts["escalation"] else ""
    state = ("bundle complete" if facts["status"] == "complete"
             else f"bundle INCOMPLETE ({facts['stopped'] or 'stopped'})")
    end = ([Event(facts["ended_at"], f"Triage ended: {state}{verdict}", "manifest.json")]
           if facts["ended_at"] else [])
    return start, end


def audit_logs(folder: Path, extra: Path | None = None) -> list[tuple[Path, str]]:
    """Every audit log of the incident, with the name the timeline gives it: the runbooks' dry runs,
    ``BUNDLE/audit.jsonl`` (``rmsops action -o BUNDLE``) and ``--audit FILE`` (each file once)."""
    logs = [(path, path.relative_to(folder).as_posix()) for path in sorted(folder.glob("*/audit.jsonl"))]
    if (folder / "audit.jsonl").is_file():
        logs.append((folder / "audit.jsonl", "audit.jsonl"))
    if extra is not None:
        if not extra.is_file():
            raise UserError(f"--audit {extra}: no such file; pass an audit.jsonl written by `rmsops action`")
        logs.append((extra, str(extra)))
    unique: dict[Path, tuple[Path, str]] = {}
    for path, name in logs:
        unique.setdefault(path.resolve(), (path, name))
    return list(unique.values())


def audit_events(logs: list[tuple[Path, str]]) -> list[Event]:
    """Every action record (dry or real, whatever its outcome): one JSON object per line.

    Several runbooks propose the same dry run (a rollback is the answer of four of them): one row
    at its first time, naming every log that holds it, so the timeline stays readable."""
    first: dict[str, tuple[datetime, list[str]]] = {}
    for path, name in logs:
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as exc:
            raise UserError(f"cannot read {path}: {_one_line(exc)}") from None
        for number, line in enumerate(lines, 1):
            if line.strip():
                at, record = _audit_record(line, path, number)
                what = action_text(record)
                key = what if record.get("dry_run") is True else f"{what}\0{at.isoformat()}\0{name}"
                seen_at, names = first.get(key, (at, []))
                first[key] = (min(seen_at, at), [*names, name] if name not in names else names)
    return [Event(at, key.split("\0", 1)[0], ", ".join(names)) for key, (at, names) in first.items()]


def _audit_record(line: str, path: Path, number: int) -> tuple[datetime, dict[str, Any]]:
    try:
        record = json.loads(line)
    except ValueError:
        record = None
    at = _when(record.get("at")) if isinstance(record, dict) else None
    if at is None or not isinstance(record, dict):
        raise UserError(f"{path}, line {number}: not an audit record (a JSON object with an 'at' time); "
                        "fix or remove that line")
    return at, record


def action_text(record: dict[str, Any]) -> str:
    """Who did what to which target, dry run or real, and how it ended."""
    mode = {True: "dry run", False: "REAL change"}.get(record.get("dry_run"), "dry run or real: not recorded")
    detail = f": {record['detail']}" if record.get("detail") else ""
    return (f"{record.get('user', '?')} ran {record.get('action', '?')} on {record.get('target', '?')} "
            f"({mode}, {record.get('outcome', '?')}){detail}")


def timeline_events(folder: Path, findings: list[Finding], impact_: Impact, facts: dict[str, Any],
                    logs: list[tuple[Path, str]]) -> tuple[list[Event], list[str]]:
    """Changes, alarms, first signs, the triage and every action, sorted by time (UTC); and the sources
    this bundle does not hold."""
    missing = []
    changes, alarms = change_events(folder), alarm_events(folder)
    if changes is None:
        missing.append("deployments and changes (18-escalation's escalation.recent_changes table)")
    if alarms is None:
        missing.append("alarm state changes (10-monitoring-overview's metrics.alarms table)")
    started, ended = triage_events(facts)
    events = [*(changes or []), *(alarms or []), *symptom_events(findings, impact_, facts["started_at"]),
              *started, *audit_events(logs), *ended]
    return sorted(events, key=lambda event: event.at), missing  # stable: the order above breaks ties


# --- findings and evidence -----------------------------------------------------------------------

def problems(findings: list[Finding]) -> list[tuple[str, list[Finding]]]:
    """Critical, error and warning findings per runbook (one runbook is one problem of the guide)."""
    groups: dict[str, list[Finding]] = {}
    for finding in sort_by_urgency(findings):
        if finding.severity in bundles.PROBLEMS:
            groups.setdefault(finding.runbook, []).append(finding)
    return [(f"{stem}: {group[0].guide_section}" if group[0].guide_section else stem or "other", group)
            for stem, group in sorted(groups.items())]


def link_base(folder: Path, output: Path) -> tuple[str, bool]:
    """(prefix of every evidence link, whether it is relative to the draft); the rule is in the module
    docstring: relative to the draft when the bundle is in its folder or below, else ``NAME/...``."""
    home, target = output.resolve().parent, folder.resolve()
    if target == home or home in target.parents:
        relative = Path(os.path.relpath(target, home)).as_posix()
        return ("" if relative == "." else relative), True
    return target.name, False


def _followable(name: str) -> bool:
    parts = name.split("/")
    return bool(name) and not name.startswith("/") and "\\" not in name and ".." not in parts and "" not in parts


_KINDS = (".html", ".ipynb", ".json", ".jsonl", ".csv", ".svg", ".png")  # reports first, then the raw evidence


def evidence(folder: Path, manifest: dict[str, Any], output: Path) -> tuple[list[tuple[str, list[EvidenceFile]]], bool]:
    """Every file the manifest lists, per runbook folder (the bundle's top first), reports first,
    with its link and the manifest's SHA-256; and whether the links are relative to the draft."""
    prefix, relative = link_base(folder, output)
    groups: dict[str, list[EvidenceFile]] = {}
    for name, info in manifest["files"].items():
        name = str(name)
        followable = _followable(name)
        # a secret in a file name is masked in the link too (the link then leads nowhere, and says nothing)
        href = quote(secrets.redact(f"{prefix}/{name}" if prefix else name), safe="/") if followable else ""
        groups.setdefault(name.split("/", 1)[0] if "/" in name else "", []).append(
            EvidenceFile(name, href, str(_mapping(info).get("sha256", "")),
                         followable and (folder / name).is_file()))
    for files in groups.values():
        files.sort(key=lambda f: (next((i for i, k in enumerate(_KINDS) if f.path.endswith(k)), len(_KINDS)),
                                  f.path))
    return sorted(groups.items()), relative


# --- the draft -----------------------------------------------------------------------------------

def fix_check(before: Path, after: Path) -> FixCheck:
    """``bundle.diff`` of two triages; a problem "resolved" only because the later triage did not run
    its runbook is set apart (nothing looked at it again)."""
    manifest, _ = load(after)
    result = bundles.diff(before, after)
    runbooks = _mapping(manifest.get("runbooks"))
    again = {stem for stem, info in runbooks.items() if _mapping(info).get("status") == "done"}
    window = _mapping(manifest.get("window"))
    return FixCheck(name=after.resolve().name, environment=str(manifest.get("environment", "")),
                    status=str(manifest.get("status", "")),
                    window=(str(window.get("start", "")), str(window.get("end", ""))),
                    resolved=[f for f in result.resolved if not runbooks or f.runbook in again],
                    unchecked=[f for f in result.resolved if runbooks and f.runbook not in again],
                    new=result.new, still=result.still)


def _facts(manifest: dict[str, Any], findings: list[Finding]) -> dict[str, Any]:
    """The manifest's details a draft repeats, tolerant of older bundles (missing keys)."""
    window = _mapping(manifest.get("window"))
    who = _mapping(manifest.get("run_by"))
    arn = _mapping(who.get("aws")).get("arn")
    level, why = escalation(findings)
    return {"environment": str(manifest.get("environment", "?")),
            "window": (str(window.get("start", "")), str(window.get("end", ""))),
            "status": str(manifest.get("status", "?")), "stopped": str(manifest.get("stopped") or ""),
            "started_at": _when(manifest.get("started_at")), "ended_at": _when(manifest.get("ended_at")),
            "run_by": f"{who.get('user', '?')} on {who.get('host', '?')}" + (f" ({arn})" if arn else ""),
            "runbooks": len(_mapping(manifest.get("runbooks"))), "escalation": level, "escalation_why": why}


def draft(folder: Path, output: Path, after: Path | None = None, audit: Path | None = None) -> Draft:
    """Everything the write-up says, read from the bundle (``output``: where it will be written, for
    the evidence links)."""
    manifest, findings = load(folder)
    facts = _facts(manifest, findings)
    impact_ = impact(folder, findings, _when(facts["window"][1]))
    events, missing = timeline_events(folder, findings, impact_, facts, audit_logs(folder, audit))
    files, relative = evidence(folder, manifest, output)
    return Draft(bundle_name=folder.resolve().name, **facts, unfinished=unfinished(manifest, findings),
                 impact=impact_, affected=affected(findings), timeline=events, not_in_bundle=missing,
                 problems=problems(findings), tally=counts(findings), evidence=files,
                 digest=bundles.manifest_digest(folder), links_relative=relative,
                 fix=fix_check(folder, after) if after is not None else None)


# --- layout: blocks of spans, rendered as Markdown or HTML ---------------------------------------

@dataclass(frozen=True)
class Span:
    """A piece of text; untrusted or not, the renderers clean and escape it."""

    text: str
    style: str = ""  # "", "b", "i", "code", "sev" (a severity badge)
    href: str = ""  # a relative URL built here (percent-encoded)
    limit: int = MAX_CELL


Line = list[Span]


@dataclass(frozen=True)
class Heading:
    level: int
    line: Line


@dataclass(frozen=True)
class Para:
    line: Line
    alert: bool = False  # said loudly: an incomplete bundle


@dataclass(frozen=True)
class Items:
    items: list[tuple[Line, list[Line]]]  # each item with its sub-items


@dataclass(frozen=True)
class Table:
    header: list[str]
    rows: list[list[Line]]


Block = Heading | Para | Items | Table


def _s(text: object, style: str = "", href: str = "", limit: int = MAX_CELL) -> Span:
    return Span(str(text), style, href, limit)


def _clock(moment: datetime | None) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S") if moment else "?"


def _duration(seconds: float) -> str:
    minutes = round(seconds / 60)
    return f"{minutes // 60} h {minutes % 60} min" if minutes >= 60 else f"{minutes} min"


def blocks(d: Draft) -> list[Block]:
    """The write-up's sections, in order."""
    return [*_title(d), *_summary(d), *_timeline(d), *_problems(d), *_evidence(d), *_author(),
            *(_fix(d.fix) if d.fix else [])]


def _title(d: Draft) -> list[Block]:
    out: list[Block] = [
        Heading(1, [_s("Post-mortem draft: "), _s(d.environment), _s(f", {d.window[0][:10]}")]),
        Para([_s(f"Drafted by rmsops postmortem from the triage bundle {d.bundle_name}. The facts below come "
                 "from the bundle; check them against the evidence, then write the sections at the end.", "i")])]
    if d.status != "complete" or d.unfinished:
        said = "INCOMPLETE BUNDLE:" if d.status != "complete" else "PARTIAL EVIDENCE:"
        stopped = f" the triage was {d.stopped}." if d.stopped else ""
        out.append(Para([_s(said, "b"), _s(f"{stopped} Not run or not finished: {'; '.join(d.unfinished) or '?'}. "
                                           "Every verdict here is built on missing evidence: what those would have "
                                           "shown is not in this bundle.", limit=1500)], alert=True))
    return out


def _summary(d: Draft) -> list[Block]:
    state = f"{d.status}, {d.runbooks} runbook(s)" + ("" if d.unfinished else ", all finished")
    items: list[tuple[Line, list[Line]]] = [
        ([_s("Environment: ", "b"), _s(d.environment)], []),
        ([_s("Triage window (UTC): ", "b"), _s(f"{_clock(_when(d.window[0]))} → {_clock(_when(d.window[1]))}")], []),
        ([_s("Triage: ", "b"), _s(f"{_clock(d.started_at)} → {_clock(d.ended_at)} UTC by "), _s(d.run_by),
          _s(f"; bundle {state}")], []),
        ([_s("Escalation: ", "b"), *([_s(d.escalation, "b"), _s(": "), _s(d.escalation_why, limit=900)]
                                     if d.escalation else [_s("not judged (runbook 18-escalation is not in "
                                                              "this bundle)")])], []),
        *_impact_items(d.impact),
        ([_s("Affected: ", "b"), _s("; ".join(d.affected) or "no service, target group or load balancer is "
                                    "named by a problem finding", limit=900),
          _s(" (named by the resources of warning, critical and error findings)", "i")], []),
        ([_s("Manifest SHA-256: ", "b"), _s(d.digest, "code")], [])]
    return [Heading(2, [_s("Summary")]), Items(items)]


def _impact_items(impact_: Impact) -> list[tuple[Line, list[Line]]]:
    return [([_s("Impact, how long: ", "b"), _s(_how_long(impact_), limit=600)], []),
            ([_s("5xx responses: ", "b"), _s(f"{impact_.elb_5xx} ({ELB_5XX} total, from {impact_.source})"
                                             if impact_.source else "not measured (no ALB 5xx evidence in "
                                                                    "this bundle)", limit=600)], []),
            ([_s("Failed requests: ", "b"), _s(_failed(impact_), limit=600)], [])]


def _how_long(impact_: Impact) -> str:
    if not impact_.table:
        return "not measured: the ALB 5xx table (01-application-not-responding) is not in this bundle"
    if impact_.threshold is None:
        return "not measured: the app.alb.5xx finding (its threshold) is not in this bundle"
    if impact_.first_above is None or impact_.end_above is None:
        return f"no period above the threshold ({impact_.threshold:g} 5xx per {impact_.period_seconds} s)"
    ongoing = "; still above at the end of the window" if impact_.ongoing else ""
    return (f"{_duration((impact_.end_above - impact_.first_above).total_seconds())}, "
            f"{_clock(impact_.first_above)} → {_clock(impact_.end_above)} UTC: from the first to the end of the "
            f"last {impact_.period_seconds}-s period in which an ALB 5xx metric was above {impact_.threshold:g} "
            f"(as app.alb.5xx judges), {impact_.periods_above} period(s) above{ongoing}")


def _failed(impact_: Impact) -> str:
    if not impact_.source:
        return "not measured"
    parts = " + ".join(f"{name} {total}" for name, total in impact_.failed.items())
    return (f"{sum(impact_.failed.values())} = {parts} (the ELB's 5xx include its 502s and 503s; target 5xx "
            "are the application's own answers)")


def _timeline(d: Draft) -> list[Block]:
    out: list[Block] = [Heading(2, [_s("Timeline (UTC)")])]
    if d.not_in_bundle:
        out.append(Para([_s("Not in this bundle: ", "i"), _s("; ".join(d.not_in_bundle), "i", limit=600)]))
    rows = [[[_s(_clock(e.at))], [_s(e.what, limit=500)], [_s(e.source)]] for e in d.timeline]
    out.append(Table(["time (UTC)", "what", "source"], rows) if rows else Para([_s("Nothing to place in time.")]))
    return out


def _problems(d: Draft) -> list[Block]:
    shown = sum(len(group) for _, group in d.problems)
    out: list[Block] = [Heading(2, [_s("Findings by problem")]), Para([_s(
        f"{shown} finding(s) at warning or above ({d.tally['critical']} critical, {d.tally['error']} error, "
        f"{d.tally['warning']} warning); {d.tally['ok']} ok and {d.tally['info']} info finding(s) not listed.")])]
    for heading, group in d.problems:
        out += [Heading(3, [_s(heading)]), Items([_finding_item(f) for f in group])]
    return out


def _finding_item(f: Finding) -> tuple[Line, list[Line]]:
    line = [_s(f.severity.value, "sev"), _s(" "), _s(f.check), _s(" on "), _s(f.resource), _s(": "), _s(f.title, "b")]
    return line, ([[_s("What to do: ", "i"), _s(f.resolution, limit=600)]] if f.resolution else [])


def _evidence(d: Draft) -> list[Block]:
    where = ("Links are relative to this file." if d.links_relative else
             f"Links are relative to the folder that holds the bundle folder {d.bundle_name}/: put this file "
             "beside it (as in the bundle's zip) to follow them.")
    out: list[Block] = [Heading(2, [_s("Evidence")]), Para([
        _s("Every file of the bundle with its SHA-256 from the manifest; the manifest's own SHA-256 is "),
        _s(d.digest, "code"), _s(" (rmsops verify BUNDLE --digest DIGEST proves that nothing changed since). "),
        _s(where)])]
    for group, files in d.evidence:
        rows = [[[_s(f.path, href=f.href)] if f.href and f.present else
                 [_s(f.path), _s(" (not in the folder)" if f.href else " (not a path to follow)", "i")],
                 [_s(f.sha256, "code") if re.fullmatch(r"[0-9a-f]{64}", f.sha256) else _s(f.sha256 or "?")]]
                for f in files]
        out += [Heading(3, [_s(group or "the bundle")]), Table(["file", "SHA-256"], rows)]
    return out


_AUTHOR = (("Root cause", "What made it happen, and why then? Name the change or condition and the evidence "
                          "above that shows it."),
           ("What went well", "What helped to see and fix it quickly: alerts, runbooks, people, tools?"),
           ("What went wrong", "What made it worse or slower: a missing alert, unclear ownership, a slow step, "
                               "missing evidence?"),
           ("Action items", "One row per change that keeps this from happening again, each with an owner and "
                            "a due date."))


def _author() -> list[Block]:
    out: list[Block] = []
    for title, prompt in _AUTHOR:
        out += [Heading(2, [_s(title)]), Para([_s(prompt, "i")])]
    out.append(Table(["action", "owner", "due"], [[[], [], []]]))
    return out


def _fix(fix: FixCheck) -> list[Block]:
    verdict = ("Not yet: " if fix.still or fix.new else "It looks so: ") + (
        f"{len(fix.resolved)} resolved, {len(fix.new)} new, {len(fix.still)} still failing"
        + (f", {len(fix.unchecked)} not looked at again" if fix.unchecked else "") + ".")
    caveats = [f"The later triage is {fix.status}: a problem it does not show may not have been looked at."
               ] if fix.status != "complete" else []
    out: list[Block] = [Heading(2, [_s("Did the fix work?")]),
                        Para([_s("Compared with the later triage "), _s(fix.name), _s(" of "), _s(fix.environment),
                              _s(f" ({fix.window[0]} → {fix.window[1]}). "), _s(verdict, "b")])]
    out += [Para([_s(text)], alert=True) for text in caveats]
    sections = (("Resolved", [(f, None) for f in fix.resolved]), ("New", [(None, f) for f in fix.new]),
                ("Still failing", fix.still),
                ("Not looked at again (their runbook did not run in the later triage)",
                 [(f, None) for f in fix.unchecked]))
    for title, pairs in sections:
        out.append(Heading(3, [_s(f"{title} ({len(pairs)})")]))
        out.append(Table(["severity", "check", "resource", "finding"], [_diff_row(a, b) for a, b in pairs])
                   if pairs else Para([_s("none", "i")]))
    return out


def _diff_row(before: Finding | None, after: Finding | None) -> list[Line]:
    shown = after or before
    assert shown is not None
    severity = [_s(before.severity.value, "sev"), _s(" → "), _s(after.severity.value, "sev")] if before and after \
        else [_s(shown.severity.value, "sev")]
    return [severity, [_s(shown.check)], [_s(shown.resource)], [_s(shown.title)]]


# --- Markdown ------------------------------------------------------------------------------------

_MD_SPECIAL = re.compile(r"([\\`*\[\]<>|~])")
_MD_UNDERSCORE = re.compile(r"(?<![0-9A-Za-z])_|_(?![0-9A-Za-z])")  # intraword _ is no emphasis
_MD_ENTITY = re.compile(r"&(?=#?[0-9A-Za-z]+;)")
# What would start a heading, a list item or a numbered item ("# x", "- x", "1. x"): the mark gets a backslash.
_MD_LINE_START = re.compile(r"^(\s*)(#|[+\-](?=\s|$)|\d+[.)](?=\s|$))")


def md_escape(text: str) -> str:
    """Text that Markdown shows as it is: one line, no emphasis, code, link, HTML, table column,
    heading or list marker of its own (CommonMark backslash escapes)."""
    text = " ".join(text.split("\n")).replace("\t", " ")
    text = _MD_SPECIAL.sub(r"\\\1", text)
    text = _MD_UNDERSCORE.sub(r"\\_", text)
    text = _MD_ENTITY.sub(r"\\&", text)
    return _MD_LINE_START.sub(lambda m: f"{m.group(1)}{m.group(2)[:-1]}\\{m.group(2)[-1]}"
                              if m.group(2)[0].isdigit() else f"{m.group(1)}\\{m.group(2)}", text)


def _md_span(span: Span) -> str:
    cleaned = clean(span.text, span.limit)  # controls stripped, secrets redacted, capped
    if span.style == "code":  # only for digests: no escapes work inside a code span
        code = " ".join(cleaned.replace("`", "'").replace("|", "\\|").split("\n"))
        return f"`{code}`" if code else ""
    text = md_escape(cleaned)
    mark = {"b": "**", "sev": "**", "i": "*"}.get(span.style, "")
    core = text.strip()
    if mark and core:  # emphasis only around the words: "**Window:** 1h", never "**Window: **1h"
        lead, trail = text[: len(text) - len(text.lstrip())], text[len(text.rstrip()):]
        text = f"{lead}{mark}{core.upper() if span.style == 'sev' else core}{mark}{trail}"
    return f"[{text}]({span.href})" if span.href else text


def _md_line(line: Line) -> str:
    return "".join(_md_span(span) for span in line)


def _md_block(block: Block) -> str:
    if isinstance(block, Heading):
        return f"{'#' * block.level} {_md_line(block.line)}"
    if isinstance(block, Para):
        return f"> {_md_line(block.line)}" if block.alert else _md_line(block.line)
    if isinstance(block, Items):
        return "\n".join(f"- {_md_line(line)}" + "".join(f"\n  - {_md_line(sub)}" for sub in subs)
                         for line, subs in block.items)
    rows = [[md_escape(h) for h in block.header], ["---"] * len(block.header),
            *[[_md_line(cell) or " " for cell in row] for row in block.rows]]
    return "\n".join(f"| {' | '.join(cells)} |" for cells in rows)


def markdown(d: Draft) -> str:
    """The draft as GitHub-flavoured Markdown."""
    return "\n\n".join(_md_block(block) for block in blocks(d)) + "\n"


# --- HTML ----------------------------------------------------------------------------------------

def _html_span(span: Span) -> str:
    if span.style == "sev" and span.text in {s.value for s in Severity}:
        return badge(Severity(span.text))
    text = esc(span.text, span.limit)  # clean (redacts) then HTML-escapes
    tag = {"b": "b", "i": "i", "code": "code", "sev": "b"}.get(span.style)
    text = f"<{tag}>{text}</{tag}>" if tag and text else text
    return f'<a href="{esc(span.href, 4000)}">{text}</a>' if span.href else text


def _html_line(line: Line) -> str:
    return "".join(_html_span(span) for span in line)


def _html_block(block: Block) -> str:
    if isinstance(block, Heading):
        return f"<h{block.level}>{_html_line(block.line)}</h{block.level}>"
    if isinstance(block, Para):
        return (f"<p style='color:#c62828'>{_html_line(block.line)}</p>" if block.alert
                else f"<p>{_html_line(block.line)}</p>")
    if isinstance(block, Items):
        return "<ul>" + "".join(
            f"<li>{_html_line(line)}" + (f"<ul>{''.join(f'<li>{_html_line(s)}</li>' for s in subs)}</ul>"
                                         if subs else "") + "</li>" for line, subs in block.items) + "</ul>"
    head = "".join(f"<th>{esc(h)}</th>" for h in block.header)
    # A time column stays on one line: a timeline is read down its times.
    first = " style='white-space:nowrap'" if block.header and str(block.header[0]).startswith("time") else ""
    rows = "".join("<tr>" + "".join(f"<td{first if i == 0 else ''}>{_html_line(cell)}</td>"
                                     for i, cell in enumerate(row)) + "</tr>" for row in block.rows)
    return f"<table><tr>{head}</tr>{rows}</table>"


def html_page(d: Draft) -> str:
    """The draft as one HTML page, styled like the bundle's reports."""
    body = "\n".join(_html_block(block) for block in blocks(d))
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>Post-mortem draft: {esc(d.environment)}"
            f"</title>{STYLE}</head><body style='font-family:sans-serif;margin:1.5em 2em'>"
            f"<div class='rmsops'>\n{body}\n</div></body></html>\n")


# --- writing -------------------------------------------------------------------------------------

def default_output(folder: Path, as_html: bool = False) -> Path:
    """Beside the bundle, never in it (a file in it would fail ``rmsops verify``)."""
    resolved = folder.resolve()
    return resolved.parent / f"{resolved.name}-postmortem.{'html' if as_html else 'md'}"


def write(bundle: Path, output: Path | None = None, html: bool = False, after: Path | None = None,
          audit: Path | None = None) -> Path:
    """Draft the post-mortem of ``bundle`` into ``output`` and return its path.

    ``output`` defaults to ``NAME-postmortem.md`` beside the bundle (a folder: that name in it); never
    inside the bundle, which ``rmsops verify`` would then fail. HTML when ``html`` or when ``output``
    ends in .html. ``after``: a later bundle, for "Did the fix work?"; ``audit``: one more audit.jsonl
    whose actions join the timeline."""
    as_html = html or (output is not None and output.suffix.lower() in (".html", ".htm"))
    target = output if output is not None else default_output(bundle, as_html)
    if target.is_dir():  # -o FOLDER: the default name, in that folder
        target = target / default_output(bundle, as_html).name
    result = draft(bundle, target, after, audit)
    if target.resolve() == bundle.resolve() or bundle.resolve() in target.resolve().parents:
        raise UserError(f"{target} is inside the bundle, where `rmsops verify` would report it as added; "
                        "write it beside the bundle (the default) or elsewhere with -o")
    _save(target, html_page(result) if as_html else markdown(result))
    return target


def _save(target: Path, text: str) -> None:
    """Atomically: a reader never sees half a draft."""
    tmp = target.with_name(f".{target.name}.tmp")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, target)
    except OSError as exc:
        raise UserError(f"cannot write {target}: {exc.strerror or exc}; choose another -o") from None
