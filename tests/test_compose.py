"""docker-compose.yml and the Dockerfile, checked against the code, because Docker does not run
in the test environment.

The checks: the services that the settings point at exist, every `CAC_*` variable is a real
setting and parses, ports and health checks are set, and each container runs a real `cac`
command.
"""

import argparse
import fnmatch
import json
import re
import tomllib
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import yaml
from pydantic import AliasChoices

from cli.main import build_parser
from config import Settings

ROOT = Path(__file__).resolve().parents[1]
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
SERVICES = COMPOSE["services"]
CAC_SERVICES = ("api", "worker")
LONG_RUNNING = ("postgres", "temporal", "temporal-ui", "minio", "worker", "api")

# Values for the variables that the file requires from the shell (`${NAME:?message}`).
REQUIRED_FROM_SHELL = {"CAC_JWT_SECRET": "compose-test-secret-long-enough-for-hs256"}

_INTERPOLATION = re.compile(r"\$\{(?P<name>\w+)(?:(?P<kind>:-|:\?)(?P<rest>[^}]*))?\}")


def interpolate(value: str) -> str:
    """Resolve `${NAME}`, `${NAME:-default}` and `${NAME:?message}` as Compose does with an
    empty shell environment, except for the names in `REQUIRED_FROM_SHELL`."""

    def replace(match: re.Match) -> str:
        name, kind = match["name"], match["kind"]
        if name in REQUIRED_FROM_SHELL:
            return REQUIRED_FROM_SHELL[name]
        if kind == ":-":
            return match["rest"]
        raise AssertionError(f"${{{name}}} has no default and no value in REQUIRED_FROM_SHELL")

    return _INTERPOLATION.sub(replace, value)


def service_environment(service: str) -> dict[str, str]:
    """The service's environment after interpolation, without pass-through (null) entries."""
    environment = SERVICES[service].get("environment", {})
    return {
        name: interpolate(str(value)) for name, value in environment.items() if value is not None
    }


def setting_variables() -> set[str]:
    """Every environment variable that `Settings` reads, in upper case."""
    prefix = Settings.model_config["env_prefix"]
    names = set()
    for field_name, field in Settings.model_fields.items():
        alias = field.validation_alias
        if isinstance(alias, AliasChoices):
            names |= {choice.upper() for choice in alias.choices if isinstance(choice, str)}
        elif isinstance(alias, str):
            names.add(alias.upper())
        else:
            names.add(f"{prefix}{field_name}".upper())
    return names


def settings_of(service: str, monkeypatch) -> Settings:
    """Settings as the service's container reads them from its environment."""
    for name in setting_variables():
        monkeypatch.delenv(name, raising=False)
    for name, value in service_environment(service).items():
        monkeypatch.setenv(name, value)
    return Settings()


def cac_commands() -> set[str]:
    parser = build_parser()
    (subcommands,) = [
        action for action in parser._actions if isinstance(action, argparse._SubParsersAction)
    ]
    return set(subcommands.choices)


def dockerfile_instruction(name: str) -> list[str]:
    """The JSON (exec form) argument list of the Dockerfile's `name` instruction."""
    (line,) = [
        line
        for line in (ROOT / "Dockerfile").read_text().splitlines()
        if line.startswith(f"{name} ")
    ]
    return json.loads(line.removeprefix(f"{name} "))


def published_container_ports(service: str) -> set[int]:
    return {int(str(mapping).split(":")[-1]) for mapping in SERVICES[service].get("ports", [])}


def test_compose_has_every_service_of_the_stack():
    assert set(SERVICES) == {
        "postgres",
        "temporal",
        "temporal-ui",
        "minio",
        "minio-setup",
        "worker",
        "api",
    }


@pytest.mark.parametrize("service", CAC_SERVICES)
def test_compose_cac_variables_are_real_settings(service):
    known = setting_variables()
    variables = set(SERVICES[service]["environment"])

    unknown = {name for name in variables if name.startswith("CAC_") and name not in known}

    assert unknown == set()
    assert "DATABASE_URL" in known


