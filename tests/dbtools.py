"""Test databases: create, drop, a migrated template, a shared database cloned from it."""

from __future__ import annotations

import uuid
from typing import Iterator

import psycopg
from psycopg import sql
from psycopg.conninfo import make_conninfo

from pgjobs.migrations import Component, migrate
from pgjobs.sqlfiles import sql_dir

# The enrichment app's migrations, by folder: the core's tests read its SQL (the upgrade of a
# previous release's database, the full schema snapshot) but never import the app, whose
# dependencies the core-only venv lacks. bin/dump-schema takes the app's own components: were the
# two to differ, the snapshot test would say so.
ENRICHMENT = Component("enrichment", sql_dir() / "enrichment" / "migrations")


def _create_db(server_dsn: str, name: str, template: str | None = None) -> str:
    with psycopg.connect(server_dsn, autocommit=True) as conn:
        if template:
            conn.execute(sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(
                sql.Identifier(name), sql.Identifier(template)))
        else:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    return make_conninfo(server_dsn, dbname=name)


def _drop_db(server_dsn: str, name: str) -> None:
    with psycopg.connect(server_dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def migrated_template(server_dsn: str, components: list) -> Iterator[str]:
    name = f"pgjobs_tpl_{uuid.uuid4().hex[:8]}"
    dsn = _create_db(server_dsn, name)
    migrate(dsn, components)
    yield name
    _drop_db(server_dsn, name)


def shared_database(server_dsn: str, template_db: str) -> Iterator[str]:
    name = f"pgjobs_s_{uuid.uuid4().hex[:8]}"
    yield _create_db(server_dsn, name, template=template_db)
    _drop_db(server_dsn, name)


