"""Escalation (guide "Escalation Procedures"): which level an incident is, who to call, what changed.

``escalation.level`` judges findings: those of a triage (``ctx.prior_findings``, loaded from a
findings.json by the notebook's ``findings`` parameter) or, when there are none, the quick
checks of every diagnostic runbook run now. The mapping from findings to the guide's levels is
one pure function, :func:`decide`:

Level 0, critical issue (the first that applies wins):
  * system completely unavailable: ``app.health.endpoint`` critical for the API **and** no
    healthy target (``app.alb.target_health`` critical) or no running task
    (``app.ecs.capacity`` critical); or every health URL failing;
  * data security breach: ``security.cloudtrail.sensitive`` critical (root use, logging
    disabled) or any critical ``breach.*`` finding;
  * data corruption or loss: ``backup.rds.retention`` critical (no automated backups).
Level 3, vendor support: AWS-side failures: ``db.rds.status`` critical (instance not
  available), AWS API server errors (error findings with Internal*/Unavailable codes);
  an external dependency down (``external.http.health`` critical).
Level 2, team support: any other critical; suspicious activity (a ``security.*`` warning);
  warnings from :data:`MANY_WARNING_CHECKS` or more checks at once.
Level 1, self-service: the remaining warnings, and checks that could not run (fix and rerun).

The highest level found wins, in the order 0, 3, 2, 1; every reason is listed. Severity of
the finding: level 0 critical, levels 2 and 3 warning, level 1 info (ok when nothing is wrong).

Missing evidence: a check that could not run (an ``error`` finding) or a runbook that did not
run (or did not finish) may hide a reason. More findings can only add reasons, so the level is
then a **lower bound**, and the finding says so: which checks could not run (by area, with the
commonest causes), which runbooks did not run, and which rules that could raise the level
(:data:`LEVEL_INPUTS`: app availability, breach, data loss, RDS, external dependencies) were
blind. A level-1 verdict that is blind to a level-0 or level-3 rule is a ``warning``, never
``info``: it must not read calmer than the evidence allows.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

import pandas as pd

from rmsops.core.findings import Finding, Severity, iso
from rmsops.core.registry import CheckResult, check
from rmsops.sources import cloudtrail

if TYPE_CHECKING:
    from rmsops.core.context import Context
    from rmsops.core.registry import CheckSpec

RUNBOOK = "18-escalation"
# Check ids, declared in the catalogue (rmsops/core/runbooks.py); the judges take theirs as `cid`.
LEVEL = "escalation.level"
RECENT_CHANGES = "escalation.recent_changes"
MANY_WARNING_CHECKS = 5  # distinct checks warning at once: more than self-service
PRECEDENCE = (0, 3, 2, 1)  # the most serious level first
DEVOPS = "DevOps Team: slack://rms-devops or +1-800-RMS-HELP"
DBA = "Database Issues: dba@company.com"
SECURITY = "Security Issues: security@company.com"
AWS_SUPPORT = "AWS Support (Business/Enterprise plan)"
DB_VENDOR = "Database vendor support"
THIRD_PARTY = "Third-party service providers"
ACTIONS = {
    0: ("Page on-call engineer", "Create war room in Slack", "Begin incident response procedure",
        "Communicate with stakeholders"),
    3: ("Contact DevOps team via Slack", "Open a case with the vendor (below) and link it in the incident ticket",
        "Provide system state and error logs"),
    2: ("Contact DevOps team via Slack", "Create incident ticket with severity level",
        "Provide system state and error logs (the triage report and findings.json)"),
    1: ("Use this troubleshooting guide", "Check automated monitoring dashboards",
        "Review recent deployments and changes (escalation.recent_changes)"),
}
NAMES = {0: "critical issue", 1: "self-service", 2: "team support", 3: "vendor support"}
_VENDOR_ERROR = re.compile(r"^AWS \S+ failed: \w*(Internal|Unavailable|ServerError)")
# The rules that can raise the level above team support, and the checks they read (an id ending
# in "." is a prefix). When one of these could not run, the rule could not fire.
LEVEL_INPUTS: tuple[tuple[int, str, tuple[str, ...]], ...] = (
    (0, "app availability", ("app.health.endpoint", "app.alb.target_health", "app.ecs.capacity")),
    (0, "data security breach", ("security.cloudtrail.sensitive", "breach.")),
    (0, "data loss", ("backup.rds.retention",)),
    (3, "RDS instance availability", ("db.rds.status",)),
    (3, "external dependencies", ("external.http.health",)),
)
# How a triage marks the checks of a runbook that failed, stopped, overstayed its timeout, or was
# cut short or never started because the triage itself was stopped.
_RUNBOOK_DID_NOT_RUN = re.compile(r"^(the runbook (could not run|stopped|ran longer than its timeout)"
                                  r"|not run: |the triage was .* while this runbook ran)")


@dataclass(frozen=True)
class Reason:
    level: int
    why: str
    finding: Finding


@dataclass(frozen=True)
class Blind:
    """A rule that could raise the level but could not see (some of) its inputs."""

    level: int
    what: str
    checks: tuple[str, ...]


@dataclass(frozen=True)
class Missing:
    """The inputs the level was computed without."""

    errors: tuple[Finding, ...] = ()  # checks that could not run
    not_run: tuple[str, ...] = ()  # runbooks that did not run or did not finish
    unseen: tuple[str, ...] = ()  # checks of runbooks with no finding at all
    blind: tuple[Blind, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.errors or self.not_run or self.unseen)

    @property
    def checks(self) -> list[str]:
        return sorted({f.check for f in self.errors} | set(self.unseen))


@dataclass(frozen=True)
class Escalation:
    level: int
    reasons: tuple[Reason, ...] = ()
    contacts: tuple[str, ...] = ()
    actions: tuple[str, ...] = field(default=ACTIONS[1])
    missing: Missing = field(default_factory=Missing)

    @property
    def lower_bound(self) -> bool:
        """Missing inputs could add reasons, and so raise the level (0 is the top: nothing above)."""
        return bool(self.missing) and self.level != 0

    @property
    def severity(self) -> Severity:
        if self.level == 0:
            return Severity.CRITICAL
        if self.level in (2, 3):
            return Severity.WARNING
        if any(b.level in (0, 3) for b in self.missing.blind):
            return Severity.WARNING  # blind to a rule that calls for more than self-service
        return Severity.INFO if self.reasons or self.missing else Severity.OK


def _is(f: Finding, check_id: str, *severities: Severity) -> bool:
    return f.check == check_id and f.severity in severities


def _area(check_id: str) -> str:
    if check_id.startswith(("db.", "backup.")) or check_id in ("metrics.rds", "logs.rds.connection_errors"):
        return "database"
    if check_id.startswith(("security.", "breach.")):
        return "security"
    if check_id.startswith("external."):
        return "external"
    return "platform"


def reasons_for(findings: Iterable[Finding]) -> list[Reason]:
    """Every finding that moves the level, with the rule that moved it."""
    findings = [f for f in findings if f.check != LEVEL]
    critical, warning, error = Severity.CRITICAL, Severity.WARNING, Severity.ERROR
    reasons: list[Reason] = []
    used: set[int] = set()

    def add(level: int, why: str, found: Iterable[Finding]) -> None:
        for f in found:
            if id(f) not in used:
                used.add(id(f))
                reasons.append(Reason(level, why, f))

    health = [f for f in findings if f.check == "app.health.endpoint"]
    api_down = [f for f in health if f.severity is critical
                and ("api" in f.title.lower().split(" ", 1)[0] or "/api" in f.resource.lower())]
    nothing_serves = [f for f in findings if _is(f, "app.alb.target_health", critical)
                      or _is(f, "app.ecs.capacity", critical)]
    all_down = len(health) >= 2 and all(f.severity is critical for f in health)
    if api_down and nothing_serves:
        add(0, "System completely unavailable: the API health check fails and nothing healthy serves it",
            api_down + nothing_serves)
    elif all_down:
        add(0, "System completely unavailable: every health URL fails", health)
    add(0, "Data security breach suspected (root use or logging disabled)",
        [f for f in findings if _is(f, "security.cloudtrail.sensitive", critical)])
    add(0, "Data security breach finding", [f for f in findings if f.check.startswith("breach.")
                                            and f.severity is critical])
    add(0, "Data loss risk: automated backups are off",
        [f for f in findings if _is(f, "backup.rds.retention", critical)])
    add(3, "AWS-side failure: the RDS instance is not available",
        [f for f in findings if _is(f, "db.rds.status", critical)])
    add(3, "AWS API server errors", [f for f in findings if f.severity is error and _VENDOR_ERROR.match(f.detail)])
    add(3, "External dependency down", [f for f in findings if _is(f, "external.http.health", critical)])
    add(2, "Critical finding", [f for f in findings if f.severity is critical])
    add(2, "Suspicious activity: the security team looks at it",
        [f for f in findings if f.check.startswith("security.") and f.severity is warning])
    warned = [f for f in findings if f.severity is warning]
    if len({f.check for f in warned}) >= MANY_WARNING_CHECKS:
        add(2, f"Warnings from {len({f.check for f in warned})} checks at once", warned)
    add(1, "Warning", warned)
    add(1, "Could not check: fix the cause and run again", [f for f in findings if f.severity is error])
    return reasons


def _feeds(check_id: str, inputs: Iterable[str]) -> bool:
    return any(check_id == i or (i.endswith(".") and check_id.startswith(i)) for i in inputs)


def missing_inputs(findings: Iterable[Finding], unseen: Iterable[str] = (),
                   not_run: Iterable[str] = ()) -> Missing:
    """What the level cannot see: error findings, runbooks that did not run or did not finish
    (``not_run``: stems known to be absent; ``unseen``: their check ids), and the rules of
    :data:`LEVEL_INPUTS` left blind by them."""
    errors = tuple(f for f in findings if f.severity is Severity.ERROR and not f.check.startswith("escalation."))
    stopped = {f.runbook for f in errors if f.runbook and _RUNBOOK_DID_NOT_RUN.match(f.detail)}
    unseen = tuple(sorted(set(unseen)))
    blind_ids = {f.check for f in errors} | set(unseen)
    blind = tuple(Blind(lvl, what, tuple(sorted(c for c in blind_ids if _feeds(c, inputs))))
                  for lvl, what, inputs in LEVEL_INPUTS if any(_feeds(c, inputs) for c in blind_ids))
    return Missing(errors, tuple(sorted(stopped | set(not_run))), unseen, blind)


def decide(findings: Iterable[Finding], unseen: Iterable[str] = (), not_run: Iterable[str] = ()) -> Escalation:
    """The guide's escalation level for a set of findings, with reasons, contacts and actions.

    ``not_run``: runbooks known to have produced no finding at all, ``unseen``: their checks
    (see :func:`absent_runbooks`); with them, or with error findings, the level is a lower bound.
    """
    findings = list(findings)
    reasons = reasons_for(findings)
    levels = {r.level for r in reasons}
    level = next((lvl for lvl in PRECEDENCE if lvl in levels), 1)
    reasons.sort(key=lambda r: (PRECEDENCE.index(r.level), r.finding.severity.rank, r.finding.check))
    return Escalation(level, tuple(reasons), contacts(level, reasons), ACTIONS[level],
                      missing_inputs(findings, unseen, not_run))


def absent_runbooks(findings: Iterable[Finding]) -> dict[str, list[str]]:
    """The triage's diagnostic runbooks none of whose checks has a finding, with their check ids."""
    from rmsops.core import registry, runbooks

    seen = {f.check for f in findings}
    absent: dict[str, list[str]] = {}
    for rb in runbooks.triage_selection():
        if rb.stem == RUNBOOK:
            continue
        ids = [spec.id for spec in registry.for_runbook(rb.stem)]
        if ids and not seen.intersection(ids):
            absent[rb.stem] = ids
    return absent


