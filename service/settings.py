"""Configuration from flags and the environment (``STATEWRIGHT_*``)."""

from __future__ import annotations

from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Every setting of the service; flags override the environment."""

    model_config = SettingsConfigDict(env_prefix="STATEWRIGHT_", extra="ignore")

    database_url: str | None = None
    # Postgres connections the API keeps open (requests beyond it wait for one).
    database_pool_size: int = 20
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
    # Schedules may use rate(N seconds) (development and tests; AWS's minimum is a minute).
    schedule_seconds: bool = False
    # The /demo endpoints the sample workflows call (statewright dev turns them on).
    demo: bool = False
