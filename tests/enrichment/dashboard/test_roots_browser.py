"""The enrichment pages in headless Debian Chromium (Playwright): a root row expands in place into
its family; a waterfall segment opens its audit row beside the job's error. These tests take the
screenshots the README and docs/dashboard.md show (docs/images/)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import psycopg
import pytest
from family_rows import build_family
from playwright.sync_api import expect

from dashtools import chromium, serve
from pgjobs.enrichment.app import make_app
from pgjobs.enrichment.settings import EnrichmentSettings

# The README's pictures: written to docs/images/ when PGJOBS_SCREENSHOTS=1 (a run refreshes them on
# purpose), else to a temporary folder, so an ordinary test run leaves the work tree as it was.
IMAGES = (Path(__file__).resolve().parents[3] / "docs" / "images" if os.environ.get("PGJOBS_SCREENSHOTS") == "1"
          else Path(tempfile.gettempdir()) / "pgjobs-screenshots")


@pytest.fixture(scope="module")
def browser():
    with chromium() as b:
        yield b


@pytest.fixture(scope="module")
def demo_site(demo_dsn):
    with serve(demo_dsn, app=make_app(EnrichmentSettings())) as base:
        yield base


@pytest.fixture
def built_site(fresh_dsn):
    with serve(fresh_dsn, app=make_app(EnrichmentSettings())) as base:
        yield base


@pytest.fixture
def page(browser):
    """A page whose console must stay free of errors (a CSP violation is one); requested after the
    site, so it closes (and with it the page's event stream) before the server stops."""
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    errors: list[str] = []
    page = context.new_page()
    page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
    page.on("dialog", lambda dialog: (errors.append(f"a script ran: {dialog.message}"), dialog.dismiss()))
    yield page
    context.close()
    assert errors == [], f"browser console errors (CSP violations among them) or dialogs: {errors}"


def test_expand_a_root_row_in_place_and_see_its_family(demo_dsn, demo_site, page):
    with psycopg.connect(demo_dsn) as conn:
        coldplay = conn.execute("""SELECT root_job_id FROM enrichment_roots r JOIN album a ON a.id = r.entity_id
                                   WHERE a.title LIKE 'A Rush of Blood%'""").fetchone()[0]
    page.goto(demo_site + "/roots")
    expect(page.locator("tbody.root-row")).to_have_count(3)
    row = page.locator(f"#root-{coldplay}")
    expect(row.locator("tr.child")).to_have_count(0)
    row.locator("a.toggle").click()
    expect(page.locator(f"#root-{coldplay} tr.child")).to_have_count(4)
    expect(page.locator(f"#root-{coldplay}")).to_contain_text("CACHE_ALBUM_COVER")
    expect(page.locator(f"#root-{coldplay}")).to_contain_text("Coldplay")
    assert page.url.endswith(f"/roots?open={coldplay}")  # the expansion is in the URL
    IMAGES.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(IMAGES / "dashboard-roots.png"), full_page=True)
    page.locator(f"#root-{coldplay} a.toggle").click()
    expect(page.locator(f"#root-{coldplay} tr.child")).to_have_count(0)


def test_waterfall_of_the_demo_family(demo_dsn, demo_site, page):
    with psycopg.connect(demo_dsn) as conn:
        ella = conn.execute("""SELECT root_job_id FROM enrichment_roots r JOIN album a ON a.id = r.entity_id
                               WHERE a.title = 'Ella and Louis'""").fetchone()[0]
    page.goto(demo_site + f"/roots/{ella}")
    expect(page.locator("g.lane")).to_have_count(9)
    page.locator("a.segment").nth(3).click()
    expect(page.locator("#detail h2").first).to_contain_text("Audit row")
    assert "?seg=" in page.url
    page.screenshot(path=str(IMAGES / "dashboard-waterfall.png"), full_page=True)


def test_a_segment_opens_its_audit_row_and_the_error(fresh_dsn, built_site, page):
    with psycopg.connect(fresh_dsn) as conn:
        family = build_family(conn)
    failed = family["rows"]["failed"]
    page.goto(built_site + f"/roots/{family['root']}")
    expect(page.locator("#detail")).to_contain_text("Click an attempt")
    page.locator(f'a.segment[data-log="{failed}"]').click()
    expect(page.locator("#detail h2").first).to_contain_text(f"Audit row {failed}")
    expect(page.locator("#attempt-error")).to_have_text("HTTP 503 from <upstream>")
    expect(page.locator("#detail")).to_contain_text("RuntimeError: 503")
    assert page.url.endswith(f"?seg={failed}")
    page.locator("#permalink").click()
    expect(page.locator("#detail h2").first).to_contain_text(f"Audit row {failed}")
    assert page.url.endswith(f"/roots/{family['root']}?seg={failed}")
    expect(page.locator("h1")).to_contain_text("<script>alert(1)</script>")
