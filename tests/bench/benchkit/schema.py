"""Bench databases: one fresh database per system, and the audit table audited runs write.

bench_enrichment_log copies the shape of pgjobs' own enrichment_log (sql/migrations/0002_catalog.sql:
its columns, CHECKs and indexes, the unique (job_id, attempt) one included), so "audited drain"
costs what the real pipeline's audit row costs; it has its own name so that it never collides with
the real table in a migrated database. Every system writes the same row into the same table.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator
from urllib.parse import quote, urlencode

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict

ENRICHMENT_LOG = """
CREATE TABLE IF NOT EXISTS bench_enrichment_log (
    id                  bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    entity_type         text NOT NULL CHECK (entity_type IN ('ALBUM', 'ARTIST', 'TRACK')),
    entity_id           uuid,
    operation           text NOT NULL,
    sources             text[] NOT NULL DEFAULT '{}',
    status              text NOT NULL
        CHECK (status IN ('SUCCESS', 'PARTIAL_SUCCESS', 'FAILED', 'SKIPPED', 'NO_DATA_AVAILABLE')),
    reason              text,
    fields_enriched     text[] NOT NULL DEFAULT '{}',
    data_quality_before text CHECK (data_quality_before IN ('LOW', 'MEDIUM', 'HIGH')),
    data_quality_after  text CHECK (data_quality_after IN ('LOW', 'MEDIUM', 'HIGH')),
    duration_ms         integer,
    api_call_count      integer NOT NULL DEFAULT 0,
    metadata            jsonb NOT NULL DEFAULT '{}',
    error_message       text,
    error_code          text,
    job_id              bigint,
    parent_job_id       bigint,
    is_root_job         boolean NOT NULL DEFAULT false,
    attempt             integer,
    triggered_by        text,
    created_at          timestamptz NOT NULL DEFAULT clock_timestamp(),
    CONSTRAINT bench_log_root_has_no_parent CHECK (NOT (is_root_job AND parent_job_id IS NOT NULL)),
    CONSTRAINT bench_log_linked CHECK (job_id IS NULL OR is_root_job OR parent_job_id IS NOT NULL)
);
CREATE INDEX IF NOT EXISTS bench_log_parent_job_idx ON bench_enrichment_log (parent_job_id, created_at)
    WHERE parent_job_id IS NOT NULL;
CREATE INDEX IF NOT EXISTS bench_log_roots_idx ON bench_enrichment_log (created_at DESC) WHERE is_root_job;
CREATE INDEX IF NOT EXISTS bench_log_entity_idx ON bench_enrichment_log (entity_type, entity_id, created_at);
CREATE UNIQUE INDEX IF NOT EXISTS bench_log_attempt_idx ON bench_enrichment_log (job_id, attempt)
    WHERE job_id IS NOT NULL;
"""


def with_dbname(dsn: str, dbname: str) -> str:
    """The same server and credentials as `dsn`, another database, as a URL: every driver (psycopg,
    asyncpg, node-postgres) accepts the URL form, not all accept key=value."""
    params = conninfo_to_dict(dsn)
    params["dbname"] = dbname
    user = quote(params.pop("user", "") or "", safe="")
    password = params.pop("password", None)
    host = params.pop("host", "") or ""
    port = params.pop("port", "") or ""
    auth = f"{user}:{quote(password, safe='')}@" if password else (f"{user}@" if user else "")
    netloc = f"{auth}{host if ',' not in host and not host.startswith('/') else ''}{':' + port if port else ''}"
    db = quote(params.pop("dbname"), safe="")
    if host.startswith("/"):
        params["host"] = host  # a socket directory goes in the query string
    query = f"?{urlencode(params)}" if params else ""
    return f"postgresql://{netloc}/{db}{query}"


def dbname_of(dsn: str) -> str:
    return conninfo_to_dict(dsn).get("dbname") or ""


@contextmanager
def fresh_database(server_dsn: str, name: str) -> Iterator[str]:
    """CREATE DATABASE name (dropping a leftover of a killed run first), yield its URL, drop it."""
    admin = with_dbname(server_dsn, dbname_of(server_dsn) or "postgres")
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        url = with_dbname(server_dsn, name)
        prepare(url)
        yield url
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def prepare(url: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(ENRICHMENT_LOG)