def contacts(level: int, reasons: list[Reason]) -> tuple[str, ...]:
    """The guide's quick-reference contacts for the level and the areas its reasons touch."""
    if level == 1:
        return ()
    serious = [r for r in reasons if r.level != 1]
    areas = {_area(r.finding.check) for r in serious}
    out = [DEVOPS]
    if "database" in areas:
        out.append(DBA)
    if "security" in areas:
        out.append(SECURITY)
    if level == 3:
        vendor = [r for r in serious if r.level == 3]
        if any(r.finding.check == "db.rds.status" or r.finding.severity is Severity.ERROR for r in vendor):
            out.append(AWS_SUPPORT)
        if any(_area(r.finding.check) == "database" for r in vendor):
            out.append(DB_VENDOR)
        if any(_area(r.finding.check) == "external" for r in vendor):
            out.append(THIRD_PARTY)
    return tuple(out)


def reasons_frame(escalation: Escalation) -> pd.DataFrame:
    return pd.DataFrame([{"level": r.level, "why": r.why, "check": r.finding.check,
                          "severity": r.finding.severity.value, "resource": r.finding.resource,
                          "title": r.finding.title} for r in escalation.reasons],
                        columns=["level", "why", "check", "severity", "resource", "title"])


def _plural(n: int, one: str, many: str) -> str:
    return f"{n} {one if n == 1 else many}"


