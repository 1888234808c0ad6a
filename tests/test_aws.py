"""boto3 sessions: one botocore data loader per process, so service models are parsed once."""

from __future__ import annotations

from rmsops.core import aws
from rmsops.core.config import AwsSettings


def _clients(region: str = "us-east-1") -> aws.AwsClients:
    return aws.AwsClients(AwsSettings(region=region, endpoint_url="http://127.0.0.1:9", local_test_credentials=True))


def test_every_session_of_the_process_shares_one_loader():
    first, second = _clients(), _clients("eu-west-1")
    for clients in (first, second):
        assert clients.session()._session.get_component("data_loader") is aws.shared_loader()
    assert first.client("ecs").meta.region_name == "us-east-1"
    assert second.client("ecs").meta.region_name == "eu-west-1"  # sessions share models, not settings


def test_many_sessions_do_not_grow_the_loaders_search_path():
    _clients().session()
    before = list(aws.shared_loader().search_paths)
    for _ in range(5):
        _clients().session()
    assert aws.shared_loader().search_paths == before


def test_preloading_parses_every_service_the_checks_use_without_a_network_call():
    aws.preload_models()  # no endpoint, no credentials that work: creating clients makes no call
    loaded = {key[1] for key in aws.shared_loader()._cache if key[0] == "load_service_model"}
    assert set(aws.SERVICES) <= loaded
