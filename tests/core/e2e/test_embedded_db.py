"""The zero-setup path: with no DSN, the CLI starts an embedded PostgreSQL under PGJOBS_HOME."""

import json
import os
import subprocess
import sys

import psycopg


def _pgjobs(home, *args):
    env = {k: v for k, v in os.environ.items() if k not in ("PGJOBS_DSN", "DATABASE_URL")}
    env["PGJOBS_HOME"] = str(home)
    return subprocess.run([sys.executable, "-m", "pgjobs", *args], env=env, capture_output=True, text=True,
                          timeout=120)


def test_db_start_status_url_stop_on_a_fresh_home(tmp_path):
    home = tmp_path / "home"
    try:
        status = _pgjobs(home, "db", "status", "--json")
        assert status.returncode == 0, status.stderr
        assert json.loads(status.stdout)["running"] is False

        started = _pgjobs(home, "db", "start", "--json")
        assert started.returncode == 0, started.stderr
        info = json.loads(started.stdout)
        assert info["running"] and info["pid"] and info["data_dir"].startswith(str(home))

        url = _pgjobs(home, "db", "url")
        assert url.returncode == 0 and url.stdout.strip() == info["url"]
        with psycopg.connect(url.stdout.strip()) as conn:  # it is a real server, left running
            assert conn.execute("SHOW server_version_num").fetchone()[0] >= "150000"

        migrated = _pgjobs(home, "migrate", "--json")
        assert migrated.returncode == 0 and json.loads(migrated.stdout)["applied"]
        # Falling back to the embedded server is never silent: one line on stderr says where.
        assert migrated.stderr == f"pgjobs: no PGJOBS_DSN/DATABASE_URL: using the embedded PostgreSQL in {home}/pgdata\n"
        enqueued = _pgjobs(home, "enqueue", "noop", "--payload", "{}", "--json")
        assert enqueued.returncode == 0 and json.loads(enqueued.stdout)["created"] is True
    finally:
        stopped = _pgjobs(home, "db", "stop", "--json")
    assert stopped.returncode == 0 and json.loads(stopped.stdout)["stopped"] is True
    assert json.loads(_pgjobs(home, "db", "status", "--json").stdout)["running"] is False


def test_db_commands_refuse_when_a_dsn_is_configured(tmp_path):
    env = {**os.environ, "PGJOBS_HOME": str(tmp_path), "PGJOBS_DSN": "postgresql://127.0.0.1:1/x"}
    done = subprocess.run([sys.executable, "-m", "pgjobs", "db", "stop"], env=env, capture_output=True, text=True)
    assert done.returncode == 2
    assert done.stderr.strip().count("\n") == 0 and "PGJOBS_DSN" in done.stderr
