"""Safety: diagnostic runbooks never change anything, and need no more than the documented privileges.

Every runbook's notebook code (its checks and its dry-run actions) is executed in this process
against the served demo, with a botocore ``before-call`` hook on every client that records the
IAM action of each call. From that record:

* no diagnostic runbook calls an AWS API that is not a read;
* ``docs/iam-policy.json`` grants exactly the actions the runbooks call (plus the few on code
  paths the demo does not take, each named below with its reason), so the policy cannot drift;
  the Athena path (an ``athena:`` section, which the demo has not) is run against moto with the
  same recorder, and what Athena itself calls with the caller's credentials is named with why;
* ``docs/iam-policy-actions.json`` grants what the confirmed actions call.

The database half: ``docs/postgres-monitoring-role.sql`` is applied to the real test PostgreSQL,
and the role it creates can run the database checks but cannot write.
"""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path

import nbformat
import psycopg
import pytest

from rmsops.core import failure, runbooks
from rmsops.core.aws import AwsClients

ROOT = Path(__file__).resolve().parent.parent
READ_PREFIXES = ("Describe", "List", "Get", "BatchGet", "Lookup", "Filter", "Search")
# Logs Insights and Athena queries are reads that AWS names Start/Stop (they create no resource;
# Athena writes the rows to the results bucket, the one place the policy lets it write).
READ_EXCEPTIONS = {"logs:StartQuery", "logs:StopQuery", "athena:StartQueryExecution", "athena:StopQueryExecution"}
# In the policy but on code paths the demo does not take, each for a documented reason.
NOT_TAKEN_BY_THE_DEMO = {
    "logs:StartQuery": "logs_query: insights (the demo uses filter: moto's Insights has no stats)",
    "logs:GetQueryResults": "logs_query: insights",
    "logs:StopQuery": "logs_query: insights, a query cut short",
    "rds-db:connect": "database.iam_auth: true (an RDS IAM token instead of a password)",
}
# Called by Athena, with the caller's credentials, for the queries rmsops starts: no client call of
# rmsops's to record (moto's Athena runs no SQL). Partition projection needs no glue:GetPartitions.
CALLED_BY_ATHENA = {
    "glue:GetDatabase": "Athena reads the database of athena.database from the Glue Data Catalog",
    "glue:GetTable": "Athena reads the table definitions (docs/athena/*.sql) from the Glue Data Catalog",
    "s3:GetBucketLocation": "Athena checks the region of athena.output_location's bucket",
    "s3:PutObject": "Athena writes the query's rows to athena.output_location (only aws-athena-query-results-*)",
}
ATHENA_RESULTS = {"arn:aws:s3:::aws-athena-query-results-*", "arn:aws:s3:::aws-athena-query-results-*/*"}


def _is_read(action: str) -> bool:
    return action in READ_EXCEPTIONS or action.split(":", 1)[1].startswith(READ_PREFIXES)


def _record_calls(monkeypatch) -> set[str]:
    called: set[str] = set()

    def record(model, **_) -> None:
        called.add(failure.iam_action_of(model))  # the same naming the error messages use

    original = AwsClients.client

    def recording_client(self, service: str, region: str | None = None):
        client = original(self, service, region)
        client.meta.events.register("before-call", record, unique_id="rmsops-test-recorder")
        return client

    monkeypatch.setattr(AwsClients, "client", recording_client)
    return called


def _run_notebook_code(stem: str, env_file: Path, extra: dict | None = None) -> None:
    """The notebook's code cells, in order, with papermill's parameter injection, in this process."""
    nb = nbformat.read(runbooks.find(stem).notebook, as_version=4)
    namespace: dict = {}
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        exec(compile(cell.source, f"{stem}.ipynb", "exec"), namespace)  # noqa: S102 - our own notebooks
        if "parameters" in cell.metadata.get("tags", []):
            namespace.update({"env": str(env_file), **(extra or {})})