def _listed(items: list[str], limit: int = 6) -> str:
    return ", ".join(items[:limit]) + (f" +{len(items) - limit} more" if len(items) > limit else "")


def missing_summary(missing: Missing) -> str:
    """One phrase for the title: how much could not be seen, and which rules were blind."""
    parts = []
    if missing.errors:
        ids = sorted({f.check for f in missing.errors})
        parts.append(f"{_plural(len(ids), 'check', 'checks')} could not run")
    if missing.not_run:
        parts.append(f"{_plural(len(missing.not_run), 'runbook', 'runbooks')} did not run")
    blind = f" (blind to {', '.join(b.what for b in missing.blind)})" if missing.blind else ""
    return " and ".join(parts) + blind


def missing_detail(missing: Missing) -> str:
    """The missing inputs for the detail: checks by area, the commonest causes, runbooks, blind rules."""
    out = []
    if missing.errors:
        areas: dict[str, list[str]] = {}
        for cid in sorted({f.check for f in missing.errors}):
            areas.setdefault(cid.split(".", 1)[0], []).append(cid)
        causes: dict[str, int] = {}
        for f in missing.errors:
            cause = f.detail.strip().splitlines()[0][:160] if f.detail.strip() else f.title
            causes[cause] = causes.get(cause, 0) + 1
        common = sorted(causes.items(), key=lambda kv: -kv[1])[:2]
        out.append(f"Could not run: {'; '.join(f'{a}: {_listed(ids)}' for a, ids in areas.items())}. "
                   f"Commonest cause{'s' if len(common) > 1 else ''}: "
                   + "; ".join(f"{cause} ({n}x)" for cause, n in common) + ".")
    if missing.not_run:
        out.append(f"Runbooks that did not run or did not finish: {_listed(list(missing.not_run), 16)}.")
    for b in missing.blind:
        out.append(f"Blind to the level-{b.level} rule on {b.what}: {', '.join(b.checks)} not seen.")
    return " ".join(out)


