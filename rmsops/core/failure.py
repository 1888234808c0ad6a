"""Turn any exception a check meets into one line a person can act on.

These lines become ``error`` findings; they never carry a traceback or a secret.
"""

from __future__ import annotations

import sys
import threading
from typing import Any

from rmsops.core import awsretry, secrets

_DENIED = {"AccessDenied", "AccessDeniedException", "UnauthorizedOperation",
           "UnauthorizedException", "AuthorizationError", "AuthFailure"}

_last_call = threading.local()


# Where the IAM action differs from "<signing name>:<operation>".
_IAM_PREFIX = {"monitoring": "cloudwatch"}
_IAM_ACTION = {"s3:ListObjectsV2": "s3:ListBucket", "s3:ListObjects": "s3:ListBucket"}


def iam_action_of(model: Any) -> str:
    """The IAM action that allows a botocore operation (e.g. ``cloudwatch:GetMetricData``)."""
    signing = model.service_model.signing_name
    action = f"{_IAM_PREFIX.get(signing, signing)}:{model.name}"
    return _IAM_ACTION.get(action, action)


def remember_call(model, **_: object) -> None:
    """botocore 'before-parameter-build' hook: which IAM action this thread is attempting.

    Not 'before-call': a handler there that answers (a Stubber, a cache) stops the chain.
    """
    _last_call.action = iam_action_of(model)
    _last_call.operation = model.name


def remember_status(response_dict: dict | None = None, **_: object) -> None:
    """botocore 'before-parse' hook: the HTTP status of this thread's last answer, for an answer
    whose body cannot be parsed (an HTML or plain-text 500 from a proxy or an overloaded service)."""
    _last_call.status = (response_dict or {}).get("status_code", 0)


def remembered_action() -> str:
    return getattr(_last_call, "action", "")


def remember_action(action: str) -> None:
    """For an error raised again elsewhere (the shared cache): the action it was attempting."""
    if action:
        _last_call.action = action


def iam_action(operation: str) -> str:
    action = getattr(_last_call, "action", "")
    same = action.endswith(f":{operation}") or getattr(_last_call, "operation", "") == operation
    return action if action and same else operation


def describe(exc: BaseException) -> str:
    return secrets.redact(_describe(exc))


def _describe(exc: BaseException) -> str:
    return _aws_failure(exc) or _database_failure(exc) or f"{type(exc).__name__}: {_first_line(str(exc))}"


def _aws_failure(exc: BaseException) -> str:
    """What an AWS failure means, or "" when ``exc`` is none."""
    import botocore.exceptions
    import botocore.parsers

    if isinstance(exc, botocore.exceptions.ClientError):
        error = exc.response.get("Error", {})
        code = error.get("Code", "")
        action = iam_action(exc.operation_name)
        if code in _DENIED:
            return f"AWS denied {action} ({code}); grant {action} to the role rmsops runs as"
        why = awsretry.gave_up(exc)
        if code in awsretry.THROTTLING_CODES:
            return f"AWS throttled {action} ({code}); {why or 'retries ran out'}; try again in a minute"
        failed = f"AWS {action} failed: {code}: {_first_line(error.get('Message', ''))}"
        return f"{failed} ({why})" if why else failed
    if isinstance(exc, botocore.parsers.ResponseParserError):
        status = getattr(_last_call, "status", 0)
        action = getattr(_last_call, "action", "") or "a call"
        answer = f"HTTP {status}" if status else "an answer"
        return (f"AWS {action} failed: {answer} with a body that is not the API's format (a proxy or an "
                "overloaded service answered); try again in a minute")
    if isinstance(exc, botocore.exceptions.NoCredentialsError):
        return "no AWS credentials found; set AWS_PROFILE, run `aws sso login`, or set aws.profile"
    if isinstance(exc, botocore.exceptions.EndpointConnectionError | botocore.exceptions.ConnectTimeoutError):
        why = awsretry.gave_up(exc)
        return (f"AWS endpoint unreachable ({getattr(exc, 'kwargs', {}).get('endpoint_url', '?')}); "
                f"{why + '; ' if why else ''}check the network or VPN, aws.region and aws.endpoint_url")
    if isinstance(exc, botocore.exceptions.ReadTimeoutError):
        return "AWS did not answer in time; try again or narrow the window"
    return ""


def _database_failure(exc: BaseException) -> str:
    """What a database failure means, or "" when ``exc`` is none.

    A process that never imported the database layer (the command of a triage) has no database
    error to describe, and need not import psycopg and pandas to say so.
    """
    db = sys.modules.get("rmsops.core.db")
    if db is not None and isinstance(exc, db.DatabaseUnavailable):
        if exc.kind in db.ACCESS_KINDS:
            return f"rmsops could not get into the database ({exc.kind}): {exc}; see db.connectivity"
        return f"database unreachable ({exc.kind}): {exc}"
    if "psycopg" not in sys.modules:
        return ""
    import psycopg

    if isinstance(exc, psycopg.errors.QueryCanceled):
        return "the query hit the statement timeout (database.statement_timeout_ms); the database is busy"
    if isinstance(exc, psycopg.errors.InsufficientPrivilege):
        return f"database permission denied: {_first_line(str(exc))}; GRANT pg_monitor TO the rmsops user"
    if db is not None and isinstance(exc, psycopg.errors.LockNotAvailable):  # an OperationalError; the session is fine
        return (f"the query waited longer than the lock timeout ({db.LOCK_TIMEOUT_MS / 1000:g} s) for a lock another "
                "session holds; the database is busy - see db.locks.blocked")
    if isinstance(exc, psycopg.OperationalError):
        return f"database connection lost: {_first_line(str(exc))}"
    return ""


def _first_line(text: str) -> str:
    lines = text.strip().splitlines()
    return lines[0][:300] if lines else ""
