"""The enrichment app's dashboard pages over HTTP on real data: the demo's roots, a row expanded in
place into its family, the waterfall and its audit rows, exports, permalinks, filters, paging,
escaping. Contributed through App.add_dashboard: the enrichment app's dashboard has them."""

from __future__ import annotations

import csv
import io
import json
import re

import psycopg
import pytest
from family_rows import EVIL_TITLE, build_family

from dashtools import get, serve
from pgjobs.enrichment.app import make_app
from pgjobs.enrichment.settings import EnrichmentSettings


@pytest.fixture(scope="module")
def enrichment_app():
    return make_app(EnrichmentSettings())


@pytest.fixture
def demo_site(demo_dsn, enrichment_app):
    with serve(demo_dsn, app=enrichment_app) as base:
        yield base


@pytest.fixture
def built_site(fresh_dsn, enrichment_app):
    with serve(fresh_dsn, app=enrichment_app) as base:
        yield base


def demo_roots(dsn: str) -> list[int]:
    with psycopg.connect(dsn) as conn:
        return [r[0] for r in conn.execute("SELECT root_job_id FROM enrichment_roots ORDER BY first_activity_at DESC")]


def test_roots_lists_the_demo_roots_and_expands_one_in_place(demo_dsn, demo_site):
    roots = demo_roots(demo_dsn)
    assert len(roots) == 3
    page = get(demo_site + "/roots")
    assert page.status == 200
    assert [int(x) for x in re.findall(r'<tbody class="root-row" id="root-(\d+)">', page.text)] == roots
    for title in ("Collision Course", "Ella and Louis", "A Rush of Blood to the Head"):
        assert title in page.text
    assert 'class="child"' not in page.text
    coldplay = next(r for r in roots if "Rush of Blood" in get(demo_site + f"/roots/{r}/row").text)
    with psycopg.connect(demo_dsn) as conn:
        children = conn.execute("SELECT count(DISTINCT job_id) FROM enrichment_log WHERE parent_job_id = %s",
                                (coldplay,)).fetchone()[0]
    expanded = get(demo_site + f"/roots?open={coldplay}")
    assert expanded.text.count('<tr class="child">') == children == 4
    assert "Coldplay" in expanded.text
    row = get(demo_site + f"/roots/{coldplay}/row?open=1", hx_request="true",
              hx_current_url=demo_site + "/roots?window=7d")
    assert row.text.lstrip().startswith(f'<tbody class="root-row open" id="root-{coldplay}">')
    assert row.text.count('<tr class="child">') == 4
    assert row.headers["hx-push-url"] == f"/roots?window=7d&open={coldplay}"


def test_family_waterfall_has_a_lane_per_job_and_a_segment_per_attempt(demo_dsn, demo_site):
    for root in demo_roots(demo_dsn):
        with psycopg.connect(demo_dsn) as conn:
            jobs = conn.execute("SELECT count(*) FROM pgjobs.jobs WHERE root_id = %s", (root,)).fetchone()[0]
            logs = [r[0] for r in conn.execute(
                "SELECT id FROM enrichment_log WHERE job_id = %s OR parent_job_id = %s", (root, root))]
        page = get(demo_site + f"/roots/{root}")
        assert page.text.count('<g class="lane"') == jobs
        assert sorted(int(x) for x in re.findall(r'class="segment" data-log="(\d+)"', page.text)) == sorted(logs)
        assert "still running" not in page.text and "sse-connect" not in page.text  # final: not listening
        exported = json.loads(get(demo_site + f"/roots/{root}/log.json").text)
        assert sorted(r["id"] for r in exported) == sorted(logs)
        table = list(csv.DictReader(io.StringIO(get(demo_site + f"/roots/{root}/log.csv").text)))
        assert sorted(int(r["id"]) for r in table) == sorted(logs)


def test_a_segment_opens_its_audit_row_beside_the_jobs_error(fresh_dsn, built_site):
    with psycopg.connect(fresh_dsn) as conn:
        family = build_family(conn)
    failed = family["rows"]["failed"]
    page = get(built_site + f"/roots/{family['root']}?seg={failed}").text
    detail = page[page.index('<aside id="detail"'):page.index("</aside>")]
    assert f"Audit row {failed}" in detail and "FAILED" in detail
    assert "HTTP 503 from &lt;upstream&gt;" in detail
    assert "RuntimeError: 503" in detail  # the traceback of the job's errors entry for attempt 1
    assert f'href="/jobs/{family["children"][0]}#attempt-1"' in detail
    assert f'href="/log/{failed}"' in detail
    permalink = get(built_site + f"/log/{failed}")
    assert permalink.status == 303 and permalink.headers["location"] == f"/roots/{family['root']}?seg={failed}"
    job = get(built_site + f"/jobs/{family['children'][0]}").text  # the job page: audit rows beside errors
    assert f'href="/log/{failed}"' in job and "RuntimeError: 503" in job


def test_markup_in_titles_payloads_and_errors_renders_as_text(fresh_dsn, built_site):
    with psycopg.connect(fresh_dsn) as conn:
        family = build_family(conn)
    pages = [get(built_site + p).text for p in (
        "/roots", f"/roots?open={family['root']}", f"/roots/{family['root']}",
        f"/roots/{family['root']}?seg={family['rows']['root']}", f"/jobs/{family['root']}", "/jobs")]
    for text in pages:
        assert EVIL_TITLE not in text and "<i>payload</i>" not in text and "<b>bold</b>" not in text
        assert "<upstream>" not in text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in pages[0]
    assert "&lt;i&gt;payload&lt;/i&gt;" in pages[4]


