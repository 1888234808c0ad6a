"""Actions (spec "Actions"): dry run unless confirmed, the target named in a protected
environment, and every call - dry, refused, failed or done - appended to the audit log.

The AWS side is moto: ``update_service(forceNewDeployment=True)`` only changes
``deployments[0].id`` there, so that id is what tells whether a real change happened.
"""

from __future__ import annotations

import contextlib
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from moto import mock_aws

from rmsops import actions
from rmsops.actions.base import audit_log_path, execute, plan
from rmsops.core import secrets
from rmsops.core.context import Context
from rmsops.core.errors import UserError
from tests import aws_seed as seed

ACTION = "force-new-deployment"
SERVICE = "rms-backend"
CLI = "aws ecs update-service --cluster rms-production --service rms-backend --force-new-deployment"
PARAMS = {"cluster": "rms-production", "service": "rms-backend", "forceNewDeployment": True}
FIELDS = {"at", "user", "environment", "action", "target", "dry_run", "outcome", "detail", "params"}


# --- fixtures and helpers ----------------------------------------------------------------------

@pytest.fixture(scope="module")
def moto_world():
    """One mock for the module (conftest sets fake credentials); EC2's default VPC is built once."""
    with mock_aws():
        seed.network()
        yield


@pytest.fixture
def aws(moto_world, monkeypatch):
    """A clean ECS with cluster rms-production and service rms-backend (2 of 2 running)."""
    seed.reset("ecs")
    seed.create_service(SERVICE, 2, 2, setenv=monkeypatch.setenv)


@pytest.fixture
def no_cluster(moto_world):
    """A clean ECS in which the cluster rms-production does not exist."""
    seed.reset("ecs")


@pytest.fixture
def incident(tmp_path: Path) -> Path:
    return tmp_path / "incident"


@pytest.fixture
def open_ctx(env_file, incident):
    """A Context whose audit log is ``incident/audit.jsonl``: ``open_ctx(protected=True)``."""
    contexts: list[Context] = []

    def build(**changes) -> Context:
        ctx = Context.open(env_file(**changes), output_dir=incident)
        contexts.append(ctx)
        return ctx

    yield build
    for ctx in contexts:
        ctx.close()


@pytest.fixture
def user(monkeypatch) -> str:
    """getpass.getuser() reads LOGNAME first: the audit log must record this name."""
    monkeypatch.setenv("LOGNAME", "oncall-ana")
    return "oncall-ana"


@pytest.fixture
def isolated_secrets(monkeypatch):
    """Secrets registered by a test are forgotten afterwards."""
    monkeypatch.setattr(secrets, "_known", set(secrets._known))


def deployment_id(service: str = SERVICE) -> str:
    answer = seed.client("ecs").describe_services(cluster=seed.CLUSTER, services=[service])
    assert not answer["failures"], answer["failures"]
    (svc,) = answer["services"]
    assert len(svc["deployments"]) == 1
    return svc["deployments"][0]["id"]


def audit_lines(path: Path) -> list[dict]:
    """Every line of the audit log, each of which must be one JSON object."""
    text = path.read_text(encoding="utf-8")
    assert text.endswith("\n")
    records = []
    for line in text.splitlines():
        record = json.loads(line)
        assert isinstance(record, dict)
        records.append(record)
    return records


def only_record(path: Path) -> dict:
    records = audit_lines(path)
    assert len(records) == 1, records
    return records[0]


def assert_refused_and_unchanged(exc: pytest.ExceptionInfo, log: Path, before: str, confirm: str) -> None:
    assert "Nothing was changed" in str(exc.value)
    assert deployment_id() == before
    record = only_record(log)
    assert record["outcome"] == "refused"
    assert record["target"] == SERVICE and record["action"] == ACTION
    assert repr(confirm) not in record["detail"]  # the refusal never repeats what was typed


# --- dry run by default -------------------------------------------------------------------------

