"""Environment drift (guide "Staging vs Production Differences").

This environment's ECS services are compared with the same services of another environment,
named by ``drift.compare_with`` in the environment file (a name in ``parameters/`` or a path;
a relative path is looked up beside this environment's file first). That environment is
loaded with ``rmsops.core.config.load`` and gets a Context of its own (its own AWS account,
region, credentials and endpoint), opened once per run.

Compared: environment variable and secret **names** (values differ between environments by
design and are never read into a frame or finding: only the names are kept), task and
container cpu/memory, image repositories and tags, container health checks, task and
execution roles, and the ingress rules of the services' security groups. Names of roles and
security groups are compared with the environment's name taken out (``rms-staging-tasks`` and
``rms-production-tasks`` are the same role), since ids always differ.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from rmsops.core import config
from rmsops.core.findings import Finding, Severity
from rmsops.core.registry import CheckResult, check

if TYPE_CHECKING:
    from rmsops.core.context import Context

RUNBOOK = "09-environment-drift"
# Check ids, declared in the catalogue (rmsops/core/runbooks.py); the judges take theirs as `cid`.
NETWORK_SECURITY_GROUPS = "drift.network.security_groups"
TASKDEF_ENVIRONMENT = "drift.taskdef.environment"
TASKDEF_RESOURCES = "drift.taskdef.resources"
ENV_COLUMNS = ["service", "container", "kind", "name", "in_this", "in_other"]
RESOURCE_COLUMNS = ["service", "container", "attribute", "this", "other", "differs"]
RULE_COLUMNS = ["service", "rule", "protocol", "ports", "source", "in_this", "in_other", "open_to_world"]
ENV_WORDS = ("production", "prod", "staging", "stage", "stg", "development", "dev", "test", "demo")
WORLD = ("0.0.0.0/0", "::/0")
NOT_CONFIGURED = ("Set drift.compare_with in the environment file to another environment (a name in "
                  "parameters/ or a path), e.g. staging, to compare the two.")


# --- the other environment --------------------------------------------------------------------

def other_context(ctx: Context) -> Context | None:
    """A Context for ``drift.compare_with`` (same window), or None when it is not configured."""
    target = ctx.settings.drift_compare_with
    if not target:
        return None

    def fetch() -> Context:
        from rmsops.core.context import Context

        env = target
        looks_like_path = os.sep in target or target.endswith((".yaml", ".yml"))
        if looks_like_path and not Path(target).expanduser().is_absolute():
            beside = ctx.settings.path.parent / target
            if beside.is_file():
                env = str(beside)
        other = Context(config.load(env), ctx.window, runbook=ctx.runbook)
        other.reach_aws_as(ctx)
        return other

    return ctx.memo("drift.other_context", fetch, share=False)  # a live Context: this process only


def env_tokens(*names: str) -> set[str]:
    return {n.lower() for n in (*ENV_WORDS, *names) if n}


def neutral(name: str, tokens: set[str]) -> str:
    """A resource name with environment words removed: ``rms-staging-tasks`` -> ``rms-tasks``."""
    kept: list[str] = []
    for part in re.split(r"([-_/.])", name or ""):
        if part.lower() in tokens:
            if kept and kept[-1] in ("-", "_", "/", "."):
                kept.pop()
            continue
        kept.append(part)
    text = "".join(kept).strip("-_/.")
    return re.sub(r"([-_/.])\1+", r"\1", text)


# --- fetch: one profile per service, names only -----------------------------------------------

def service_profiles(ctx: Context) -> dict[str, dict[str, Any]]:
    """Per configured service: its task definition reduced to comparable facts, and its security groups.

    Environment variables and secrets are reduced to their names here; no value leaves this function.
    """

    def fetch() -> dict[str, dict[str, Any]]:
        from rmsops.sources.ecs import describe_services, describe_task_definition

        answer = describe_services(ctx)
        found = {s["serviceName"]: s for s in answer.get("services", []) if s.get("status") != "INACTIVE"}
        profiles: dict[str, dict[str, Any]] = {}
        for name in ctx.settings.services:
            svc = found.get(name)
            if svc is None:
                continue
            arn = svc.get("taskDefinition", "")
            td = describe_task_definition(ctx, arn)  # shared with the other checks that read it
            if td is None:
                raise LookupError(f"{name}: its task definition {arn} does not exist")
            network = (svc.get("networkConfiguration") or {}).get("awsvpcConfiguration") or {}
            profiles[name] = {"task_definition": f"{td.get('family')}:{td.get('revision')}",
                              **reduce_task_definition(td),
                              "security_groups": list(network.get("securityGroups") or [])}
        return profiles

    return ctx.memo("drift.service_profiles", fetch)


def reduce_task_definition(td: dict[str, Any]) -> dict[str, Any]:
    """The comparable facts of a task definition: never an environment or secret value."""
    containers = {}
    for c in td.get("containerDefinitions", []):
        image = str(c.get("image", ""))
        repo, tag = split_image(image)
        health = c.get("healthCheck") or {}
        containers[c.get("name", "?")] = {
            "env": sorted(str(e.get("name", "")) for e in c.get("environment") or []),
            "secrets": sorted(str(s.get("name", "")) for s in c.get("secrets") or []),
            "image_repository": repo, "image_tag": tag,
            "cpu": c.get("cpu"), "memory": c.get("memory"), "memory_reservation": c.get("memoryReservation"),
            "health_check": (" ".join(str(x) for x in health.get("command", [])) +
                             f" (interval {health.get('interval', 30)} s, timeout {health.get('timeout', 5)} s, "
                             f"retries {health.get('retries', 3)}, start period {health.get('startPeriod', 0)} s)"
                             if health else "none"),
        }
    return {"cpu": td.get("cpu"), "memory": td.get("memory"),
            "task_role": _role(td.get("taskRoleArn")), "execution_role": _role(td.get("executionRoleArn")),
            "containers": containers}


def split_image(image: str) -> tuple[str, str]:
    """``repo/name:tag`` or ``repo/name@sha256:...`` -> (repository path without registry, tag or digest)."""
    if "@" in image:
        repo, digest = image.split("@", 1)
        tag = digest[:19]
    else:
        last = image.rsplit("/", 1)[-1]
        repo, tag = (image.rsplit(":", 1) if ":" in last else (image, "latest"))
    first = repo.split("/", 1)[0]
    registry = "/" in repo and ("." in first or ":" in first or first == "localhost")  # Docker's rule
    return (repo.split("/", 1)[1] if registry else repo), tag


def _role(arn: str | None) -> str:
    return str(arn or "").rsplit("/", 1)[-1]


def pairs(this: dict[str, Any], other: dict[str, Any], this_services: tuple[str, ...],
          other_services: tuple[str, ...]) -> list[tuple[str, str | None]]:
    """(this service, matching service of the other environment): same name, else same position."""
    out = []
    for index, name in enumerate(this_services):
        if name not in this:
            continue
        if name in other:
            out.append((name, name))
        elif index < len(other_services) and other_services[index] in other \
                and other_services[index] not in this_services:
            out.append((name, other_services[index]))
        else:
            out.append((name, None))
    return out


# --- drift.taskdef.environment ----------------------------------------------------------------

def environment_frame(this: dict, other: dict, matched: list[tuple[str, str | None]]) -> pd.DataFrame:
    rows = []
    for name, twin in matched:
        if twin is None:
            continue
        mine, theirs = this[name]["containers"], other[twin]["containers"]
        for container in sorted(set(mine) | set(theirs)):
            a, b = mine.get(container, {}), theirs.get(container, {})
            for kind, key in (("env", "env"), ("secret", "secrets")):
                names_a, names_b = set(a.get(key, [])), set(b.get(key, []))
                rows += [{"service": name, "container": container, "kind": kind, "name": n,
                          "in_this": n in names_a, "in_other": n in names_b}
                         for n in sorted(names_a | names_b)]
    return pd.DataFrame(rows, columns=ENV_COLUMNS)


def judge_environment(df: pd.DataFrame, matched: list[tuple[str, str | None]], this_env: str,
                      other_env: str, cluster: str, cid: str = TASKDEF_ENVIRONMENT) -> list[Finding]:
    findings = []
    for name, twin in matched:
        resource = f"ecs:{cluster}/{name}"
        if twin is None:
            findings.append(Finding(cid, Severity.INFO, resource, f"{name}: no matching service in {other_env}",
                                    f"{other_env} has no service {name} (nor one in the same position).",
                                    {"other_environment": other_env}))
            continue
        rows = df[df["service"] == name]
        only_here = rows[rows["in_this"] & ~rows["in_other"]]
        only_there = rows[~rows["in_this"] & rows["in_other"]]
        listing = {f"only_in_{this_env}": _names(only_here), f"only_in_{other_env}": _names(only_there)}
        evidence = {"this_environment": this_env, "other_environment": other_env, "other_service": twin,
                    "names_compared": len(rows), **listing}
        if len(only_here) or len(only_there):
            parts = [f"only in {this_env}: {', '.join(_names(only_here))}" if len(only_here) else "",
                     f"only in {other_env}: {', '.join(_names(only_there))}" if len(only_there) else ""]
            findings.append(Finding(
                cid, Severity.WARNING, resource,
                f"{name}: {len(only_here) + len(only_there)} environment/secret name(s) differ from {other_env}",
                "; ".join(p for p in parts if p).capitalize() + ". (Names only; values are never read.)",
                evidence,
                "Verify environment variables match expected values: add the missing variables or secrets to "
                "the task definition (a new revision) and redeploy, or confirm the difference is intended."))
        else:
            findings.append(Finding(cid, Severity.OK, resource,
                                    f"{name}: same environment and secret names as {other_env}",
                                    f"{len(rows)} names compared.", evidence))
    return findings


def _names(rows: pd.DataFrame) -> list[str]:
    return [f"{r.name} (secret)" if r.kind == "secret" else str(r.name) for r in rows.itertuples(index=False)]


# --- drift.taskdef.resources ------------------------------------------------------------------

TASK_ATTRIBUTES = ("cpu", "memory", "task_role", "execution_role")
CONTAINER_ATTRIBUTES = ("image_repository", "image_tag", "cpu", "memory", "memory_reservation", "health_check")


def resources_frame(this: dict, other: dict, matched: list[tuple[str, str | None]],
                    tokens: set[str]) -> pd.DataFrame:
    rows = []
    for name, twin in matched:
        if twin is None:
            continue
        a, b = this[name], other[twin]
        for attribute in TASK_ATTRIBUTES:
            x, y = _text(a.get(attribute)), _text(b.get(attribute))
            same = neutral(x, tokens) == neutral(y, tokens) if attribute.endswith("role") else x == y
            rows.append({"service": name, "container": "(task)", "attribute": attribute, "this": x, "other": y,
                         "differs": not same})
        for container in sorted(set(a["containers"]) | set(b["containers"])):
            ca, cb = a["containers"].get(container), b["containers"].get(container)
            for attribute in CONTAINER_ATTRIBUTES:
                x = _text(ca.get(attribute)) if ca else "(no such container)"
                y = _text(cb.get(attribute)) if cb else "(no such container)"
                rows.append({"service": name, "container": container, "attribute": attribute, "this": x,
                             "other": y, "differs": x != y})
    return pd.DataFrame(rows, columns=RESOURCE_COLUMNS)


def _text(value: Any) -> str:
    return "" if value is None else str(value)


def judge_resources(df: pd.DataFrame, matched: list[tuple[str, str | None]], this_env: str, other_env: str,
                    cluster: str, cid: str = TASKDEF_RESOURCES) -> list[Finding]:
    findings = []
    for name, twin in matched:
        if twin is None:
            continue
        resource = f"ecs:{cluster}/{name}"
        rows = df[(df["service"] == name)]
        diffs = rows[rows["differs"]]
        changes = [{"container": r.container, "attribute": r.attribute, this_env: r.this, other_env: r.other}
                   for r in diffs.itertuples(index=False)]
        evidence = {"this_environment": this_env, "other_environment": other_env, "differences": changes}
        if changes:
            said = "; ".join(f"{c['attribute']} {c[this_env] or '-'} vs {c[other_env] or '-'}"
                             + ("" if c["container"] == "(task)" else f" ({c['container']})") for c in changes[:6])
            findings.append(Finding(
                cid, Severity.INFO, resource, f"{name}: {len(changes)} setting(s) differ from {other_env}",
                f"{this_env} vs {other_env}: {said}.", evidence,
                "Confirm each difference is intended (sizing, a release not yet promoted); align cpu, memory "
                "and health checks where the environments should match."))
        else:
            findings.append(Finding(cid, Severity.OK, resource, f"{name}: same cpu, memory, images and health "
                                    f"checks as {other_env}", f"{len(rows)} settings compared.", evidence))
    return findings


# --- drift.network.security_groups ------------------------------------------------------------

def _security_groups(ec2: Any, ids: list[str]) -> list[dict[str, Any]]:
    """DescribeSecurityGroups of these ids, every page (AWS pages only when asked to, but may)."""
    pages = ec2.get_paginator("describe_security_groups").paginate(GroupIds=ids)
    return [group for page in pages for group in page.get("SecurityGroups", [])]


def security_group_rules(ctx: Context, profiles: dict[str, dict[str, Any]], tokens: set[str]) -> pd.DataFrame:
    """Ingress rules of each service's security groups, sources named without ids: service, rule."""
    ids = sorted({g for p in profiles.values() for g in p["security_groups"]})
    if not ids:
        return pd.DataFrame(columns=["service", "rule", "protocol", "ports", "source"])
    ec2 = ctx.client("ec2")
    groups = {g["GroupId"]: g for g in _security_groups(ec2, ids)}
    referenced = sorted({pair["GroupId"] for g in groups.values() for perm in g.get("IpPermissions", [])
                         for pair in perm.get("UserIdGroupPairs", []) if pair.get("GroupId") not in groups})
    names = {gid: g.get("GroupName", gid) for gid, g in groups.items()}
    if referenced:
        try:
            for g in _security_groups(ec2, referenced):
                names[g["GroupId"]] = g.get("GroupName", g["GroupId"])
        except ec2.exceptions.ClientError:  # another account's group: keep its id
            pass
    rows = []
    for service, profile in profiles.items():
        for gid in profile["security_groups"]:
            for perm in groups.get(gid, {}).get("IpPermissions", []):
                protocol = "all" if perm.get("IpProtocol") == "-1" else str(perm.get("IpProtocol"))
                low, high = perm.get("FromPort"), perm.get("ToPort")
                ports = "all" if low in (None, -1) else (str(low) if low == high else f"{low}-{high}")
                sources = ([r["CidrIp"] for r in perm.get("IpRanges", [])]
                           + [r["CidrIpv6"] for r in perm.get("Ipv6Ranges", [])]
                           + [f"prefix-list {r['PrefixListId']}" for r in perm.get("PrefixListIds", [])]
                           + [f"sg {neutral(names.get(p['GroupId'], p['GroupId']), tokens)}"
                              for p in perm.get("UserIdGroupPairs", [])])
                for source in sources:
                    rows.append({"service": service, "rule": f"{protocol} {ports} from {source}",
                                 "protocol": protocol, "ports": ports, "source": source})
    return pd.DataFrame(rows, columns=["service", "rule", "protocol", "ports", "source"]).drop_duplicates()


