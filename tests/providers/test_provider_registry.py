"""build_providers: which adapters the settings enable, and with what prices."""

from pathlib import Path

import pytest

from config.settings import Settings
from providers.fake import FakeProvider
from providers.local import LocalProvider
from providers.registry import build_providers


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
    settings = Settings(data_dir=tmp_path, providers=["fake", "runpod"])

    with pytest.raises(ValueError, match="unknown provider 'runpod' in CAC_PROVIDERS; known providers: local, fake"):
        build_providers(settings)
