"""One object per run: settings, window, thresholds, lazy AWS clients, the read-only DB session.

botocore and psycopg are imported when a check first asks for AWS or the database: the first
look's HTTP check then runs without waiting for either (``rmsops.execution.firstlook``).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from rmsops.core import config, failure, registry, secrets, sharedcache, thresholds
from rmsops.core.config import Settings
from rmsops.core.findings import Finding
from rmsops.core.registry import CheckResult
from rmsops.core.window import Window, resolve

if TYPE_CHECKING:
    from rmsops.core.aws import AwsClients
    from rmsops.core.db import Database

T = TypeVar("T")


class _Memo:
    """One memoised fetch: its value or its error, and a lock so that it is fetched once."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.done = False
        self.value: Any = None
        self.error: Exception | None = None
        self.action = ""


class Context:
    """Everything a check needs; a check never reads files or environment variables itself."""

    def __init__(self, settings: Settings, window: Window,
                 threshold_overrides: Mapping[str, object] | None = None,
                 runbook: str = "", output_dir: Path | None = None):
        self.settings = settings
        self.window = window
        self.thresholds = thresholds.merge(settings.thresholds, threshold_overrides,
                                           source="threshold parameters")
        self.runbook = runbook
        self.output_dir = output_dir
        self._aws: AwsClients | None = None
        self._db: Database | None = None
        self._lazy_lock = threading.Lock()
        # Findings of an earlier run (a triage), for checks that judge findings (escalation).
        self.prior_findings: list[Finding] = []
        self._memo: dict[str, Any] = {}
        self._memo_lock = threading.Lock()

    @classmethod
    def open(cls, env: str | Path, window: str = "1h", start: str = "", end: str = "",
             threshold_overrides: Mapping[str, object] | None = None, runbook: str = "",
             output_dir: Path | None = None) -> Context:
        return cls(config.load(env), resolve(window, start, end), threshold_overrides,
                   runbook=runbook, output_dir=output_dir)

    @property
    def aws(self) -> AwsClients:
        """The run's AWS clients (botocore is imported by the first check that asks)."""
        with self._lazy_lock:
            if self._aws is None:
                from rmsops.core.aws import AwsClients

                self._aws = AwsClients(self.settings.aws)
            return self._aws

    @property
    def db(self) -> Database:
        """The run's read-only database session (psycopg is imported by the first check that asks)."""
        with self._lazy_lock:
            if self._db is None:
                from rmsops.core.db import Database

                self._db = Database(self.settings.database, self._db_password,
                                    connect_timeout=self.thresholds["db_connect_timeout_seconds"])
            return self._db

    def reach_aws_as(self, other: Context) -> None:
        """Use ``other``'s AWS clients when both environments reach AWS the same way (region,
        profile, endpoint): one botocore session, and each service's client made once (making
        one costs 10-50 ms of CPU; the drift checks compare two environments)."""
        if self.settings.aws == other.settings.aws:
            shared = other.aws
            with self._lazy_lock:
                self._aws = shared

    def client(self, service: str, region: str | None = None) -> Any:
        """A boto3 client in ``region``, by default the environment's."""
        return self.aws.client(service, region)

    def memo(self, key: str, fetch: Callable[[], T], share: bool = True) -> T:
        """Fetch once per run: checks that need the same AWS data share one call.

        A failed fetch is remembered too (with the IAM action it attempted): the next check that
        needs it fails at once instead of waiting on a throttled or unreachable AWS again.
        Concurrent checks that need the same key wait for one fetch. In a triage the value is also
        shared with the other runbooks' processes (``rmsops.core.sharedcache``); pass ``share=False``
        for what only makes sense in this process.
        """
        with self._memo_lock:
            if key not in self._memo:
                self._memo[key] = _Memo()
            entry = self._memo[key]
        with entry.lock:
            if not entry.done:
                cache = sharedcache.current() if share else None
                try:
                    entry.value = cache.get(self._shared_key(key), fetch) if cache else fetch()
                except Exception as exc:
                    entry.error, entry.action = exc, failure.remembered_action()
                entry.done = True
        if entry.error is not None:
            failure.remember_action(entry.action)
            raise entry.error
        return entry.value

    def _shared_key(self, key: str) -> str:
        return f"{self.settings.path}|{self.window.start.isoformat()}|{self.window.end.isoformat()}|{key}"

    def run(self, check_id: str) -> CheckResult:
        return registry.run(registry.get(check_id), self)

    def run_all(self, runbook: str, quick_only: bool = False) -> list[CheckResult]:
        return [registry.run(spec, self) for spec in registry.for_runbook(runbook, quick_only)]

    def _db_password(self) -> str | None:
        db = self.settings.database
        if db.iam_auth:
            token = self.client("rds").generate_db_auth_token(
                DBHostname=db.host, Port=db.port, DBUsername=db.user, Region=self.settings.aws.region)
            secrets.register(token)
            return token
        if db.password_secret:
            from rmsops.core.db import secret_password

            value = self.client("secretsmanager").get_secret_value(SecretId=db.password_secret)
            password = secret_password(value.get("SecretString") or "")
            secrets.register(password)
            return password
        return None  # libpq reads PGPASSWORD or ~/.pgpass itself

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
