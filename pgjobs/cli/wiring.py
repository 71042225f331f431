"""Where the two halves meet: the registry of every job kind this installation runs."""

from __future__ import annotations

from contextlib import asynccontextmanager
from typing import AsyncIterator

import httpx
from psycopg_pool import AsyncConnectionPool

from pgjobs.enrichment import handlers
from pgjobs.enrichment.providers import build_providers
from pgjobs.enrichment.runner import Env
from pgjobs.queue import RateLimits, Registry, default_registry
from pgjobs.settings import Settings


def job_registry() -> Registry:
    """Every kind with its payload model, for validating `pgjobs enqueue` input."""
    registry = default_registry()
    handlers.register(registry, None)
    return registry


@asynccontextmanager
async def worker_registry(settings: Settings, pool: AsyncConnectionPool, limits: RateLimits) -> AsyncIterator[Registry]:
    """The runnable registry: built-in kinds plus the enrichment chain on one shared HTTP client."""
    limits_ = httpx.Limits(max_connections=50, max_keepalive_connections=20)
    async with httpx.AsyncClient(limits=limits_, follow_redirects=False) as client:
        registry = default_registry()
        handlers.register(registry, Env(build_providers(settings, client, limits), pool, settings))
        yield registry
