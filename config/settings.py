"""Settings for every part of the system, read from environment variables.

Each field reads the variable `CAC_<FIELD NAME>` (for example `CAC_API_PORT`), except the
database URL, which also reads the conventional `DATABASE_URL`.
"""

import hashlib
import hmac
from decimal import Decimal
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import AliasChoices, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

DEV_JWT_SECRET = "dev-only-secret-change-me-for-anything-real"
"""HS256 secret used when none is configured; acceptable only in dev mode."""

MIN_JWT_SECRET_LENGTH = 32

HMAC_ALGORITHMS = frozenset({"HS256", "HS384", "HS512"})
"""JWT algorithms verified with `CAC_JWT_SECRET`."""

ASYMMETRIC_ALGORITHMS = frozenset(
    {"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}
)
"""JWT algorithms verified with a public key from `CAC_JWKS_URL`."""

_LOOPBACK_HOSTS = frozenset({"127.0.0.1", "::1", "localhost"})

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
    """HMAC secret that signs and verifies API tokens (HS256, HS384, HS512)."""

    webhook_secret: SecretStr | None = None
    """Key from which each tenant's webhook signing secret is derived. When unset, the JWT
    secret is used, with a label that keeps the derived secrets apart from tokens."""

    jwt_algorithms: CommaList = Field(default_factory=lambda: ["HS256"])
    """Algorithms a token may be signed with, comma-separated. The token's own `alg` header
    only picks one of these. HS* use `jwt_secret`; RS*, PS*, ES* and EdDSA use `jwks_url`."""

    jwks_url: str | None = None
    """URL of the identity provider's JSON Web Key Set, for tokens signed with an asymmetric
    algorithm; required when `jwt_algorithms` lists one."""

    jwks_cache_seconds: int = Field(default=300, ge=1)
    """Seconds a fetched key set is used before it is fetched again."""

    jwt_issuer: str | None = None
    """Required `iss` claim of every token; None accepts any issuer."""

    jwt_audience: str | None = None
    """Audience that a token's `aud` claim must contain. None accepts only tokens without
    `aud`, because a token with an audience was issued for some other service."""

    jwt_leeway_seconds: int = Field(default=30, ge=0, le=300)
    """Clock skew tolerated when checking `exp`, `nbf` and `iat`, in seconds."""

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

    storage: Literal["local", "s3"] = "local"
    """Store of job inputs and outputs: `local` for files under `data_dir/objects` that the
    API serves, or `s3` for a bucket of any S3-compatible service."""

    s3_bucket: str = ""
    """Bucket of job inputs and outputs; required when `storage` is `s3`."""

    s3_endpoint_url: str | None = None
    """Endpoint of an S3-compatible service such as MinIO; None uses AWS S3's."""

    s3_public_endpoint_url: str | None = None
    """Endpoint that API clients reach the service at, when it differs from `s3_endpoint_url`
    (MinIO inside docker-compose); presigned URLs name it. None uses `s3_endpoint_url`."""

    s3_region: str = "us-east-1"
    """Region of the bucket, signed into every presigned URL."""

    s3_access_key_id: str | None = None
    """S3 access key; None uses boto3's default credential chain."""

    s3_secret_access_key: SecretStr | None = None
    """Secret of `s3_access_key_id`."""

    s3_path_style: bool = False
    """Address the bucket in the URL path instead of the host name; MinIO needs it."""

    public_base_url: str = ""
    """URL at which clients reach the API, the start of `local` object URLs. Empty means
    `http://127.0.0.1:<api_port>`."""

    io_url_ttl_seconds: int = Field(default=3600, ge=1, le=7 * 24 * 3600)
    """Seconds that presigned input and output URLs stay valid; S3 accepts at most 7 days."""

    poll_interval_seconds: int = Field(default=5, ge=1)
    """Seconds between two status checks of a running job (a durable timer)."""

    max_attempts: int = Field(default=3, ge=1, le=20)
    """Most provisioning attempts per placement of a job, counting fail-overs."""

    max_preemptions: int = Field(default=3, ge=0, le=20)
    """Most spot preemptions a job recovers from before it fails."""

    readiness_timeout_seconds: int = Field(default=900, ge=1)
    """Seconds an instance may take to start running before the next offer is tried."""

    history_event_limit: int = Field(default=5000, ge=100, le=50_000)
    """Workflow history events after which a running job continues as new, carrying its state.
    Temporal warns at 10,240 events and fails a workflow at 51,200."""

    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    """Lowest level of the log lines written to standard error; `cac api` and `cac worker`
    write them as JSON."""

    metrics_host: str = "127.0.0.1"
    """Address that the worker's two Prometheus endpoints bind to; `0.0.0.0` in a container."""

    metrics_port: int = Field(default=0, ge=0, le=65535)
    """Port of the worker's Prometheus endpoint for job, placement and credit metrics; 0 turns
    it off. The API serves its own metrics at `/metrics` on `api_port`."""

    temporal_metrics_port: int = Field(default=0, ge=0, le=65535)
    """Port of the worker's Prometheus endpoint for the Temporal SDK's own metrics (task
    latencies, pollers, failures); 0 turns it off."""

    otel_exporter: Literal["none", "console", "otlp"] = "none"
    """Exporter of the API's and the worker's OpenTelemetry traces: `none`, `console` (standard
    output) or `otlp` (OTLP/HTTP to `OTEL_EXPORTER_OTLP_ENDPOINT`, default http://localhost:4318)."""

    dev_tenant: str = "dev"
    """Tenant that `cac dev` grants starting credits to and mints its token for."""

    dev_grant_credits: Decimal = Decimal("100")
    """Credits that `cac dev` grants the dev tenant, once."""

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper_case(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value

    @field_validator("providers", "fake_gpu_types", "jwt_algorithms", mode="before")
    @classmethod
    def _split_commas(cls, value: object) -> object:
        if isinstance(value, str):
            return [item.strip() for item in value.split(",") if item.strip()]
        return value

    @field_validator("jwt_algorithms")
    @classmethod
    def _check_algorithms(cls, algorithms: list[str]) -> list[str]:
        if not algorithms:
            raise ValueError("must name at least one algorithm, such as HS256 or RS256")
        supported = HMAC_ALGORITHMS | ASYMMETRIC_ALGORITHMS
        for algorithm in algorithms:
            if algorithm not in supported:
                raise ValueError(
                    f"unsupported JWT algorithm {algorithm!r}; use some of"
                    f" {', '.join(sorted(supported))}"
                )
        return algorithms

    @model_validator(mode="after")
    def _check_key_source(self) -> "Settings":
        asymmetric = ASYMMETRIC_ALGORITHMS.intersection(self.jwt_algorithms)
        if asymmetric and not self.jwks_url:
            raise ValueError(
                f"CAC_JWT_ALGORITHMS lists {', '.join(sorted(asymmetric))}, which need"
                " CAC_JWKS_URL to verify tokens; set it or accept only HS256"
            )
        if self.jwks_url and urlsplit(self.jwks_url).scheme not in ("http", "https"):
            raise ValueError(f"CAC_JWKS_URL {self.jwks_url!r} must be an http or https URL")
        return self

    @model_validator(mode="after")
    def _fill_defaults(self) -> "Settings":
        if not self.providers:
            self.providers = ["local", "fake"] if self.dev_mode else ["fake"]
        if not self.database_url:
            self.database_url = f"sqlite:///{(self.data_dir / 'ledger.db').resolve()}"
        if not self.public_base_url:
            self.public_base_url = f"http://127.0.0.1:{self.api_port}"
        return self

    @model_validator(mode="after")
    def _distinct_metrics_ports(self) -> "Settings":
        if self.metrics_port and self.metrics_port == self.temporal_metrics_port:
            raise ValueError(
                f"CAC_METRICS_PORT and CAC_TEMPORAL_METRICS_PORT are both {self.metrics_port};"
                " give them different ports"
            )
        return self

    def tenant_webhook_secret(self, tenant_id: str) -> str:
        """Return the secret that signs the tenant's webhook deliveries, as 64 hex digits."""
        key = (self.webhook_secret or self.jwt_secret).get_secret_value().encode()
        message = f"cac webhook secret\n{tenant_id}".encode()
        return hmac.new(key, message, hashlib.sha256).hexdigest()

    def check_production_safety(self) -> None:
        """Raise ValueError when a setting is unsafe outside dev mode."""
        if self.dev_mode:
            return

        if ASYMMETRIC_ALGORITHMS.intersection(self.jwt_algorithms):
            self._check_jwks_safety()
        if self.storage == "local" and not HMAC_ALGORITHMS.intersection(self.jwt_algorithms):
            self._check_object_url_secret()
        # Checked even when no accepted algorithm is HMAC, because `cac token` signs with the
        # secret and the webhook secrets are derived from it unless CAC_WEBHOOK_SECRET is set.
        secret = self.jwt_secret.get_secret_value()
        if secret == DEV_JWT_SECRET:
            raise ValueError("CAC_JWT_SECRET is the dev secret; set a real one or CAC_DEV_MODE=true")
        if len(secret) < MIN_JWT_SECRET_LENGTH:
            raise ValueError(
                f"CAC_JWT_SECRET has {len(secret)} characters; use at least {MIN_JWT_SECRET_LENGTH}"
            )

    def _check_object_url_secret(self) -> None:
        secret = self.jwt_secret.get_secret_value()
        if secret == DEV_JWT_SECRET or len(secret) < MIN_JWT_SECRET_LENGTH:
            raise ValueError(
                "CAC_STORAGE is local, whose object URLs are signed with a key derived from"
                f" CAC_JWT_SECRET; set a secret of at least {MIN_JWT_SECRET_LENGTH} characters"
                " that is not the dev secret, or use CAC_STORAGE=s3"
            )

    def _check_jwks_safety(self) -> None:
        url = urlsplit(self.jwks_url or "")
        if url.scheme != "https" and url.hostname not in _LOOPBACK_HOSTS:
            raise ValueError(
                f"CAC_JWKS_URL {self.jwks_url!r} must use https, because anyone on the path"
                " of a plain http request could replace the keys"
            )
        if not self.jwt_audience:
            raise ValueError(
                "CAC_JWT_AUDIENCE is not set; with an identity provider's keys, set it to this"
                " API's audience so that tokens issued for other services are rejected"
            )


@lru_cache
def get_settings() -> Settings:
    """Return the process-wide settings, read once from the environment."""
    return Settings()
