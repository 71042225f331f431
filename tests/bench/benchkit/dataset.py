"""The enrichment history data set: R finished root families in a database migrated with the
enrichment app, and the dashboard's two reads timed on it (issue 16's history target, issue 17's data).

    python -m benchkit.dataset --roots 1000000 --dsn URL [--seed 1] [--days 30] [--runs 50]
    python -m benchkit.dataset --roots 100000 --fresh-db bench_history --drop   # own database, dropped after

Each root is an ENRICH_ALBUM job with its descendants, as the chain makes them (pgjobs/enrichment):
the album's ENRICH_ARTIST, CACHE_ALBUM_COVER and (50 %) SPOTIFY_TRACK_FALLBACK; the artist's
DISCOGS_SEARCH_ARTIST, then (90 %) DISCOGS_GET_ARTIST, then (80 %) CACHE_ARTIST_IMAGE. A child exists
only when its parent succeeded (children are enqueued by the parent's completion transaction) and is
created when its parent finished. Each job: 90 % one successful attempt, 5 % a failed attempt then a
success, 2 % three failed attempts (failed), 3 % one refused attempt (failed, not retried); its
`errors` history holds one entry per failed attempt. One enrichment_log row per attempt with the
lineage contract (job_id, parent_job_id = the root's id for descendants and NULL for roots,
is_root_job, attempt). Albums, artists (about one per three albums) and album_artist rows go in
the catalog. Roots are spread evenly over the last `--days` days. About 4.6 descendants and 6.1
log rows per root.

Deterministic: the same seed and root count give the same ids, kinds, attempts and outcomes
(timestamps are relative to the load's start). Fast: Python plans each job as one small row (a
seeded random.Random), COPYs the plan into a temporary table per batch, and SQL expands it into
pgjobs.jobs, enrichment_log and the catalog (INSERT ... SELECT, attempts by generate_series).
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from typing import Callable, Iterator

import psycopg
from psycopg import sql

from pgjobs.sqlfiles import load_queries

KINDS = ("ENRICH_ALBUM", "ENRICH_ARTIST", "CACHE_ALBUM_COVER", "SPOTIFY_TRACK_FALLBACK",
         "DISCOGS_SEARCH_ARTIST", "DISCOGS_GET_ARTIST", "CACHE_ARTIST_IMAGE")
SLOTS = len(KINDS)  # job ids: first_id + root_index * SLOTS + slot (slots a family lacks stay unused)
# slot -> (parent slot, share of families whose parent succeeded that have it)
TREE = {1: (0, 1.0), 2: (0, 1.0), 3: (0, 0.5), 4: (1, 1.0), 5: (4, 0.9), 6: (5, 0.8)}
OK, RETRIED, EXHAUSTED, REFUSED = 0, 1, 2, 3  # a job's attempt pattern (see the module doc)
SUCCESS_STATUSES = ("SUCCESS",) * 7 + ("PARTIAL_SUCCESS", "NO_DATA_AVAILABLE", "SKIPPED")
DURATION_MS = (300, 1500)
BACKOFF_S = 3  # seconds between attempts of a retried job
BATCH = 50_000  # roots per transaction

STAGE = """
CREATE TEMP TABLE IF NOT EXISTS dataset_plan (
    id bigint, root_id bigint, parent_id bigint, slot int, album int, artist int, pattern int,
    status text, created float8, duration_ms int
) ON COMMIT DELETE ROWS
"""
# The plan's slot as kind, priority (the chain's), entity type and log sources.
KIND_TABLE = """(VALUES
    (0, 'ENRICH_ALBUM', 1, 'ALBUM', '{MUSICBRAINZ}'::text[]),
    (1, 'ENRICH_ARTIST', 5, 'ARTIST', '{MUSICBRAINZ}'),
    (2, 'CACHE_ALBUM_COVER', 5, 'ALBUM', '{COVERARTARCHIVE,CLOUDFLARE}'),
    (3, 'SPOTIFY_TRACK_FALLBACK', 5, 'ALBUM', '{SPOTIFY}'),
    (4, 'DISCOGS_SEARCH_ARTIST', 6, 'ARTIST', '{DISCOGS}'),
    (5, 'DISCOGS_GET_ARTIST', 6, 'ARTIST', '{DISCOGS}'),
    (6, 'CACHE_ARTIST_IMAGE', 7, 'ARTIST', '{CLOUDFLARE}')) AS k(slot, kind, priority, entity_type, sources)"""
ALBUM_UUID = "('00000000-0000-4000-a000-' || lpad(to_hex({}), 12, '0'))::uuid"
ARTIST_UUID = "('00000000-0000-4000-b000-' || lpad(to_hex({}), 12, '0'))::uuid"
# An attempt failed when the job never succeeded, or it was not the last one.
FAILED = "(p.pattern IN (2, 3) OR a < p.attempts)"
EXPAND = f"""
WITH p AS (SELECT d.id, d.root_id, d.parent_id, d.slot, d.album, d.artist, d.pattern, d.status,
                  to_timestamp(d.created) AS created, d.duration_ms,
                  CASE d.pattern WHEN 0 THEN 1 WHEN 1 THEN 2 WHEN 2 THEN 3 ELSE 1 END AS attempts
           FROM dataset_plan d)