def judge_level(escalation: Escalation, environment: str, judged: int, source: str) -> Finding:
    level = escalation.level
    missing = escalation.missing
    top = [r for r in escalation.reasons if r.level == level]
    said = "; ".join(f"{r.finding.check} {r.finding.severity.value}: {r.finding.title}" for r in top[:5])
    more = f" (+{len(top) - 5} more)" if len(top) > 5 else ""
    name = f"at least, {NAMES[level]}" if escalation.lower_bound else NAMES[level]
    if escalation.reasons:
        title = f"Escalation level {level} ({name}): {top[0].why}"
        detail = f"{len(escalation.reasons)} reason(s) from {judged} findings ({source}). Level {level}: {said}{more}."
    elif missing:
        title = f"Escalation level 1 ({name}): nothing wrong in what could be seen"
        detail = f"No warning, critical or error among {judged} findings ({source})."
    else:
        title = "Escalation level 1 (self-service): nothing wrong"
        detail = f"No warning, critical or error among {judged} findings ({source})."
    if missing:
        said_missing = missing_summary(missing)
        if escalation.lower_bound:
            title += f"; {said_missing}; the level is a lower bound"
            detail += (f" Missing inputs: {missing_detail(missing)} The level is a lower bound: what could "
                       "not be seen can only add reasons, never remove one.")
        else:
            title += f"; {said_missing}"
            detail += f" Missing inputs (level 0 is the highest already): {missing_detail(missing)}"
    evidence = {"level": level, "name": NAMES[level], "findings_judged": judged, "source": source,
                "contacts": list(escalation.contacts), "actions": list(escalation.actions),
                "reasons": [{"level": r.level, "why": r.why, "check": r.finding.check,
                             "severity": r.finding.severity.value, "resource": r.finding.resource,
                             "title": r.finding.title} for r in escalation.reasons],
                "missing_inputs": missing.checks, "runbooks_not_run": list(missing.not_run),
                "blind": [{"level": b.level, "what": b.what, "checks": list(b.checks)} for b in missing.blind],
                "lower_bound": escalation.lower_bound}
    steps = " ".join(f"{i}. {a}." for i, a in enumerate(escalation.actions, start=1))
    who = f" Contacts: {'; '.join(escalation.contacts)}." if escalation.contacts else ""
    resolution = f"Level {level} ({NAMES[level]}): {steps}{who}" if escalation.reasons else ""
    if missing:
        rerun = (f"Fix what kept {_plural(len(missing.checks), 'check', 'checks')} from running (the error "
                 "findings and runbook statuses name the cause) and run the triage again: "
                 + ("the level may rise." if escalation.lower_bound else "the reasons may change."))
        if any(b.level == 0 for b in missing.blind) and level != 0:
            rerun += (" Until then, look at what could not be seen by hand (" +
                      ", ".join(b.what for b in missing.blind if b.level == 0) + "): level 0 cannot be ruled out.")
        resolution = f"{resolution} {rerun}".strip()
    return Finding(LEVEL, escalation.severity, f"env:{environment}", title, detail, evidence,
                   resolution)


