"""pgjobs through a real PgBouncer (Debian's `pgbouncer`; .ci/run installs it).

Session pooling with the documented workaround (`ignore_startup_parameters = options`, the server
settings on the database instead) carries a long-running worker and the CLI; without it PgBouncer
refuses every pgjobs connection, and the CLI says so in one line. Transaction pooling breaks what a
worker needs from a session: shown on the mechanisms themselves (LISTEN, session advisory locks).
Outside CI a machine without the binary skips these tests; under CI=true a missing binary fails.
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import socket
import tempfile
from pathlib import Path

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from pgjobs.database import connect


def _binary() -> str:
    found = shutil.which("pgbouncer") or next(
        (p for p in ("/usr/sbin/pgbouncer", "/usr/bin/pgbouncer") if os.access(p, os.X_OK)), None)
    if found is None:
        if os.environ.get("CI") == "true":
            pytest.fail("pgbouncer is not installed (.ci/run apt-installs it)")
        pytest.skip("pgbouncer is not installed (apt-get install pgbouncer)")
    return found


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Bouncer:
    def __init__(self, proc, port: int, server: dict) -> None:
        self.proc, self.port, self.server = proc, port, server

    def dsn(self, target_dsn: str) -> str:
        """The target database's DSN, through this PgBouncer (as the client user it trusts)."""
        dbname = conninfo_to_dict(target_dsn)["dbname"]
        return make_conninfo(host="127.0.0.1", port=self.port, dbname=dbname, user="pgjobs_client")


@pytest.fixture
def bouncer(procs, server_dsn, wait_for):
    """start(pool_mode, ignore_options=True, pool_size=20) -> a running PgBouncer in front of the test server."""
    binary = _binary()
    started: list[Bouncer] = []
    folder = Path(tempfile.mkdtemp(prefix="pgjobs-bouncer-"))
    as_user: list[str] = []
    if os.geteuid() == 0:  # PgBouncer refuses to run as root: it switches to an ordinary user,
        host = conninfo_to_dict(server_dsn).get("host") or ""  # the socket folder's owner for a local server
        user = (pwd.getpwuid(os.stat(host).st_uid).pw_name if host.startswith("/")
                else next(u for u in ("postgres", "nobody") if _exists(u)))
        os.chown(folder, pwd.getpwnam(user).pw_uid, -1)
        as_user = ["-u", user]
    folder.chmod(0o755)

    def start(pool_mode: str, *, ignore_options: bool = True, pool_size: int = 20) -> Bouncer:
        server = conninfo_to_dict(server_dsn)
        port = _free_port()
        target = " ".join(f"{k}={server[k]}" for k in ("host", "port", "user", "password") if server.get(k))
        name = f"b{len(started)}"
        ini = folder / f"{name}.ini"
        ini.write_text("\n".join([
            "[databases]", f"* = {target}", "", "[pgbouncer]",
            "listen_addr = 127.0.0.1", f"listen_port = {port}", "unix_socket_dir =",
            "auth_type = trust", f"auth_file = {folder / 'users.txt'}", f"pool_mode = {pool_mode}",
            f"default_pool_size = {pool_size}", "max_client_conn = 200",
            f"logfile = {folder / (name + '.log')}", f"pidfile = {folder / (name + '.pid')}",
            *(["ignore_startup_parameters = options"] if ignore_options else []), ""]))
        (folder / "users.txt").write_text('"pgjobs_client" ""\n')
        for path in folder.iterdir():
            path.chmod(0o644)
        proc = procs.start([binary, *as_user, str(ini)], dict(os.environ))
        bouncer = Bouncer(proc, port, server)

        def listening() -> bool:
            assert proc.popen.poll() is None, f"pgbouncer exited: {proc.stderr}"
            with socket.socket() as s:
                return s.connect_ex(("127.0.0.1", port)) == 0
        wait_for(listening, 15, "pgbouncer listening")
        started.append(bouncer)
        return bouncer

    yield start
    for b in started:
        b.proc.signal(signal.SIGTERM)
        b.proc.wait(15)
    shutil.rmtree(folder, ignore_errors=True)


def _exists(user: str) -> bool:
    try:
        pwd.getpwnam(user)
        return True
    except KeyError:
        return False


