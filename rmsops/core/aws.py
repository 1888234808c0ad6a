"""AWS sessions and clients as every check uses them: one session per run, retries capped per call
and per run (``rmsops.core.awsretry``).

botocore's own sessions and clients, the ones boto3 wraps: boto3 adds resources and S3 transfers,
which no check uses, and 0.1 s of imports to every process (the command, the warm process, check).
"""

from __future__ import annotations

import json
import os
import threading
from typing import Any

import botocore.exceptions
import botocore.loaders
import botocore.session
from botocore.config import Config

from rmsops.core import awsretry, failure, modelcache, secrets
from rmsops.core.config import AwsSettings
from rmsops.core.errors import UserError

# Short connect timeout: an unreachable endpoint must fail in seconds, not minutes. botocore itself
# tries once: rmsops.core.awsretry decides about retries (adaptive mode slowed every later call of a
# throttled client, and a health check took minutes).
CLIENT_CONFIG = Config(
    retries={"mode": "standard", "total_max_attempts": 1},
    connect_timeout=3,
    read_timeout=20,
    user_agent_extra="rmsops",
)


# The services runbooks call: the kernel zygote parses their models before it forks kernels.
SERVICES = ("ecs", "elbv2", "rds", "cloudwatch", "logs", "secretsmanager", "acm", "cloudfront", "xray", "wafv2",
            "cloudtrail", "s3", "sts", "ec2", "iam", "sesv2")

_loader: botocore.loaders.Loader | None = None
_loader_lock = threading.Lock()


class _PlainJSONFileLoader(botocore.loaders.JSONFileLoader):
    """botocore's model files parsed into plain dicts, which keep their order as OrderedDicts do:
    botocore asks for OrderedDicts, whose Python hook halves the speed of the C parser (a service
    model is megabytes: half of a check's model loading, 0.1 s)."""

    def _load_file(self, full_path: str, open_method: Any) -> Any:
        if not os.path.isfile(full_path):
            return None

        def parse() -> Any:
            with open_method(full_path, "rb") as file:
                return json.loads(file.read().decode("utf-8"))

        return modelcache.load(full_path, parse)


class _KnownServices:
    """botocore's list of the services that have a ``type_name`` model, as loading a model asks it:
    "is this service there?". Answered from that service's folder; botocore lists all of them,
    about 450, each looked into (20–50 ms for each kind of model, paid by every process that makes
    a client: the first look, a check). Listed in full only when someone iterates (an error message)."""

    def __init__(self, loader: botocore.loaders.Loader, type_name: str):
        self._loader, self._type_name = loader, type_name

    def __contains__(self, service: object) -> bool:
        if not isinstance(service, str) or os.path.basename(service) != service or service in ("", ".", ".."):
            return False  # a folder of the data path, never a path into or out of it
        try:
            return bool(self._loader.list_api_versions(service, self._type_name))
        except (botocore.exceptions.DataNotFoundError, NotADirectoryError):  # a file of the data path
            return False

    def __iter__(self) -> Any:
        return iter(botocore.loaders.Loader.list_available_services(self._loader, self._type_name))

    def __len__(self) -> int:
        return len(botocore.loaders.Loader.list_available_services(self._loader, self._type_name))


def shared_loader() -> botocore.loaders.Loader:
    """One botocore data loader per process, so each service model is parsed once.

    A new session otherwise re-reads megabytes of JSON (seconds per kernel); kernels forked
    from the zygote inherit this loader with its models already parsed.
    """
    global _loader
    with _loader_lock:
        if _loader is None:
            made = botocore.loaders.create_loader(botocore.session.get_session().get_config_variable("data_path"))
            made.file_loader = _PlainJSONFileLoader()
            made.list_available_services = lambda type_name: _KnownServices(made, type_name)
            _loader = made
        return _loader