def quick_checks() -> list[CheckSpec]:
    """The quick checks of every diagnostic runbook, each once: what the daily health check runs."""
    from rmsops.core import registry

    return registry.daily_checks()


def findings_to_judge(ctx: Context) -> tuple[list[Finding], str]:
    if ctx.prior_findings:
        return list(ctx.prior_findings), "findings of the triage's runbooks"
    from rmsops.core import registry

    found = [f for spec in quick_checks() for f in registry.run(spec, ctx).findings]
    return found, "quick checks of every runbook, run now"


def _level_plot(result: CheckResult, ctx: Context):
    from rmsops.render import plots

    # By area (the check id's first part): a bar per check is dozens of bars, slow to draw, hard to read.
    frame = result.data if result.data is not None else pd.DataFrame(columns=["check", "severity"])
    areas = frame.assign(area=frame["check"].astype(str).str.split(".").str[0])
    counts = areas.groupby(["area", "severity"]).size().reset_index(name="findings") if len(frame) else \
        pd.DataFrame(columns=["area", "severity", "findings"])
    return plots.bars(counts, "area", "findings", "Findings behind the escalation level, by area", stack="severity")


@check(LEVEL, plot=_level_plot)
def level(ctx: Context) -> CheckResult:
    """The guide's escalation level for the findings, the reasons, who to contact."""
    findings, source = findings_to_judge(ctx)
    # A triage's findings.json has findings of every runbook that ran, errors for those that
    # failed; a runbook with none at all was left out (a partial triage, another runbook's file).
    absent = absent_runbooks(findings) if ctx.prior_findings else {}
    escalation = decide(findings, unseen=[c for ids in absent.values() for c in ids], not_run=absent)
    finding = judge_level(escalation, ctx.settings.name, len(findings), source)
    return CheckResult(findings=[finding], data=reasons_frame(escalation))


# --- escalation.recent_changes ------------------------------------------------------------------

CHANGE_COLUMNS = ["time", "kind", "what", "who", "detail"]
INFRA_SOURCES = frozenset({"ecs", "elasticloadbalancing", "ec2", "rds", "iam", "cloudfront", "wafv2", "acm",
                           "lambda", "autoscaling", "application-autoscaling", "cloudformation", "secretsmanager",
                           "ssm", "s3", "route53", "kms", "cloudtrail", "elasticache"})
# Writes the platform makes by itself as part of running tasks: never a suspect.
ROUTINE = frozenset({"CreateNetworkInterface", "DeleteNetworkInterface", "AttachNetworkInterface",
                     "DetachNetworkInterface", "SubmitTaskStateChange", "SubmitContainerStateChange",
                     "SubmitAttachmentStateChanges", "RegisterTargets", "DeregisterTargets", "CreateLogStream",
                     "AssumeRole", "GetSecretValue", "Decrypt", "GenerateDataKey"})
TASK_DEFINITION_REVISIONS = 10  # newest revisions per family looked at for registrations in the window


