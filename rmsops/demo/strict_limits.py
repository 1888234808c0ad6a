"""AWS's per-call maxima and small pages on the demo's emulator (``RMSOPS_DEMO_STRICT_LIMITS=1``).

moto answers a DescribeServices of 50 services and lists every task in one page, so code that
forgets a maximum or a ``nextToken`` passes against it and fails against a big AWS account. With
the variable set, the served demo (or ``rmsops demo`` triaging it) behaves as AWS does on both:

* **Maxima.** A call naming more items than AWS takes is refused with AWS's error:

  ============================  =====================  ====  ===================================================
  API                           parameter              max   error (AWS's text where it is known)
  ============================  =====================  ====  ===================================================
  ecs DescribeServices          services               10    InvalidParameterException "service names can have
                                                             at most 10 items."
  ecs DescribeTasks             tasks                  100   InvalidParameterException "tasks can have at most
                                                             100 items." (the documented limit; text by analogy)
  elbv2 DescribeTargetGroups    Names                  20    ValidationError "You cannot describe more than
                                                             '20' target groups at a time"
  cloudwatch GetMetricData      MetricDataQueries      500   InvalidParameterValue "The collection ... must not
                                                             have a size greater than 500." (CloudWatch's form)
  cloudwatch DescribeAlarms     AlarmNames             100   as above, 100 (the service model's maximum)
  logs StartQuery               logGroupNames          50    InvalidParameterException (documented limit)
  xray BatchGetTraces           TraceIds               5     InvalidRequestException (AWS's limit, as rmsops uses it)
  ============================  =====================  ====  ===================================================

  moto checks none of these. ELBv2 DescribeTargetHealth takes one target group by its shape.

* **Pages of two.** The list and describe APIs rmsops pages answer PAGE_SIZE items at a time with
  a token (FilterLogEvents EVENTS_PAGE), so every pagination path runs: ECS ListTasks and ListTaskDefinitions, ELBv2
  DescribeTargetGroups, DescribeListeners and DescribeListenerCertificates, CloudWatch
  GetMetricData (by result) and DescribeAlarms, Logs FilterLogEvents and DescribeLogGroups, X-Ray
  GetTraceSummaries and BatchGetTraces, RDS DescribeDBSnapshots and
  DescribeDBInstanceAutomatedBackups, IAM ListUsers and ListAccessKeys, Secrets Manager
  ListSecrets, ACM ListCertificates and CloudFront ListDistributions. moto pages none of the ECS,
  ELBv2 (but DescribeLoadBalancers), CloudWatch, X-Ray, RDS or ACM ones at all, and the others only
  at their default page sizes (50 to 10 000), which the demo never reaches: here moto's full answer
  is cut into pages, the token being the offset. CloudTrail LookupEvents (the demo's own, moto has
  none) and S3 ListObjectsV2 page natively, so their page size is lowered to PAGE_SIZE instead.
  ListTaskDefinitions honours ``sort=DESC`` as AWS does (moto ignores it and lists oldest first).

Installed after the demo is seeded (its seeders may list without paging), removed with it.
"""

from __future__ import annotations

import importlib
import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from unittest import mock

from moto.core.exceptions import ServiceException
from moto.core.responses import ActionResult

ENV = "RMSOPS_DEMO_STRICT_LIMITS"
PAGE_SIZE = 2
EVENTS_PAGE = 100  # FilterLogEvents' page (AWS's is up to 10 000 events or 1 MB)
TOKEN_PREFIX = "rmsops-strict-page:"


class LimitExceeded(ServiceException):
    """AWS's refusal of a call above a maximum (a class of this module: moto serialises it with the
    model of the service that was called, as it does its own errors)."""


def enabled() -> bool:
    return os.environ.get(ENV, "").strip().lower() in {"1", "true", "yes", "on"}


@dataclass(frozen=True)
class Maximum:
    """At most ``most`` items in the list parameter ``param``; else AWS's ``code`` and ``message``."""

    param: str
    most: int
    code: str
    message: str


@dataclass(frozen=True)
class Pages:
    """Cut the answer's ``items`` lists (dotted paths) into pages, with ``token_in``/``token_out``."""

    items: tuple[str, ...]
    token_in: str
    token_out: str
    more_flag: str = ""  # a boolean "there is more" (IAM's IsTruncated, CloudFront's)
    count: str = ""  # the number of items on the page (CloudFront's Quantity)
    descending: str = ""  # a parameter that, set to DESC, reverses the items (ListTaskDefinitions' sort)
    size: int = 0  # items a page; 0: PAGE_SIZE


