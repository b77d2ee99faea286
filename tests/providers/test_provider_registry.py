"""build_providers: which adapters the settings enable, and with what prices."""

from decimal import Decimal
from pathlib import Path

import pytest

from config.settings import Settings
from providers.aws import AwsProvider
from providers.fake import FakeProvider
from providers.local import LocalProvider
from providers.registry import build_providers
from providers.runpod import RunPodProvider


def test_build_providers_local_and_fake(tmp_path: Path):
    settings = Settings(
        providers=["local", "fake"],
        data_dir=tmp_path,
        local_price_per_hour="0.36",
        fake_price_per_hour="2.5",
        fake_gpu_types=["L4", "H100"],
        fake_start_seconds=7,
        fake_run_seconds=30,
    )

    providers = build_providers(settings)

    local = providers["local"]
    fake = providers["fake"]
    assert list(providers) == ["local", "fake"]
    assert isinstance(local, LocalProvider)
    assert local.name == "local"
    assert local.work_root == (tmp_path / "jobs").resolve()
    assert local.price_per_hour_micros == 360_000
    assert isinstance(fake, FakeProvider)
    assert fake.name == "fake"
    assert fake.price_per_hour_micros == 2_500_000
    assert fake.gpu_types == ["L4", "H100"]
    assert fake.start_seconds == 7
    assert fake.run_seconds == 30
    assert fake.state_file == tmp_path / "fake_instances.json"


def test_build_providers_default_is_fake_only(tmp_path: Path):
    settings = Settings(data_dir=tmp_path, dev_mode=False, providers=[])

    providers = build_providers(settings)

    assert list(providers) == ["fake"]


def test_build_providers_unknown_name_raises(tmp_path: Path):
    settings = Settings(data_dir=tmp_path, providers=["fake", "lambda"])

    with pytest.raises(
        ValueError,
        match=(
            "unknown provider 'lambda' in CAC_PROVIDERS; known providers: local, fake, runpod, aws"
        ),
    ):
        build_providers(settings)


async def test_build_providers_runpod_from_settings(tmp_path: Path):
    settings = Settings(
        data_dir=tmp_path,
        providers=["runpod"],
        runpod_api_key="rp-key",
        runpod_rest_url="http://127.0.0.1:9/v1",
        runpod_graphql_url="http://127.0.0.1:9/graphql",
        runpod_cloud_type="COMMUNITY",
        credits_per_usd="1.25",
    )

    providers = build_providers(settings)

    runpod = providers["runpod"]
    assert isinstance(runpod, RunPodProvider)
    assert runpod.name == "runpod"
    assert runpod.http.rest_url == "http://127.0.0.1:9/v1"
    assert runpod.http.graphql_url == "http://127.0.0.1:9/graphql"
    assert runpod.cloud_type == "COMMUNITY"
    assert runpod.credits_per_usd == Decimal("1.25")
    await runpod.aclose()


def test_build_providers_runpod_without_key_raises(tmp_path: Path):
    settings = Settings(data_dir=tmp_path, providers=["runpod"])

    with pytest.raises(ValueError, match="CAC_RUNPOD_API_KEY is not set"):
        build_providers(settings)


def test_build_providers_aws_from_settings(tmp_path: Path, monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    settings = Settings(
        data_dir=tmp_path,
        providers=["aws"],
        aws_region="us-west-2",
        aws_ami_id="ami-0123456789abcdef0",
        aws_endpoint_url="http://127.0.0.1:9",
    )

    providers = build_providers(settings)

    aws = providers["aws"]
    assert isinstance(aws, AwsProvider)
    assert aws.name == "aws"
    assert aws.region == "us-west-2"
    assert aws.ami_id == "ami-0123456789abcdef0"
    assert aws.credits_per_usd == Decimal("1")
    assert aws.client.meta.endpoint_url == "http://127.0.0.1:9"


def test_build_providers_aws_without_ami_raises(tmp_path: Path):
    settings = Settings(data_dir=tmp_path, providers=["aws"])

    with pytest.raises(ValueError, match="CAC_AWS_AMI_ID is not set"):
        build_providers(settings)


def test_settings_never_show_runpod_key():
    settings = Settings(runpod_api_key="rp-secret-key")

    assert "rp-secret-key" not in repr(settings)
    assert settings.runpod_api_key.get_secret_value() == "rp-secret-key"