def test_dry_run_by_default_changes_nothing_and_audits_one_planned_line(aws, open_ctx, incident, user):
    ctx = open_ctx()
    before = deployment_id()
    started = datetime.now(UTC).replace(microsecond=0)

    record = execute(ctx, plan(ctx, ACTION, service=SERVICE))

    assert deployment_id() == before
    assert record.dry_run is True
    assert record.outcome == "planned"
    assert audit_log_path(ctx) == incident / "audit.jsonl"
    line = only_record(incident / "audit.jsonl")
    assert set(line) == FIELDS
    assert line == {
        "at": line["at"], "user": user, "environment": "test", "action": ACTION, "target": SERVICE,
        "dry_run": True, "outcome": "planned", "detail": line["detail"], "params": PARAMS,
    }
    at = datetime.strptime(line["at"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    assert started <= at <= datetime.now(UTC) + timedelta(seconds=1)
    assert line["detail"].startswith("dry run:") and SERVICE in line["detail"]
    assert line["at"] == record.at and line["detail"] == record.detail


def test_dry_run_is_the_default_in_a_protected_environment_too(aws, open_ctx, incident):
    ctx = open_ctx(protected=True)
    before = deployment_id()
    record = execute(ctx, plan(ctx, ACTION, service=SERVICE))
    assert (record.dry_run, record.outcome) == (True, "planned")
    assert deployment_id() == before
    assert only_record(incident / "audit.jsonl")["outcome"] == "planned"


def test_without_output_dir_the_audit_log_is_in_xdg_state_home(aws, make_context, tmp_path, monkeypatch):
    state = tmp_path / "state"
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.setenv("XDG_STATE_HOME", str(state))
    monkeypatch.chdir(cwd)
    ctx = make_context()
    assert ctx.output_dir is None
    before = deployment_id()

    record = execute(ctx, plan(ctx, ACTION, service=SERVICE))

    assert record.dry_run is True and deployment_id() == before
    log = state / "rmsops" / "audit.jsonl"
    assert audit_log_path(ctx) == log
    line = only_record(log)
    assert (line["dry_run"], line["outcome"], line["target"]) == (True, "planned", SERVICE)
    assert list(cwd.iterdir()) == []


def test_an_empty_xdg_state_home_falls_back_to_home_local_state(aws, make_context, tmp_path, monkeypatch):
    home = tmp_path / "home"
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_STATE_HOME", "")
    monkeypatch.chdir(cwd)
    ctx = make_context()

    execute(ctx, plan(ctx, ACTION, service=SERVICE))

    assert list(cwd.iterdir()) == []
    assert only_record(home / ".local" / "state" / "rmsops" / "audit.jsonl")["outcome"] == "planned"


# --- confirmation: unprotected environment ------------------------------------------------------

@pytest.mark.parametrize("confirm", ["yes", SERVICE])
def test_unprotected_yes_or_the_target_performs_the_call(aws, open_ctx, incident, confirm):
    ctx = open_ctx(protected=False)
    before = deployment_id()

    record = execute(ctx, plan(ctx, ACTION, service=SERVICE), confirm=confirm)

    assert deployment_id() != before
    assert (record.dry_run, record.outcome) == (False, "done")
    line = only_record(incident / "audit.jsonl")
    assert (line["dry_run"], line["outcome"], line["params"]) == (False, "done", PARAMS)


@pytest.mark.parametrize("confirm", ["no", "YES", "y", "rms-frontend", "rms-backend ", "rms"])
def test_unprotected_any_other_confirmation_is_refused_and_audited(aws, open_ctx, incident, confirm):
    ctx = open_ctx(protected=False)
    before = deployment_id()

    with pytest.raises(UserError) as exc:
        execute(ctx, plan(ctx, ACTION, service=SERVICE), confirm=confirm)

    assert f"--confirm {SERVICE}" in str(exc.value)
    assert_refused_and_unchanged(exc, incident / "audit.jsonl", before, confirm)


# --- confirmation: protected environment --------------------------------------------------------

@pytest.mark.parametrize("confirm", ["yes", "rms-frontend", "RMS-BACKEND", "rms-backend "])
def test_protected_requires_the_exact_target(aws, open_ctx, incident, confirm):
    ctx = open_ctx(protected=True)
    before = deployment_id()

    with pytest.raises(UserError) as exc:
        execute(ctx, plan(ctx, ACTION, service=SERVICE), confirm=confirm)

    assert "protected" in str(exc.value)
    assert f"--confirm {SERVICE})" in str(exc.value)  # the exact flag to type, nothing appended
    assert_refused_and_unchanged(exc, incident / "audit.jsonl", before, confirm)


def test_protected_naming_the_target_performs_the_call(aws, open_ctx, incident):
    ctx = open_ctx(protected=True)
    before = deployment_id()

    record = execute(ctx, plan(ctx, ACTION, service=SERVICE), confirm=SERVICE)

    assert deployment_id() != before
    assert (record.dry_run, record.outcome) == (False, "done")
    assert only_record(incident / "audit.jsonl")["outcome"] == "done"


# --- bad input ----------------------------------------------------------------------------------

def test_unknown_service_lists_the_known_ones(aws, open_ctx):
    ctx = open_ctx()
    with pytest.raises(UserError) as exc:
        plan(ctx, ACTION, service="rms-backnd")
    message = str(exc.value)
    assert "'rms-backnd'" in message
    assert "rms-backend" in message.split("known:", 1)[1]
    assert "rms-frontend" in message.split("known:", 1)[1]


def test_unknown_action_is_a_user_error_listing_the_actions(aws, open_ctx):
    ctx = open_ctx()
    with pytest.raises(UserError) as exc:
        plan(ctx, "force-redeploy", service=SERVICE)
    assert "'force-redeploy'" in str(exc.value)
    assert ACTION in str(exc.value).split("known:", 1)[1]
    assert ACTION in actions.ACTIONS


def test_the_plan_names_the_aws_cli_equivalent(aws, open_ctx):
    ctx = open_ctx()
    p = plan(ctx, ACTION, service=SERVICE)
    assert p.cli == CLI
    assert (p.target, p.service, p.operation, p.params) == (SERVICE, "ecs", "update_service", PARAMS)
    assert p.environment == "test"


# --- the AWS call failing -----------------------------------------------------------------------

def assert_one_line_without_traceback(exc: pytest.ExceptionInfo) -> None:
    message = str(exc.value)
    assert "\n" not in message and "Traceback" not in message
    assert exc.value.__cause__ is None and exc.value.__suppress_context__  # raised `from None`


def test_missing_cluster_is_a_one_line_user_error_audited_as_failed(no_cluster, open_ctx, incident):
    ctx = open_ctx()

    with pytest.raises(UserError) as exc:
        execute(ctx, plan(ctx, ACTION, service=SERVICE), confirm="yes")

    assert_one_line_without_traceback(exc)
    assert str(exc.value).startswith(f"{ACTION} failed: ")
    assert "ClusterNotFoundException" in str(exc.value)
    line = only_record(incident / "audit.jsonl")
    assert (line["dry_run"], line["outcome"]) == (False, "failed")
    assert "ClusterNotFoundException" in line["detail"] and "\n" not in line["detail"]


def test_access_denied_is_a_one_line_user_error_audited_as_failed(aws, open_ctx, incident):
    from botocore.stub import Stubber

    ctx = open_ctx(protected=True)
    before = deployment_id()
    ecs = ctx.client("ecs")
    ecs.describe_clusters(clusters=[seed.CLUSTER])  # an earlier call: the IAM action named must not be stale
    with Stubber(ecs) as stub:
        stub.add_client_error("update_service", service_error_code="AccessDeniedException",
                              service_message="User is not authorized to perform this operation",
                              http_status_code=403, expected_params=PARAMS)
        with pytest.raises(UserError) as exc:
            execute(ctx, plan(ctx, ACTION, service=SERVICE), confirm=SERVICE)
        stub.assert_no_pending_responses()

    assert_one_line_without_traceback(exc)
    assert "AccessDeniedException" in str(exc.value)
    assert "ecs:UpdateService" in str(exc.value)
    assert deployment_id() == before
    line = only_record(incident / "audit.jsonl")
    assert (line["dry_run"], line["outcome"]) == (False, "failed")
    assert "ecs:UpdateService" in line["detail"]


# --- the audit log ------------------------------------------------------------------------------

def test_every_call_appends_one_json_line_in_order(aws, open_ctx, incident):
    log = incident / "audit.jsonl"
    incident.mkdir()
    earlier = {"note": "an earlier action of this incident"}
    log.write_text(json.dumps(earlier) + "\n", encoding="utf-8")
    ctx = open_ctx()
    p = plan(ctx, ACTION, service=SERVICE)

    execute(ctx, p)
    with pytest.raises(UserError):
        execute(ctx, p, confirm="nope")
    execute(ctx, p, confirm="yes")

    records = audit_lines(log)
    assert records[0] == earlier  # appended, never rewritten
    assert [r["outcome"] for r in records[1:]] == ["planned", "refused", "done"]
    assert [r["dry_run"] for r in records[1:]] == [True, True, False]
    assert all(set(r) == FIELDS for r in records[1:])


PLAIN_SECRET = "s3cr3t-Pa55word-9f2c"
QUOTED_SECRET = 'qu"oted-S3cret-7a1e'  # JSON-encoding changes it: only redaction before encoding hides it
BACKSLASH_SECRET = "Zx9\\Qw7-tab\tr3-5b0d"  # repr() and JSON both escape it
SECRETS = [PLAIN_SECRET, QUOTED_SECRET, BACKSLASH_SECRET]
SECRET_IDS = ["plain", "double-quote", "backslash-and-tab"]


def assert_secret_absent(text: str, detail: str, secret: str, masked: bool = True) -> None:
    """Neither the secret nor an escaped spelling of it (JSON, Python repr) is in the log.

    ``masked``: the detail had to mention it, so the mask stands in its place.
    """
    assert secret not in text
    assert json.dumps(secret)[1:-1] not in text
    assert secret not in detail and repr(secret)[1:-1] not in detail
    if masked:
        assert secrets.REDACTED in detail


@pytest.mark.parametrize("secret", SECRETS, ids=SECRET_IDS)
def test_a_secret_in_an_aws_error_never_reaches_the_audit_log(aws, open_ctx, incident, isolated_secrets,
                                                              secret):
    from botocore.stub import Stubber

    secrets.register(secret)
    ctx = open_ctx()
    ecs = ctx.client("ecs")
    with Stubber(ecs) as stub:
        stub.add_client_error("update_service", service_error_code="InvalidParameterException",
                              service_message=f"bad token {secret} in request", http_status_code=400)
        with pytest.raises(UserError) as exc:
            execute(ctx, plan(ctx, ACTION, service=SERVICE), confirm="yes")

    log = incident / "audit.jsonl"
    line = only_record(log)
    assert line["outcome"] == "failed" and "InvalidParameterException" in line["detail"]
    assert_secret_absent(log.read_text(encoding="utf-8"), line["detail"], secret)
    assert secret not in str(exc.value)


@pytest.mark.parametrize("secret", [
    PLAIN_SECRET,
    QUOTED_SECRET,
    BACKSLASH_SECRET,
], ids=SECRET_IDS)
def test_a_secret_pasted_as_the_confirmation_never_reaches_the_audit_log(aws, open_ctx, incident,
                                                                        isolated_secrets, secret):
    secrets.register(secret)
    ctx = open_ctx(protected=True)
    with pytest.raises(UserError):
        execute(ctx, plan(ctx, ACTION, service=SERVICE), confirm=secret)

    log = incident / "audit.jsonl"
    line = only_record(log)
    assert line["outcome"] == "refused"
    assert_secret_absent(log.read_text(encoding="utf-8"), line["detail"], secret, masked=False)


# --- the command line ---------------------------------------------------------------------------

def test_cli_dry_run_exits_0_printing_dry_run_and_the_aws_cli(aws, env_file, tmp_path, capsys):
    from rmsops.cli import main

    path = env_file(protected=True)
    out = tmp_path / "cli-incident"
    before = deployment_id()

    code = main(["action", ACTION, "-e", str(path), "--service", SERVICE, "-o", str(out)])

    captured = capsys.readouterr()
    assert code == 0
    assert captured.out.startswith("DRY RUN")
    assert CLI in captured.out
    assert f"--confirm {SERVICE}" in captured.out
    assert deployment_id() == before
    line = only_record(out / "audit.jsonl")
    assert (line["dry_run"], line["outcome"]) == (True, "planned")


def test_cli_wrong_confirm_in_protected_env_exits_2_with_one_error_line(aws, env_file, tmp_path, capsys):
    from rmsops.cli import main

    path = env_file(protected=True)
    out = tmp_path / "cli-incident"
    before = deployment_id()

    code = main(["action", ACTION, "-e", str(path), "--service", SERVICE, "--confirm", "yes", "-o", str(out)])

    captured = capsys.readouterr()
    assert code == 2
    lines = captured.err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("rmsops: error:")
    assert f"--confirm {SERVICE}" in lines[0]
    assert "DONE" not in captured.out
    assert deployment_id() == before
    assert only_record(out / "audit.jsonl")["outcome"] == "refused"


def test_cli_confirmed_in_protected_env_does_it(aws, env_file, tmp_path, capsys):
    from rmsops.cli import main

    path = env_file(protected=True)
    out = tmp_path / "cli-incident"
    before = deployment_id()

    code = main(["action", ACTION, "-e", str(path), "--service", SERVICE, "--confirm", SERVICE, "-o", str(out)])

    assert code == 0
    assert capsys.readouterr().out.startswith("DONE")
    assert deployment_id() != before
    assert only_record(out / "audit.jsonl")["outcome"] == "done"


def test_cli_a_secret_pasted_as_confirm_is_not_echoed(aws, env_file, tmp_path, capsys, monkeypatch,
                                                      isolated_secrets):
    from rmsops.cli import main

    secret = "wJalrXUtnFEMI-K7MDENG-bPxRfiCYEXAMPLEKEY"
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", secret)  # redact() registers it on every call
    out = tmp_path / "cli-incident"
    code = main(["action", ACTION, "-e", str(env_file(protected=True)), "--service", SERVICE,
                 "--confirm", secret, "-o", str(out)])

    captured = capsys.readouterr()
    assert code == 2
    assert secret not in (out / "audit.jsonl").read_text(encoding="utf-8")
    assert secret not in captured.err and secret not in captured.out


def test_cli_aws_failure_exits_2_with_one_error_line(no_cluster, env_file, tmp_path, capsys):
    from rmsops.cli import main

    out = tmp_path / "cli-incident"
    code = main(["action", ACTION, "-e", str(env_file()), "--service", SERVICE, "--confirm", "yes",
                 "-o", str(out)])

    captured = capsys.readouterr()
    assert code == 2
    lines = captured.err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("rmsops: error:")
    assert "ClusterNotFoundException" in lines[0]
    assert "Traceback" not in captured.err
    assert only_record(out / "audit.jsonl")["outcome"] == "failed"


# --- the notebook side --------------------------------------------------------------------------

@pytest.fixture
def shown(monkeypatch) -> list:
    """What RunbookSession displays."""
    import rmsops.notebook

    captured: list = []
    monkeypatch.setattr(rmsops.notebook, "display", lambda *objs, **kw: captured.extend(objs))
    return captured


def html_of(objects: list) -> str:
    return "\n".join(getattr(obj, "data", "") or "" for obj in objects)


@pytest.mark.parametrize("protected, confirm", [(False, "yes"), (True, SERVICE)])
def test_notebook_action_shows_a_dry_run_and_audits_it(aws, open_ctx, incident, shown, protected, confirm):
    import html

    from rmsops.notebook import RunbookSession

    ctx = open_ctx(protected=protected)
    before = deployment_id()

    RunbookSession(ctx).action(ACTION, service=SERVICE)

    assert deployment_id() == before
    line = only_record(incident / "audit.jsonl")
    assert (line["dry_run"], line["outcome"]) == (True, "planned")
    text = html.unescape(html_of(shown))
    assert "Dry run" in text
    assert CLI in text
    assert f"rmsops action {ACTION} -e test --service {SERVICE} --confirm {confirm}" in text


def test_notebook_action_never_makes_a_real_change(aws, open_ctx, incident, shown):
    """Even in an unprotected environment and even if a confirmation is slipped in."""
    from rmsops.notebook import RunbookSession

    ctx = open_ctx(protected=False)
    rb = RunbookSession(ctx)
    before = deployment_id()

    rb.action(ACTION, service=SERVICE)
    with contextlib.suppress(Exception):  # refusing loudly is fine; changing something is not
        rb.action(ACTION, service=SERVICE, confirm="yes")

    assert deployment_id() == before
    assert all(r["dry_run"] is True and r["outcome"] != "done" for r in audit_lines(incident / "audit.jsonl"))


@pytest.mark.parametrize("fault", ["denied", "server-error", "unreachable"])
def test_notebook_dry_run_whose_lookup_fails_is_shown_not_raised(aws, open_ctx, incident, shown, fault):
    """A dry-run cell must never fail its runbook (that skipped the summary cell): the plan reads ECS,
    and when AWS denies it, fails, or cannot be reached, the cell says what it could not look up."""
    import html

    from botocore.exceptions import EndpointConnectionError
    from botocore.stub import Stubber

    from rmsops.notebook import RunbookSession

    def unreachable(**_):
        raise EndpointConnectionError(endpoint_url="https://ecs.us-east-1.amazonaws.com/")

    ctx = open_ctx(protected=True)
    ecs = ctx.client("ecs")
    stub = Stubber(ecs)
    if fault == "denied":
        stub.add_client_error("describe_services", service_error_code="AccessDeniedException",
                              service_message="not authorized", http_status_code=403)
    elif fault == "server-error":
        stub.add_client_error("describe_services", service_error_code="InternalFailure",
                              service_message="<script>alert(1)</script> broke", http_status_code=500)
    else:
        ecs.meta.events.register_first("before-call.ecs.DescribeServices", unreachable)
    with stub if fault != "unreachable" else contextlib.nullcontext():
        # runbook 18's cell: the plan reads the service to find the previous revision
        RunbookSession(ctx).action("rollback-service", service=SERVICE, revision="previous")  # does not raise

    [shown_html] = [obj.data for obj in shown]
    text = html.unescape(shown_html)
    assert "Action rollback-service: could not look up what it would change: " in text
    assert "Nothing was changed" in text and "Dry run" not in text
    assert {"denied": "AWS denied ecs:DescribeServices (AccessDeniedException)",
            "server-error": "AWS ecs:DescribeServices failed: InternalFailure",
            "unreachable": "AWS endpoint unreachable (https://ecs.us-east-1.amazonaws.com/)"}[fault] in text
    assert "<script>" not in shown_html  # escaped
    assert "Traceback" not in text
    assert not (incident / "audit.jsonl").exists()  # nothing was planned, so nothing to audit


def test_notebook_dry_run_shows_the_plan_even_when_the_audit_log_cannot_be_written(aws, open_ctx, incident,
                                                                                    shown):
    from rmsops.notebook import RunbookSession

    incident.parent.mkdir(parents=True, exist_ok=True)
    incident.write_text("a file where the incident folder should be")  # the audit log cannot go there
    RunbookSession(open_ctx()).action(ACTION, service=SERVICE)
    [shown_html] = [obj.data for obj in shown]
    assert "Dry run" in shown_html and "audit record could not be written" in shown_html


def test_notebook_unknown_service_is_shown_not_raised(aws, open_ctx, incident, shown):
    from rmsops.notebook import RunbookSession

    ctx = open_ctx()
    RunbookSession(ctx).action(ACTION, service="rms-backnd")

    assert len(shown) == 1
    assert "unavailable" in shown[0].data and "rms-backend" in shown[0].data
    assert not (incident / "audit.jsonl").exists()
