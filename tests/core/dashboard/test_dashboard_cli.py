"""`pgjobs dashboard` from the real CLI: it serves the pages, --read-only refuses actions, and a
non-loopback bind needs credentials."""

import signal
import urllib.error

from clitools import cli, make_cli, procs, wait_for  # noqa: F401  (fixtures)
from dashtools import free_port, get, post


def reachable(url: str):
    try:
        return get(url)
    except (urllib.error.URLError, ConnectionError):
        return None


def test_serves_the_pages_and_read_only_refuses_actions(cli, wait_for):
    port = free_port()
    proc = cli.start("dashboard", "--port", str(port), "--read-only")
    base = f"http://127.0.0.1:{port}"
    page = wait_for(lambda: reachable(base + "/overview"), 30, "the dashboard to answer")
    assert page.status == 200 and "Jobs by queue and state" in page.text and "read-only" in page.text
    assert post(base + "/jobs/1/cancel", origin=base).status == 403
    proc.signal(signal.SIGINT)
    assert proc.wait(15) == 0
    assert f"pgjobs dashboard on http://localhost:{port}/ (read-only)" in proc.stdout


def test_refuses_a_public_bind_without_credentials(cli):
    ran = cli("dashboard", "--host", "0.0.0.0", "--port", "0", check=False)
    assert ran.returncode == 2
    assert ran.stderr.strip().splitlines() == [
        "pgjobs: error: refusing to bind 0.0.0.0 without credentials: set PGJOBS_DASHBOARD_USER and "
        "PGJOBS_DASHBOARD_PASSWORD (or PGJOBS_DASHBOARD_TOKEN), or bind 127.0.0.1"]


def test_half_the_credentials_is_refused(cli):
    ran = cli("dashboard", "--host", "0.0.0.0", env=cli.env(PGJOBS_DASHBOARD_USER="ops"), check=False)
    assert ran.returncode == 2 and "PGJOBS_DASHBOARD_PASSWORD" in ran.stderr