def rules_frame(this: pd.DataFrame, other: pd.DataFrame, matched: list[tuple[str, str | None]]) -> pd.DataFrame:
    rows = []
    for name, twin in matched:
        if twin is None:
            continue
        mine = this[this["service"] == name].set_index("rule")
        theirs = other[other["service"] == twin].set_index("rule")
        for rule in sorted(set(mine.index) | set(theirs.index)):
            source = (mine if rule in mine.index else theirs).loc[rule]
            if isinstance(source, pd.DataFrame):
                source = source.iloc[0]
            rows.append({"service": name, "rule": rule, "protocol": source["protocol"], "ports": source["ports"],
                         "source": source["source"], "in_this": rule in mine.index, "in_other": rule in theirs.index,
                         "open_to_world": source["source"] in WORLD})
    return pd.DataFrame(rows, columns=RULE_COLUMNS)


def judge_security_groups(df: pd.DataFrame, matched: list[tuple[str, str | None]], this_env: str,
                          other_env: str, cluster: str, cid: str = NETWORK_SECURITY_GROUPS) -> list[Finding]:
    """Rules the other environment has and this one lacks, or rules here open to the world: warning;
    other rules only here: info."""
    findings = []
    for name, twin in matched:
        if twin is None:
            continue
        resource = f"ecs:{cluster}/{name}"
        rows = df[df["service"] == name]
        only_here = rows[rows["in_this"] & ~rows["in_other"]]
        only_there = rows[~rows["in_this"] & rows["in_other"]]
        evidence = {"this_environment": this_env, "other_environment": other_env, "rules_compared": len(rows),
                    f"only_in_{this_env}": list(only_here["rule"]), f"only_in_{other_env}": list(only_there["rule"])}
        open_here = only_here[only_here["open_to_world"]]
        parts = [f"only in {this_env}: {', '.join(only_here['rule'])}" if len(only_here) else "",
                 f"only in {other_env}: {', '.join(only_there['rule'])}" if len(only_there) else ""]
        detail = "; ".join(p for p in parts if p).capitalize() + "." if len(only_here) + len(only_there) else ""
        if len(open_here) or len(only_there):
            why = (f"{len(open_here)} rule(s) open to the internet only in {this_env}" if len(open_here)
                   else f"{len(only_there)} rule(s) of {other_env} missing in {this_env}")
            findings.append(Finding(
                cid, Severity.WARNING, resource, f"{name}: security group ingress differs from {other_env} ({why})",
                detail, evidence,
                "Ensure security groups allow the necessary traffic and nothing more: add the missing rules, "
                "remove rules open to 0.0.0.0/0 that nobody planned."))
        elif len(only_here):
            findings.append(Finding(cid, Severity.INFO, resource,
                                    f"{name}: {len(only_here)} ingress rule(s) only in {this_env}", detail, evidence,
                                    "Confirm the extra rules are intended."))
        else:
            findings.append(Finding(cid, Severity.OK, resource, f"{name}: same ingress rules as {other_env}",
                                    f"{len(rows)} rules compared.", evidence))
    return findings


