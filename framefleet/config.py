"""Settings: one pydantic-settings object, every field read from a FRAMEFLEET_ environment variable.

docs/configuration.md lists each setting with its default; keep the two in step.
"""

from __future__ import annotations

import ipaddress
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from framefleet.core.specbase import Priority
from framefleet.redis_url import parse_redis_url
from framefleet.tenancy.oidc import OidcConfig
from framefleet.tenancy.permissions import ROLES
from framefleet.tenancy.ratelimit import Bucket, parse_bucket

# The job priorities, highest first (core/spec.py's Priority; spelled out so settings load without the spec).
PriorityName = Literal["live", "high", "normal", "low", "batch"]

RetryField = Literal["base_seconds", "cap_seconds", "max_attempts"]


def _live_retries() -> dict[PriorityName, dict[RetryField, float]]:
    # A live job's viewers are waiting: retry it sooner and more often than the default.
    return {"live": {"base_seconds": 1.0, "cap_seconds": 30.0}}


PLACEHOLDER_SECRETS = {"", "change-me", "dev-secret", "secret", "changeme"}


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="FRAMEFLEET_", extra="ignore")

    env: Literal["dev", "test", "prod"] = "dev"
    data_dir: Path = Path(".data")
    database_url: str = ""
    # redis://, rediss://, unix:// or redis+sentinel://host:port,host:port/<master-name>/<db> (redis_url.py)
    redis_url: str = "redis://127.0.0.1:6390/0"
    secret_key: str = "dev-secret"

    # Storage: file:// URIs must resolve inside one of these roots (default: <data_dir>/media).
    storage_roots: list[Path] = Field(default_factory=list)
    output_root: str = ""
    # S3 locations (s3://bucket or s3://bucket/prefix) in which every tenant owns `tenants/<tenant>/`.
    s3_roots: list[str] = Field(default_factory=list)
    # Locations granted to every tenant (file:// or s3:// URI prefixes): read-only, and read-write.
    shared_storage: list[str] = Field(default_factory=list)
    shared_storage_writable: list[str] = Field(default_factory=list)
    s3_endpoint_url: str | None = None
    s3_region: str = "us-east-1"
    # Azure Blob locations (azure://container or azure://container/prefix) with `tenants/<tenant>/` inside.
    azure_roots: list[str] = Field(default_factory=list)
    # Azure credentials: a connection string (it names the endpoint, Azurite's too), or an account URL
    # with an account key or a SAS token (neither: anonymous, for public containers).
    azure_connection_string: str | None = None
    azure_account_url: str | None = None
    azure_account_name: str | None = None
    azure_account_key: str | None = None
    azure_sas_token: str | None = None
    # GCS locations (gs://bucket or gs://bucket/prefix) with `tenants/<tenant>/` inside.
    gcs_roots: list[str] = Field(default_factory=list)
    gcs_project: str | None = None
    # An emulator's endpoint; set, and with no credentials file, requests go unauthenticated.
    gcs_endpoint_url: str | None = None
    # A service-account key file; unset: the environment's default credentials.
    gcs_credentials_file: Path | None = None
    http_allow_private: bool = False
    http_max_bytes: int = 10 * 1024**3
    http_timeout_seconds: float = 60.0
    # Downloads: how long the pre-signed URL of a 307 answer works, and the longest share link allowed.
    download_link_seconds: int = Field(default=300, ge=10)
    share_max_seconds: int = Field(default=7 * 86400, ge=60)
    # Uploads (tus): where part files are staged (default <data_dir>/uploads; best on the filesystem of the
    # output root, so publishing a finished upload is a rename), the largest upload a tenant may make
    # (its settings' `uploads.max_bytes` overrides), how long an upload left without a byte lives, and
    # how long a pre-signed upload URL works.
    upload_dir: Path | None = None
    # Folders under which tenants may register `file` storage profiles (none by default: file profiles
    # are refused until an operator lists where they may point).
    profile_file_roots: list[Path] = Field(default_factory=list)
    # Whether a storage profile's endpoint may be a private, loopback or link-local address (a MinIO on
    # the LAN); off, such endpoints are refused when a profile is written, so tenants cannot aim the
    # workers at internal services.
    profile_endpoint_allow_private: bool = False
    upload_max_bytes: int = Field(default=50 * 1024**3, ge=1)
    upload_expiry_seconds: int = Field(default=86400, ge=60)
    upload_link_seconds: int = Field(default=3600, ge=60)

    # API
    api_host: str = "127.0.0.1"
    api_port: int = 8000
    # uvicorn worker processes of `framefleet api`; above 1, their metrics are summed (multiprocess mode).
    api_workers: int = Field(default=1, ge=1, le=64)
    public_url: str = ""
    # Browser origins allowed to call the API (CORS), exactly as sent in Origin (https://console.example).
    # Empty (the default): no CORS headers at all, so browsers on other origins cannot read answers.
    cors_origins: list[str] = Field(default_factory=list)
    sse_keepalive_seconds: float = 15.0
    # An authenticated key is remembered this long per API process; a revoked key works at most this long.
    api_key_cache_seconds: float = 5.0
    # Overload: each API process works on at most this many requests at once (an event stream counts only
    # until its headers are sent); up to api_max_waiting more wait at most api_admission_wait_seconds for
    # a slot; beyond either, 503 at once.
    api_max_in_flight: int = Field(default=64, ge=1)
    api_max_waiting: int = Field(default=256, ge=0)
    api_admission_wait_seconds: float = Field(default=1.0, ge=0)
    # Worker threads an API process runs blocking work (database calls) in; the pool must cover them.
    api_threads: int = Field(default=16, ge=1)
    # Retry-After (seconds) on 503 answers given because the process is busy.
    api_retry_after_seconds: int = Field(default=1, ge=1)
    # Database connections per process: pool_size kept open, up to max_overflow more under load; a thread
    # that finds them all taken waits db_pool_timeout_seconds, then the request is answered 503.
    db_pool_size: int = Field(default=10, ge=1)
    db_max_overflow: int = Field(default=10, ge=0)
    db_pool_timeout_seconds: float = Field(default=1.0, gt=0)
    # Event streams: open streams per API process and per tenant in it; a client that falls this many
    # events behind is disconnected (it resumes with Last-Event-ID).
    sse_max_streams: int = Field(default=10_000, ge=1)
    sse_max_streams_per_tenant: int = Field(default=2_000, ge=1)
    # At least the event hub's XREAD batch (100 per job): one batch is put in every queue at once, so a
    # smaller buffer would cut off even a client that keeps up.
    sse_client_buffer_events: int = Field(default=1_000, ge=100)
    # Addresses of the proxies (CIDRs) whose X-Forwarded-For names the client; from any other peer the
    # header is ignored. The one client address feeds key CIDR allowlists, rate limits and the audit log.
    trusted_proxies: list[str] = Field(default_factory=list)
    # Single sign-on (docs/security.md): bearer JWTs from an OIDC provider, on when issuer, audience and JWKS
    # URL are all set. The JWKS URL is fetched wherever it points (internal addresses too): it is the
    # operator's setting, not a caller's.
    oidc_issuer: str | None = None
    oidc_audience: str | None = None
    oidc_jwks_url: str | None = None
    oidc_tenant_claim: str = "tenant"
    oidc_role_claim: str = "role"
    oidc_role_map: dict[str, str] = Field(default_factory=dict)
    oidc_algorithms: list[str] = Field(default_factory=lambda: ["RS256", "ES256"])
    oidc_leeway_seconds: float = Field(default=30.0, ge=0, le=300)
    oidc_jwks_ttl_seconds: float = Field(default=300.0, gt=0)
    oidc_jwks_refetch_seconds: float = Field(default=30.0, ge=0)
    # Console sign-in through the provider (authorization code + PKCE, docs/console.md): on when single
    # sign-on is on and a client id is set. The endpoints come from the issuer's discovery document unless
    # set here; like the JWKS URL they are the operator's settings, fetched wherever they point.
    oidc_client_id: str | None = None
    oidc_client_secret: str | None = None
    oidc_provider_name: str = Field(default="single sign-on", min_length=1, max_length=64)
    oidc_scopes: str = "openid"
    oidc_authorize_url: str | None = None
    oidc_token_url: str | None = None
    # Request rate limits (token buckets in Redis shared by every API process, docs/security.md): per key by
    # its role, per tenant, and per client address for requests without a valid key. A tenant's settings
    # may override the first two (`rate_limits`).
    rate_limits_enabled: bool = True
    rate_limit_roles: dict[str, dict[str, float]] = Field(
        default_factory=lambda: {
            "admin": {"burst": 200.0, "per_second": 50.0},
            "operator": {"burst": 200.0, "per_second": 50.0},
            "member": {"burst": 200.0, "per_second": 50.0},
            "viewer": {"burst": 100.0, "per_second": 20.0},
        }
    )
    rate_limit_tenant: dict[str, float] = Field(
        default_factory=lambda: {"burst": 1000.0, "per_second": 200.0}
    )
    rate_limit_anonymous: dict[str, float] = Field(
        default_factory=lambda: {"burst": 300.0, "per_second": 50.0}
    )

    # Fair share (scheduling/fairshare.py): jobs of one tenant queued in one queue at once, times its weight
    # (settings `fair_share.weight`); the rest wait `pending` (fair-share) in the database and move up one
    # for one as the tenant's jobs are taken. On by default: a newcomer's first job waits behind at most
    # this many jobs of each busy tenant, and a lone tenant keeps its workers as busy as without it (every
    # claim puts its next job in line). 0: off, one first-in-first-out line per queue.
    fair_share_in_flight: int = Field(default=4, ge=0)

    # Worker
    pool: Literal["cpu", "gpu"] = "cpu"
    worker_concurrency: int = 1
    ffmpeg_path: str = ""
    ffmpeg_threads: int = 0
    job_max_seconds: int = 6 * 3600
    progress_event_interval: float = 0.5
    progress_db_interval: float = 2.0
    cancel_poll_interval: float = 0.2
    work_dir: Path | None = None
    events_ttl_seconds: int = 7 * 24 * 3600
    # A child process is replaced after this many jobs (0: never), bounding slow leaks in long-lived workers.
    worker_max_tasks_per_child: int = Field(default=200, ge=0)
    # On SIGTERM a worker takes no new job and lets the running one finish this long, then hands it back.
    shutdown_grace_seconds: float = Field(default=20.0, ge=0)
    # A worker that meets a database outage holds what it has (a finished encode's result, the claim of its
    # next job) and writes it once the database is back, for at most this long (db/outage.py).
    db_outage_hold_seconds: float = Field(default=600.0, ge=0)

    # Scheduling under failure: heartbeats, the beat's maintenance tasks, retries, limits, aging.
    heartbeat_interval_seconds: float = Field(default=10.0, gt=0)
    # A worker whose heartbeat is older than this is dead; its running job is taken back.
    heartbeat_ttl_seconds: float = Field(default=30.0, gt=0)
    capability_trial_timeout_seconds: float = Field(default=20.0, gt=0)
    reaper_interval_seconds: float = Field(default=5.0, gt=0)
    reconcile_interval_seconds: float = Field(default=15.0, gt=0)
    # A queued job younger than this is never republished: its message may simply not be in Redis yet.
    reconcile_grace_seconds: float = Field(default=30.0, ge=0)
    retry_promote_interval_seconds: float = Field(default=1.0, gt=0)
    # Cron schedules (workflows/schedules.py): how often the beat looks for due ones, and how late a fire may
    # be and still count as on time (later ones were missed in an outage: run once, or skipped).
    schedule_interval_seconds: float = Field(default=1.0, gt=0)
    schedule_late_seconds: float = Field(default=60.0, gt=0)
    beat_leader_ttl_seconds: float = Field(default=15.0, gt=0)
    # Retention (docs/storage.md): how often the beat leader sweeps, how many jobs one pass handles, and
    # how long a job's row outlives its deleted files (None: rows are kept for ever).
    retention_interval_seconds: float = Field(default=300.0, gt=0)
    retention_batch: int = Field(default=100, ge=1, le=10_000)
    retention_job_rows_days: int | None = Field(default=None, ge=0)
    # Worker pool management (docs/scaling.md): how often a worker node reads whether an operator holds it
    # (cordon or drain), and the window and queue-wait target behind GET /v1/pools' estimates.
    worker_control_poll_seconds: float = Field(default=1.0, gt=0)
    pool_rate_window_seconds: float = Field(default=300.0, gt=0)
    pool_queue_wait_target_seconds: float = Field(default=60.0, gt=0)
    retry_base_seconds: float = Field(default=10.0, ge=0)
    retry_cap_seconds: float = Field(default=600.0, ge=0)
    retry_max_attempts: int = Field(default=3, ge=1)
    # Per-priority overrides of base_seconds, cap_seconds, max_attempts: {"live": {"base_seconds": 1}}.
    retry_overrides: dict[PriorityName, dict[RetryField, float]] = Field(default_factory=_live_retries)
    timeout_factor: float = Field(default=10.0, gt=0)
    timeout_floor_seconds: float = Field(default=300.0, gt=0)
    stall_timeout_seconds: float = Field(default=120.0, ge=0)
    aging_seconds: float = Field(default=600.0, ge=0)
    aging_max_priority: PriorityName = "high"
    aging_interval_seconds: float = Field(default=5.0, gt=0)
    # Preemption (scheduling/preemption.py, off by default): in each pool named here, once every worker
    # is busy and a `live` job has waited longer than preempt_after_seconds, the beat leader stops the
    # lowest-priority running job and hands it back to its queue (not a failed attempt).
    preempt_pools: list[Literal["cpu", "gpu"]] = Field(default_factory=list)
    preempt_after_seconds: float = Field(default=30.0, ge=0)
    admission_check: bool = True
    admission_cache_seconds: float = Field(default=2.0, ge=0)
    # Workers seen within this long count as members of their pool when deciding what can run.
    workers_known_seconds: float = Field(default=7 * 24 * 3600.0, gt=0)

    # Webhooks (framefleet/webhooks, docs/workflows.md): targets on internal addresses are refused unless
    # allowed; each POST may take webhook_timeout_seconds; a refused delivery is retried with exponential
    # backoff and jitter (base doubling to the cap) up to webhook_max_attempts attempts (at least 24 h with
    # the defaults), then given up and its endpoint marked failing.
    webhook_allow_private: bool = False
    webhook_timeout_seconds: float = Field(default=5.0, gt=0, le=60)
    webhook_retry_base_seconds: float = Field(default=10.0, ge=0)
    webhook_retry_cap_seconds: float = Field(default=3600.0, ge=0)
    webhook_max_attempts: int = Field(default=33, ge=1)
    # How long the previous secret keeps signing after a rotation (unless the request says otherwise).
    webhook_rotation_grace_seconds: float = Field(default=24 * 3600.0, ge=0)
    # The progress milestones (percent) a job's `job.progress` events report, each at most once per job;
    # an empty list sends none. Endpoints opt in by naming `job.progress` among their event types.
    webhook_progress_milestones: list[Annotated[int, Field(ge=1, le=99)]] = Field(
        default_factory=lambda: [25, 50, 75]
    )
    # Sending threads of one `framefleet webhooks worker`, and how long one may hold a delivery.
    webhook_senders: int = Field(default=4, ge=1)
    webhook_lease_seconds: float = Field(default=120.0, gt=0)

    # Observability (docs/observability.md): a worker's, the beat's and the webhook sender's /metrics port (0:
    # not served; the API serves its own at /metrics), the address they listen on, and the bound on the tenant
    # label.
    worker_metrics_port: int = Field(default=0, ge=0, le=65535)
    beat_metrics_port: int = Field(default=0, ge=0, le=65535)
    webhooks_metrics_port: int = Field(default=0, ge=0, le=65535)
    metrics_host: str = "127.0.0.1"
    metrics_tenants: list[str] = Field(default_factory=list)
    metrics_max_tenants: int = Field(default=100, ge=0)
    queue_metrics_interval_seconds: float = Field(default=5.0, gt=0)
    # Cost of a job (observability/cost.py): energy price, CPU and GPU rates, and the watts per busy core
    # that estimate energy where RAPL counters cannot be read.
    cost_currency: str = "EUR"
    energy_price_per_kwh: float = Field(default=0.30, ge=0)
    cpu_hour_rate: float = Field(default=0.0, ge=0)
    gpu_hour_rate: float = Field(default=0.0, ge=0)
    watts_per_core: float = Field(default=12.0, ge=0)
    # The watts a GPU encode is taken to draw where NVML's energy counter cannot be read.
    watts_per_gpu: float = Field(default=70.0, ge=0)
    # Service-level objectives (observability/slo.py): the share (`slo_target`) of each priority's jobs that
    # must start within its queue-wait threshold, judged over `slo_window_days`. The burn-rate rules shipped
    # in config/alerts/framefleet.yml use these defaults; each threshold must be a bucket bound of
    # framefleet_job_queue_wait_seconds for the rules to measure it.
    slo_queue_wait_seconds: dict[Priority, Annotated[float, Field(gt=0)]] = Field(
        default_factory=lambda: {
            Priority.live: 5.0,
            Priority.high: 60.0,
            Priority.normal: 900.0,
            Priority.low: 3600.0,
            Priority.batch: 14400.0,
        }
    )
    slo_target: float = Field(default=0.99, gt=0, lt=1)
    slo_window_days: int = Field(default=30, ge=1, le=90)
    powercap_root: Path = Path("/sys/class/powercap")

    # Embedded stack (`framefleet up`)
    flower_port: int = 5555
    # The Prometheus of `framefleet up --monitoring` (cli/monitoring.py), on 127.0.0.1.
    prometheus_port: int = Field(default=9090, ge=1, le=65535)
    prometheus_scrape_interval_seconds: float = Field(default=15.0, ge=1)
    log_format: Literal["json", "console"] = "json"
    log_level: str = "INFO"

    @model_validator(mode="after")
    def _derive_defaults(self) -> Settings:
        self.data_dir = self.data_dir.resolve()
        if not self.database_url:
            self.database_url = f"sqlite:///{self.data_dir / 'framefleet.db'}"
        if not self.storage_roots:
            self.storage_roots = [self.data_dir / "media"]
        self.storage_roots = [p.resolve() for p in self.storage_roots]
        if not self.output_root:
            self.output_root = (self.storage_roots[0] / "outputs").as_uri()
        self.s3_roots = [_storage_prefix(u, ("s3",), "FRAMEFLEET_S3_ROOTS") for u in self.s3_roots]
        self.azure_roots = [
            _storage_prefix(u, ("azure", "az"), "FRAMEFLEET_AZURE_ROOTS") for u in self.azure_roots
        ]
        self.gcs_roots = [_storage_prefix(u, ("gs",), "FRAMEFLEET_GCS_ROOTS") for u in self.gcs_roots]
        for name in ("shared_storage", "shared_storage_writable"):
            env = f"FRAMEFLEET_{name.upper()}"
            schemes = ("file", "s3", "azure", "az", "gs")
            setattr(self, name, [_storage_prefix(u, schemes, env) for u in getattr(self, name)])
        self.upload_dir = (self.upload_dir or self.data_dir / "uploads").resolve()
        parse_redis_url(self.redis_url)  # a malformed Redis or Sentinel URL refuses to start
        if not self.public_url:
            self.public_url = f"http://{self.api_host}:{self.api_port}"
        if self.heartbeat_ttl_seconds < 2 * self.heartbeat_interval_seconds:
            raise ValueError("FRAMEFLEET_HEARTBEAT_TTL_SECONDS must be at least twice the heartbeat interval")
        # The API's threads, its intake writer and a request closing its session may all hold a connection.
        if self.db_pool_size + self.db_max_overflow < self.api_threads + 2:
            raise ValueError(
                "FRAMEFLEET_DB_POOL_SIZE + FRAMEFLEET_DB_MAX_OVERFLOW must be at least "
                "FRAMEFLEET_API_THREADS + 2"
            )
        if self.timeout_floor_seconds > self.job_max_seconds:
            raise ValueError("FRAMEFLEET_TIMEOUT_FLOOR_SECONDS cannot exceed FRAMEFLEET_JOB_MAX_SECONDS")
        if "*" in self.cors_origins:
            raise ValueError("FRAMEFLEET_CORS_ORIGINS lists origins; '*' (any origin) is not allowed")
        self.cors_origins = [origin.rstrip("/") for origin in self.cors_origins]
        self.trusted_proxies = [str(ipaddress.ip_network(net, strict=False)) for net in self.trusted_proxies]
        self.rate_limit_buckets()  # malformed limits refuse to start
        self.oidc_config()  # so does a half or unsafe single sign-on set-up
        if self.env == "prod" and self.secret_key.strip().lower() in PLACEHOLDER_SECRETS:
            raise ValueError("FRAMEFLEET_SECRET_KEY must be set to a real secret when FRAMEFLEET_ENV=prod")
        return self

    def rate_limit_buckets(self) -> tuple[dict[str, Bucket], Bucket, Bucket]:
        """The default buckets: per role (every role has one), per tenant, per anonymous client address."""
        if set(self.rate_limit_roles) != set(ROLES):
            raise ValueError(f"FRAMEFLEET_RATE_LIMIT_ROLES must give a bucket for each of {', '.join(ROLES)}")
        roles = {
            role: parse_bucket(value, field=f"FRAMEFLEET_RATE_LIMIT_ROLES.{role}")
            for role, value in self.rate_limit_roles.items()
        }
        tenant = parse_bucket(self.rate_limit_tenant, field="FRAMEFLEET_RATE_LIMIT_TENANT")
        anonymous = parse_bucket(self.rate_limit_anonymous, field="FRAMEFLEET_RATE_LIMIT_ANONYMOUS")
        return roles, tenant, anonymous

    def oidc_config(self) -> OidcConfig | None:
        """Single sign-on's settings; None when it is off (none of issuer, audience, JWKS URL set)."""
        values = (self.oidc_issuer, self.oidc_audience, self.oidc_jwks_url)
        if not any(values):
            return None
        if not all(values):
            raise ValueError(
                "single sign-on needs all of FRAMEFLEET_OIDC_ISSUER, FRAMEFLEET_OIDC_AUDIENCE and "
                "FRAMEFLEET_OIDC_JWKS_URL"
            )
        jwks_url = str(self.oidc_jwks_url)
        if not jwks_url.startswith(("https://", "http://")):
            raise ValueError("FRAMEFLEET_OIDC_JWKS_URL must be an http(s) URL")
        return OidcConfig(
            issuer=str(self.oidc_issuer),
            audience=str(self.oidc_audience),
            jwks_url=jwks_url,
            tenant_claim=self.oidc_tenant_claim,
            role_claim=self.oidc_role_claim,
            role_map=dict(self.oidc_role_map),
            algorithms=tuple(self.oidc_algorithms),
            leeway_seconds=self.oidc_leeway_seconds,
            jwks_ttl_seconds=self.oidc_jwks_ttl_seconds,
            jwks_refetch_seconds=self.oidc_jwks_refetch_seconds,
        )

    @property
    def work_root(self) -> Path:
        return (self.work_dir or self.data_dir / "work").resolve()

    @property
    def fence_after_seconds(self) -> float:
        """A worker that could not renew its heartbeat this long stops its jobs: the reaper may take them."""
        return self.heartbeat_ttl_seconds - self.heartbeat_interval_seconds

    @property
    def visibility_timeout(self) -> int:
        """Broker visibility timeout: above the longest allowed job so a long job is never redelivered."""
        return self.job_max_seconds + 3600


def _storage_prefix(uri: str, schemes: tuple[str, ...], setting: str) -> str:
    """A location setting's URI without a trailing slash, refusing other schemes and '.'/'..' segments."""
    scheme, sep, rest = uri.partition("://")
    rest = rest.rstrip("/")
    if not sep or scheme.lower() not in schemes or not rest.strip("/"):
        raise ValueError(f"{setting}: {uri!r} must be a {' or '.join(s + '://' for s in schemes)} location")
    if any(segment in (".", "..") for segment in rest.split("/")):
        raise ValueError(f"{setting}: {uri!r} must not contain '.' or '..' segments")
    scheme = scheme.lower()
    # az:// is an alias: stored as azure:// so that one location has one spelling.
    return f"{'azure' if scheme == 'az' else scheme}://{rest}"


@lru_cache
def get_settings() -> Settings:
    return Settings()


def reset_settings_cache() -> None:
    get_settings.cache_clear()
