"""The chain's entry points for applications and the CLI: start an album's enrichment, read timelines.

All of it runs on the caller's psycopg connection, so an application can enqueue ENRICH_ALBUM in
the same transaction as the row that made it necessary.
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

import psycopg
from psycopg.rows import dict_row

from pgjobs.enrichment.kinds import BACKOFF_BASE_MS, MAX_ATTEMPTS, PRIORITY, EnrichAlbum, Op
from pgjobs.enrichment.runner import Q
from pgjobs.queue import Enqueued, QueueError, enqueue

STATUSES = ("SUCCESS", "PARTIAL_SUCCESS", "FAILED", "SKIPPED", "NO_DATA_AVAILABLE")


class AlbumNotFound(QueueError):
    pass


def album_for_mbid(conn: psycopg.Connection, mbid: UUID) -> UUID:
    """The album row for a release MBID, created as a stub (ENRICH_ALBUM fills it in) when missing."""
    row = conn.execute(Q["create_album_stub"], {"title": f"MusicBrainz release {mbid}", "mbid": mbid}).fetchone()
    return row[0]


def album_root(album_id: UUID, *, force: bool = False, priority: int | None = None,
               triggered_by: str = "cli") -> tuple[str, dict[str, Any], dict[str, Any]]:
    """(kind, payload, options) of an album's root ENRICH_ALBUM job, for enqueue / enqueue_async.

    The dedupe key allows at most one unfinished chain per album: enqueueing again returns it."""
    payload = EnrichAlbum(album_id=album_id, force=force, triggered_by=triggered_by).model_dump(mode="json")
    options = {"priority": PRIORITY[Op.ENRICH_ALBUM] if priority is None else priority,
               "max_attempts": MAX_ATTEMPTS, "backoff_base_ms": BACKOFF_BASE_MS,
               "dedupe_key": f"ENRICH_ALBUM:{album_id}"}
    return Op.ENRICH_ALBUM.value, payload, options


def enqueue_enrich_album(
    conn: psycopg.Connection, album_id: UUID, *, force: bool = False, priority: int | None = None,
    triggered_by: str = "cli",
) -> Enqueued:
    """Start (or join) an album's enrichment chain: a root ENRICH_ALBUM job (see album_root)."""
    if conn.execute("SELECT 1 FROM public.album WHERE id = %s", (album_id,)).fetchone() is None:
        raise AlbumNotFound(f"no album with id {album_id} (use --mbid RELEASE_MBID to create one)")
    kind, payload, options = album_root(album_id, force=force, priority=priority, triggered_by=triggered_by)
    return enqueue(conn, kind, payload, **options)


def roots(conn: psycopg.Connection, *, limit: int = 20, status: str | None = None) -> list[dict[str, Any]]:
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(Q["list_roots"], {"limit": limit, "status": status}).fetchall()


def family(conn: psycopg.Connection, root_job_id: int) -> list[dict[str, Any]]:
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(Q["family_timeline"], {"root_job_id": root_job_id}).fetchall()
