"""The queue's pages in headless Debian Chromium (Playwright): retry from the job page, read-only
mode has no working action, a job enqueued while the page is open appears, dark mode renders."""

from __future__ import annotations

import psycopg
import pytest
from playwright.sync_api import expect

from dashtools import chromium, serve
from pgjobs.app import builtin_app
from pgjobs.queue.jobs import enqueue


@pytest.fixture(scope="module")
def browser():
    with chromium() as b:
        yield b


@pytest.fixture
def site(fresh_dsn):
    with serve(fresh_dsn, app=builtin_app()) as base:
        yield base


@pytest.fixture
def page(browser):
    """Requested after the site: it closes (and its event stream with it) before the server stops.
    Its console must stay free of errors (a Content-Security-Policy violation is one)."""
    context = browser.new_context(viewport={"width": 1300, "height": 900})
    page = context.new_page()
    errors: list[str] = []
    page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
    yield page
    context.close()
    assert errors == [], f"browser console errors: {errors}"


def failed_job(dsn: str) -> int:
    with psycopg.connect(dsn) as conn:
        job = enqueue(conn, "noop", {}).id
        conn.execute("UPDATE pgjobs.jobs SET state = 'failed', attempt = 3, finished_at = now(), "
                     "last_error = 'boom' WHERE id = %s", (job,))
    return job


def state_of(dsn: str, job: int) -> str:
    with psycopg.connect(dsn) as conn:
        return conn.execute("SELECT state::text FROM pgjobs.jobs WHERE id = %s", (job,)).fetchone()[0]


def test_retry_from_the_job_page(fresh_dsn, site, page):
    job = failed_job(fresh_dsn)
    page.goto(site + f"/jobs/{job}")
    page.locator("#retry").click()
    expect(page.locator(".banner.ok")).to_contain_text("retried")
    expect(page.locator("h1 .state")).to_have_text("queued")
    assert state_of(fresh_dsn, job) == "queued"


def test_read_only_has_no_action_that_works(fresh_dsn, browser):
    job = failed_job(fresh_dsn)
    with serve(fresh_dsn, app=builtin_app(), read_only=True) as base:
        context = browser.new_context()
        page = context.new_page()
        page.goto(base + f"/jobs/{job}")
        expect(page.locator(".chip.ro")).to_be_visible()
        expect(page.locator("button.act")).to_have_count(0)
        # The page's own origin posting the action anyway (a crafted form) is refused by the server.
        status = page.evaluate(f"fetch('/jobs/{job}/retry', {{method: 'POST'}}).then(r => r.status)")
        assert status == 403
        context.close()
    assert state_of(fresh_dsn, job) == "failed"


def test_a_job_enqueued_while_the_page_is_open_appears(fresh_dsn, site, page):
    page.goto(site + "/jobs")
    expect(page.locator("table.jobs tbody")).to_contain_text("no job matches")
    with psycopg.connect(fresh_dsn) as conn:
        job = enqueue(conn, "noop", {"live": True}).id
    # The event stream brings it (the region's polling fallback is every 10 s: later than this).
    expect(page.locator(f'table.jobs a[href="/jobs/{job}"]')).to_be_visible(timeout=5000)


def test_dark_mode_follows_the_os_and_the_toggle(fresh_dsn, browser):
    with serve(fresh_dsn, app=builtin_app()) as base:
        context = browser.new_context(color_scheme="dark", viewport={"width": 1300, "height": 900})
        page = context.new_page()
        page.goto(base + "/overview")
        dark = page.evaluate("getComputedStyle(document.body).backgroundColor")
        assert dark == "rgb(21, 23, 26)"
        page.locator("#theme-toggle").click()  # auto -> dark (explicit)
        page.locator("#theme-toggle").click()  # dark -> light
        expect(page.locator("html")).to_have_attribute("data-theme", "light")
        assert page.evaluate("getComputedStyle(document.body).backgroundColor") == "rgb(247, 247, 245)"
        context.close()