INSERT INTO pgjobs.jobs (id, root_id, parent_id, kind, queue, payload, state, priority, run_at, attempt,
                         max_attempts, last_error, errors, created_at, attempted_at, finished_at, worker_id)
SELECT p.id, p.root_id, p.parent_id, k.kind, 'default',
       CASE WHEN k.entity_type = 'ALBUM' THEN jsonb_build_object('album_id', {ALBUM_UUID.format('p.album')},
                                                                 'triggered_by', 'dataset')
            ELSE jsonb_build_object('artist_id', {ARTIST_UUID.format('p.artist')}, 'triggered_by', 'dataset') END,
       CASE WHEN p.pattern IN (0, 1) THEN 'succeeded' ELSE 'failed' END::pgjobs.job_state,
       k.priority, p.created + make_interval(secs => {BACKOFF_S} * (p.attempts - 1)), p.attempts, 3,
       CASE p.pattern WHEN 0 THEN NULL WHEN 3 THEN 'provider refused the request (HTTP 404)'
                      ELSE 'provider failed (HTTP 503)' END,
       CASE WHEN p.pattern = 0 THEN '[]'::jsonb ELSE (
           SELECT jsonb_agg(jsonb_build_object(
                      'attempt', a, 'at', p.created + make_interval(secs => {BACKOFF_S} * (a - 1)),
                      'outcome', CASE WHEN p.pattern = 3 THEN 'discard' ELSE 'retry' END,
                      'error', CASE WHEN p.pattern = 3 THEN 'provider refused the request (HTTP 404)'
                                    ELSE 'provider failed (HTTP 503)' END) ORDER BY a)
           FROM generate_series(1, p.attempts) a WHERE {FAILED}) END,
       p.created, p.created + make_interval(secs => {BACKOFF_S} * (p.attempts - 1)),
       p.created + make_interval(secs => {BACKOFF_S} * (p.attempts - 1) + p.duration_ms / 1000.0), 'dataset-worker'
FROM p JOIN {KIND_TABLE} ON k.slot = p.slot;

WITH p AS (SELECT d.id, d.root_id, d.parent_id, d.slot, d.album, d.artist, d.pattern, d.status,
                  to_timestamp(d.created) AS created, d.duration_ms,
                  CASE d.pattern WHEN 0 THEN 1 WHEN 1 THEN 2 WHEN 2 THEN 3 ELSE 1 END AS attempts
           FROM dataset_plan d)
INSERT INTO public.enrichment_log (entity_type, entity_id, operation, sources, status, reason, fields_enriched,
    data_quality_before, data_quality_after, duration_ms, api_call_count, metadata, error_message, error_code,
    job_id, parent_job_id, is_root_job, attempt, triggered_by, created_at)
