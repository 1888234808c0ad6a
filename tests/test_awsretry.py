"""The retry policy's decisions, with botocore's hook arguments made by hand (no network).

The same policy against real throttling answers is in test_faults.py (tests/throttled_aws.py).
"""

from __future__ import annotations

from types import SimpleNamespace

import botocore.exceptions
import pytest

from rmsops.core import awsretry, budget


def _operation(service: str = "ecs", name: str = "DescribeServices"):
    return SimpleNamespace(service_model=SimpleNamespace(service_name=service), name=name)


def _throttled(code: str = "ThrottlingException", status: int = 400):
    return (SimpleNamespace(status_code=status), {"Error": {"Code": code}})


def _ask(policy: awsretry.RetryPolicy, attempts: int, response=None, exc=None, service: str = "ecs",
         operation: str = "DescribeServices"):
    request = {"context": {}}
    delay = policy.needs_retry(response=response, attempts=attempts, caught_exception=exc,
                               request_dict=request, operation=_operation(service, operation))
    return delay, request["context"].get(awsretry.GAVE_UP_KEY, "")


@pytest.fixture(autouse=True)
def no_deadline():
    budget.clear()
    yield
    budget.clear()


def test_throttling_is_retried_with_growing_delays_until_the_tries_run_out():
    policy = awsretry.RetryPolicy()
    delays = [_ask(policy, n, _throttled())[0] for n in (1, 2, 3)]
    assert all(d is not None and d > 0 for d in delays)
    assert delays[2] > delays[0] * 1.5  # backoff (jitter keeps each within [0.5, 1] of its step)
    delay, why = _ask(policy, awsretry.MAX_ATTEMPTS, _throttled())
    assert delay is None and why == f"retries ran out ({awsretry.MAX_ATTEMPTS} attempts)"


def test_a_saturated_service_gets_one_try_per_call_and_the_others_keep_their_retries():
    policy = awsretry.RetryPolicy()
    _ask(policy, awsretry.MAX_ATTEMPTS, _throttled())
    delay, why = _ask(policy, 1, _throttled())
    assert delay is None and "earlier calls to ecs in this run were throttled" in why
    assert _ask(policy, 1, _throttled(), service="rds")[0] is not None


def test_the_run_shares_one_budget_of_waiting(monkeypatch):
    monkeypatch.setattr(awsretry.random, "uniform", lambda low, high: high)  # no jitter: a smaller delay could fit
    policy = awsretry.RetryPolicy(sleep_budget=1.0)
    slept = 0.0
    while (delay := _ask(policy, 1, _throttled(), service=f"s{slept}")[0]) is not None:
        slept += delay
    assert slept <= 1.0
    assert "retry budget (1 s of waiting) ran out" in _ask(policy, 1, _throttled(), service="other")[1]


def test_no_retry_waits_past_the_run_s_deadline():
    budget.start(0.5)
    delay, why = _ask(awsretry.RetryPolicy(), 1, _throttled())
    assert delay is None and why == "the run's time budget ran out"


@pytest.mark.parametrize(("response", "retried"), [
    (_throttled("RequestLimitExceeded", 503), True), (_throttled("SlowDown", 503), True),
    (_throttled("InternalError", 500), True), (_throttled("Whatever", 502), True),
    (_throttled("AccessDeniedException", 400), False), (_throttled("ValidationError", 400), False),
    ((SimpleNamespace(status_code=200), {}), False),
])
def test_what_is_retried(response, retried):
    assert (_ask(awsretry.RetryPolicy(), 1, response)[0] is not None) is retried


def test_a_connection_error_gets_one_retry_and_carries_why_it_stopped():
    policy = awsretry.RetryPolicy()
    exc = botocore.exceptions.EndpointConnectionError(endpoint_url="http://127.0.0.1:9")
    assert _ask(policy, 1, exc=exc)[0] is not None
    delay, why = _ask(policy, awsretry.MAX_CONNECTION_ATTEMPTS, exc=exc)
    assert delay is None and awsretry.gave_up(exc) == why == "retries ran out (2 attempts)"


def test_the_logs_insights_query_limit_is_left_to_the_caller_and_saturates_nothing():
    """StartQuery's LimitExceededException means "too many queries running": logquery waits for a
    slot within its deadline; other logs calls keep their retries."""
    policy = awsretry.RetryPolicy()
    full = _throttled("LimitExceededException")
    for attempts in range(1, awsretry.MAX_ATTEMPTS + 2):
        assert _ask(policy, attempts, full, service="logs", operation="StartQuery") == (None, "")
    assert "logs" not in policy.saturated
    assert _ask(policy, 1, full, service="logs", operation="FilterLogEvents")[0] is not None
