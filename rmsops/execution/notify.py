"""Notifications of an incident bundle: one message composed from the bundle, delivered to every target.

``rmsops watch`` runs a triage when an alarm fires, then calls ``compose`` and ``deliver``. Targets:

* ``https://HOST/PATH`` (or ``http://``): a Slack-compatible incoming webhook gets ``{"text", "blocks"}``.
  Its path is the secret (whoever knows it can post), so only ``scheme://host/…`` is ever shown.
* ``sns:arn:aws:sns:REGION:ACCOUNT:TOPIC``: ``Publish`` to the topic, in the topic's region, with the
  clients every check uses (``docs/iam-policy-notify.json`` grants it; ``tests/test_safety.py`` reads the
  calls from this file, so they are made on clients named ``sns`` only).
* ``cmd:PROGRAM ARGS...``: the program runs (no shell) with the bundle's ``findings.json`` as its last
  argument and ``RMSOPS_BUNDLE`` set to the bundle folder.

What a finding says comes from the inspected systems and is untrusted: every string of a message is
redacted, stripped of control characters, capped, and escaped for Slack mrkdwn, so a log line cannot
ping a channel (``<!channel>``) or hide a link. A delivery failure is reported, never raised: one
target down must not keep the others (or the watch) from going on.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from rmsops.core import secrets
from rmsops.core.errors import UserError
from rmsops.core.findings import Finding, Severity, counts, read_document, sort_by_urgency
from rmsops.execution import bundle
from rmsops.render.report import clean

if TYPE_CHECKING:
    from rmsops.core.config import AwsSettings

FORMS = "https://HOST/PATH (a Slack-compatible webhook), sns:arn:aws:sns:REGION:ACCOUNT:TOPIC, or cmd:PROGRAM [ARGS...]"
WEBHOOK_TIMEOUT = 10.0  # seconds per POST
CMD_TIMEOUT = 60.0  # seconds per run of a cmd: target
ESCALATION_CHECK = "escalation.level"
TOP_FINDINGS = 5
# Slack's limits: header text 150, section text 3000, message text 40 000, 50 blocks.
HEADER_LIMIT = 150
SECTION_LIMIT = 3000
TEXT_LIMIT = 40_000
SUBJECT_LIMIT = 99  # SNS: "less than 100 characters", ASCII, no line breaks
# One finding line stays short, so five of them, the headings and the counts fit one section.
CHECK_LIMIT, RESOURCE_LIMIT, TITLE_LIMIT, WHY_LIMIT, PATH_LIMIT, ALARM_LIMIT = 80, 160, 240, 1200, 400, 120
MAX_ALARMS = 10
_SNS_ARN = re.compile(r"arn:aws[a-z-]*:sns:([a-z]{2}(?:-[a-z]+)+-\d):(\d{12}):([\w-]{1,256}(?:\.fifo)?)")
_LEVEL_HEAD = re.compile(r"Escalation level \d+ \([^)]*\)")
_MRKDWN = str.maketrans({"&": "&amp;", "<": "&lt;", ">": "&gt;"})


def print_to_stderr(line: str) -> None:
    """The default log: one line on stderr, where the watch's own lines go."""
    print(line, file=sys.stderr, flush=True)


# --- targets --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    kind: str  # "webhook" | "sns" | "cmd"
    value: str  # the URL, the topic ARN, or the command line

    @property
    def label(self) -> str:
        """What may be printed: a webhook's path is its secret, a command's arguments may hold one."""
        if self.kind == "webhook":
            return _url_label(self.value)
        if self.kind == "cmd":
            return secrets.redact(os.path.basename(_argv(self.value)[0]))
        return self.value

    def __repr__(self) -> str:  # the dataclass repr would print a webhook's URL
        return f"Target({self.kind}: {self.label})"