SELECT k.entity_type,
       CASE WHEN k.entity_type = 'ALBUM' THEN {ALBUM_UUID.format('p.album')} ELSE {ARTIST_UUID.format('p.artist')} END,
       k.kind, k.sources, CASE WHEN {FAILED} THEN 'FAILED' ELSE p.status END,
       CASE WHEN p.pattern = 3 THEN 'provider refused the request (NOT_FOUND); not retried'
            WHEN p.pattern = 2 AND a = p.attempts THEN 'provider failed (UPSTREAM_5XX); no attempts left'
            WHEN {FAILED} THEN 'provider failed (UPSTREAM_5XX); will retry with backoff' ELSE 'dataset' END,
       CASE WHEN {FAILED} THEN '{{}}'::text[] ELSE '{{title}}' END, 'LOW',
       CASE WHEN {FAILED} THEN 'LOW' ELSE 'HIGH' END,
       p.duration_ms, 1, jsonb_build_object('dataset', true),
       CASE WHEN p.pattern = 3 THEN 'provider refused the request (HTTP 404)'
            WHEN {FAILED} THEN 'provider failed (HTTP 503)' END,
       CASE WHEN p.pattern = 3 THEN 'NOT_FOUND' WHEN {FAILED} THEN 'UPSTREAM_5XX' END,
       p.id, CASE WHEN p.parent_id IS NULL THEN NULL ELSE p.root_id END, p.parent_id IS NULL, a, 'dataset',
       p.created + make_interval(secs => {BACKOFF_S} * (a - 1) + p.duration_ms / 1000.0)
FROM p JOIN {KIND_TABLE} ON k.slot = p.slot
CROSS JOIN LATERAL generate_series(1, p.attempts) a
ORDER BY p.created, p.id, a;

INSERT INTO public.album (id, title, musicbrainz_id, release_date, data_quality, enriched_at, created_at, updated_at)
SELECT {ALBUM_UUID.format('p.album')}, 'Album ' || p.album, NULL, '1970', 'HIGH', to_timestamp(p.created),
       to_timestamp(p.created), to_timestamp(p.created)
FROM dataset_plan p WHERE p.slot = 0;