@pytest.fixture(scope="module")
def diagnostic_calls(demo_incident, demo_healthy, tmp_path_factory) -> set[str]:
    monkeypatch = pytest.MonkeyPatch()
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path_factory.mktemp("state")))  # dry-run audit records
    called = _record_calls(monkeypatch)
    try:
        for demo in (demo_incident, demo_healthy):
            for rb in runbooks.CATALOGUE:
                extra = {}
                if rb.stem == "18-escalation":
                    extra = {"findings": ""}  # judges fresh quick checks: every runbook's reads again
                _run_notebook_code(rb.stem, demo.env_file, extra)
    finally:
        monkeypatch.undo()
    return called


@pytest.fixture(scope="module")
def athena_calls(tmp_path_factory) -> set[str]:
    """The Athena path of security.alb.access_logs and security.waf.blocks, in moto: queries that
    succeed, and one stopped at its deadline (moto's queries made to stay RUNNING)."""
    import time

    import yaml
    from moto import mock_aws

    from rmsops.core.context import Context
    from tests import aws_seed as seed
    from tests.conftest import BASE_ENV, merge
    from tests.test_athena import ALB_COLUMNS, ATHENA, WAF_COLUMNS, queries_stay_running, queue
    from tests.test_checks_security import alb_with_logs

    env_file = tmp_path_factory.mktemp("athena") / "athena.yaml"
    env_file.write_text(yaml.safe_dump(merge(BASE_ENV, {"athena": ATHENA, "logs_query": "filter"})))
    monkeypatch = pytest.MonkeyPatch()
    called = _record_calls(monkeypatch)
    try:
        with mock_aws():
            from moto.athena.models import athena_backends
            from moto.core import DEFAULT_ACCOUNT_ID

            backend = athena_backends[DEFAULT_ACCOUNT_ID]["us-east-1"]
            seed.network()
            alb_with_logs()
            queue(backend, ALB_COLUMNS, ("10.0.0.1", 20, 0, 0, "/", 20, 1, 20))
            queue(backend, WAF_COLUMNS, ("10.0.0.1", "rate", "/", 1, 0))
            ctx = Context.open(env_file)
            findings = [f for check in ("security.alb.access_logs", "security.waf.blocks")
                        for f in ctx.run(check).findings]
            assert {f.severity.value for f in findings} == {"ok"}
            with queries_stay_running():
                monkeypatch.setenv("RMSOPS_DEADLINE", f"{time.time() + 4:.3f}")
                [stopped] = Context.open(env_file).run("security.alb.access_logs").findings
                assert "did not finish in time" in stopped.detail
    finally:
        monkeypatch.undo()
    return called


def test_no_diagnostic_runbook_calls_a_mutating_aws_api(diagnostic_calls):
    assert len(diagnostic_calls) > 20  # the record really saw the runbooks' calls
    writes = sorted(a for a in diagnostic_calls if not _is_read(a))
    assert writes == [], f"diagnostic runbooks called non-read AWS APIs: {writes}"


def _policy_actions(path: Path) -> set[str]:
    policy = json.loads(path.read_text())
    assert policy["Version"] == "2012-10-17"
    actions: set[str] = set()
    for statement in policy["Statement"]:
        assert statement["Effect"] == "Allow"
        assert all("*" not in action for action in statement["Action"]), "no wildcards: exactly what is called"
        actions |= set(statement["Action"])
    return actions


def test_the_athena_path_calls_only_reads(athena_calls):
    athena = {a for a in athena_calls if a.startswith("athena:")}
    assert athena == {"athena:GetWorkGroup", "athena:StartQueryExecution", "athena:GetQueryExecution",
                      "athena:GetQueryResults", "athena:StopQueryExecution"}
    assert not [a for a in athena_calls if not _is_read(a)]


def _writes_outside_the_athena_results(path: Path) -> list[str]:
    """Granted actions that are not reads: only rds-db:connect, and Athena's writes of its results
    into the results buckets (a statement of its own, naming nothing else)."""
    writes = []
    for statement in json.loads(path.read_text())["Statement"]:
        resources = statement["Resource"] if isinstance(statement["Resource"], list) else [statement["Resource"]]
        for action in statement["Action"]:
            if _is_read(action) or action == "rds-db:connect":
                continue
            if not (action in CALLED_BY_ATHENA and set(resources) <= ATHENA_RESULTS):
                writes.append(action)
    return writes