@pytest.mark.parametrize("service", CAC_SERVICES)
def test_compose_settings_point_at_compose_services(service, monkeypatch):
    settings = settings_of(service, monkeypatch)

    assert settings.temporal_address.split(":")[0] in SERVICES
    assert urlsplit(settings.database_url).hostname in SERVICES
    assert settings.storage == "s3"
    assert urlsplit(settings.s3_endpoint_url).hostname in SERVICES
    assert settings.s3_bucket in SERVICES["minio-setup"]["command"][0]
    assert settings.s3_path_style is True
    assert settings.dev_mode is False
    settings.check_production_safety()


def test_compose_worker_serves_both_metrics_ports(monkeypatch):
    settings = settings_of("worker", monkeypatch)

    assert settings.metrics_host == "0.0.0.0"
    assert settings.metrics_port == 9100
    assert settings.temporal_metrics_port == 9101
    assert published_container_ports("worker") == {9100, 9101}
    assert f"127.0.0.1:{settings.metrics_port}/metrics" in " ".join(
        SERVICES["worker"]["healthcheck"]["test"]
    )


def test_compose_api_publishes_its_port_and_checks_readiness(monkeypatch):
    settings = settings_of("api", monkeypatch)

    assert settings.api_host == "0.0.0.0"
    assert published_container_ports("api") == {settings.api_port}
    assert f"127.0.0.1:{settings.api_port}/readyz" in " ".join(
        SERVICES["api"]["healthcheck"]["test"]
    )


@pytest.mark.parametrize("service", ["api", "worker", "temporal", "temporal-ui", "minio"])
def test_compose_service_publishes_ports(service):
    assert published_container_ports(service) != set()


@pytest.mark.parametrize("service", LONG_RUNNING)
def test_compose_service_has_health_check(service):
    healthcheck = SERVICES[service]["healthcheck"]

    assert healthcheck["test"][0] == "CMD"
    assert len(healthcheck["test"]) > 1
    assert healthcheck["interval"]
    assert healthcheck["retries"] >= 1


def test_compose_dependencies_wait_for_health_or_completion():
    for service, definition in SERVICES.items():
        for dependency, condition in definition.get("depends_on", {}).items():
            assert dependency in SERVICES, (service, dependency)
            if condition["condition"] == "service_healthy":
                assert "healthcheck" in SERVICES[dependency], (service, dependency)
            else:
                assert condition["condition"] == "service_completed_successfully"
                assert SERVICES[dependency]["restart"] == "no", (service, dependency)


def test_compose_api_starts_after_worker_and_temporal():
    depends_on = SERVICES["api"]["depends_on"]

    assert depends_on["worker"] == {"condition": "service_healthy"}
    assert depends_on["temporal"] == {"condition": "service_healthy"}
    assert SERVICES["worker"]["depends_on"]["postgres"] == {"condition": "service_healthy"}


def test_dockerfile_entrypoint_is_the_cac_console_script():
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]

    assert dockerfile_instruction("ENTRYPOINT") == ["cac"]
    assert scripts["cac"] == "cli.main:main"


def test_dockerfile_and_compose_commands_are_cac_subcommands():
    commands = cac_commands()

    assert dockerfile_instruction("CMD")[0] in commands
    for service in CAC_SERVICES:
        assert SERVICES[service]["build"] == "."
        assert SERVICES[service]["command"][0] in commands, service
    assert SERVICES["api"]["command"] == ["api"]
    assert SERVICES["worker"]["command"] == ["worker"]


def test_dockerignore_keeps_what_pip_install_needs():
    patterns = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    packages = pyproject["tool"]["setuptools"]["packages"]["find"]["include"]
    needed = ["pyproject.toml", pyproject["project"]["readme"]]
    needed += [package.removesuffix("*") for package in packages]

    excluded = [
        path for path in needed if any(fnmatch.fnmatch(path, pattern) for pattern in patterns)
    ]

    assert excluded == []
    assert all((ROOT / path).exists() for path in needed)
