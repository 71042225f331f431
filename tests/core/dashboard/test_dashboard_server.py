"""The queue's dashboard pages over HTTP against a real PostgreSQL: overview (with a rate limiter),
jobs filters and keyset paging, job detail, retry/cancel, the read-only gate, the same-origin check,
credentials, headers, escaping, and the statement-timeout banner."""

from __future__ import annotations

import base64
import json
import re
from datetime import datetime

import psycopg
import pytest

from dashtools import get, post, serve
from pgjobs.app import App, builtin_app
from pgjobs.dashboard import Credentials, fetch, render
from pgjobs.queue.jobs import enqueue


def jobs_in(html: str) -> list[int]:
    return [int(x) for x in re.findall(r'<tr><td><a href="/jobs/(\d+)">', html)]


def insert_failed(conn: psycopg.Connection, payload: dict | None = None, kind: str = "noop") -> int:
    job = enqueue(conn, kind, payload or {})
    conn.execute("""UPDATE pgjobs.jobs SET state = 'failed', attempt = 3, finished_at = now(), last_error = 'boom',
                    errors = jsonb_build_array(jsonb_build_object('attempt', 3, 'at', now(), 'outcome', 'retry',
                                                                  'error', 'boom', 'traceback', 'Traceback: line 1'))
                    WHERE id = %s""", (job.id,))
    return job.id


@pytest.fixture
def site(fresh_dsn):
    with serve(fresh_dsn, app=builtin_app()) as base:
        yield base


def test_overview_shows_counts_running_and_the_rate_limiters(fresh_dsn, site):
    with psycopg.connect(fresh_dsn) as conn:
        for _ in range(3):
            enqueue(conn, "noop", {}, queue="mail")
        insert_failed(conn)
        # Booked 5 s ahead at 1/s: five callers wait on it.
        conn.execute("INSERT INTO pgjobs.rate_limits (name, interval_ms, next_slot) "
                     "VALUES ('musicbrainz', 1000, clock_timestamp() + interval '5.5 s')")
    page = get(site + "/overview")
    assert page.status == 200
    assert re.search(r'href="/jobs\?queue=mail&amp;state=queued">3<', page.text)
    assert re.search(r'href="/jobs\?queue=default&amp;state=failed">1<', page.text)
    assert "musicbrainz" in page.text and "1/s" in page.text
    assert re.search(r'title="5 booked ahead"', page.text)
    assert "1 failed" in page.text  # the last hour's throughput


def test_the_oldest_due_job_per_queue_skips_future_ones(fresh_dsn, site):
    with psycopg.connect(fresh_dsn) as conn:
        for queue, kind, priority, ago in (("mail", "a", 1, "10 min"), ("mail", "b", 5, "2 h"), ("mail", "a", 9, "-1 h"),
                                           ("web", "c", 1, "-5 min"), ("web", "c", 2, "30 s")):
            job = enqueue(conn, kind, {}, queue=queue, priority=priority)
            conn.execute("UPDATE pgjobs.jobs SET run_at = now() - %s::interval WHERE id = %s", (ago, job.id))
        due = dict(conn.execute("SELECT queue, min(run_at) FROM pgjobs.jobs WHERE run_at <= now() GROUP BY queue"))
    page = get(site + "/overview").text
    oldest = re.findall(r"<li><strong>(\w+)</strong>: due <time datetime=\"([^\"]+)\"", page)
    assert [(q, datetime.fromisoformat(at)) for q, at in oldest] == [("mail", due["mail"]), ("web", due["web"])]


def test_a_limiters_busy_share_of_the_last_hour(fresh_dsn, site):
    with psycopg.connect(fresh_dsn) as conn:
        conn.execute("INSERT INTO pgjobs.rate_limits (name, interval_ms, next_slot) VALUES ('discogs', 1000, now())")
        # 30 minutes of 60 calls at 1/s = 1,800 of 3,600 possible; a row from yesterday does not count.
        conn.execute("INSERT INTO pgjobs.rate_limit_usage (name, minute, calls) "
                     "SELECT 'discogs', date_trunc('minute', now()) - make_interval(mins => m), 60 "
                     "FROM generate_series(0, 29) m UNION ALL SELECT 'discogs', now() - interval '1 day', 3600")
    page = get(site + "/overview").text
    assert re.search(r'title="1800 calls of 3600 possible">50 %<', page)
    assert page.count('<title>60 calls</title>') == 30  # one bar per minute