def deployment_changes(ctx: Context) -> list[dict[str, Any]]:
    from rmsops.sources.ecs import describe_services

    rows = []
    for svc in describe_services(ctx).get("services", []):
        for d in svc.get("deployments", []):
            created = d.get("createdAt")
            if isinstance(created, datetime) and ctx.window.start <= created <= ctx.window.end:
                rows.append({"time": created, "kind": "deployment",
                             "what": f"{svc['serviceName']} -> {str(d.get('taskDefinition', '')).rsplit('/', 1)[-1]}",
                             "who": "ecs", "detail": f"{d.get('status', '')} {d.get('rolloutState', '')}, "
                                                     f"{d.get('runningCount', 0)}/{d.get('desiredCount', 0)} running, "
                                                     f"{d.get('failedTasks', 0)} failed tasks"})
    return rows


def task_definition_changes(ctx: Context) -> list[dict[str, Any]]:
    from rmsops.sources.ecs import describe_services, describe_task_definition, newest_revisions

    families = sorted({str(s.get("taskDefinition", "")).rsplit("/", 1)[-1].rsplit(":", 1)[0]
                       for s in describe_services(ctx).get("services", []) if s.get("taskDefinition")})
    rows = []
    for family in families:
        for revision in newest_revisions(ctx, family, limit=TASK_DEFINITION_REVISIONS):
            td = describe_task_definition(ctx, f"{family}:{revision}") or {}  # shared with the other runbooks
            registered = td.get("registeredAt")
            if not isinstance(registered, datetime):
                continue  # the API omits it for old revisions (and emulators never set it)
            if ctx.window.start <= registered <= ctx.window.end:
                rows.append({"time": registered, "kind": "task definition",
                             "what": f"{td.get('family')}:{td.get('revision')} registered",
                             "who": str(td.get("registeredBy", "")).rsplit("/", 1)[-1] or "unknown",
                             "detail": ", ".join(f"{c.get('name')}={str(c.get('image', '')).rsplit('/', 1)[-1]}"
                                                 for c in td.get("containerDefinitions", []))})
    return rows


def cloudtrail_changes(events: pd.DataFrame) -> list[dict[str, Any]]:
    rows = []
    for e in events.itertuples(index=False):
        source = str(e.event_source).split(".")[0]
        if (e.read_only or e.error_code or e.identity_type == "AWSService" or e.invoked_by
                or source not in INFRA_SOURCES or e.event_name in ROUTINE):
            continue
        who = e.username or e.principal or "unknown"
        rows.append({"time": e.time, "kind": "api change", "what": f"{e.event_name} ({source})",
                     "who": f"{who} ({e.source_ip})" if e.source_ip else who,
                     "detail": "; ".join(b for b in (e.resources, e.request) if b)[:300]})
    return rows


def changes_frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
    frame = pd.DataFrame(rows, columns=CHANGE_COLUMNS)
    frame["time"] = pd.to_datetime(frame["time"], utc=True)
    return frame.sort_values("time", ascending=False, kind="stable").reset_index(drop=True)


def judge_changes(df: pd.DataFrame, window: tuple[datetime, datetime], cid: str = RECENT_CHANGES) -> list[Finding]:
    records = [{"time": iso(r.time), "kind": r.kind, "what": r.what, "who": r.who, "detail": r.detail}
               for r in df.head(50).itertuples(index=False)]
    evidence = {"window": {"start": iso(window[0]), "end": iso(window[1])}, "changes": len(df),
                "by_kind": df["kind"].value_counts().to_dict() if len(df) else {}, "recent": records}
    if df.empty:
        return [Finding(cid, Severity.OK, "changes", "No deployments or infrastructure changes in the window",
                        "No ECS deployment, task definition registration or infrastructure API write "
                        "(CloudTrail) between the window's start and end.", evidence)]
    suspects = "; ".join(f"{r['time']} {r['kind']}: {r['what']} by {r['who']}" for r in records[:5])
    return [Finding(cid, Severity.INFO, "changes", f"{len(df)} change(s) in the window; newest: {records[0]['what']}",
                    f"Likely suspects, newest first: {suspects}.", evidence,
                    "Review recent deployments and changes: if a change lines up with the start of the trouble, "
                    "roll it back (runbook 15-application-recovery) and tell the DevOps team.")]


@check(RECENT_CHANGES)
def recent_changes(ctx: Context) -> CheckResult:
    """ECS deployments, task definition registrations and infrastructure API changes in the window."""
    rows = deployment_changes(ctx) + task_definition_changes(ctx) + cloudtrail_changes(cloudtrail.events(ctx))
    df = changes_frame(rows)
    return CheckResult(findings=judge_changes(df, (ctx.window.start, ctx.window.end)), data=df)