def parse_target(spec: str) -> Target:
    """A ``--notify`` value checked before anything runs, so a typo is a usage error, not a lost page."""
    text = spec.strip()
    lowered = text.lower()
    if lowered.startswith(("https://", "http://")):
        return _webhook_target(text)
    if lowered.startswith("sns:"):
        return _sns_target(text[4:].strip())
    if lowered.startswith("cmd:"):
        return _cmd_target(text[4:].strip())
    what = f"notify target {_shown(text)} is not understood" if text else "notify target is empty"
    raise UserError(f"{what}; use {FORMS}")


def _webhook_target(url: str) -> Target:
    parts = urlsplit(url)
    if not parts.hostname or any(c.isspace() or not c.isprintable() for c in url):
        raise UserError(f"webhook {_url_label(url)}: expected a URL with a host and no spaces; use {FORMS}")
    secret = _url_secret(url)
    if len(secret) >= 8:  # masked wherever it might appear (a short path would mask too much else)
        secrets.register(secret)
    return Target("webhook", url)


def _sns_target(arn: str) -> Target:
    if not _SNS_ARN.fullmatch(arn):
        raise UserError(f"sns:{clean(arn, 80)!r} is not an SNS topic ARN; use {FORMS}")
    return Target("sns", arn)


def _cmd_target(command: str) -> Target:
    try:
        argv = shlex.split(command)
    except ValueError as exc:
        raise UserError(f"cmd: cannot split the command line ({exc}); use {FORMS}") from None
    if not argv:
        raise UserError(f"cmd: names no program; use {FORMS}")
    if shutil.which(argv[0]) is None:
        raise UserError(f"cmd: program {clean(os.path.basename(argv[0]), 80)!r} not found or not executable")
    return Target("cmd", command)


def _url_label(url: str) -> str:
    parts = urlsplit(url)
    try:
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        port = ""
    return secrets.redact(f"{parts.scheme.lower()}://{clean(parts.hostname or '?', 100)}{port}/…")


def _url_secret(url: str) -> str:
    """Everything after scheme://host: path, query and fragment (what a Slack webhook keeps secret)."""
    parts = urlsplit(url)
    return url[len(f"{parts.scheme}://{parts.netloc}"):]


def _shown(text: str) -> str:
    """An unknown target named without anything that may be a secret (a webhook path, with or without scheme)."""
    if "://" in text:
        return _url_label(text)
    return repr(clean(re.split(r"[/:\s]", text, maxsplit=1)[0], 20) + "…")


def _argv(command: str) -> list[str]:
    try:
        return shlex.split(command) or [""]
    except ValueError:  # a Target made by hand, not by parse_target: still printable
        return command.split() or [""]


# --- composing ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Message:
    text: str
    blocks: list[dict]


@dataclass(frozen=True)
class _Summary:
    """What a bundle says, already made safe for a message (cleaned, redacted, escaped)."""

    environment: str
    alarms: str  # mrkdwn: names in code spans
    alarms_plain: str  # for the header and the SNS subject, which show no markup
    status: str
    level: str  # "Escalation level 0 (critical issue)"
    title: str  # the escalation finding's title, or why there is none
    why: str
    top: list[str]  # one line per critical finding: check, resource, title
    more: int
    tally: str
    path: str
    digest: str


def compose(folder: Path, alarms: Sequence[str], environment: str, *, joined: Sequence[str] = ()) -> Message:
    """The one message of an incident, for every target; a damaged bundle still gets one, saying so."""
    summary = _summarize(Path(folder), alarms, environment, joined)
    return Message(text=_text(summary), blocks=_blocks(summary))


