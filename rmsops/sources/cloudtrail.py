"""CloudTrail event history (``lookup_events``) in the window, as one DataFrame.

``lookup_events`` covers the last 90 days of management events in one region, 50
events a page, at most 2 requests a second per account (``rmsops.core.awsretry`` absorbs
the throttling), and takes **one** lookup attribute per call. So a question such as
"write events, root activity and console sign-ins" is several paginated lookups whose
answers are merged by ``EventId``. Each is asked in the environment's region and in
us-east-1, where CloudTrail records the global services' events (IAM, STS, console
sign-in): an access key created or a root sign-in would otherwise be invisible to an
environment outside us-east-1 (``rmsops.sources.regions.cloudtrail_regions``).

Each row keeps what a person needs to judge an event (who, what, from where, on
which resource, the outcome) parsed out of the ``CloudTrailEvent`` JSON. The JSON
itself is not kept: request parameters are reduced to a short, sanitised summary
(keys that look like secrets are dropped) and access key ids are masked to their
last four characters. Events reach the history 5 to 15 minutes after the call.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

import pandas as pd

from rmsops.core.findings import iso
from rmsops.sources import regions

if TYPE_CHECKING:
    from rmsops.core.context import Context
    from rmsops.core.window import Window

COLUMNS = ["time", "event_id", "event_name", "event_source", "username", "identity_type", "principal",
           "source_ip", "aws_region", "user_agent", "invoked_by", "read_only", "error_code",
           "error_message", "login_result", "mfa_used", "resources", "access_key", "request", "open_cidrs"]
# The lookups behind the security checks: every write event, everything root did (read-only
# included), and every console sign-in (whatever its ReadOnly flag).
SECURITY_LOOKUPS: tuple[tuple[str, str], ...] = (("ReadOnly", "false"), ("Username", "root"),
                                                 ("EventName", "ConsoleLogin"))
MAX_EVENTS = 10_000  # per lookup; an hour of a busy account's writes is a few thousand
_SECRET_KEY = re.compile(r"(?i)secret|password|passwd|token|private|credential|signature")
REQUEST_CHARS = 300


def mask_key(key_id: str | None) -> str:
    """An access key id with all but its last four characters masked: ``****************WXYZ``."""
    text = str(key_id or "")
    if not text:
        return ""
    return "*" * max(0, len(text) - 4) + text[-4:]


def events(ctx: Context, lookups: Sequence[tuple[str, str]] = SECURITY_LOOKUPS,
           window: Window | None = None, max_events: int = MAX_EVENTS) -> pd.DataFrame:
    """The events of the window matching any of ``lookups`` (``()``: all events), newest first.

    Read in every region of ``cloudtrail_regions`` and merged. Fetched once per run and window
    (``ctx.memo``): the checks of runbooks 12, 13 and 18 share it. ``attrs["regions"]`` names the
    regions read.
    """
    window = window or ctx.window
    where = regions.cloudtrail_regions(ctx.settings.aws.region)
    key = f"cloudtrail:{','.join(where)}:{iso(window.start)}:{iso(window.end)}:{sorted(lookups)}:{max_events}"

    def fetch() -> pd.DataFrame:
        raw: dict[str, dict[str, Any]] = {}
        truncated = False
        for region in where:
            for attribute in (lookups or [None]):
                found, cut = lookup(ctx, window, attribute, max_events, region=region)
                truncated |= cut
                for event in found:
                    raw.setdefault(event.get("EventId") or f"#{len(raw)}", event)
        frame = frame_of(raw.values())
        frame.attrs["truncated"] = truncated
        frame.attrs["regions"] = list(where)
        return frame

    return ctx.memo(key, fetch)


def lookup(ctx: Context, window: Window, attribute: tuple[str, str] | None = None,
           max_events: int = MAX_EVENTS, region: str | None = None) -> tuple[list[dict[str, Any]], bool]:
    """Raw ``Events`` of one paginated lookup in ``region`` (default: the environment's); True as
    second value when ``max_events`` cut it."""
    client = ctx.client("cloudtrail", region)
    kwargs: dict[str, Any] = {"StartTime": window.start, "EndTime": window.end}
    if attribute:
        kwargs["LookupAttributes"] = [{"AttributeKey": attribute[0], "AttributeValue": attribute[1]}]
    found: list[dict[str, Any]] = []
    for page in client.get_paginator("lookup_events").paginate(**kwargs):
        found += page.get("Events", [])
        if len(found) >= max_events:
            return found[:max_events], True
    return found, False


def frame_of(raw_events: Any) -> pd.DataFrame:
    """Rows of COLUMNS from raw ``lookup_events`` entries, newest first."""
    rows = [row(event) for event in raw_events]
    frame = pd.DataFrame(rows, columns=COLUMNS)
    if frame.empty:
        frame["time"] = pd.to_datetime(frame["time"], utc=True)
        return frame
    frame["time"] = pd.to_datetime(frame["time"], utc=True)
    return frame.sort_values("time", ascending=False, kind="stable").reset_index(drop=True)


def row(event: dict[str, Any]) -> dict[str, Any]:
    """One event as a flat record (no secrets: masked key ids, sanitised request summary)."""
    try:
        detail = json.loads(event.get("CloudTrailEvent") or "{}")
    except (TypeError, ValueError):
        detail = {}
    if not isinstance(detail, dict):
        detail = {}
    identity = detail.get("userIdentity") or {}
    responses = detail.get("responseElements") if isinstance(detail.get("responseElements"), dict) else {}
    extra = detail.get("additionalEventData") if isinstance(detail.get("additionalEventData"), dict) else {}
    when = event.get("EventTime") or detail.get("eventTime")
    if isinstance(when, str):
        when = pd.Timestamp(when)
    resources = [f"{r.get('ResourceType', '?')}:{_resource_name(r)}" for r in event.get("Resources") or []]
    read_only = event.get("ReadOnly", detail.get("readOnly"))
    return {
        "time": when if isinstance(when, datetime | pd.Timestamp) else None,
        "event_id": event.get("EventId") or detail.get("eventID", ""),
        "event_name": event.get("EventName") or detail.get("eventName", ""),
        "event_source": event.get("EventSource") or detail.get("eventSource", ""),
        "username": event.get("Username") or identity.get("userName") or _session_name(identity),
        "identity_type": identity.get("type", ""),
        "principal": identity.get("arn", ""),
        "source_ip": detail.get("sourceIPAddress", ""),
        "aws_region": detail.get("awsRegion", ""),
        "user_agent": str(detail.get("userAgent", ""))[:120],
        "invoked_by": identity.get("invokedBy", ""),
        "read_only": str(read_only).lower() == "true",
        "error_code": detail.get("errorCode", ""),
        "error_message": str(detail.get("errorMessage", ""))[:200],
        "login_result": str((responses or {}).get("ConsoleLogin", "")),
        "mfa_used": str((extra or {}).get("MFAUsed", "")),
        "resources": ", ".join(resources),
        "access_key": mask_key(event.get("AccessKeyId") or identity.get("accessKeyId")),
        "request": summarise(detail.get("requestParameters")),
        "open_cidrs": ", ".join(open_cidrs(json.dumps(detail.get("requestParameters") or {}))),
    }


def _resource_name(resource: dict[str, Any]) -> str:
    name = str(resource.get("ResourceName", "?"))
    return mask_key(name) if "AccessKey" in str(resource.get("ResourceType", "")) else name


def _session_name(identity: dict[str, Any]) -> str:
    arn = str(identity.get("arn", ""))
    return arn.rsplit("/", 1)[-1] if "/" in arn else arn


def sanitise(value: Any) -> Any:
    """Request parameters without anything whose key looks like a secret; access key ids masked."""
    if isinstance(value, dict):
        return {k: mask_key(v) if str(k).lower() == "accesskeyid" else sanitise(v)
                for k, v in value.items() if not _SECRET_KEY.search(str(k))}
    if isinstance(value, list):
        return [sanitise(v) for v in value]
    return value


def summarise(params: Any) -> str:
    """Compact JSON of the sanitised request parameters, capped at REQUEST_CHARS."""
    if not params:
        return ""
    text = json.dumps(sanitise(params), separators=(",", ":"), sort_keys=True, default=str)
    return text if len(text) <= REQUEST_CHARS else text[:REQUEST_CHARS - 1] + "\N{HORIZONTAL ELLIPSIS}"


def open_cidrs(text: str) -> list[str]:
    """World-open CIDRs (0.0.0.0/0, ::/0) named in a request's JSON."""
    return [c for c in ("0.0.0.0/0", "::/0") if f'"{c}"' in (text or "")]
