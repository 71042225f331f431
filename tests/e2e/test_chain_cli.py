from __future__ import annotations
import json, time
import pytest
from chain_support import ALBUMS, Sandbox, assert_chain_invariants, chain_violations


@pytest.fixture
def sandbox(cli, wait_for):
    box = Sandbox.start(cli, wait_for)
    try:
        yield box
    finally:
        box.close()


def test_explore(cli, fresh_dsn, sandbox, sql):
    env = cli.env(**sandbox.env())
    roots = {}
    for mbid in ALBUMS:
        out = cli.json("enqueue", "enrich-album", "--mbid", mbid, env=env)
        print(out)
        roots[mbid] = out["root_job_id"]
    t = time.monotonic()
    w = cli("worker", "--burst", env=env, timeout=60)
    print("worker took", time.monotonic() - t, w.returncode)
    print(json.dumps(cli.json("timeline", env=env), indent=1)[:3000])
    for mbid, root in roots.items():
        fam = cli.json("timeline", str(root), env=env)
        for r in fam:
            print(root, r["job_id"], r["operation"], r["status"], r["attempt"], r["error_code"], r["reason"], r["created_at"])
    print(sql(fresh_dsn, "SELECT id, parent_id, root_id, kind, state::text, attempt, worker_id FROM pgjobs.jobs ORDER BY id"))
    print(sql(fresh_dsn, "SELECT name, musicbrainz_id, discogs_id, cloudflare_image_id, data_quality FROM artist"))
    print(sql(fresh_dsn, "SELECT title, cloudflare_image_id, data_quality FROM album"))
    print(sql(fresh_dsn, "SELECT a.title, count(t.*), count(t.duration_ms), count(t.spotify_id) FROM album a JOIN track t ON t.album_id = a.id GROUP BY 1"))
    reqs = sandbox.requests()
    for r in reqs:
        print(round(r["monotonic"], 3), r["api"], r["method"], r["path"], r["status"])
    print(chain_violations(fresh_dsn))
    print(w.stderr[-3000:])