def _summarize(folder: Path, alarms: Sequence[str], environment: str, joined: Sequence[str]) -> _Summary:
    findings, problem = _findings_of(folder)
    escalation = next((f for f in findings if f.check == ESCALATION_CHECK), None)
    criticals = [f for f in sort_by_urgency(findings) if f.severity == Severity.CRITICAL and f is not escalation]
    level, title, why = _level_of(escalation, problem)
    return _Summary(environment=_safe(environment, 80), alarms=_alarms(alarms, joined, _code),
                    alarms_plain=_alarms(alarms, joined, _safe),
                    status=_status_of(folder), level=level, title=title, why=why,
                    top=[_finding_line(f) for f in criticals[:TOP_FINDINGS]],
                    more=max(0, len(criticals) - TOP_FINDINGS),
                    tally=", ".join(f"{s} {n}" for s, n in _tally(findings).items()) if not problem else "unknown",
                    path=_safe(str(folder), PATH_LIMIT), digest=_digest_of(folder))


def _findings_of(folder: Path) -> tuple[list[Finding], str]:
    """The merged findings, or none and why: a missing or damaged findings.json never stops the message."""
    path = folder / "findings.json"
    try:
        return read_document(path)[1], ""
    except FileNotFoundError:
        return [], "findings unreadable: findings.json is missing"
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        return [], f"findings unreadable: {type(exc).__name__}: {exc}"


def _level_of(escalation: Finding | None, problem: str) -> tuple[str, str, str]:
    if problem:
        return "escalation level unknown", _safe(problem, WHY_LIMIT), "The bundle's findings.json could not be read."
    if escalation is None:
        return ("escalation level unknown", "no escalation.level finding in the bundle",
                "The escalation runbook (18) did not judge this triage.")
    head = _LEVEL_HEAD.match(escalation.title)
    return (_safe(head.group(0) if head else "escalation level unknown", 80),
            _safe(escalation.title, TITLE_LIMIT), _safe(escalation.detail, WHY_LIMIT))


def _status_of(folder: Path) -> str:
    try:
        manifest = bundle.read_manifest(folder)
    except UserError as exc:
        return _safe(f"unknown ({exc})", 300)
    status = str(manifest.get("status") or "unknown")
    stopped = str(manifest.get("stopped") or "")
    if status == "complete":
        return "complete"
    return _safe(f"{status.upper()}{f' (stopped: {stopped})' if stopped else ''}; evidence is missing", 300)


def _digest_of(folder: Path) -> str:
    try:
        return bundle.manifest_digest(folder)
    except (UserError, OSError):
        return "unavailable (no manifest.json)"


def _tally(findings: list[Finding]) -> dict[str, int]:
    """Counts per severity, most urgent first (the order a reader scans)."""
    tally = counts(findings)
    return {s.value: tally[s.value] for s in sorted(Severity, key=lambda s: s.rank)}


def _alarms(alarms: Sequence[str], joined: Sequence[str], shown_as: Callable[[object, int], str]) -> str:
    said = _names(alarms, shown_as) or "(no alarm named)"
    return f"{said}; joined by {_names(joined, shown_as)}" if joined else said


def _names(names: Sequence[str], shown_as: Callable[[object, int], str]) -> str:
    shown = ", ".join(shown_as(name, ALARM_LIMIT) for name in names[:MAX_ALARMS])
    return shown + (f" and {len(names) - MAX_ALARMS} more" if len(names) > MAX_ALARMS else "")


def _finding_line(finding: Finding) -> str:
    return (f"{_code(finding.check, CHECK_LIMIT)} {_safe(finding.resource, RESOURCE_LIMIT)}: "
            f"{_safe(finding.title, TITLE_LIMIT)}")


def _safe(value: object, limit: int) -> str:
    """Untrusted text for Slack mrkdwn: redacted, control characters out, capped, ``& < >`` escaped."""
    return " ".join(clean(value, limit).split()).translate(_MRKDWN)


def _code(value: object, limit: int) -> str:
    return f"`{_safe(value, limit).replace('`', chr(39))}`"


def _headline(s: _Summary) -> str:
    return f"rmsops {s.environment}: {s.level}, alarm {s.alarms_plain}"


def _top_lines(s: _Summary) -> list[str]:
    if not s.top:
        return ["No critical findings."]
    return [f"• {line}" for line in s.top] + ([f"and {s.more} more"] if s.more else [])


