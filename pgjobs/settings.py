"""Settings: every knob pgjobs reads from the environment (prefix PGJOBS_), read once at the edge.

The CLI builds one `Settings` and passes it down; library code never reads os.environ itself.
Secrets are `SecretStr`, so they print as '**********' in reprs, logs and --json output.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from pgjobs.queue import defaults

_RATE = re.compile(r"^\s*([A-Za-z0-9_.-]+)\s*=\s*(\d+(?:\.\d+)?)\s*/\s*(ms|s|sec|second|min|minute|h|hour)\s*$")
_UNIT_SECONDS = {"ms": 0.001, "s": 1, "sec": 1, "second": 1, "min": 60, "minute": 60, "h": 3600, "hour": 3600}


def default_home() -> Path:
    """Where the embedded server lives by default: platformdirs' user data folder when the
    `embedded` extra brought it, else the XDG rule it follows on Linux."""
    try:
        import platformdirs
    except ImportError:
        base = os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share"
        return Path(base) / "pgjobs"
    return platformdirs.user_data_path("pgjobs")


def parse_rate_limits(text: str) -> dict[str, float]:
    """'musicbrainz=1/s,discogs=60/min' -> {'musicbrainz': 1.0, 'discogs': 1.0} (seconds between calls)."""
    limits: dict[str, float] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        match = _RATE.match(part)
        if not match:
            raise ValueError(f"bad rate limit {part!r}: expected NAME=COUNT/UNIT, e.g. musicbrainz=1/s")
        name, count, unit = match.group(1), float(match.group(2)), match.group(3)
        if count <= 0:
            raise ValueError(f"bad rate limit {part!r}: the count must be positive")
        limits[name] = _UNIT_SECONDS[unit] / count
    return limits


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="PGJOBS_", extra="ignore", populate_by_name=True)

    # Database: an explicit DSN wins; otherwise the embedded server under `home`.
    dsn: SecretStr | None = Field(default=None, validation_alias=AliasChoices("PGJOBS_DSN", "DATABASE_URL"))
    home: Path = Field(default_factory=default_home)

    # Worker behaviour.
    lease_seconds: float = Field(default=defaults.LEASE_SECONDS, gt=0)
    poll_interval: float = Field(default=defaults.POLL_INTERVAL, gt=0)
    shutdown_grace_seconds: float = Field(default=defaults.SHUTDOWN_GRACE, ge=0)
    concurrency: int = Field(default=defaults.CONCURRENCY, ge=1)
    handoff: bool = defaults.HANDOFF  # PGJOBS_HANDOFF=false: idle workers make no hand-off offers
    log_format: Literal["text", "json"] = "text"
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = "INFO"
    # OpenTelemetry: a span per attempt, one trace per root's family (pgjobs.tracing, the otel extra).
    otel: bool = False

    # Retention: workers delete whole job families finished more than this many days ago (0: never;
    # `pgjobs prune` still does it by hand), checking every `retention_interval` seconds, in
    # transactions of `retention_batch` roots (pgjobs/queue/retention.py). An app's audit log is its own.
    retention_days: float = Field(default=7.0, ge=0)
    retention_interval: float = Field(default=600.0, gt=0)
    retention_batch: int = Field(default=1000, ge=1)
    retention_vacuum_after: int = Field(default=100_000, ge=0)  # jobs pruned that call for a VACUUM (0: never)
    # Outcomes a worker writes between two VACUUMs of jobs_live, the claim table (pgjobs/queue/vacuum.py; 0: never).
    live_vacuum_after: int = Field(default=defaults.LIVE_VACUUM_AFTER, ge=0)

    # Bounded waits on every connection (docs/settings.md "Connections"); 0 turns one off.
    connect_timeout: float = Field(default=10.0, ge=0)  # seconds to establish a connection
    keepalives_idle: int = Field(default=10, ge=1)  # TCP keepalive: idle seconds before the first probe
    keepalives_interval: int = Field(default=5, ge=1)  # … seconds between probes
    keepalives_count: int = Field(default=3, ge=1)  # … unanswered probes before the peer is dead
    tcp_user_timeout: float = Field(default=30.0, ge=0)  # seconds sent data may stay unacknowledged
    statement_timeout: float = Field(default=30.0, ge=0)  # on the queue's own statements
    # The server ends a session idle inside a transaction this long; unset: half the lease (15 s), so
    # a partition striking mid-transaction frees its row locks before the lease runs out.
    idle_in_transaction_timeout: float | None = Field(default=None, ge=0)
    listener_probe_interval: float = Field(default=5.0, gt=0)  # seconds between the listener's probes
    listener_probe_timeout: float = Field(default=5.0, gt=0)  # a probe unanswered this long: reconnect

    # Global rate limits over the app's own, e.g. "smtp=10/s,partner_api=60/min".
    rate_limits: str = ""

    # Largest payload `pgjobs enqueue` and Task.enqueue accept, in bytes of JSON.
    max_payload_bytes: int = Field(default=1_000_000, ge=2)

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper_level(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value

    @field_validator("rate_limits")
    @classmethod
    def _check_rate_limits(cls, value: str) -> str:
        parse_rate_limits(value)
        return value

    @property
    def rate_limit_intervals(self) -> dict[str, float]:
        return parse_rate_limits(self.rate_limits)