def test_filters_keyset_paging_and_the_jump_box(fresh_dsn, built_site):
    with psycopg.connect(fresh_dsn) as conn:
        built = [build_family(conn, children=1, title=f"Album {i:02d}")["root"] for i in range(55)]
        conn.execute("UPDATE enrichment_log SET status = 'FAILED' WHERE job_id = %s", (built[10],))
    first = get(built_site + "/roots")
    shown = [int(x) for x in re.findall(r'id="root-(\d+)"', first.text)]
    nxt = re.search(r'href="([^"]+)" rel="next"', first.text).group(1).replace("&amp;", "&")
    rest = [int(x) for x in re.findall(r'id="root-(\d+)"', get(built_site + nxt).text)]
    assert len(shown) == 50 and sorted(shown + rest) == sorted(built)
    assert [int(x) for x in re.findall(r'id="root-(\d+)"', get(built_site + "/roots?status=FAILED").text)] == [built[10]]
    assert [int(x) for x in re.findall(r'id="root-(\d+)"', get(built_site + "/roots?failures=1").text)] == [built[10]]
    assert [int(x) for x in re.findall(r'id="root-(\d+)"', get(built_site + "/roots?entity=album+07").text)] == [built[7]]
    assert get(built_site + "/roots?status=nope").status == 400
    assert get(built_site + f"/jump?q={built[3]}").headers["location"] == f"/roots/{built[3]}"
    assert get(built_site + "/jump?q=log+5").headers["location"] == "/log/5"


def test_a_family_of_600_jobs_shows_200_lanes_and_a_show_more_link(fresh_dsn, built_site):
    with psycopg.connect(fresh_dsn) as conn:
        family = build_family(conn, children=599)
    page = get(built_site + f"/roots/{family['root']}").text
    assert page.count('<g class="lane"') == 200 and "200 of 600 jobs shown" in page
    more = re.search(r'href="([^"]+)" id="more-lanes"', page).group(1).replace("&amp;", "&")
    assert page.count("show more lanes") == 1
    assert get(built_site + more).text.count('<g class="lane"') == 400


def test_a_segment_of_another_family_is_not_shown(fresh_dsn, built_site):
    with psycopg.connect(fresh_dsn) as conn:
        one, other = build_family(conn), build_family(conn)
    page = get(built_site + f"/roots/{one['root']}?seg={other['rows']['failed']}").text
    assert "Click an attempt" in page and f"Audit row {other['rows']['failed']}" not in page


def test_a_family_still_running_listens_and_one_all_final_does_not(fresh_dsn, built_site):
    with psycopg.connect(fresh_dsn) as conn:
        family = build_family(conn)
        conn.execute("""UPDATE pgjobs.jobs SET state = 'running', finished_at = NULL, lease_token = gen_random_uuid(),
                        lease_expires_at = now() + interval '30 s', attempted_at = now() - interval '1 s'
                        WHERE id = %s""", (family["children"][1],))
    running = get(built_site + f"/roots/{family['root']}").text
    assert "still running" in running and "sse-connect=" in running
    assert re.search(r'id="wf" hx-get="[^"]+" hx-select="#wf" hx-swap="outerHTML" hx-trigger="sse:change', running)
    assert "seg st-running" in running  # the running attempt reaches to now
    with psycopg.connect(fresh_dsn) as conn:
        conn.execute("""UPDATE pgjobs.jobs SET state = 'succeeded', finished_at = now(), lease_token = NULL,
                        lease_expires_at = NULL WHERE id = %s""", (family["children"][1],))
    final = get(built_site + f"/roots/{family['root']}").text
    assert "still running" not in final and "sse-connect=" not in final and 'hx-trigger="sse:change' not in final


def test_a_rare_status_reads_a_bounded_number_of_roots_and_offers_to_search_further(fresh_dsn, built_site,
                                                                                      monkeypatch):
    from pgjobs.enrichment import dashboard

    monkeypatch.setattr(dashboard, "ROOT_SCAN", 10)
    with psycopg.connect(fresh_dsn) as conn:
        built = [build_family(conn, children=1, title=f"Album {i:02d}")["root"] for i in range(25)]
        conn.execute("UPDATE enrichment_log SET status = 'FAILED' WHERE job_id = %s", (built[2],))
    page, hops = get(built_site + "/roots?status=FAILED"), 0
    assert "search further back" in page.text and "reads at most 10 roots" in page.text
    while not re.findall(r'id="root-(\d+)"', page.text):  # each page reads the next 10 roots
        link = re.search(r'href="([^"]+)" rel="next"', page.text).group(1).replace("&amp;", "&")
        page, hops = get(built_site + link), hops + 1
    assert [int(x) for x in re.findall(r'id="root-(\d+)"', page.text)] == [built[2]] and hops == 2
    # The entity filter takes % and _ literally (ILIKE with them escaped).
    assert re.findall(r'id="root-(\d+)"', get(built_site + "/roots?entity=album_07").text) == []
    assert re.findall(r'id="root-(\d+)"', get(built_site + "/roots?entity=%25").text) == []


def test_the_waterfall_draws_the_time_an_attempt_waited_for_the_rate_limiter(fresh_dsn, built_site):
    with psycopg.connect(fresh_dsn) as conn:
        family = build_family(conn, children=1, title="Limited")
        conn.execute("UPDATE enrichment_log SET limiter_wait_ms = 400 WHERE id = %s", (family["rows"]["root"],))
    page = get(built_site + f"/roots/{family['root']}").text
    assert page.count('<rect class="limiter"') == 1
    assert "attempt 1: 400 ms waiting for the rate limiter" in page