def _text(s: _Summary) -> str:
    lines = [_headline(s), f"Level: {s.title}", f"Why: {s.why}", f"Bundle: {s.status}",
             "Top critical findings:", *_top_lines(s), f"Findings: {s.tally}",
             f"Bundle folder: {s.path}", f"Manifest sha256: {s.digest}"]
    return _capped("\n".join(lines), TEXT_LIMIT)


def _blocks(s: _Summary) -> list[dict[str, Any]]:
    level = f"*{s.title}*\n{s.why}\n*Alarm:* {s.alarms}\n*Bundle:* {s.status}"
    top = "\n".join(["*Top critical findings*", *_top_lines(s), f"*Findings:* {s.tally}"])
    context = f"Bundle `{s.path}` · manifest sha256 `{s.digest}`"
    return [{"type": "header", "text": {"type": "plain_text", "text": _capped(_headline(s), HEADER_LIMIT)}},
            _section(level), _section(top),
            {"type": "context", "elements": [_mrkdwn(context)]}]


def _section(text: str) -> dict[str, Any]:
    return {"type": "section", "text": _mrkdwn(text)}


def _mrkdwn(text: str) -> dict[str, Any]:
    # verbatim: Slack does not turn bare URLs, #channels or @names into links or mentions
    return {"type": "mrkdwn", "text": _capped(text, SECTION_LIMIT), "verbatim": True}


