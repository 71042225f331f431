"""The enrichment chain as a pgjobs app: `pgjobs --app pgjobs.enrichment.app:app …`.

Declared with nothing but the public App API: one task per job type (priority, attempts and
backoff from the seed), the periodic REENRICH_STALE_ALBUMS (PGJOBS_REENRICH_CRON, daily at 03:00 by
default) and PRUNE_ENRICHMENT_LOG (the audit log's retention, PGJOBS_LOG_RETENTION_DAYS, hourly), the catalog's migrations as the `enrichment` component, the providers' rate limits
(PGJOBS_RATE_LIMITS may override them: the worker merges both into the RateLimits the providers
get), a shared HTTP client and the providers as the handlers' ctx.state, and the app's CLI
commands (`enqueue enrich-album`, `timeline`, `demo`, `sandbox`).
"""

from __future__ import annotations

from typing import AsyncIterator

import httpx

from pgjobs.app import App, WorkerResources
from pgjobs.enrichment.kinds import BACKOFF_BASE_MS, MAX_ATTEMPTS, PAYLOADS, PRIORITY, Op
from pgjobs.enrichment.log_retention import PRUNE_ENRICHMENT_LOG, prune_enrichment_log
from pgjobs.enrichment.processors.album import enrich_album, spotify_track_fallback
from pgjobs.enrichment.processors.artist import discogs_get_artist, discogs_search_artist, enrich_artist
from pgjobs.enrichment.processors.images import cache_album_cover, cache_artist_image
from pgjobs.enrichment.providers import build_providers
from pgjobs.enrichment.reenrich import REENRICH_STALE_ALBUMS, reenrich_stale_albums
from pgjobs.enrichment.runner import Env, Processor, lease_expired_hook, make_handler
from pgjobs.enrichment.settings import RATE_LIMITS, EnrichmentSettings, load_settings
from pgjobs.sqlfiles import sql_dir

PROCESSORS: dict[Op, Processor] = {
    Op.ENRICH_ALBUM: enrich_album,
    Op.ENRICH_ARTIST: enrich_artist,
    Op.DISCOGS_SEARCH_ARTIST: discogs_search_artist,
    Op.DISCOGS_GET_ARTIST: discogs_get_artist,
    Op.CACHE_ARTIST_IMAGE: cache_artist_image,
    Op.CACHE_ALBUM_COVER: cache_album_cover,
    Op.SPOTIFY_TRACK_FALLBACK: spotify_track_fallback,
}


def make_app(settings: EnrichmentSettings | None = None) -> App:
    """The app; `settings` (else read from the environment, once, here) configures the providers
    and the re-enrichment schedule — the demo passes the sandbox's."""
    config = settings or load_settings()
    app = App("enrichment", migrations=sql_dir() / "enrichment" / "migrations", rate_limits=RATE_LIMITS)
    app.add_dashboard("pgjobs.enrichment.dashboard:install")  # its pages, imported only by the dashboard

    @app.lifespan
    async def providers(worker: WorkerResources) -> AsyncIterator[Env]:
        limits = httpx.Limits(max_connections=50, max_keepalive_connections=20)
        async with httpx.AsyncClient(limits=limits, follow_redirects=False) as client:
            yield Env(build_providers(config, client, worker.limits), worker.pool, config)

    for op, processor in PROCESSORS.items():
        # The runner validates payloads itself, so a bad one still gets its FAILED log row.
        app.task(op.value, priority=PRIORITY[op], max_attempts=MAX_ATTEMPTS, backoff_base_ms=BACKOFF_BASE_MS,
                 payload_model=PAYLOADS[op], validate_payload=False,
                 on_lease_expired=lease_expired_hook(op))(make_handler(op, processor))
    # Maintenance, not a chain step: @app.periodic(cron) over @app.task, spelled as calls.
    reenrich = app.task(REENRICH_STALE_ALBUMS, max_attempts=MAX_ATTEMPTS, backoff_base_ms=BACKOFF_BASE_MS)
    app.periodic(config.reenrich_cron)(reenrich(reenrich_stale_albums))
    prune_log = app.task(PRUNE_ENRICHMENT_LOG, max_attempts=MAX_ATTEMPTS, backoff_base_ms=BACKOFF_BASE_MS)
    app.periodic(config.log_retention_cron)(prune_log(prune_enrichment_log))

    from pgjobs.enrichment import cli, demo  # the CLI's pieces only when an app is built

    app.command("enrich-album", enqueue=True)(cli.enrich_album)
    app.command("timeline")(cli.timeline)
    app.command("demo")(demo.demo)
    app.add_command_group("sandbox", cli.sandbox_app)
    return app


app = make_app()
