"""HTTP tier: a sandbox on a loopback port per test, a real httpx client, Settings aimed at the sandbox."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import httpx
import pytest
from sandbox_support import RecordingGate, make_settings

from pgjobs.enrichment.providers import Providers, build_providers
from pgjobs.enrichment.sandbox import SandboxServer
from pgjobs.enrichment.settings import EnrichmentSettings as Settings


@pytest.fixture
def sandbox() -> Iterator[SandboxServer]:
    with SandboxServer() as server:
        yield server


@pytest.fixture
def settings(sandbox: SandboxServer) -> Settings:
    return make_settings(sandbox)


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(trust_env=False) as http:
        yield http


@pytest.fixture
def gate() -> RecordingGate:
    return RecordingGate()


@pytest.fixture
def providers(settings: Settings, client: httpx.AsyncClient, gate: RecordingGate) -> Providers:
    return build_providers(settings, client, gate)