def _capped(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


# --- delivering -----------------------------------------------------------------------------------


@dataclass
class Delivery:
    target: str  # the label
    ok: bool
    attempts: int
    error: str = ""


class DeliveryError(Exception):
    """One attempt failed; the message is one line, safe to print."""


def deliver(targets: Sequence[Target], message: Message, folder: Path, *, aws: AwsSettings | None = None,
            attempts: int = 3, backoff_seconds: float = 2.0,
            log: Callable[[str], None] = print_to_stderr) -> list[Delivery]:
    """Every target at once, each retried on its own: a slow or failing one delays or stops no other."""
    if not targets:
        return []
    sender = _Sender(message, Path(folder), aws)
    with ThreadPoolExecutor(max_workers=len(targets), thread_name_prefix="rmsops-notify") as pool:
        futures = [pool.submit(_with_retries, sender, t, max(1, attempts), backoff_seconds, log) for t in targets]
        return [future.result() for future in futures]


def _with_retries(sender: _Sender, target: Target, attempts: int, backoff_seconds: float,
                  log: Callable[[str], None]) -> Delivery:
    reason = ""
    for attempt in range(1, attempts + 1):
        try:
            sender.send(target)
            return Delivery(target.label, ok=True, attempts=attempt)
        except Exception as exc:  # noqa: BLE001 - any failure of one target is reported, never raised
            reason = _reason(exc, target)
            log(secrets.redact(f"notify {target.label}: attempt {attempt} of {attempts} failed: {reason}"))
        if attempt < attempts:
            time.sleep(backoff_seconds * 2 ** (attempt - 1))
    return Delivery(target.label, ok=False, attempts=attempts, error=reason)


def _reason(exc: Exception, target: Target) -> str:
    """One line about a failure, with the target's secret parts (a webhook's URL and path) masked."""
    text = str(exc) if isinstance(exc, DeliveryError) else f"{type(exc).__name__}: {exc}"
    if target.kind == "webhook":
        text = text.replace(target.value, target.label)
        secret = _url_secret(target.value)
        text = text.replace(secret, "/…") if len(secret) > 1 else text
    return " ".join(clean(text, 300).split())


class _Sender:
    """Sends one message to one target per call; AWS clients are made once and shared by the SNS targets."""

    def __init__(self, message: Message, folder: Path, aws: AwsSettings | None):
        self.message = message
        self.folder = folder
        self.aws = aws
        self._clients: Any = None
        self._lock = threading.Lock()

    def send(self, target: Target) -> None:
        if target.kind == "webhook":
            _post_webhook(target.value, self.message)
        elif target.kind == "sns":
            _publish_sns(self._sns_client(target.value), target.value, self.message)
        elif target.kind == "cmd":
            _run_command(target.value, self.folder)
        else:
            raise DeliveryError(f"unknown target kind {target.kind!r}")

    def _sns_client(self, arn: str) -> Any:
        from rmsops.core.aws import AwsClients  # boto3 is imported only when a topic is notified
        from rmsops.core.config import AwsSettings

        match = _SNS_ARN.fullmatch(arn)
        if not match:  # a Target made by hand, not by parse_target
            raise DeliveryError("not an SNS topic ARN")
        region = match.group(1)
        with self._lock:
            if self._clients is None:
                self._clients = AwsClients(self.aws or AwsSettings(region=region))
        return self._clients.client("sns", region)


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    """A webhook that redirects is misconfigured: urllib would re-send the POST as a GET without its body."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):  # noqa: ANN001 - urllib's signature
        return None


_OPENER = urllib.request.build_opener(_NoRedirects)


def _post_webhook(url: str, message: Message) -> None:
    body = json.dumps({"text": message.text, "blocks": message.blocks}, ensure_ascii=False).encode("utf-8")
    request = urllib.request.Request(url, data=body, method="POST",
                                     headers={"Content-Type": "application/json; charset=utf-8"})
    try:
        with _OPENER.open(request, timeout=WEBHOOK_TIMEOUT) as response:
            status = response.status
    except urllib.error.HTTPError as exc:
        answer = exc.read(200).decode("utf-8", errors="replace") if exc.fp else ""
        raise DeliveryError(f"HTTP {exc.code} {exc.reason}{f': {answer}' if answer.strip() else ''}") from None
    except urllib.error.URLError as exc:
        raise DeliveryError(f"cannot reach the webhook: {exc.reason}") from None
    except TimeoutError:
        raise DeliveryError(f"no answer within {WEBHOOK_TIMEOUT:g} s") from None
    if not 200 <= status < 300:
        raise DeliveryError(f"HTTP {status}")


def _publish_sns(sns: Any, arn: str, message: Message) -> None:
    sns.publish(TopicArn=arn, Subject=_subject(message.text), Message=message.text)


def _subject(text: str) -> str:
    """The first line of the message, as SNS wants a subject: ASCII, one line, under 100 characters."""
    first = text.splitlines()[0] if text else "rmsops notification"
    ascii_only = "".join(c if " " <= c <= "~" else "?" for c in first).strip() or "rmsops notification"
    return ascii_only if len(ascii_only) <= SUBJECT_LIMIT else ascii_only[: SUBJECT_LIMIT - 3] + "..."


def _run_command(command: str, folder: Path) -> None:
    argv = [*shlex.split(command), str(folder / "findings.json")]
    env = {**os.environ, "RMSOPS_BUNDLE": str(folder)}
    try:
        returncode, stderr = _run_bounded(argv, env, CMD_TIMEOUT)
    except OSError as exc:
        raise DeliveryError(f"cannot run {os.path.basename(argv[0])}: {exc.strerror or exc}") from None
    if returncode != 0:
        said = f"exit code {returncode}" if returncode > 0 else f"killed by signal {-returncode}"
        last = stderr.strip().splitlines()[-1] if stderr.strip() else ""
        raise DeliveryError(f"{said}{f': {clean(last, 200)}' if last else ''}")


def _run_bounded(argv: list[str], env: dict[str, str], timeout: float) -> tuple[int, str]:
    """Run in a session of its own, so a timeout ends the program and whatever it started, and no pipe hangs."""
    process = subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE, start_new_session=True)
    try:
        _, stderr = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.communicate()
        raise DeliveryError(f"no exit within {timeout:g} s (killed)") from None
    return process.returncode, stderr.decode("utf-8", errors="replace")