def test_without_the_workaround_pgbouncer_refuses_pgjobs_and_the_cli_says_so_in_one_line(bouncer, make_cli,
                                                                                           fresh_dsn):
    plain = bouncer("session", ignore_options=False)
    ran = make_cli(plain.dsn(fresh_dsn))("stats", check=False)
    assert ran.returncode == 2
    (line,) = ran.stderr.strip().splitlines()
    assert "unsupported startup parameter: options" in line and "Traceback" not in ran.stderr


def test_a_worker_and_the_cli_run_through_pgbouncer_in_session_mode(bouncer, make_cli, fresh_dsn, sql, wait_for):
    pooled = bouncer("session")
    cli = make_cli(pooled.dsn(fresh_dsn))
    assert cli("migrate").returncode == 0
    ids = [cli.json("enqueue", "noop")["id"] for _ in range(3)]
    # a poll interval far beyond the deadlines below: only LISTEN/NOTIFY (and hand-off) can wake it
    worker = cli.start("worker", "--concurrency", "2", env=cli.env(PGJOBS_POLL_INTERVAL="600"))
    done = "SELECT count(*) FROM pgjobs.jobs WHERE id = ANY(%s) AND state = 'succeeded'"
    wait_for(lambda: sql(fresh_dsn, done, (ids,))[0][0] == 3, 30, "the first 3 jobs")
    worker_id = wait_for(lambda: cli.json("workers") or None, 15, "the worker's row")[0]["worker_id"]
    # every backend of the worker came through PgBouncer, and still carries the worker's name
    names = sql(fresh_dsn, "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s", (worker_id,))
    assert names[0][0] >= 2
    for _ in range(3):  # the worker is idle: each enqueue through PgBouncer must wake it
        job = cli.json("enqueue", "noop")["id"]
        wait_for(lambda: sql(fresh_dsn, done, ([job],))[0][0] == 1, 20, "a job enqueued while the worker idled")
    stats = cli("stats")
    assert "live workers: 1" in stats.stdout
    worker.signal(signal.SIGTERM)
    assert worker.wait(30) == 0, worker.stderr
    assert "Traceback" not in worker.stderr


def test_through_pgbouncer_the_server_settings_come_from_the_database_not_the_startup_packet(bouncer, fresh_dsn,
                                                                                              sql):
    dbname = conninfo_to_dict(fresh_dsn)["dbname"]
    setting = "SHOW idle_in_transaction_session_timeout"
    with connect(fresh_dsn) as direct:  # pgjobs' own options arrive when connecting directly
        sent = direct.execute(setting).fetchone()[0]
        assert sent != "0"
    with connect(bouncer("session").dsn(fresh_dsn)) as through:
        assert through.execute(setting).fetchone()[0] == "0"  # PgBouncer dropped the startup options
        assert through.execute("SHOW application_name").fetchone()[0] == "pgjobs-cli"  # this one travels
    # the documented workaround: the settings pgjobs would send, set on the database (or the role);
    # a second PgBouncer, so the backend is a new one (the first one pools its server connection)
    sql(fresh_dsn, f'ALTER DATABASE "{dbname}" SET idle_in_transaction_session_timeout = \'{sent}\'')
    with connect(bouncer("session").dsn(fresh_dsn)) as through:
        assert through.execute(setting).fetchone()[0] == sent


def test_transaction_pooling_breaks_listen_and_session_advisory_locks(bouncer, fresh_dsn):
    pooled = bouncer("transaction", pool_size=1)
    dsn = pooled.dsn(fresh_dsn)
    with psycopg.connect(dsn, autocommit=True) as listener, psycopg.connect(dsn, autocommit=True) as other:
        listener.execute("LISTEN pgjobs_demo")
        other.execute("NOTIFY pgjobs_demo, 'for the listener'")
        # the LISTEN stayed on the server connection, which PgBouncer lent to the next client
        got = [(n.channel, n.payload) for n in other.notifies(timeout=5, stop_after=1)]
        assert got == [("pgjobs_demo", "for the listener")]
        # a session lock "held" by one client is held by whoever gets that server connection next
        first = listener.execute("SELECT pg_try_advisory_lock(4242), pg_backend_pid()").fetchone()
        second = other.execute("SELECT pg_try_advisory_lock(4242), pg_backend_pid()").fetchone()
        assert first[0] and second[0] and first[1] == second[1]

