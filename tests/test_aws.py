"""AWS sessions: one botocore data loader per process, so service models are parsed once."""

from __future__ import annotations

import pytest

from rmsops.core import aws
from rmsops.core.config import AwsSettings
from rmsops.core.errors import UserError


def _clients(region: str = "us-east-1") -> aws.AwsClients:
    return aws.AwsClients(AwsSettings(region=region, endpoint_url="http://127.0.0.1:9", local_test_credentials=True))


def test_every_session_of_the_process_shares_one_loader():
    first, second = _clients(), _clients("eu-west-1")
    for clients in (first, second):
        assert clients.session().get_component("data_loader") is aws.shared_loader()
    assert first.client("ecs").meta.region_name == "us-east-1"
    assert second.client("ecs").meta.region_name == "eu-west-1"  # sessions share models, not settings


def test_many_sessions_do_not_grow_the_loaders_search_path():
    _clients().session()
    before = list(aws.shared_loader().search_paths)
    for _ in range(5):
        _clients().session()
    assert aws.shared_loader().search_paths == before


def test_the_loader_knows_a_service_without_listing_them_all():
    """Loading a model asks botocore's listing of ~450 services; ours looks in the one folder, and
    agrees with the listing on every model kind the clients load, for known and unknown names."""
    import botocore.exceptions
    import botocore.loaders

    loader = aws.shared_loader()
    for kind in ("service-2", "paginators-1", "waiters-2", "endpoint-rule-set-1"):
        listed = set(botocore.loaders.Loader.list_available_services(loader, kind))
        known = loader.list_available_services(kind)
        for service in (*aws.SERVICES, "no-such-service", "ecs/../rds", "", "..", "endpoints.json", "_retry.json"):
            assert (service in known) == (service in listed), (kind, service)
        assert set(known) == listed and len(known) == len(listed)
    with pytest.raises(botocore.exceptions.UnknownServiceError, match="Valid service names are: .*ecs"):
        _clients().session().create_client("no-such-service", region_name="us-east-1")


def test_preloading_parses_every_service_the_checks_use_without_a_network_call():
    aws.preload_models()  # no endpoint, no credentials that work: creating clients makes no call
    loaded = {key[1] for key in aws.shared_loader()._cache if key[0] == "load_service_model"}
    assert set(aws.SERVICES) <= loaded


def test_a_profile_that_does_not_exist_is_a_user_error_that_says_where_to_fix_it(tmp_path, monkeypatch):
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "credentials"))
    (tmp_path / "config").write_text("[profile rms-prod]\nregion = eu-west-1\n")
    clients = aws.AwsClients(AwsSettings(region="eu-west-1", profile="rms-prdo"))
    with pytest.raises(UserError, match="AWS profile 'rms-prdo' not found .* fix aws.profile"):
        clients.session()


def test_clients_are_botocores_own_and_the_process_needs_no_boto3():
    """boto3's resources and S3 transfers are used by no check: 0.1 s of imports in every process."""
    import subprocess
    import sys

    code = ("import sys; from rmsops.core import aws, context; "
            "print('boto3' in sys.modules, 's3transfer' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]
    assert type(_clients().client("ecs")).__module__ == "botocore.client"