def test_a_filter_that_matches_little_reads_a_bounded_range_and_offers_to_search_older(fresh_dsn, site, monkeypatch):
    from pgjobs.dashboard import pages

    monkeypatch.setattr(pages, "SCAN_IDS", 10)
    with psycopg.connect(fresh_dsn) as conn:
        rare = enqueue(conn, "noop", {"tag": "rare"}).id
        ids = [enqueue(conn, "noop", {"tag": "common"}).id for _ in range(25)]
    first = get(site + "/jobs?payload=tag:rare")
    assert jobs_in(first.text) == [] and "search older jobs" in first.text
    hops, page = 0, first
    while not jobs_in(page.text):  # each page reads at most 10 ids further down
        link = re.search(r'href="([^"]+)" rel="next"', page.text).group(1).replace("&amp;", "&")
        page, hops = get(site + link), hops + 1
    assert jobs_in(page.text) == [rare] and hops == 2
    assert 'rel="next"' not in page.text  # nothing older in the window
    assert len(jobs_in(get(site + "/jobs").text)) == 10 and max(ids) in jobs_in(get(site + "/jobs").text)


def test_jobs_filters_and_keyset_paging(fresh_dsn, site):
    with psycopg.connect(fresh_dsn) as conn:
        ids = [enqueue(conn, "noop", {"n": i, "tag": "even" if i % 2 == 0 else "odd"}).id for i in range(70)]
        failed = insert_failed(conn, {"customer": {"id": 7}})
    first = get(site + "/jobs")
    assert jobs_in(first.text) == sorted(ids + [failed], reverse=True)[:50]
    older = re.search(r'href="([^"]+)" rel="next"', first.text).group(1).replace("&amp;", "&")
    second = get(site + older)
    assert jobs_in(second.text) == sorted(ids + [failed], reverse=True)[50:]
    assert 'rel="next"' not in second.text
    assert jobs_in(get(site + "/jobs?state=failed").text) == [failed]
    assert jobs_in(get(site + "/jobs?payload=customer:%7B%22id%22:7%7D").text) == [failed]
    assert len(jobs_in(get(site + "/jobs?payload=tag:even").text)) == 35
    assert jobs_in(get(site + f"/jobs?id={ids[3]}").text) == [ids[3]]
    assert jobs_in(get(site + "/jobs?kind=other").text) == []
    bad = get(site + "/jobs?priority=high")
    assert bad.status == 400 and "priority must be a whole number" in bad.text


def test_retry_and_cancel_are_the_cli_operations(fresh_dsn, site):
    with psycopg.connect(fresh_dsn) as conn:
        failed = insert_failed(conn)
        queued = enqueue(conn, "noop", {}).id
    done = post(site + f"/jobs/{failed}/retry", origin=site)
    assert done.status == 303 and done.headers["location"] == f"/jobs/{failed}?done=retried"
    done = post(site + f"/jobs/{queued}/cancel", origin=site)
    assert done.status == 303
    with psycopg.connect(fresh_dsn) as conn:
        states = dict(conn.execute("SELECT id, state::text FROM pgjobs.jobs").fetchall())
        reason = conn.execute("SELECT last_error FROM pgjobs.jobs WHERE id = %s", (queued,)).fetchone()[0]
        retried = conn.execute("SELECT last_error FROM pgjobs.jobs WHERE id = %s", (failed,)).fetchone()[0]
    assert states == {failed: "queued", queued: "cancelled"}
    assert reason.startswith("cancelled by dashboard user anonymous from 127.0.0.1 at ")
    assert retried.startswith("retried by dashboard user anonymous from 127.0.0.1 at ")
    again = post(site + f"/jobs/{queued}/cancel", origin=site)  # nothing left to cancel: said, not crashed
    assert again.status == 303


def test_read_only_refuses_every_mutating_route(fresh_dsn):
    with psycopg.connect(fresh_dsn) as conn:
        failed = insert_failed(conn)
        queued = enqueue(conn, "noop", {}).id
    with serve(fresh_dsn, app=builtin_app(), read_only=True) as base:
        page = get(base + f"/jobs/{failed}")
        assert page.status == 200 and 'id="retry"' not in page.text and "read-only" in page.text
        for path in (f"/jobs/{failed}/retry", f"/jobs/{queued}/cancel", "/jobs/all/retry?state=failed",
                     "/jobs/all/cancel?state=queued", "/jobs/1/anything", "/overview", "/roots"):
            refused = post(base + path, origin=base)
            assert refused.status == 403, path
            assert "read-only" in refused.text
    with psycopg.connect(fresh_dsn) as conn:
        states = dict(conn.execute("SELECT id, state::text FROM pgjobs.jobs").fetchall())
    assert states == {failed: "failed", queued: "queued"}


