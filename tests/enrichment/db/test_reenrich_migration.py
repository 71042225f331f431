"""Migration 0005 (periodic re-enrichment) upgrades a catalog in place: only it runs, every album
stays, and the due albums' query then finds the ones already there."""

from __future__ import annotations

import shutil
from datetime import timedelta

import psycopg

from pgjobs.enrichment.app import app
from pgjobs.migrations import Component, migrate
from pgjobs.sqlfiles import load_queries

Q = load_queries("enrichment/queries.sql")


def test_0005_upgrades_an_existing_catalog_in_place(empty_dsn, tmp_path):
    (component,) = app.components
    before_0005 = tmp_path / "migrations"
    before_0005.mkdir()
    for path in sorted(component.directory.glob("*.sql")):
        if int(path.name[:4]) < 5:
            shutil.copy(path, before_0005)
    migrate(empty_dsn, [Component(component.name, before_0005)])  # a database of the release before
    with psycopg.connect(empty_dsn, autocommit=True) as conn:
        conn.execute("""
            INSERT INTO public.album (title, musicbrainz_id, enriched_at)
            VALUES ('enriched long ago', gen_random_uuid(), now() - interval '90 days'),
                   ('enriched lately', gen_random_uuid(), now() - interval '1 day'),
                   ('never enriched', gen_random_uuid(), NULL)""")

    applied = migrate(empty_dsn, app.components)

    labels = [m.label for m in applied]  # 0005 first, then only the migrations added after it
    assert labels[0] == "enrichment/0005_reenrich_stale_albums.sql"
    assert all(int(label.split("/")[1][:4]) > 5 for label in labels[1:])
    with psycopg.connect(empty_dsn) as conn:
        assert conn.execute("SELECT count(*) FROM public.album WHERE reenrich_queued_at IS NULL").fetchone() == (3,)
        due = conn.execute(Q["stale_albums"], {"older_than": timedelta(days=30), "limit": 10}).fetchall()
        titles = [conn.execute("SELECT title FROM public.album WHERE id = %s", (i,)).fetchone()[0] for i, _ in due]
    assert titles == ["never enriched", "enriched long ago"]
    assert migrate(empty_dsn, app.components) == []  # nothing left to apply