# --- the checks -------------------------------------------------------------------------------

def _compare(ctx: Context) -> tuple[Context, dict, dict, list[tuple[str, str | None]]] | None:
    other = other_context(ctx)
    if other is None:
        return None
    this_profiles, other_profiles = service_profiles(ctx), service_profiles(other)
    matched = pairs(this_profiles, other_profiles, ctx.settings.services, other.settings.services)
    return other, this_profiles, other_profiles, matched


def _not_configured(cid: str) -> CheckResult:
    return CheckResult(findings=[Finding(cid, Severity.INFO, "drift.compare_with",
                                         "No environment to compare with", NOT_CONFIGURED)])


def _missing_services(cid: str, ctx: Context, profiles: dict) -> list[Finding]:
    return [Finding(cid, Severity.INFO, f"ecs:{ctx.settings.cluster}/{name}", f"{name}: service not found",
                    f"describe_services found no active {name} in {ctx.settings.cluster}; nothing to compare.")
            for name in ctx.settings.services if name not in profiles]


@check(TASKDEF_ENVIRONMENT)
def taskdef_environment(ctx: Context) -> CheckResult:
    """Environment variable and secret names of each service against the other environment."""
    cid = TASKDEF_ENVIRONMENT
    compared = _compare(ctx)
    if compared is None:
        return _not_configured(cid)
    other, mine, theirs, matched = compared
    df = environment_frame(mine, theirs, matched)
    findings = judge_environment(df, matched, ctx.settings.name, other.settings.name, ctx.settings.cluster)
    return CheckResult(findings=findings + _missing_services(cid, ctx, mine), data=df)