@dataclass(frozen=True)
class Rule:
    response: str  # "module:Class" of moto's response handler
    method: str | tuple[str, ...]  # its method for the operation; the names it has had, where moto renamed it
    maximum: Maximum | None = None
    pages: Pages | None = None
    page_size: str = ""  # for APIs that page natively: the request's page-size parameter to lower
    in_query: bool = False  # page_size is in the query string (S3's REST protocol)


def _collection(param: str, most: int) -> Maximum:
    return Maximum(param, most, "InvalidParameterValue",
                   f"The collection {param} must not have a size greater than {most}.")


ECS = "moto.ecs.responses:EC2ContainerServiceResponse"
ELB = "moto.elbv2.responses:ELBV2Response"
CW = "moto.cloudwatch.responses:CloudWatchResponse"
LOGS = "moto.logs.responses:LogsResponse"
XRAY = "moto.xray.responses:XRayResponse"
RDS = "moto.rds.responses:RDSResponse"
IAM = "moto.iam.responses:IamResponse"

RULES: tuple[Rule, ...] = (
    Rule(ECS, "describe_services", Maximum("services", 10, "InvalidParameterException",
                                           "service names can have at most 10 items.")),
    Rule(ECS, "describe_tasks", Maximum("tasks", 100, "InvalidParameterException",
                                        "tasks can have at most 100 items.")),
    Rule(ECS, "list_tasks", pages=Pages(("taskArns",), "nextToken", "nextToken")),
    Rule(ECS, "list_task_definitions", pages=Pages(("taskDefinitionArns",), "nextToken", "nextToken",
                                                   descending="sort")),
    Rule(ELB, "describe_target_groups", Maximum("Names", 20, "ValidationError",
                                                "You cannot describe more than '20' target groups at a time"),
         Pages(("TargetGroups",), "Marker", "NextMarker")),
    Rule(ELB, "describe_listeners", pages=Pages(("Listeners",), "Marker", "NextMarker")),
    Rule(ELB, "describe_listener_certificates", pages=Pages(("Certificates",), "Marker", "NextMarker")),
    Rule(CW, "get_metric_data", _collection("MetricDataQueries", 500),
         Pages(("MetricDataResults",), "NextToken", "NextToken")),
    Rule(CW, "describe_alarms", _collection("AlarmNames", 100),
         Pages(("MetricAlarms", "CompositeAlarms"), "NextToken", "NextToken")),
    # the demo's log groups hold thousands of events: pages of two would take a minute (moto filters
    # the whole group for each page); EVENTS_PAGE still makes every read of them take several pages
    Rule(LOGS, "filter_log_events", pages=Pages(("events",), "nextToken", "nextToken", size=EVENTS_PAGE)),
    Rule(LOGS, "describe_log_groups", pages=Pages(("logGroups",), "nextToken", "nextToken")),
    Rule(LOGS, "start_query", Maximum("logGroupNames", 50, "InvalidParameterException",
                                      "logGroupNames can have at most 50 items.")),
    Rule(XRAY, ("get_trace_summaries", "trace_summaries"), pages=Pages(("TraceSummaries",), "NextToken", "NextToken")),
    Rule(XRAY, ("batch_get_traces", "traces"),
         Maximum("TraceIds", 5, "InvalidRequestException", "TraceIds can have at most 5 items."),
         Pages(("Traces",), "NextToken", "NextToken")),
    Rule(RDS, "describe_db_snapshots", pages=Pages(("DBSnapshots",), "Marker", "Marker")),
    Rule(RDS, "describe_db_instance_automated_backups",
         pages=Pages(("DBInstanceAutomatedBackups",), "Marker", "Marker")),
    Rule(IAM, "list_users", pages=Pages(("Users",), "Marker", "Marker", more_flag="IsTruncated")),
    Rule(IAM, "list_access_keys", pages=Pages(("AccessKeyMetadata",), "Marker", "Marker", more_flag="IsTruncated")),
    Rule("moto.secretsmanager.responses:SecretsManagerResponse", "list_secrets",
         pages=Pages(("SecretList",), "NextToken", "NextToken")),
    Rule("moto.acm.responses:AWSCertificateManagerResponse", "list_certificates",
         pages=Pages(("CertificateSummaryList",), "NextToken", "NextToken")),
    Rule("moto.cloudfront.responses:CloudFrontResponse", "list_distributions",
         pages=Pages(("DistributionList.Items",), "Marker", "DistributionList.NextMarker",
                     more_flag="DistributionList.IsTruncated", count="DistributionList.Quantity")),
    Rule("moto.cloudtrail.responses:CloudTrailResponse", "lookup_events", page_size="MaxResults"),
    Rule("moto.s3.responses:S3Response", "list_objects_v2", page_size="max-keys", in_query=True),
)