def preload_models(region: str = "us-east-1") -> None:
    """Parse every model a runbook's clients need (client creation makes no network call)."""
    session = _core_session()
    session.set_credentials("preload", "preload")
    for service in SERVICES:
        session.create_client(service, region_name=region, config=CLIENT_CONFIG)


_spare: botocore.session.Session | None = None


def prepare_session() -> None:
    """Make the next run's botocore session now (about 20 ms of handler registration): a warm
    process calls this so that every process it forks starts with one made. A session resolves
    credentials and opens connections only when a client calls, so a forked copy is safe."""
    global _spare
    _spare = _new_core_session()


def _core_session() -> botocore.session.Session:
    global _spare
    with _loader_lock:
        made, _spare = _spare, None
    return made or _new_core_session()


def _new_core_session() -> botocore.session.Session:
    core = botocore.session.get_session()
    core.register_component("data_loader", shared_loader())
    return core


# Benchmarks count AWS API calls across processes (kernels too): one line per call appended here.
API_LOG = os.environ.get("RMSOPS_API_LOG", "")


def _log_call(model, **_: object) -> None:
    with open(API_LOG, "a", encoding="utf-8") as log:  # one short O_APPEND write: safe across processes
        log.write(f"{model.service_model.service_name}.{model.name}\n")


def caller_identity(clients: AwsClients) -> dict[str, str]:
    """Who the run is, as AWS sees it (``arn``, ``account``): for the bundle's header."""
    answer = clients.client("sts").get_caller_identity()
    return {"arn": answer.get("Arn", ""), "account": answer.get("Account", "")}


class AwsClients:
    """Lazily created, cached, thread-safe AWS clients for one environment."""

    def __init__(self, settings: AwsSettings):
        self._settings = settings
        self._session: botocore.session.Session | None = None
        self._clients: dict[tuple[str, str], Any] = {}  # (service, region) -> client
        self._lock = threading.Lock()
        self.retries = awsretry.RetryPolicy()  # shared by this run's clients

    def session(self) -> botocore.session.Session:
        with self._lock:
            if self._session is None:
                try:
                    session = _core_session()
                    if self._settings.profile:
                        session.set_config_variable("profile", self._settings.profile)
                        session.get_scoped_config()  # a profile that does not exist: say so now
                    if self._settings.region:
                        session.set_config_variable("region", self._settings.region)
                    if self._settings.local_test_credentials:  # the emulator's dummies are no secret
                        session.set_credentials("testing", "testing")
                    else:
                        _register_credentials(session)
                    self._session = session
                except botocore.exceptions.ProfileNotFound:
                    raise UserError(f"AWS profile {self._settings.profile!r} not found in "
                                    "~/.aws/config; fix aws.profile in the environment file") from None
            return self._session

    def client(self, service: str, region: str | None = None) -> Any:
        """The client of ``service`` in ``region`` (default: the environment's), made once."""
        session = self.session()
        region = region or self._settings.region
        with self._lock:
            if (service, region) not in self._clients:
                kwargs: dict[str, Any] = {"config": CLIENT_CONFIG, "region_name": region}
                if self._settings.endpoint_url:  # otherwise botocore honours AWS_ENDPOINT_URL itself
                    kwargs["endpoint_url"] = self._settings.endpoint_url
                client = session.create_client(service, **kwargs)
                client.meta.events.register("before-parameter-build", failure.remember_call)
                client.meta.events.register("before-parse", failure.remember_status)
                self.retries.register(client)
                if API_LOG:
                    client.meta.events.register("before-call", _log_call)
                self._clients[(service, region)] = client
            return self._clients[(service, region)]


def _register_credentials(session: botocore.session.Session) -> None:
    """Mask the secret key and token wherever they came from (a profile, SSO, a credentials file)."""
    try:
        credentials = session.get_credentials()
    except Exception:  # noqa: BLE001 - no credentials yet: the first call says so
        return
    if credentials is not None:
        secrets.register(credentials.secret_key)
        secrets.register(credentials.token)