@check(TASKDEF_RESOURCES)
def taskdef_resources(ctx: Context) -> CheckResult:
    """CPU, memory, images, health checks and roles of each service against the other environment."""
    cid = TASKDEF_RESOURCES
    compared = _compare(ctx)
    if compared is None:
        return _not_configured(cid)
    other, mine, theirs, matched = compared
    tokens = env_tokens(ctx.settings.name, other.settings.name)
    df = resources_frame(mine, theirs, matched, tokens)
    findings = judge_resources(df, matched, ctx.settings.name, other.settings.name, ctx.settings.cluster)
    return CheckResult(findings=findings + _missing_services(cid, ctx, mine), data=df)


@check(NETWORK_SECURITY_GROUPS)
def network_security_groups(ctx: Context) -> CheckResult:
    """Ingress rules of the services' security groups against the other environment."""
    cid = NETWORK_SECURITY_GROUPS
    compared = _compare(ctx)
    if compared is None:
        return _not_configured(cid)
    other, mine, theirs, matched = compared
    tokens = env_tokens(ctx.settings.name, other.settings.name)
    df = rules_frame(security_group_rules(ctx, mine, tokens), security_group_rules(other, theirs, tokens), matched)
    findings = judge_security_groups(df, matched, ctx.settings.name, other.settings.name, ctx.settings.cluster)
    return CheckResult(findings=findings + _missing_services(cid, ctx, mine), data=df)