def install(rules: tuple[Rule, ...] = RULES) -> Callable[[], None]:
    """Wrap moto's handlers (whatever they are now: the demo's own patches included); returns the undo."""
    patchers = []
    for rule in rules:
        module, name = rule.response.split(":")
        handler = getattr(importlib.import_module(module), name)
        names = (rule.method,) if isinstance(rule.method, str) else rule.method
        method = next((n for n in names if hasattr(handler, n)), None)
        if method is None:
            continue  # moto has none (CloudTrail's lookup_events outside the demo, which adds its own)
        patcher = mock.patch.object(handler, method, _strict(getattr(handler, method), rule))
        patcher.start()
        patchers.append(patcher)

    def remove() -> None:
        while patchers:
            patchers.pop().stop()

    return remove


def _strict(original: Callable[[Any], Any], rule: Rule) -> Callable[[Any], Any]:
    def handle(self: Any) -> Any:
        if rule.maximum is not None:
            named = _param(self, rule.maximum.param) or []
            if len(named) > rule.maximum.most:
                raise LimitExceeded(rule.maximum.code, rule.maximum.message)
        if rule.page_size:
            asked = _param(self, rule.page_size, rule.in_query)
            if not asked or int(asked) > PAGE_SIZE:
                _set_param(self, rule.page_size, PAGE_SIZE, rule.in_query)
        if rule.pages is None:
            return original(self)
        token = _param(self, rule.pages.token_in)
        offset = 0
        if isinstance(token, str) and token.startswith(TOKEN_PREFIX):
            offset = int(token.removeprefix(TOKEN_PREFIX))
            _set_param(self, rule.pages.token_in, None)  # moto answers from the start: the page is cut here
        descending = bool(rule.pages.descending) and _param(self, rule.pages.descending) == "DESC"
        return _page(original(self), rule.pages, offset, descending)

    handle.__name__ = original.__name__
    return handle


def _param(self: Any, name: str, in_query: bool = False) -> Any:
    if in_query:
        return (self.querystring.get(name) or [None])[0]
    return self._get_param(name)


def _set_param(self: Any, name: str, value: Any, in_query: bool = False) -> None:
    """Change (None: remove) a request parameter where moto's handler will read it."""
    if in_query:
        self.querystring.pop(name, None)
        if value is not None:
            self.querystring[name] = [str(value)]
        return
    if getattr(self, "automated_parameter_parsing", False):
        self.params.pop(name, None)
        if value is not None:
            self.params[name] = value
        return
    body = json.loads(self.body or "{}")
    body.pop(name, None)
    if value is not None:
        body[name] = value
    self.body = json.dumps(body)


def _page(answer: Any, pages: Pages, offset: int, descending: bool) -> Any:
    """The page of ``answer`` (an ActionResult, a JSON text or (text, headers)) from ``offset``."""
    if isinstance(answer, ActionResult):
        if not isinstance(answer.result, dict):
            return answer
        return ActionResult(_cut(answer.result, pages, offset, descending))
    if isinstance(answer, tuple):
        body, headers = answer[0], answer[-1]
        if int(headers.get("status", 200)) >= 300:
            return answer
        return (json.dumps(_cut(json.loads(body), pages, offset, descending)), *answer[1:])
    if isinstance(answer, str):
        return json.dumps(_cut(json.loads(answer), pages, offset, descending))
    return answer


def _cut(result: dict[str, Any], pages: Pages, offset: int, descending: bool) -> dict[str, Any]:
    result = _copy(result)
    if _get(result, pages.token_out):
        raise LimitExceeded("InternalFailure", f"strict limits: moto paged {pages.items[0]} itself; "
                                                  "the demo holds more than its default page")
    lists = {path: list(_get(result, path) or []) for path in pages.items}
    if descending:
        lists = {path: items[::-1] for path, items in lists.items()}
    size = pages.size or PAGE_SIZE
    total = max((len(items) for items in lists.values()), default=0)
    for path, items in lists.items():
        _put(result, path, items[offset:offset + size])
    more = offset + size < total
    _put(result, pages.token_out, f"{TOKEN_PREFIX}{offset + size}" if more else None)
    if pages.more_flag:
        _put(result, pages.more_flag, more)
    if pages.count:
        _put(result, pages.count, len(_get(result, pages.items[0]) or []))
    return result


def _copy(value: Any) -> Any:
    """A copy of the answer's dicts and lists (moto's objects inside are shared, not copied)."""
    if isinstance(value, dict):
        return {key: _copy(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_copy(item) for item in value]
    return value


def _get(result: dict[str, Any], path: str) -> Any:
    node: Any = result
    for key in path.split("."):
        if not isinstance(node, dict):
            return None
        node = node.get(key)
    return node


def _put(result: dict[str, Any], path: str, value: Any) -> None:
    *parents, last = path.split(".")
    node = result
    for key in parents:
        node = node.setdefault(key, {})
    if value is None:
        node.pop(last, None)
    else:
        node[last] = value
