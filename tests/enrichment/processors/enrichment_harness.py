"""The enrichment tier's harness: the real worker + registry against the sandbox, one job attempt at a time.

`Pipeline.run(job_id)` starts a real `pgjobs.queue.Worker` with `worker_registry(...)` (real httpx,
real PostgreSQL, the sandbox on a loopback port), waits on the worker's `finished` hook until that
job's attempt is written, stops the worker from inside the hook (so nothing else is claimed) and
returns its `Attempt`: the enrichment_log row of the attempt and the job row. No sleeps, no mocks.

Jobs of child kinds are enqueued as roots on their own queue (`UNDER_TEST`): the children they spawn
land on the default queue, which that worker does not serve, so a test sees them queued, untouched.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool

from pgjobs.app import WorkerResources
from pgjobs.enrichment import api
from pgjobs.enrichment.app import make_app
from pgjobs.enrichment.kinds import BACKOFF_BASE_MS, MAX_ATTEMPTS, PRIORITY, Op
from pgjobs.enrichment.sandbox import SandboxServer
from pgjobs.enrichment.sandbox.fixtures import Fixture, FixtureSet
from pgjobs.enrichment.settings import EnrichmentSettings as Settings
from pgjobs.queue import RateLimits, Worker, WorkerHooks, enqueue
from pgjobs.settings import parse_rate_limits

UNDER_TEST = "under-test"
FIXTURES = Path(__file__).resolve().parent / "fixtures"

# MBIDs and ids the shipped sandbox fixtures know (pgjobs/enrichment/sandbox/fixtures/*/index.json).
COLLISION_COURSE = "b7ceb41b-c078-4e25-876b-f32c166e97e2"
ELLA_AND_LOUIS = "e61d5658-816d-4ba8-b3d2-e5c9f0c894fc"
COLDPLAY = "cc197bad-dc9c-440d-a5b5-d52ba2e14234"
JAY_Z = "f82bcf78-5b69-4622-a5ef-73800768d9ac"
LINKIN_PARK = "f59c5520-5f46-4d2c-b2c4-822eabf53419"
ELLA_FITZGERALD = "05f7618e-a7de-4914-ba3a-3311b1aa0ba0"
LOUIS_ARMSTRONG = "c5d2d50d-733d-43dc-825c-f47d9060ac06"
COLDPLAY_DISCOGS = 29735
UNKNOWN_DISCOGS = 999999999  # the sandbox's Discogs 404 fixture
MERGED_INTO_COLDPLAY = "5a1f32b1-3d33-4b45-a5ac-2bc4d9e0a76f"  # MusicBrainz answers 301 to COLDPLAY
# Added by tests/enrichment/fixtures (served with `Pipeline.serve_test_fixtures()`).
VARIOUS_ARTISTS_RELEASE = "7a1e0b4c-3d2f-4e5a-9b6c-8d7e6f5a4b3c"
WEAK_MATCH_ARTIST = "Velvet Lantern Orchestra"  # Discogs id 9100002 = its best (weak) candidate
OVERFLOWING_RELEASE = "7a1e0b4c-3d2f-4e5a-9b6c-8d7e6f5a4b3d"  # a track length beyond track.duration_ms


@dataclass
class Attempt:
    """One written attempt: its enrichment_log row and the job row after the write."""

    log: dict[str, Any]
    job: dict[str, Any]

    @property
    def metadata(self) -> dict[str, Any]:
        return self.log["metadata"]


class Pipeline:
    def __init__(self, dsn: str, sandbox: SandboxServer, pool: AsyncConnectionPool) -> None:
        self.dsn = dsn
        self.sandbox = sandbox
        self.pool = pool
        self.db = psycopg.connect(dsn, autocommit=True)
        # Settings fields the next runs use on top of the sandbox's (tests may change them).
        self.overrides: dict[str, Any] = {}
        # PGJOBS_RATE_LIMITS as the worker would read it, over the app's own (tests may change it).
        self.rate_limits = "musicbrainz=50/s,discogs=50/s"

    def close(self) -> None:
        self.db.close()

    def rows(self, query: str, params: Any = None) -> list[dict[str, Any]]:
        with self.db.cursor(row_factory=dict_row) as cur:
            return cur.execute(query, params).fetchall()

    def one(self, query: str, params: Any = None) -> dict[str, Any] | None:
        found = self.rows(query, params)
        assert len(found) <= 1, found
        return found[0] if found else None

    # -- settings --------------------------------------------------------------------------------

    def settings(self) -> Settings:
        return Settings(**{**self.sandbox.settings_overrides(), "http_timeout": 5.0, **self.overrides})

    def secrets(self) -> list[str]:
        creds = self.sandbox.credentials
        return [creds.discogs_token, creds.cloudflare_api_token, creds.spotify_client_secret]

    def serve_test_fixtures(self) -> None:
        """Add the responses under tests/enrichment/fixtures to this sandbox's shipped ones.

        The sandbox has no public way to serve a custom body (faults only reshape its own answers),
        so this swaps the fixture set of this one server's private state for an extended copy.
        """
        index = json.loads((FIXTURES / "index.json").read_text(encoding="utf-8"))
        state = self.sandbox._state  # noqa: SLF001 - see the docstring
        shipped: FixtureSet = state.fixtures
        entries = {api_: list(found) for api_, found in shipped.entries.items()}
        for entry in index["responses"]:
            entries[entry["api"]].insert(0, Fixture(
                api=entry["api"], file=entry["file"], method=entry.get("method", "GET"), path=entry["path"],
                query={k: str(v) for k, v in entry.get("query", {}).items()}, status=int(entry["status"]),
                headers=tuple(entry.get("headers", {}).items()), body=(FIXTURES / entry["file"]).read_bytes(),
                notes=entry.get("notes", "")))
        state.fixtures = FixtureSet(entries=entries, inline=shipped.inline)

    # -- catalog ---------------------------------------------------------------------------------

    def _insert(self, table: str, values: dict[str, Any]) -> uuid.UUID:
        query = sql.SQL("INSERT INTO public.{} ({}) VALUES ({}) RETURNING id").format(
            sql.Identifier(table), sql.SQL(", ").join(map(sql.Identifier, values)),
            sql.SQL(", ").join(map(sql.Placeholder, values)))
        return self.one(query, values)["id"]

    def add_artist(self, name: str, *, mbid: str | None = None, **columns: Any) -> uuid.UUID:
        return self._insert("artist", {"name": name, "musicbrainz_id": mbid, **columns})

    def add_album(self, title: str, *, mbid: str | None = None, artists: list[tuple[uuid.UUID, str]] = (),
                  **columns: Any) -> uuid.UUID:
        album_id = self._insert("album", {"title": title, "musicbrainz_id": mbid, **columns})
        for position, (artist_id, join_phrase) in enumerate(artists):
            self.db.execute("INSERT INTO public.album_artist (album_id, artist_id, position, join_phrase)"
                            " VALUES (%s, %s, %s, %s)", (album_id, artist_id, position, join_phrase))
        return album_id

    def album_stub(self, mbid: str) -> uuid.UUID:
        return api.album_for_mbid(self.db, uuid.UUID(mbid))

    def artist(self, artist_id: uuid.UUID) -> dict[str, Any]:
        return self.one("SELECT * FROM public.artist WHERE id = %s", (artist_id,))

    def album(self, album_id: uuid.UUID) -> dict[str, Any]:
        return self.one("SELECT * FROM public.album WHERE id = %s", (album_id,))

    def tracks(self, album_id: uuid.UUID) -> list[dict[str, Any]]:
        return self.rows("SELECT * FROM public.track WHERE album_id = %s ORDER BY disc, position",
                               (album_id,))

    def album_artists(self, album_id: uuid.UUID) -> list[tuple[str, str]]:
        rows = self.rows("SELECT ar.name, aa.join_phrase FROM public.album_artist aa JOIN public.artist ar"
                               " ON ar.id = aa.artist_id WHERE aa.album_id = %s ORDER BY aa.position",
                               (album_id,))
        return [(r["name"], r["join_phrase"]) for r in rows]

    # -- jobs ------------------------------------------------------------------------------------

    def enqueue(self, op: Op, payload: dict[str, Any], **options: Any) -> int:
        """A job of any kind as a root, with the options the chain gives that kind, on UNDER_TEST."""
        options = {"queue": UNDER_TEST, "priority": PRIORITY[op], "max_attempts": MAX_ATTEMPTS,
                   "backoff_base_ms": BACKOFF_BASE_MS, **options}
        return enqueue(self.db, op.value, payload, **options).id

    def enrich_album(self, album_id: uuid.UUID, *, force: bool = False) -> int:
        """ENRICH_ALBUM through the application API (default queue, as the CLI enqueues it)."""
        return api.enqueue_enrich_album(self.db, album_id, force=force, triggered_by="tests").id

    def job(self, job_id: int) -> dict[str, Any]:
        return self.one("SELECT *, state::text AS state FROM pgjobs.jobs WHERE id = %s", (job_id,))

    def children(self, job_id: int) -> list[dict[str, Any]]:
        return self.rows("SELECT *, state::text AS state FROM pgjobs.jobs WHERE parent_id = %s ORDER BY id",
                               (job_id,))

    def logs(self, job_id: int) -> list[dict[str, Any]]:
        return self.rows("SELECT * FROM public.enrichment_log WHERE job_id = %s ORDER BY attempt, id",
                               (job_id,))

    # -- running ---------------------------------------------------------------------------------

    async def run(self, *job_ids: int, burst: bool = False, concurrency: int = 1, timeout: float = 20.0) -> None:
        """Run the real worker until each of `job_ids` has had one attempt written (or, with `burst`,
        until its queues hold nothing runnable or running). The worker is stopped before returning."""
        targets = set(job_ids)
        rows = self.rows("SELECT DISTINCT queue FROM pgjobs.jobs WHERE id = ANY(%s)", (list(job_ids),))
        queues = sorted(r["queue"] for r in rows) or ["default"]
        settings = self.settings()
        app = make_app(settings)
        limits = RateLimits(self.pool, app.intervals(parse_rate_limits(self.rate_limits)))  # as run_worker does
        lost: list[int] = []
        worker: Worker | None = None

        def finished(item) -> None:
            if item.job.id not in targets:
                return
            if item.state is None:
                lost.append(item.job.id)
            targets.discard(item.job.id)
            if not targets and not burst:
                # Synchronously, on the worker's loop, before its producer can claim anything else.
                worker.stop(now=True)

        async with app.running(WorkerResources(self.pool, limits, settings, self.dsn)) as state:
            worker = Worker(self.pool, app.registry(), conninfo=self.dsn, limits=limits, queues=queues,
                            concurrency=concurrency, burst=burst, poll_interval=0.5,
                            hooks=WorkerHooks(finished=finished), state=state)
            task = asyncio.create_task(worker.run())
            try:
                await asyncio.wait_for(asyncio.shield(task), timeout)
            except TimeoutError:
                worker.stop(now=True)
                await asyncio.wait_for(task, 10)
                states = {i: self.job(i)["state"] for i in job_ids}
                raise AssertionError(f"jobs {sorted(targets)} had no attempt written within {timeout}s: {states}")
        assert not lost, f"jobs {lost} lost their lease: nothing was committed"
        assert not targets, f"the worker stopped before jobs {sorted(targets)} ran"

    async def attempt(self, job_id: int, **run_options: Any) -> Attempt:
        """Run `job_id` once; return its attempt's log row and job row (checking the row's lineage)."""
        await self.run(job_id, **run_options)
        return self.written(job_id)

    def written(self, job_id: int) -> Attempt:
        job = self.job(job_id)
        rows = self.logs(job_id)
        current = [r for r in rows if r["attempt"] == job["attempt"]]
        assert len(current) == 1, f"job {job_id} attempt {job['attempt']}: {len(current)} log rows"
        assert all(r["attempt"] <= job["attempt"] for r in rows)
        row = current[0]
        assert row["operation"] == job["kind"]
        root = job["parent_id"] is None
        assert row["is_root_job"] is root
        assert row["parent_job_id"] == (None if root else job["root_id"])
        if row["data_quality_after"] is not None:  # the log tells the truth about the entity it wrote
            table = {"ALBUM": "album", "ARTIST": "artist"}[row["entity_type"]]
            entity = self.one(sql.SQL("SELECT data_quality FROM public.{} WHERE id = %s").format(
                sql.Identifier(table)), (row["entity_id"],))
            assert entity is None or entity["data_quality"] == row["data_quality_after"], (
                f"log says data_quality_after={row['data_quality_after']}, the {table} row holds "
                f"{entity['data_quality']}")
        self.assert_lineage()
        return Attempt(row, job)

    def assert_lineage(self) -> None:
        """Every log row of the database: is_root_job XOR parent_job_id (= its job's root), its job and
        attempt exist, one row per (job_id, attempt)."""
        rows = self.rows(
            "SELECT l.id, l.job_id, l.attempt, l.is_root_job, l.parent_job_id, j.id AS jid, j.parent_id,"
            " j.root_id, j.attempt AS job_attempt FROM public.enrichment_log l"
            " LEFT JOIN pgjobs.jobs j ON j.id = l.job_id")
        for r in rows:
            assert r["jid"] is not None, f"log row {r['id']} names job {r['job_id']}, which does not exist"
            assert r["is_root_job"] != (r["parent_job_id"] is not None), r
            assert r["is_root_job"] == (r["parent_id"] is None), r
            assert r["parent_job_id"] == (None if r["is_root_job"] else r["root_id"]), r
            assert 1 <= r["attempt"] <= r["job_attempt"], r
        dupes = self.rows("SELECT job_id, attempt, count(*) FROM public.enrichment_log"
                                " GROUP BY 1, 2 HAVING count(*) > 1")
        assert dupes == []

    def leaked_secrets(self) -> list[str]:
        """Secrets found in any enrichment_log column or any job's errors (should be none)."""
        logs = " ".join(r["t"] for r in self.rows("SELECT l::text AS t FROM public.enrichment_log l"))
        jobs = " ".join(r["t"] for r in self.rows(
            "SELECT concat_ws(' ', last_error, errors::text) AS t FROM pgjobs.jobs"))
        return [f"{where}: {secret}" for secret in self.secrets() for where, text in (("log", logs), ("jobs", jobs))
                if secret in text]
