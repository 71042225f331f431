"""The enrichment app's settings: provider endpoints and credentials (prefix PGJOBS_, read once).

Defaults are the real public endpoints; secrets are SecretStr, so they print as '**********'.
"""

from __future__ import annotations

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from pgjobs.settings import parse_rate_limits

# The providers' published limits: MusicBrainz 1 request/s per client, Discogs 60/min authenticated.
RATE_LIMITS = {"musicbrainz": "1/s", "discogs": "60/min"}


class EnrichmentSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="PGJOBS_", extra="ignore", populate_by_name=True)

    rate_limits: str = ""  # the same PGJOBS_RATE_LIMITS the worker reads, over RATE_LIMITS
    reenrich_after_days: float = Field(default=30.0, gt=0)  # the periodic re-enrichment's age cut-off
    reenrich_batch: int = Field(default=100, ge=1, le=10_000)

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

    @property
    def rate_limit_intervals(self) -> dict[str, float]:
        defaults = parse_rate_limits(",".join(f"{k}={v}" for k, v in RATE_LIMITS.items()))
        return defaults | parse_rate_limits(self.rate_limits)
