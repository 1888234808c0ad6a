"""rmsops.sources.cloudtrail: lookup_events, paginated and merged into one DataFrame, with nothing secret in it.

moto does not implement CloudTrail ``lookup_events`` (NotImplementedError), so the fetch is tested
with botocore's ``Stubber`` on the context's real client: every request is validated against the
CloudTrail API model (parameter names and types), and the expected parameters (window, lookup
attribute, NextToken) are asserted exactly.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from botocore.stub import Stubber

from rmsops.core.window import Window
from rmsops.sources import cloudtrail

ACCOUNT = "123456789012"
T0 = datetime(2026, 11, 28, 19, 0, tzinfo=UTC)
WINDOW = Window(T0, T0 + timedelta(hours=1))


def raw_event(event_id: str, name: str = "CreateUser", source: str = "iam.amazonaws.com", minutes: float = 10,
              identity: dict | None = None, username: str = "alice", request: dict | None = None,
              response: dict | None = None, extra: dict | None = None, resources=(), read_only: bool = False,
              error: tuple[str, str] | None = None, key: str | None = "AKIAIOSFODNN7EXAMPLE") -> dict:
    """A lookup_events entry as CloudTrail returns it (CloudTrailEvent is a JSON string)."""
    identity = identity or {"type": "IAMUser", "arn": f"arn:aws:iam::{ACCOUNT}:user/{username}",
                            "userName": username, "accountId": ACCOUNT}
    record = {"eventVersion": "1.09", "userIdentity": identity, "eventSource": source, "eventName": name,
              "awsRegion": "us-east-1", "sourceIPAddress": "203.0.113.7", "userAgent": "aws-cli/2",
              "requestParameters": request, "responseElements": response, "readOnly": read_only,
              "eventID": event_id}
    if extra:
        record["additionalEventData"] = extra
    if error:
        record["errorCode"], record["errorMessage"] = error
    event = {"EventId": event_id, "EventName": name, "ReadOnly": str(read_only).lower(),
             "EventTime": T0 + timedelta(minutes=minutes), "EventSource": source, "Username": username,
             "Resources": [{"ResourceType": t, "ResourceName": n} for t, n in resources],
             "CloudTrailEvent": json.dumps(record)}
    if key:
        event["AccessKeyId"] = key
    return event


# --- pure parts ------------------------------------------------------------------------------

@pytest.mark.parametrize(("key", "masked"), [("AKIAIOSFODNN7EXAMPLE", "****************MPLE"),
                                             ("ABCD", "ABCD"), ("", ""), (None, "")])
def test_mask_key_keeps_only_the_last_four(key, masked):
    assert cloudtrail.mask_key(key) == masked


def test_summarise_drops_secret_looking_keys_and_masks_key_ids():
    text = cloudtrail.summarise({"userName": "bob", "password": "hunter2", "newPassword": "x1",
                                 "secretString": "s3cr3t", "nested": [{"sessionToken": "tok", "keep": 1}],
                                 "accessKeyId": "AKIAIOSFODNN7EXAMPLE"})
    assert "hunter2" not in text and "s3cr3t" not in text and "tok" not in text and "x1" not in text
    assert '"userName":"bob"' in text and '"keep":1' in text
    assert "AKIAIOSFODNN7EXAMPLE" not in text and "MPLE" in text


def test_summarise_caps_long_requests():
    text = cloudtrail.summarise({"policyDocument": "x" * 1000})
    assert len(text) == cloudtrail.REQUEST_CHARS and text.endswith("\N{HORIZONTAL ELLIPSIS}")
    assert cloudtrail.summarise(None) == ""


def test_row_parses_the_cloudtrail_event_json():
    event = raw_event("e1", "ConsoleLogin", "signin.amazonaws.com", username="root",
                      identity={"type": "Root", "arn": f"arn:aws:iam::{ACCOUNT}:root"},
                      response={"ConsoleLogin": "Success"}, extra={"MFAUsed": "No"})
    row = cloudtrail.row(event)
    assert row["identity_type"] == "Root" and row["username"] == "root"
    assert row["login_result"] == "Success" and row["mfa_used"] == "No"
    assert row["source_ip"] == "203.0.113.7" and row["aws_region"] == "us-east-1"
    assert row["access_key"] == "****************MPLE" and row["read_only"] is False


def test_row_masks_access_key_resources_and_notes_world_open_cidrs():
    event = raw_event("e2", "AuthorizeSecurityGroupIngress", "ec2.amazonaws.com",
                      request={"groupId": "sg-1", "ipPermissions": {"items": [
                          {"ipRanges": {"items": [{"cidrIp": "0.0.0.0/0"}]}}]}},
                      resources=[("AWS::EC2::SecurityGroup", "sg-1"), ("AWS::IAM::AccessKey", "ASIAZZZZZZZZZZZZWXYZ")])
    row = cloudtrail.row(event)
    assert "ASIAZZZZZZZZZZZZWXYZ" not in row["resources"] and "WXYZ" in row["resources"]
    assert row["open_cidrs"] == "0.0.0.0/0"
    assert "AWS::EC2::SecurityGroup:sg-1" in row["resources"]


def test_row_survives_a_broken_cloudtrail_event():
    event = {"EventId": "x", "EventName": "Odd", "EventTime": T0, "CloudTrailEvent": "{not json"}
    row = cloudtrail.row(event)
    assert row["event_name"] == "Odd" and row["identity_type"] == "" and row["request"] == ""


def test_frame_of_is_newest_first_and_empty_is_typed():
    frame = cloudtrail.frame_of([raw_event("a", minutes=5), raw_event("b", minutes=30)])
    assert list(frame["event_id"]) == ["b", "a"]
    assert list(frame.columns) == cloudtrail.COLUMNS
    empty = cloudtrail.frame_of([])
    assert empty.empty and list(empty.columns) == cloudtrail.COLUMNS


# --- the fetch, against the real API model (Stubber) ----------------------------------------

def params(attribute=None, token=None) -> dict:
    expected = {"StartTime": WINDOW.start, "EndTime": WINDOW.end}
    if attribute:
        expected["LookupAttributes"] = [{"AttributeKey": attribute[0], "AttributeValue": attribute[1]}]
    if token:
        expected["NextToken"] = token
    return expected


@pytest.fixture
def stubbed(make_context):
    """A Context whose CloudTrail client is stubbed (moto has no lookup_events)."""
    ctx = make_context()
    ctx.window = WINDOW
    stub = Stubber(ctx.client("cloudtrail"))
    with stub:
        yield ctx, stub
    stub.assert_no_pending_responses()


def test_events_paginates_each_lookup_and_merges_by_event_id(stubbed):
    ctx, stub = stubbed
    write = ("ReadOnly", "false")
    root = ("Username", "root")
    stub.add_response("lookup_events", {"Events": [raw_event("w1", minutes=50), raw_event("w2", minutes=40)],
                                        "NextToken": "page2"}, params(write))
    stub.add_response("lookup_events", {"Events": [raw_event("w3", minutes=30)]}, params(write, "page2"))
    stub.add_response("lookup_events", {"Events": [raw_event("w2", minutes=40), raw_event("r1", minutes=20)]},
                      params(root))
    frame = cloudtrail.events(ctx, lookups=(write, root))
    assert list(frame["event_id"]) == ["w1", "w2", "w3", "r1"]  # newest first (T0 + minutes), w2 once
    assert frame.attrs["truncated"] is False
    again = cloudtrail.events(ctx, lookups=(write, root))  # memoised: no further request (none stubbed)
    assert again is frame


def test_events_without_lookups_asks_for_everything(stubbed):
    ctx, stub = stubbed
    stub.add_response("lookup_events", {"Events": []}, params())
    frame = cloudtrail.events(ctx, lookups=())
    assert frame.empty


def test_security_lookups_are_the_three_documented_ones(stubbed):
    ctx, stub = stubbed
    for attribute in cloudtrail.SECURITY_LOOKUPS:
        stub.add_response("lookup_events", {"Events": [raw_event(f"id-{attribute[0]}")]}, params(attribute))
    frame = cloudtrail.events(ctx)
    assert len(frame) == 3
    assert [a for a, _ in cloudtrail.SECURITY_LOOKUPS] == ["ReadOnly", "Username", "EventName"]


def test_events_stop_at_max_events_and_say_so(stubbed):
    ctx, stub = stubbed
    stub.add_response("lookup_events", {"Events": [raw_event(f"e{i}", minutes=i) for i in range(3)],
                                        "NextToken": "more"}, params(("ReadOnly", "false")))
    frame = cloudtrail.events(ctx, lookups=(("ReadOnly", "false"),), max_events=2)
    assert len(frame) == 2 and frame.attrs["truncated"] is True


def test_access_denied_surfaces_as_a_client_error(stubbed):
    from botocore.exceptions import ClientError

    ctx, stub = stubbed
    stub.add_client_error("lookup_events", "AccessDeniedException", "not allowed",
                          expected_params=params(("ReadOnly", "false")))
    with pytest.raises(ClientError):
        cloudtrail.events(ctx, lookups=(("ReadOnly", "false"),))


def test_events_outside_us_east_1_also_read_us_east_1_and_merge(make_context):
    """eu-west-1 holds the environment's events, us-east-1 the global services' (IAM, sign-in)."""
    ctx = make_context(aws={"region": "eu-west-1"})
    ctx.window = WINDOW
    write = ("ReadOnly", "false")
    home, global_ = Stubber(ctx.client("cloudtrail", "eu-west-1")), Stubber(ctx.client("cloudtrail", "us-east-1"))
    home.add_response("lookup_events", {"Events": [raw_event("sg", minutes=10)]}, params(write))
    global_.add_response("lookup_events", {"Events": [raw_event("iam", minutes=20), raw_event("sg", minutes=10)]},
                         params(write))
    with home, global_:
        frame = cloudtrail.events(ctx, lookups=(write,))
    home.assert_no_pending_responses()
    global_.assert_no_pending_responses()
    assert sorted(frame["event_id"]) == ["iam", "sg"] and frame.attrs["regions"] == ["eu-west-1", "us-east-1"]
