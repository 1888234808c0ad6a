"""Retries of AWS calls, capped per call and per run, inside the run's time budget.

During an incident AWS throttles the very account being diagnosed. botocore's adaptive mode then
rate-limits every later call of the same client, and a health check took minutes. Here botocore
retries nothing itself (``max_attempts`` 1) and ``RetryPolicy`` decides instead:

* throttling, 5xx answers and connection errors are retried with jittered exponential backoff,
  at most ``MAX_ATTEMPTS`` tries per call (connection errors: two, each costs a connect timeout);
* once a call to a service has used all its tries, later calls to that service in this run get
  one try each: the service is saturated, and waiting longer would only spend the budget;
* the retries of one run share ``RETRY_SLEEP_BUDGET_SECONDS`` of sleeping;
* no retry sleeps past the run's deadline (``rmsops.core.budget``).

A call that gives up carries the reason in its error (``gave_up``), so the finding says why.
"""

from __future__ import annotations

import contextlib
import random
import threading
from typing import Any

import botocore.exceptions

from rmsops.core import budget

MAX_ATTEMPTS = 4
MAX_CONNECTION_ATTEMPTS = 2
BASE_DELAY_SECONDS = 0.4
MAX_DELAY_SECONDS = 4.0
RETRY_SLEEP_BUDGET_SECONDS = 12.0

THROTTLING_CODES = frozenset({
    "Throttling", "ThrottlingException", "ThrottledException", "RequestThrottledException",
    "TooManyRequestsException", "ProvisionedThroughputExceededException", "TransactionInProgressException",
    "RequestLimitExceeded", "BandwidthLimitExceeded", "LimitExceededException", "RequestThrottled",
    "SlowDown", "PriorRequestNotComplete", "EC2ThrottledException",
})
# (service, operation, code) that is no throttling of the call rate but a wait for a resource: the
# caller waits as long as its own deadline allows, and the service is not marked saturated for it.
# Logs Insights' concurrent-query limit frees a slot whenever another query of the account ends.
CALLER_WAITS = frozenset({("logs", "StartQuery", "LimitExceededException")})
TRANSIENT_CODES = frozenset({"RequestTimeout", "RequestTimeoutException", "InternalError", "InternalFailure",
                             "ServiceUnavailable", "InternalServerError"})
TRANSIENT_STATUS = frozenset({500, 502, 503, 504})
_CONNECTION_ERRORS = (botocore.exceptions.ConnectionError, botocore.exceptions.HTTPClientError)
GAVE_UP_KEY = "RmsopsGaveUp"  # in a failed call's response: why it was not retried (again)


class RetryPolicy:
    """One per run (``AwsClients``): which services are saturated, how much waiting was spent."""

    def __init__(self, sleep_budget: float = RETRY_SLEEP_BUDGET_SECONDS):
        self.sleep_budget = sleep_budget
        self.slept = 0.0
        self.saturated: set[str] = set()
        self.retries = 0
        self._lock = threading.Lock()

    def needs_retry(self, response: Any = None, attempts: int = 1, caught_exception: Exception | None = None,
                    request_dict: dict | None = None, operation: Any = None, **_: Any) -> float | None:
        """botocore's ``needs-retry`` hook: seconds to sleep before trying again, or None."""
        kind = _retryable(response, caught_exception)
        if kind is None:
            return None
        service = operation.service_model.service_name if operation is not None else "?"
        if (service, getattr(operation, "name", ""), _code(response)) in CALLER_WAITS:
            return None
        context = (request_dict or {}).get("context")
        limit = MAX_CONNECTION_ATTEMPTS if kind == "connection" else MAX_ATTEMPTS
        delay = min(MAX_DELAY_SECONDS, BASE_DELAY_SECONDS * 2 ** (attempts - 1)) * random.uniform(0.5, 1.0)
        with self._lock:
            if service in self.saturated:
                reason = f"not retried: earlier calls to {service} in this run were {_said(kind)} until retries ran out"
            elif attempts >= limit:
                self.saturated.add(service)
                reason = f"retries ran out ({attempts} attempts)"
            elif self.slept + delay > self.sleep_budget:
                reason = f"the run's retry budget ({self.sleep_budget:g} s of waiting) ran out"
            elif (left := budget.remaining()) is not None and left < delay + 1:
                reason = "the run's time budget ran out"
            else:
                self.slept += delay
                self.retries += 1
                return delay
        if isinstance(context, dict):
            context[GAVE_UP_KEY] = reason
        if caught_exception is not None:
            _mark(caught_exception, reason)
        return None

    def after_call(self, parsed: dict | None = None, context: dict | None = None, **_: Any) -> None:
        """botocore's ``after-call`` hook: put the give-up reason into the error response."""
        if context and GAVE_UP_KEY in context and isinstance(parsed, dict) and "Error" in parsed:
            parsed[GAVE_UP_KEY] = context[GAVE_UP_KEY]

    def register(self, client: Any) -> None:
        client.meta.events.register("needs-retry", self.needs_retry, unique_id="rmsops-retry-policy")
        client.meta.events.register("after-call", self.after_call, unique_id="rmsops-retry-after-call")


def _code(response: Any) -> str:
    """The error code of a botocore (http, parsed) response; "" for none."""
    if not response:
        return ""
    parsed = response[1]
    return (parsed or {}).get("Error", {}).get("Code", "") if isinstance(parsed, dict) else ""


def _retryable(response: Any, caught_exception: Exception | None) -> str | None:
    if caught_exception is not None:
        return "connection" if isinstance(caught_exception, _CONNECTION_ERRORS) else None
    if not response:
        return None
    code = _code(response)
    if code in THROTTLING_CODES:
        return "throttled"
    if code in TRANSIENT_CODES or getattr(response[0], "status_code", 0) in TRANSIENT_STATUS:
        return "failing"
    return None


def _said(kind: str) -> str:
    return {"throttled": "throttled", "connection": "unreachable"}.get(kind, "failing")


def _mark(exc: Exception, reason: str) -> None:
    with contextlib.suppress(AttributeError):
        exc.rmsops_gave_up = reason  # type: ignore[attr-defined]


def gave_up(exc: BaseException) -> str:
    """Why a failed AWS call was not retried (again), if the policy decided it."""
    response = getattr(exc, "response", None)
    if isinstance(response, dict) and response.get(GAVE_UP_KEY):
        return str(response[GAVE_UP_KEY])
    return str(getattr(exc, "rmsops_gave_up", ""))
