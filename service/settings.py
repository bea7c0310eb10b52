"""Configuration from flags and the environment (``STATEWRIGHT_*``)."""

from __future__ import annotations

from typing import Literal

from pydantic_settings import BaseSettings, SettingsConfigDict

from service.db.engine import Pooler


class Settings(BaseSettings):
    """Every setting of the service; flags override the environment."""

    model_config = SettingsConfigDict(env_prefix="STATEWRIGHT_", extra="ignore")

    database_url: str | None = None
    # Postgres connections the API keeps open (requests beyond it wait for one).
    database_pool_size: int = 20
    # What sits between Statewright and Postgres. "transaction": a pooler in transaction
    # mode (PgBouncer pool_mode=transaction): no prepared statement outlives its statement,
    # no session state is relied on, and workers LISTEN on listen_database_url (without
    # one they poll). "session" and "none" need nothing. Every engine of the process
    # (migrations, purge, keys too) follows it.
    database_pooler: Pooler = "none"
    # A direct connection to Postgres (not through a transaction pooler) for the workers'
    # LISTEN; unset, the database URL.
    listen_database_url: str | None = None
    host: str = "127.0.0.1"
    port: int = 8080
    workers: int = 1  # in-process worker lanes of `serve` and `dev`
    region: str = "us-east-1"
    account_id: str = "123456789012"
    # An AWS Step Functions Local mock config: executions started as "<arn>#<TestCase>" get
    # their task results from it (like Step Functions Local's SFN_MOCK_CONFIG).
    mock_config: str | None = None
    # How long GetActivityTask holds a request open waiting for a task (AWS: 60 s).
    activity_poll_seconds: float = 60.0
    # Requests must carry an API key (REST: bearer; AWS API: SigV4). Only `statewright dev`
    # and `--no-auth` turn it off.
    auth: bool = True
    # Seals the secrets the database keeps (service/sealing.py); required when auth is on.
    secret_key: str | None = None
    # Closed EXPRESS executions (and their histories) are forgotten after this long.
    express_retention_seconds: float = 3600.0
    # HTTP tasks: hosts and CIDRs (comma-separated) that may be reached although loopback or
    # private (link-local and metadata addresses are refused unless listed here too).
    http_allow: str = ""
    http_concurrency: int = 32  # HTTP requests in flight per worker process
    http_per_host: int = 32  # ... of which to one host
    http_per_host_rate: float = 0.0  # requests started per second to one host (0: no limit)
    http_timeout_seconds: float = 60.0  # per request (AWS: about 60 s, then States.Http.Socket)
    # Status webhooks: per attempt, the first retry after this (doubling up to an hour), and
    # how long a delivery is retried before it is dead-lettered (AWS EventBridge: 24 h).
    webhook_timeout_seconds: float = 10.0
    webhook_retry_base_seconds: float = 1.0
    webhook_max_age_seconds: float = 86400.0
    webhook_concurrency: int = 16  # deliveries in flight per worker process
    # OpenTelemetry traces of executions over OTLP/HTTP (e.g. http://collector:4318); off
    # when empty. Needs pip install 'statewright[otel]'.
    otlp_endpoint: str | None = None
    # Overload: requests in progress in one API process beyond this are answered at once
    # with 429 and Retry-After (AWS: ThrottlingException), and so are starts beyond the
    # group-commit queue's limit; health, readiness and metrics are always answered.
    max_requests_in_flight: int = 1000
    start_queue_limit: int = 1024
    # Log lines: "text" for people, "json" (one object per line) for log pipelines.
    log_format: str = "text"
    # Container tasks: the engine (Docker Engine API: unix:///path or tcp://host:port); unset,
    # $DOCKER_HOST as Docker's tools read it, else unix:///var/run/docker.sock.
    container_host: str | None = None
    container_concurrency: int = 8  # containers followed at once per worker process
    # A running container's task lease, renewed every third of it: how long a dead worker's
    # containers go unfollowed, and how soon a timed-out or stopped task's container is killed.
    container_lease_seconds: float = 30.0
    # Network values tasks may ask for besides "none" (comma-separated: "host", "bridge", ...).
    container_networks: str = ""
    # Where containers run: "docker" (the Docker Engine API above) or "kubernetes" (a Job
    # per attempt, service/runners/kubernetes.py; untested against a live cluster).
    container_backend: Literal["docker", "kubernetes"] = "docker"
    # The Kubernetes API server; unset, the cluster the worker runs in (its service account's
    # token, CA and namespace). A token, or a file holding one (read again every minute).
    kubernetes_api: str | None = None
    kubernetes_token: str | None = None
    kubernetes_token_file: str | None = None
    kubernetes_namespace: str | None = None
    kubernetes_ca_file: str | None = None
    kubernetes_insecure: bool = False  # no TLS verification: for tests only
    # A finished Job is deleted by the cluster after this long, if no worker deleted it.
    kubernetes_ttl_seconds: int = 86400
    # An image that cannot be pulled for this long fails the task (Container.ImageNotFound).
    kubernetes_image_pull_seconds: float = 120.0
    # Schedules may use rate(N seconds) (development and tests; AWS's minimum is a minute).
    schedule_seconds: bool = False
    # The /demo endpoints the sample workflows call (statewright dev turns them on).
    demo: bool = False