INSERT INTO public.album_artist (album_id, artist_id, position)
SELECT {ALBUM_UUID.format('p.album')}, {ARTIST_UUID.format('p.artist')}, 1 FROM dataset_plan p WHERE p.slot = 0;
"""
ARTISTS = f"""
INSERT INTO public.artist (id, name, sort_name, data_quality, enriched_at, created_at, updated_at)
SELECT {ARTIST_UUID.format('i')}, 'Artist ' || i, 'Artist ' || i, 'HIGH', now(), now(), now()
FROM generate_series(0, %(artists)s - 1) i
"""
NEWEST_ROOTS = "SELECT * FROM enrichment_roots ORDER BY first_activity_at DESC LIMIT 20"
FAMILY = "SELECT * FROM enrichment_timeline WHERE root_job_id = %(root)s ORDER BY is_root_job DESC, created_at, id"


@dataclass
class Loaded:
    roots: int
    jobs: int
    log_rows: int
    seconds: float
    first_id: int

    @property
    def rows_per_second(self) -> float:
        return (self.jobs + self.log_rows) / self.seconds


def plan(roots: int, seed: int, first_id: int, start: float, span: float) -> Iterator[list[tuple]]:
    """Batches of plan rows: (id, root_id, parent_id, slot, album, artist, pattern, status, created, ms)."""
    rng = random.Random(seed)
    artists = max(1, roots // 3)
    batch: list[tuple] = []
    for i in range(roots):
        root_id = first_id + i * SLOTS
        artist = rng.randrange(artists)
        created = start + span * (i + rng.random()) / roots
        finished: dict[int, float] = {}  # slot -> when its last attempt ended (epoch s), for succeeded jobs
        for slot in range(SLOTS):
            if slot:
                parent, share = TREE[slot]
                if parent not in finished or rng.random() >= share:
                    continue
                at = finished[parent] + rng.uniform(0.005, 0.05)  # enqueued at its parent's commit
            else:
                at = created
            roll = rng.random()
            pattern = OK if roll < 0.90 else RETRIED if roll < 0.95 else EXHAUSTED if roll < 0.97 else REFUSED
            duration = rng.randint(*DURATION_MS)
            attempts = (1, 2, 3, 1)[pattern]
            if pattern in (OK, RETRIED):
                finished[slot] = at + BACKOFF_S * (attempts - 1) + duration / 1000
            batch.append((root_id + slot, root_id, None if slot == 0 else root_id + TREE[slot][0], slot, i, artist,
                          pattern, rng.choice(SUCCESS_STATUSES), at, duration))
        if (i + 1) % BATCH == 0:
            yield batch
            batch = []
    if batch:
        yield batch


def load(dsn: str, roots: int, *, seed: int = 1, days: float = 30.0, say: Callable[[str], None] = print) -> Loaded:
    """Fill the database (migrated with the enrichment app, no jobs or log rows yet) with `roots` families."""
    started = time.perf_counter()
    with psycopg.connect(dsn) as conn:
        conn.execute("SET synchronous_commit = off")  # a bulk load; the queue's own writes are not measured here
        busy = conn.execute("SELECT (SELECT count(*) FROM pgjobs.jobs) + (SELECT count(*) FROM enrichment_log)"
                            ).fetchone()[0]
        if busy:
            raise SystemExit(f"the database already holds {busy:,} jobs and log rows: use an empty one")
        # Ids after whatever the sequence handed out; the sequence then moves past them all.
        first_id = conn.execute("SELECT nextval('pgjobs.job_id_seq')").fetchone()[0]
        conn.execute("SELECT setval('pgjobs.job_id_seq', %s)", (first_id + roots * SLOTS,))
        conn.execute(ARTISTS, {"artists": max(1, roots // 3)})
        conn.execute(STAGE)
        conn.commit()
        now = conn.execute("SELECT extract(epoch FROM now())::float8").fetchone()[0]
        jobs = done = 0
        for batch in plan(roots, seed, first_id, now - days * 86400, days * 86400):
            with conn.cursor() as cur:
                with cur.copy("COPY dataset_plan FROM STDIN") as copy:
                    copy.set_types(["int8", "int8", "int8", "int4", "int4", "int4", "int4", "text", "float8", "int4"])
                    for row in batch:
                        copy.write_row(row)
                cur.execute(EXPAND)
            conn.commit()
            jobs += len(batch)
            done = min(roots, done + BATCH)
            say(f"  {done:,} roots, {jobs:,} jobs ({time.perf_counter() - started:.0f} s)")
        log_rows = conn.execute("SELECT count(*) FROM enrichment_log").fetchone()[0]
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("ANALYZE pgjobs.jobs, enrichment_log, album, artist, album_artist")
    return Loaded(roots, jobs, log_rows, time.perf_counter() - started, first_id)


def timed(conn: psycopg.Connection, query: str, params_for: Callable[[int], dict], runs: int) -> dict:
    samples, rows = [], 0
    for i in range(runs + 3):  # 3 warm-ups
        started = time.perf_counter()
        rows = len(conn.execute(query, params_for(i)).fetchall())
        samples.append((time.perf_counter() - started) * 1000)
    cuts = statistics.quantiles(samples[3:], n=100, method="inclusive")
    return {"p50": cuts[49], "p95": cuts[94], "max": max(samples[3:]), "runs": runs, "rows": rows}


def measure(dsn: str, runs: int = 50, seed: int = 1) -> dict:
    """The dashboard's reads: the newest 20 roots, and one root's family (a root picked at random
    over the whole history each run)."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        low, high = conn.execute("SELECT min(job_id), max(job_id) FROM enrichment_log WHERE is_root_job").fetchone()
        rng = random.Random(seed)
        picks = [conn.execute("SELECT job_id FROM enrichment_log WHERE is_root_job AND job_id >= %s "
                              "ORDER BY job_id LIMIT 1", (rng.randint(low, high),)).fetchone()[0]
                 for _ in range(runs + 3)]
        times = {"newest_20_roots": timed(conn, NEWEST_ROOTS, lambda i: {}, runs),
                 "family": timed(conn, FAMILY, lambda i: {"root": picks[i]}, runs)}
        # What `pgjobs timeline` itself runs (the views joined to the catalog), while those queries exist.
        queries = load_queries("enrichment/queries.sql")
        if "list_roots" in queries and "family_timeline" in queries:
            times["cli_roots"] = timed(conn, queries["list_roots"], lambda i: {"status": None, "limit": 20}, runs)
            times["cli_family"] = timed(conn, queries["family_timeline"], lambda i: {"root_job_id": picks[i]}, runs)
        return times


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchkit.dataset", description=__doc__.splitlines()[0])
    p.add_argument("--roots", type=int, default=100_000, help="root families (default 100,000)")
    p.add_argument("--dsn", default="postgresql://postgres@127.0.0.1:5432/postgres")
    p.add_argument("--fresh-db", metavar="NAME", help="create (replace) this database on the DSN's server and use it")
    p.add_argument("--drop", action="store_true", help="drop --fresh-db at the end")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--days", type=float, default=30.0, help="time window the roots are spread over")
    p.add_argument("--runs", type=int, default=50, help="timed runs of each read")
    p.add_argument("--measure-only", action="store_true", help="time the reads on an already loaded database")
    args = p.parse_args(argv)
    if args.measure_only and args.fresh_db:
        p.error("--measure-only reads an existing database: give it with --dsn, not --fresh-db")
    if args.roots < 1:
        p.error("--roots must be at least 1")
    say = lambda line: print(line, file=sys.stderr, flush=True)  # noqa: E731
    context = _database(args.dsn, args.fresh_db, args.drop) if args.fresh_db else nullcontext(args.dsn)
    with context as dsn:
        from pgjobs import migrations
        from pgjobs.enrichment.app import app

        if not args.measure_only:
            migrations.migrate(dsn, app.components)
            loaded = load(dsn, args.roots, seed=args.seed, days=args.days, say=say)
            print(f"loaded {loaded.roots:,} roots: {loaded.jobs:,} jobs, {loaded.log_rows:,} log rows "
                  f"in {loaded.seconds:.0f} s ({loaded.rows_per_second:,.0f} rows/s)")
        with psycopg.connect(dsn, autocommit=True) as conn:
            sizes = conn.execute("SELECT (SELECT pg_size_pretty(sum(pg_total_relation_size(relid)))"
                                 " FROM pg_partition_tree('pgjobs.jobs') WHERE isleaf), "
                                 "pg_size_pretty(pg_total_relation_size('enrichment_log'))").fetchone()
        print(f"sizes (with indexes): pgjobs.jobs {sizes[0]}, enrichment_log {sizes[1]}")
        times = measure(dsn, args.runs, args.seed)
        for name, t in times.items():
            print(f"{name:<16} p50 {t['p50']:.2f} ms  p95 {t['p95']:.2f} ms  max {t['max']:.2f} ms  "
                  f"({t['runs']} runs, {t['rows']} rows)")
    return 0


@contextmanager
def _database(server_dsn: str, name: str, drop: bool) -> Iterator[str]:
    """A database of our own on the server (a leftover of the same name replaced); dropped if asked."""
    from benchkit.schema import dbname_of, with_dbname

    admin = with_dbname(server_dsn, dbname_of(server_dsn) or "postgres")
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield with_dbname(server_dsn, name)
    finally:
        if drop:
            with psycopg.connect(admin, autocommit=True) as conn:
                conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


if __name__ == "__main__":
    sys.exit(main())
