"""`pgjobs dashboard` from the real CLI: a non-loopback bind needs credentials."""

from clitools import cli, make_cli, procs  # noqa: F401  (fixtures)


def test_refuses_a_public_bind_without_credentials(cli):
    ran = cli("dashboard", "--host", "0.0.0.0", "--port", "0", check=False)
    assert ran.returncode == 2
    assert ran.stderr.strip().splitlines() == [
        "pgjobs: error: refusing to bind 0.0.0.0 without credentials: set PGJOBS_DASHBOARD_USER and "
        "PGJOBS_DASHBOARD_PASSWORD (or PGJOBS_DASHBOARD_TOKEN), or bind 127.0.0.1"]


def test_half_the_credentials_is_refused(cli):
    ran = cli("dashboard", "--host", "0.0.0.0", env=cli.env(PGJOBS_DASHBOARD_USER="ops"), check=False)
    assert ran.returncode == 2 and "PGJOBS_DASHBOARD_PASSWORD" in ran.stderr