def test_the_iam_policy_grants_exactly_what_the_runbooks_call(diagnostic_calls, athena_calls):
    granted = _policy_actions(ROOT / "docs" / "iam-policy.json")
    called = diagnostic_calls | athena_calls
    missing = sorted(called - granted)
    unused = sorted(granted - called - set(NOT_TAKEN_BY_THE_DEMO) - set(CALLED_BY_ATHENA))
    assert not missing, f"called by the runbooks but not in docs/iam-policy.json: {missing}"
    assert not unused, f"in docs/iam-policy.json but never called: {unused}"
    assert set(CALLED_BY_ATHENA) <= granted
    assert _writes_outside_the_athena_results(ROOT / "docs" / "iam-policy.json") == []


def test_the_actions_policy_covers_every_action_and_only_actions_need_writes():
    granted = _policy_actions(ROOT / "docs" / "iam-policy-actions.json")
    source = "\n".join(p.read_text() for p in (ROOT / "rmsops" / "actions").glob("*.py"))
    # Every AWS operation the action modules call: plans' operation="..." and direct client calls.
    methods = set(re.findall(r'operation="(\w+)"', source))
    methods |= set(re.findall(r"(?:ecs|cloudfront|rds|client\(\"\w+\"\))\.(\w+)\(", source))
    writes = {m for m in methods if not m.startswith(("describe_", "list_", "get_"))}
    assert {"update_service", "create_invalidation", "register_task_definition"} <= writes
    camel = {"".join(part.title() for part in m.split("_")).replace("Db", "DB") for m in writes}
    granted_ops = {a.split(":", 1)[1] for a in granted}
    assert camel <= granted_ops, f"writes the actions make but the policy lacks: {sorted(camel - granted_ops)}"
    assert granted_ops - camel <= {"PassRole"}, f"granted but never called: {sorted(granted_ops - camel)}"
    assert _writes_outside_the_athena_results(ROOT / "docs" / "iam-policy.json") == []


def test_the_signing_policy_grants_exactly_what_signing_calls_and_only_it_grants_kms():
    granted = _policy_actions(ROOT / "docs" / "iam-policy-signing.json")
    source = (ROOT / "rmsops" / "execution" / "signing.py").read_text()
    # signing.py calls AWS through clients named ``kms`` only: kms.sign(...), kms.verify(...), ...
    called = {"kms:" + "".join(part.title() for part in m.split("_")) for m in re.findall(r"\bkms\.(\w+)\(", source)}
    assert {"kms:Sign", "kms:Verify", "kms:DescribeKey"} <= called
    assert granted == called, f"called: {sorted(called)}; granted: {sorted(granted)}"
    assert re.findall(r"client\(\s*[\"'](\w+)", source) == ["kms"]
    for other in ("iam-policy.json", "iam-policy-actions.json"):
        leaked = sorted(a for a in _policy_actions(ROOT / "docs" / other) if a.startswith("kms:"))
        assert not leaked, f"KMS belongs in docs/iam-policy-signing.json only, not docs/{other}: {leaked}"
    # Elsewhere a KMS client may be made (the triage hands signing its factory), never called.
    others = [p for p in (ROOT / "rmsops").rglob("*.py") if p.name != "signing.py"]
    calls = r"\bkms\.\w+\(|client\(\s*[\"']kms[\"']\)\.\w+\("
    assert not [p.name for p in others if re.search(calls, p.read_text())], "KMS calls outside execution/signing.py"


# --- the database role ----------------------------------------------------------------------------


def _statements(sql_text: str, password: str) -> list[str]:
    text = sql_text.replace(":'password'", "'" + password.replace("'", "''") + "'")
    body = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith(("--", "\\")))
    return [s.strip() for s in body.split(";") if s.strip()]