def test_cross_origin_posts_are_refused(fresh_dsn, site):
    with psycopg.connect(fresh_dsn) as conn:
        queued = enqueue(conn, "noop", {}).id
    assert post(site + f"/jobs/{queued}/cancel", origin="http://evil.example").status == 403
    assert post(site + f"/jobs/{queued}/cancel", sec_fetch_site="cross-site").status == 403
    assert post(site + f"/jobs/{queued}/cancel", referer="http://evil.example/x").status == 403
    assert get(site + f"/jobs/{queued}/cancel").status == 405  # actions are POST only
    with psycopg.connect(fresh_dsn) as conn:
        assert conn.execute("SELECT state::text FROM pgjobs.jobs").fetchone()[0] == "queued"


def test_credentials_are_required_when_configured(fresh_dsn):
    creds = Credentials(user="ops", password="s3cret", token="t0ken")
    with serve(fresh_dsn, credentials=creds) as base:
        assert get(base + "/overview").status == 401
        basic = base64.b64encode(b"ops:s3cret").decode()
        assert get(base + "/overview", authorization=f"Basic {basic}").status == 200
        wrong = base64.b64encode(b"ops:nope").decode()
        assert get(base + "/overview", authorization=f"Basic {wrong}").status == 401
        assert get(base + "/overview", authorization="Bearer t0ken").status == 200
        assert get(base + "/static/dashboard.css").status == 401


def test_every_page_has_a_strict_csp_and_no_inline_script_or_style(fresh_dsn, site):
    with psycopg.connect(fresh_dsn) as conn:
        job = insert_failed(conn)
    for path in ("/overview", "/jobs", f"/jobs/{job}", "/jobs?state=nope"):
        page = get(site + path)
        csp = page.headers["content-security-policy"]
        assert "script-src 'self'" in csp and "unsafe-inline" not in csp and "unsafe-eval" not in csp
        assert not re.search(r"<script(?![^>]*\bsrc=)", page.text), path
        assert not re.search(r"\sstyle=|<style|\son[a-z]+=", page.text), path
        assert re.fullmatch(r"app;dur=\d+\.\d", page.headers["server-timing"]), path  # the bench's server time


def test_values_render_as_text_and_no_secret(fresh_dsn, site):
    evil = {"html": "<script>alert(1)</script>", "img": "<img src=x onerror=alert(2)>"}
    with psycopg.connect(fresh_dsn) as conn:
        job = insert_failed(conn, evil, kind="<b>kind</b>")
    for path in (f"/jobs/{job}", "/jobs", "/overview"):
        page = get(site + path)
        assert "<script>alert(1)" not in page.text and "<img src=x" not in page.text and "<b>kind" not in page.text
    detail = get(site + f"/jobs/{job}").text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in detail and "&lt;b&gt;kind&lt;/b&gt;" in detail
    assert "Traceback: line 1" in detail
    assert fresh_dsn not in detail


def test_a_statement_past_the_timeout_says_narrow_the_filter(fresh_dsn):
    app = App("slow")

    async def slow(request):
        await fetch(request, "SELECT pg_sleep(2)")
        return render(request, "missing.html", what="never")

    app.add_dashboard(lambda dash: dash.page("/slow", slow, name="slow", nav="Slow"))
    with serve(fresh_dsn, app=app, statement_timeout_ms=50) as base:
        page = get(base + "/slow")
        assert page.status == 503 and "narrow the filter" in page.text
        assert 'href="/slow">Slow</a>' in get(base + "/overview").text  # the app's page is in the nav


def test_a_pages_statements_are_read_only(fresh_dsn):
    app = App("writer")

    async def write(request):
        await fetch(request, "CREATE TABLE dashboard_wrote_this (id int)")
        return render(request, "missing.html", what="never")

    app.add_dashboard(lambda dash: dash.page("/write", write, name="write"))
    with serve(fresh_dsn, app=app) as base:
        get(base + "/overview")  # the pool's connections are set up by a read first
        assert get(base + "/write").status == 500
    with psycopg.connect(fresh_dsn) as conn:
        assert conn.execute("SELECT to_regclass('dashboard_wrote_this')").fetchone()[0] is None


