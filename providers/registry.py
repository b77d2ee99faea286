"""Build the provider adapters that the settings enable."""

from collections.abc import Callable

from config.settings import Settings
from ledger.money import credits_to_micros
from providers.base import ProviderClient
from providers.fake import FakeProvider
from providers.local import LocalProvider
from storage import build_object_store


def _build_local(settings: Settings) -> LocalProvider:
    return LocalProvider(
        work_root=settings.data_dir / "jobs",
        price_per_hour_micros=credits_to_micros(settings.local_price_per_hour),
        store=build_object_store(settings),
    )


def _build_fake(settings: Settings) -> FakeProvider:
    # The state file keeps simulated instances across a worker restart, so that running jobs
    # can still poll and terminate them.
    return FakeProvider(
        price_per_hour_micros=credits_to_micros(settings.fake_price_per_hour),
        gpu_types=settings.fake_gpu_types,
        start_seconds=settings.fake_start_seconds,
        run_seconds=settings.fake_run_seconds,
        state_file=settings.data_dir / "fake_instances.json",
    )


def _build_runpod(settings: Settings) -> ProviderClient:
    # Imported here, so that a worker without `runpod` enabled does not load its client.
    from providers.runpod import RunPodProvider
    from providers.runpod_http import RunPodHttp

    if settings.runpod_api_key is None or not settings.runpod_api_key.get_secret_value():
        raise ValueError("CAC_RUNPOD_API_KEY is not set; it is required when runpod is enabled")
    http = RunPodHttp(
        api_key=settings.runpod_api_key.get_secret_value(),
        rest_url=settings.runpod_rest_url,
        graphql_url=settings.runpod_graphql_url,
    )
    return RunPodProvider(
        http=http,
        credits_per_usd=settings.credits_per_usd,
        cloud_type=settings.runpod_cloud_type,
    )


def _build_aws(settings: Settings) -> ProviderClient:
    # Imported here, so that a worker without `aws` enabled does not load boto3's EC2 model.
    from providers.aws import AwsProvider

    if not settings.aws_ami_id:
        raise ValueError(
            "CAC_AWS_AMI_ID is not set; it is required when aws is enabled. Use an AMI with"
            " Docker and the NVIDIA container toolkit, such as an AWS Deep Learning Base AMI"
        )
    return AwsProvider(
        region=settings.aws_region,
        ami_id=settings.aws_ami_id,
        credits_per_usd=settings.credits_per_usd,
        endpoint_url=settings.aws_endpoint_url,
    )


PROVIDER_BUILDERS: dict[str, Callable[[Settings], ProviderClient]] = {
    "local": _build_local,
    "fake": _build_fake,
    "runpod": _build_runpod,
    "aws": _build_aws,
}
"""Builder of each provider that can be enabled, by name."""


def build_providers(settings: Settings) -> dict[str, ProviderClient]:
    """Build the providers named in `settings.providers`, keyed by name, in that order.

    Raises:
        ValueError: A name is not a known provider.
    """
    unknown = [name for name in settings.providers if name not in PROVIDER_BUILDERS]
    if unknown:
        raise ValueError(
            f"unknown provider {', '.join(map(repr, unknown))} in CAC_PROVIDERS;"
            f" known providers: {', '.join(PROVIDER_BUILDERS)}"
        )
    return {name: PROVIDER_BUILDERS[name](settings) for name in settings.providers}
