"""Turn any exception a check meets into one line a person can act on.

These lines become ``error`` findings; they never carry a traceback or a secret.
"""

from __future__ import annotations

import threading
from typing import Any

import botocore.exceptions
import psycopg

from rmsops import secrets
from rmsops.db import DatabaseUnavailable

_DENIED = {"AccessDenied", "AccessDeniedException", "UnauthorizedOperation",
           "UnauthorizedException", "AuthorizationError", "AuthFailure"}
_THROTTLED = {"Throttling", "ThrottlingException", "RequestLimitExceeded",
              "TooManyRequestsException", "RequestThrottled"}

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
    if isinstance(exc, botocore.exceptions.ClientError):
        error = exc.response.get("Error", {})
        code = error.get("Code", "")
        action = iam_action(exc.operation_name)
        if code in _DENIED:
            return f"AWS denied {action} ({code}); grant {action} to the role rmsops runs as"
        if code in _THROTTLED:
            return f"AWS throttled {action} ({code}) and retries ran out; try again in a minute"
        return f"AWS {action} failed: {code}: {_first_line(error.get('Message', ''))}"
    if isinstance(exc, botocore.exceptions.NoCredentialsError):
        return "no AWS credentials found; set AWS_PROFILE, run `aws sso login`, or set aws.profile"
    if isinstance(exc, botocore.exceptions.EndpointConnectionError | botocore.exceptions.ConnectTimeoutError):
        return (f"AWS endpoint unreachable ({getattr(exc, 'kwargs', {}).get('endpoint_url', '?')}); "
                "check the network or VPN, aws.region and aws.endpoint_url")
    if isinstance(exc, botocore.exceptions.ReadTimeoutError):
        return "AWS did not answer in time; try again or narrow the window"
    if isinstance(exc, DatabaseUnavailable):
        return f"database unreachable ({exc.kind}): {exc}"
    if isinstance(exc, psycopg.errors.QueryCanceled):
        return "the query hit the statement timeout (database.statement_timeout_ms); the database is busy"
    if isinstance(exc, psycopg.errors.InsufficientPrivilege):
        return f"database permission denied: {_first_line(str(exc))}; GRANT pg_monitor TO the rmsops user"
    if isinstance(exc, psycopg.OperationalError):
        return f"database connection lost: {_first_line(str(exc))}"
    return f"{type(exc).__name__}: {_first_line(str(exc))}"


def _first_line(text: str) -> str:
    lines = text.strip().splitlines()
    return lines[0][:300] if lines else ""