@pytest.fixture
def documented_role(pg_server, pg_admin):
    role, password = "rmsops_doc_role", "doc-role-password-7f3a"
    sql_text = (ROOT / "docs" / "postgres-monitoring-role.sql").read_text().replace("rmsops_monitor", role)
    sql_text = sql_text.replace("DATABASE rms ", f"DATABASE {pg_server.server.dbname} ")
    with pg_server.server.connect() as conn:
        for statement in _statements(sql_text, password):
            conn.execute(statement)
    yield role, password
    with pg_server.server.connect() as conn:
        conn.execute(f"DROP OWNED BY {role}")
        conn.execute(f"DROP ROLE {role}")


def test_the_documented_role_reads_what_the_checks_need_and_cannot_write(documented_role, pg_server):
    role, password = documented_role
    with pg_server.connect_as(role, password, autocommit=True) as conn:
        settings = dict(conn.execute(
            "SELECT name, setting FROM pg_settings WHERE name IN ('default_transaction_read_only', "
            "'statement_timeout', 'lock_timeout', 'idle_in_transaction_session_timeout')").fetchall())
        assert settings["default_transaction_read_only"] == "on"
        assert int(settings["statement_timeout"]) > 0 and int(settings["lock_timeout"]) > 0
        assert conn.execute("SELECT pg_has_role(current_user, 'pg_monitor', 'MEMBER')").fetchone()[0]
        assert conn.execute("SELECT count(*) FROM pg_stat_activity WHERE query <> ''").fetchone()[0] >= 1
        with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
            conn.execute("CREATE TABLE rmsops_should_not_exist (id int)")
    limit = _connection_limit(pg_server, role)
    assert 0 < limit <= 5


def _connection_limit(pg_server, role: str) -> int:
    with pg_server.server.connect() as conn:
        return conn.execute("SELECT rolconnlimit FROM pg_roles WHERE rolname = %s", (role,)).fetchone()[0]


def test_the_notebook_code_parser_sees_every_action_of_the_catalogue():
    """The harness above runs rb.action(...) cells: make sure the notebooks really have some."""
    names = set()
    for rb in runbooks.CATALOGUE:
        for cell in nbformat.read(rb.notebook, as_version=4).cells:
            if cell.cell_type == "code":
                for node in ast.walk(ast.parse(cell.source)):
                    if isinstance(node, ast.Call) and getattr(node.func, "attr", "") == "action":
                        names.add(node.args[0].value)
    assert {"force-new-deployment", "rollback-service"} <= names


def test_the_notify_policy_grants_exactly_what_notify_calls_and_only_it_grants_sns():
    policy_path = ROOT / "docs" / "iam-policy-notify.json"
    granted = _policy_actions(policy_path)
    source = (ROOT / "rmsops" / "execution" / "notify.py").read_text()
    # notify.py calls AWS through clients named ``sns`` only: sns.publish(...)
    called = {"sns:" + "".join(part.title() for part in m.split("_")) for m in re.findall(r"\bsns\.(\w+)\(", source)}
    assert "sns:Publish" in called
    assert granted == called, f"called: {sorted(called)}; granted: {sorted(granted)}"
    assert re.findall(r"client\(\s*[\"'](\w+)", source) == ["sns"]
    assert all(s["Resource"] == "arn:aws:sns:*:*:*" for s in json.loads(policy_path.read_text())["Statement"])
    for other in sorted((ROOT / "docs").glob("*.json")):
        if other != policy_path and "Statement" in json.loads(other.read_text()):
            leaked = sorted(a for a in _policy_actions(other) if a.lower().startswith("sns:"))
            assert not leaked, f"SNS belongs in docs/iam-policy-notify.json only, not docs/{other.name}: {leaked}"
    others = [p for p in (ROOT / "rmsops").rglob("*.py") if p.name != "notify.py"]
    calls = r"\bsns\.\w+\(|client\(\s*[\"']sns[\"']"
    assert not [p.name for p in others if re.search(calls, p.read_text())], "SNS calls outside execution/notify.py"
