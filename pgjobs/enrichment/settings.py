"""The enrichment app's settings: provider endpoints and credentials, re-enrichment (prefix PGJOBS_).

The only home of provider URLs and credentials (the core's Settings has none). Defaults are the
real public endpoints; secrets are SecretStr, so they print as '**********'. Rate limits are not
here: the app declares RATE_LIMITS, the worker merges PGJOBS_RATE_LIMITS over them into the one
RateLimits the providers are handed.
"""

from __future__ import annotations

from pydantic import Field, SecretStr, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from pgjobs.errors import ConfigError

# The providers' published limits: MusicBrainz 1 request/s per client, Discogs 60/min authenticated.
RATE_LIMITS = {"musicbrainz": "1/s", "discogs": "60/min"}


class EnrichmentSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="PGJOBS_", extra="ignore", populate_by_name=True)

    # Periodic re-enrichment (REENRICH_STALE_ALBUMS): when it runs, which albums count as stale
    # (enriched longer ago than this, or never), and how many chains one run starts at most.
    reenrich_cron: str = "0 3 * * *"
    reenrich_after_days: float = Field(default=30.0, gt=0)
    reenrich_batch: int = Field(default=100, ge=1, le=10_000)

    # Audit-log retention (PRUNE_ENRICHMENT_LOG, pgjobs/enrichment/log_retention.py): rows older than
    # this many days are deleted (0: kept forever), on this schedule, in transactions of this many rows.
    # Longer than the jobs' own retention (PGJOBS_RETENTION_DAYS, 7): the timeline lives on the log.
    log_retention_days: float = Field(default=90.0, ge=0)
    log_retention_cron: str = "17 * * * *"
    log_retention_batch: int = Field(default=5000, ge=1, le=100_000)

    user_agent: str = "pgjobs/0.1.0 ( https://github.com/pgjobs/pgjobs )"
    http_timeout: float = Field(default=10.0, gt=0)
    musicbrainz_url: str = "https://musicbrainz.org/ws/2"
    coverart_url: str = "https://coverartarchive.org"
    discogs_url: str = "https://api.discogs.com"
    discogs_token: SecretStr | None = None
    cloudflare_url: str = "https://api.cloudflare.com/client/v4"
    cloudflare_account_id: str | None = None
    cloudflare_api_token: SecretStr | None = None
    cloudflare_delivery_url: str = "https://imagedelivery.net"
    cloudflare_account_hash: str | None = None
    spotify_api_url: str = "https://api.spotify.com/v1"
    spotify_accounts_url: str = "https://accounts.spotify.com"
    spotify_client_id: str | None = None
    spotify_client_secret: SecretStr | None = None
    spotify_market: str = "US"  # client-credentials searches see nothing without a market



def load_settings() -> EnrichmentSettings:
    """The settings from the environment; a bad value is a one-line ConfigError naming the variable."""
    try:
        return EnrichmentSettings()
    except ValidationError as exc:
        first = exc.errors()[0]
        name = "PGJOBS_" + "_".join(str(p) for p in first.get("loc", ())).upper()
        raise ConfigError(f"bad setting {name}: {first.get('msg')}") from None