def test_jump_box(fresh_dsn, site):
    with psycopg.connect(fresh_dsn) as conn:
        job = enqueue(conn, "noop", {}).id
    assert get(site + f"/jump?q={job}").headers["location"] == f"/jobs/{job}"
    assert get(site + "/jump?q=999999").status == 404


def test_events_stream_says_change_when_a_job_is_enqueued(fresh_dsn, site):
    import urllib.request

    with urllib.request.urlopen(site + "/events", timeout=10) as stream:
        assert stream.headers["content-type"].startswith("text/event-stream")
        assert stream.readline().startswith(b"retry:")
        with psycopg.connect(fresh_dsn) as conn:
            enqueue(conn, "noop", json.loads("{}"))
        lines = []
        while not any(line.startswith(b"event: change") for line in lines):
            lines.append(stream.readline())


def test_retry_all_matching_previews_the_count_then_retries_them(fresh_dsn, site):
    with psycopg.connect(fresh_dsn) as conn:
        failed = [insert_failed(conn, {"batch": "a"}) for _ in range(4)] + [insert_failed(conn, {"batch": "b"})]
    page = get(site + "/jobs?state=failed&payload=batch:a").text
    assert "Retry all 4 matching jobs" in page
    done = post(site + "/jobs/all/retry?state=failed&payload=batch:a", origin=site)
    assert done.status == 303 and "done=retry" in done.headers["location"]
    with psycopg.connect(fresh_dsn) as conn:
        states = dict(conn.execute("SELECT id, state::text FROM pgjobs.jobs").fetchall())
    assert [states[j] for j in failed] == ["queued"] * 4 + ["failed"]
    assert post(site + "/jobs/all/retry?payload=batch:b", origin=site).status == 400  # no state: refused


def test_mounted_in_a_users_asgi_app(fresh_dsn):
    from starlette.applications import Starlette
    from starlette.routing import Mount

    from dashtools import serve_asgi
    from pgjobs.dashboard import create_app

    with psycopg.connect(fresh_dsn) as conn:
        job = enqueue(conn, "noop", {}).id
    outer = Starlette(routes=[Mount("/ops/queue", app=create_app(fresh_dsn, app=builtin_app()))])
    with serve_asgi(outer) as base:
        page = get(base + "/ops/queue/jobs")  # no lifespan reached it: the pool opens on first use
        assert page.status == 200
        assert f'href="/ops/queue/jobs/{job}"' in page.text and 'href="/ops/queue/static/dashboard.css"' in page.text
        assert get(base + "/ops/queue/static/dashboard.css").status == 200
        assert get(base + f"/ops/queue/jump?q={job}").headers["location"] == f"/ops/queue/jobs/{job}"


def test_the_dsn_password_is_never_rendered(fresh_dsn):
    dsn = fresh_dsn + " password=hunter2-not-shown"  # the test server trusts loopback: ignored there
    with psycopg.connect(dsn) as conn:
        job = insert_failed(conn)
    with serve(dsn, app=builtin_app()) as base:
        for path in ("/overview", "/jobs", f"/jobs/{job}", "/jobs/999999", "/jobs?id=x", "/jump?q=nothing"):
            page = get(base + path)
            assert page.status in (200, 400, 404)
            assert "hunter2" not in page.text and "password" not in page.text.lower(), path


def test_the_read_only_gate_covers_every_route_that_is_not_get(fresh_dsn):
    from starlette.routing import Route

    from pgjobs.dashboard import create_app

    gate = create_app(fresh_dsn, app=builtin_app(), read_only=True)
    mutating = [r for r in gate.app.routes if isinstance(r, Route) and set(r.methods or ()) - {"GET", "HEAD"}]
    assert {r.name for r in mutating} == {"job_action", "jobs_bulk"}  # a new one must be listed here
    with psycopg.connect(fresh_dsn) as conn:
        job = insert_failed(conn)
    with serve(fresh_dsn, app=builtin_app(), read_only=True) as base:
        for route in mutating:
            path = route.path.replace("{job_id:int}", str(job)).replace("{action}", "retry")
            for method in sorted(set(route.methods) - {"GET", "HEAD"}):
                from dashtools import request
                assert request(base + path + "?state=failed", method=method, data=b"",
                               headers={"origin": base}).status == 403, (method, path)
    with psycopg.connect(fresh_dsn) as conn:
        assert conn.execute("SELECT state::text FROM pgjobs.jobs").fetchone()[0] == "failed"
