"""Shared constants and helpers for the HTTP-tier tests (a uniquely named module, not a conftest)."""

from __future__ import annotations

from collections.abc import Iterable

from pgjobs.enrichment.sandbox import SandboxServer
from pgjobs.enrichment.settings import RATE_LIMITS
from pgjobs.enrichment.settings import EnrichmentSettings as Settings
from pgjobs.queue import QueueError

USER_AGENT = "pgjobs-tests/0.1 ( https://github.com/pgjobs/pgjobs )"
COLLISION_COURSE = "b7ceb41b-c078-4e25-876b-f32c166e97e2"
ELLA_AND_LOUIS = "e61d5658-816d-4ba8-b3d2-e5c9f0c894fc"
RUSH_OF_BLOOD = "fc6d2797-78c2-4f47-8723-f36b3a92ef4f"  # sandbox-invented Coldplay release
COLDPLAY = "cc197bad-dc9c-440d-a5b5-d52ba2e14234"
JAY_Z = "f82bcf78-5b69-4622-a5ef-73800768d9ac"
LOUIS_ARMSTRONG = "c5d2d50d-733d-43dc-825c-f47d9060ac06"


class RecordingGate:
    """A RateGate that lets everything through and remembers what it was asked. Like the worker's
    RateLimits it knows a set of limiters: the app's own (RATE_LIMITS) unless told others."""

    def __init__(self, limiters: Iterable[str] = RATE_LIMITS) -> None:
        self.limiters = set(limiters)
        self.acquired: list[str] = []
        self.penalized: list[tuple[str, float]] = []

    def interval(self, name: str) -> float:
        if name not in self.limiters:
            raise QueueError(f"no rate limit named {name!r} is configured")
        return 0.0

    async def acquire(self, name: str) -> None:
        self.acquired.append(name)

    async def penalize(self, name: str, seconds: float) -> None:
        self.penalized.append((name, seconds))


def make_settings(sandbox: SandboxServer, **overrides: object) -> Settings:
    return Settings(**{**sandbox.settings_overrides(), "user_agent": USER_AGENT, "http_timeout": 5.0, **overrides})


def secrets_of(settings: Settings) -> list[str]:
    values = [settings.discogs_token, settings.cloudflare_api_token, settings.spotify_client_secret]
    return [v.get_secret_value() for v in values if v is not None]


def assert_no_secrets(text: str, settings: Settings) -> None:
    for secret in secrets_of(settings):
        assert secret not in text
