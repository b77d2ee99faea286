"""Settings for every part of the system, read from environment variables.

Each field reads the variable `CAC_<FIELD NAME>` (for example `CAC_API_PORT`), except the
database URL, which also reads the conventional `DATABASE_URL`.
"""

from decimal import Decimal
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal

from pydantic import AliasChoices, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

DEV_JWT_SECRET = "dev-only-secret-change-me-for-anything-real"
"""HS256 secret used when none is configured; acceptable only in dev mode."""

MIN_JWT_SECRET_LENGTH = 32

CommaList = Annotated[list[str], NoDecode]


class Settings(BaseSettings):
    """Configuration of the API, the worker and the command line."""

    model_config = SettingsConfigDict(env_prefix="CAC_", extra="ignore")

    dev_mode: bool = False
    """Enables the dev secret and the `local` provider by default. `cac dev` sets it."""

    data_dir: Path = Path(".cac")
    """Directory for the dev Temporal history, the SQLite ledger and `local` job folders."""

    temporal_address: str = "localhost:7233"
    """Temporal frontend, host:port."""

    temporal_namespace: str = "default"
    """Temporal namespace of the job workflows."""

    task_queue: str = "compute-as-credit"
    """Task queue that the worker polls and the API starts workflows on."""

    database_url: str = Field(
        default="",
        validation_alias=AliasChoices("DATABASE_URL", "CAC_DATABASE_URL"),
    )
    """SQLAlchemy URL of the ledger. Empty means a SQLite file `ledger.db` in `data_dir`."""

    jwt_secret: SecretStr = SecretStr(DEV_JWT_SECRET)
    """HS256 secret that signs and verifies API tokens."""

    api_host: str = "127.0.0.1"
    """Address the API binds to."""

    api_port: int = 8080
    """Port the API listens on."""

    providers: CommaList = Field(default_factory=list)
    """Enabled providers, comma-separated. Empty means `local,fake` in dev mode, else `fake`."""

    local_price_per_hour: Decimal = Field(default=Decimal("0.36"), ge=0)
    """Credits per wall-clock hour that the `local` provider charges."""

    fake_price_per_hour: Decimal = Field(default=Decimal("2.5"), ge=0)
    """Credits per hour that the `fake` provider quotes for one GPU."""

    fake_gpu_types: CommaList = Field(default_factory=lambda: ["A10G", "L4", "A100", "H100"])
    """GPU types that the `fake` provider offers, comma-separated."""

    fake_start_seconds: int = Field(default=20, ge=0)
    """Simulated seconds between a `fake` launch and the instance running."""

    fake_run_seconds: int = Field(default=120, ge=0)
    """Simulated seconds that a job's command runs on the `fake` provider."""

    credits_per_usd: Decimal = Field(default=Decimal("1"), gt=0)
    """Credits charged per US dollar of a cloud provider's price (`runpod`, `aws`)."""

    runpod_api_key: SecretStr | None = None
    """RunPod API key; required when `runpod` is enabled."""

    runpod_rest_url: str = "https://rest.runpod.io/v1"
    """Base URL of RunPod's REST API; tests point it at a local stand-in."""

    runpod_graphql_url: str = "https://api.runpod.io/graphql"
    """URL of RunPod's GraphQL API; tests point it at a local stand-in."""

    runpod_cloud_type: Literal["SECURE", "COMMUNITY"] = "SECURE"
    """RunPod cloud that pods are rented in."""

    aws_region: str = "us-east-1"
    """AWS region that the `aws` provider launches EC2 instances in."""

    aws_ami_id: str = ""
    """AMI of the `aws` provider's instances, with Docker and the NVIDIA container toolkit
    installed; required when `aws` is enabled."""

    aws_endpoint_url: str | None = None
    """EC2 endpoint URL; None uses AWS's own. Tests point it at a local emulator."""

    poll_interval_seconds: int = Field(default=5, ge=1)
    """Seconds between two status checks of a running job (a durable timer)."""

    max_attempts: int = Field(default=3, ge=1, le=20)
    """Most provisioning attempts per placement of a job, counting fail-overs."""

    max_preemptions: int = Field(default=3, ge=0, le=20)
    """Most spot preemptions a job recovers from before it fails."""

    readiness_timeout_seconds: int = Field(default=900, ge=1)
    """Seconds an instance may take to start running before the next offer is tried."""

    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    """Lowest level of the log lines written to standard error; `cac api` and `cac worker`
    write them as JSON."""

    dev_tenant: str = "dev"
    """Tenant that `cac dev` grants starting credits to and mints its token for."""

    dev_grant_credits: Decimal = Decimal("100")
    """Credits that `cac dev` grants the dev tenant, once."""

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper_case(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value

    @field_validator("providers", "fake_gpu_types", mode="before")
    @classmethod
    def _split_commas(cls, value: object) -> object:
        if isinstance(value, str):
            return [item.strip() for item in value.split(",") if item.strip()]
        return value

    @model_validator(mode="after")
    def _fill_defaults(self) -> "Settings":
        if not self.providers:
            self.providers = ["local", "fake"] if self.dev_mode else ["fake"]
        if not self.database_url:
            self.database_url = f"sqlite:///{(self.data_dir / 'ledger.db').resolve()}"
        return self

    def check_production_safety(self) -> None:
        """Raise ValueError when a setting is unsafe outside dev mode."""
        if self.dev_mode:
            return
        secret = self.jwt_secret.get_secret_value()
        if secret == DEV_JWT_SECRET:
            raise ValueError("CAC_JWT_SECRET is the dev secret; set a real one or CAC_DEV_MODE=true")
        if len(secret) < MIN_JWT_SECRET_LENGTH:
            raise ValueError(
                f"CAC_JWT_SECRET has {len(secret)} characters; use at least {MIN_JWT_SECRET_LENGTH}"
            )


@lru_cache
def get_settings() -> Settings:
    """Return the process-wide settings, read once from the environment."""
    return Settings()
