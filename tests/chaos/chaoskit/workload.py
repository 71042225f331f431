"""The chaos workload: a migrated template database, one fresh database per scenario, N `chaos`
jobs enqueued, real `pgjobs --app chaoskit.app:app worker` processes (each behind its own proxy
listener, or wherever the caller points it), and the queries that watch the drain.

Every database query here opens its own short connection straight to the server (never through
the proxy), so the observer survives the faults it watches.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import psycopg
from psycopg import sql as pgsql

from pgjobs.queue import JobSpec, enqueue_many

CHAOS_DIR = Path(__file__).resolve().parent.parent  # tests/chaos: PYTHONPATH for the workers
APP = "chaoskit.app:app"
LEASE_SECONDS = 3.0


def query(dsn: str, statement: str, params: Sequence[Any] | None = None, *, timeout: float = 5) -> list[tuple]:
    with psycopg.connect(dsn, autocommit=True, connect_timeout=max(1, int(timeout)),
                         options=f"-c statement_timeout={int(timeout * 1000)}") as conn:
        cur = conn.execute(statement, params)
        return cur.fetchall() if cur.description else []


def try_query(dsn: str, statement: str, params: Sequence[Any] | None = None) -> list[tuple] | None:
    """The rows, or None while the server cannot answer (restarting)."""
    try:
        return query(dsn, statement, params)
    except psycopg.OperationalError:
        return None


def wait_until(condition: Callable[[], Any], timeout: float, *, every: float = 0.1) -> Any:
    """Poll `condition` until it returns something truthy (returned) or the deadline passes (None)."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() >= deadline:
            return None
        time.sleep(every)


def worker_env(dsn: str, name: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PGJOBS_") and k != "DATABASE_URL"}
    path = os.pathsep.join(filter(None, [str(CHAOS_DIR), env.get("PYTHONPATH")]))
    return env | {"PYTHONPATH": path, "PGJOBS_DSN": dsn, "PGJOBS_LOG_FORMAT": "json", "CHAOS_WORKER": name,
                  "PGJOBS_LEASE_SECONDS": str(LEASE_SECONDS), "PGJOBS_POLL_INTERVAL": "0.5",
                  "PGJOBS_SHUTDOWN_GRACE_SECONDS": "2"} | extra


class WorkerProc:
    """One `pgjobs worker` process; its stderr goes to a file (read for the report on failure)."""

    def __init__(self, name: str, env: dict[str, str], logdir: Path, *, prefix: Sequence[str] = (),
                 concurrency: int = 4, app: str = APP) -> None:
        self.name = name
        self.log_path = logdir / f"worker-{name}-{uuid.uuid4().hex[:6]}.log"
        self._log = open(self.log_path, "w")
        argv = [*prefix, sys.executable, "-m", "pgjobs", "--app", app, "worker", "--concurrency", str(concurrency)]
        self.popen = subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL, stdout=self._log,
                                      stderr=subprocess.STDOUT, start_new_session=True)

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def signal(self, sig: int) -> None:
        if self.alive():
            os.kill(self.popen.pid, sig)

    def tail(self, lines: int = 15) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def stop(self, timeout: float = 8) -> None:
        """SIGCONT (in case it is stopped), SIGTERM, then SIGKILL at the deadline: never left running."""
        if self.alive():
            for sig in (signal.SIGCONT, signal.SIGTERM):
                self.signal(sig)
            try:
                self.popen.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.popen.pid, signal.SIGKILL)
                self.popen.wait(timeout=10)
        self._log.close()


@dataclass
class Database:
    """A fresh database cloned from the migrated template; `dsn` goes straight to the server."""

    admin_dsn: str
    name: str
    dsn: str

    def q(self, statement: str, params: Sequence[Any] | None = None) -> list[tuple]:
        return query(self.dsn, statement, params)

    def enqueue(self, n: int, **payload: int) -> None:
        with psycopg.connect(self.dsn) as conn:
            enqueue_many(conn, [JobSpec(kind="chaos", payload=payload, max_attempts=25, backoff_base_ms=100,
                                        backoff_cap_ms=1000) for _ in range(n)])

    def counts(self) -> dict[str, int] | None:
        rows = try_query(self.dsn, "SELECT state::text, count(*) FROM pgjobs.jobs GROUP BY 1")
        return None if rows is None else dict(rows)

    def effects(self) -> int | None:
        rows = try_query(self.dsn, "SELECT count(*) FROM chaos_effects")
        return None if rows is None else rows[0][0]

    def first_effect_after(self, since: float, worker: str | None = None) -> float | None:
        """Epoch seconds of the first effect stamped at or after `since` (by `worker`), or None."""
        rows = try_query(self.dsn, "SELECT extract(epoch FROM min(at))::float8 FROM chaos_effects "
                                   "WHERE at >= to_timestamp(%s) AND (%s::text IS NULL OR worker = %s)",
                         (since, worker, worker))
        return rows[0][0] if rows else None

    def stranded(self, grace: float) -> tuple[int, float]:
        """Jobs running whose lease expired more than `grace` s ago, and the oldest one's age (s)."""
        rows = try_query(self.dsn, "SELECT count(*), coalesce(extract(epoch FROM max(now() - lease_expires_at)), 0)"
                                   "::float8 FROM pgjobs.jobs WHERE state = 'running' "
                                   "AND lease_expires_at < now() - make_interval(secs => %s)", (grace,))
        return (0, 0.0) if not rows else (rows[0][0], rows[0][1])

    def drop(self) -> None:
        query(self.admin_dsn, pgsql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(pgsql.Identifier(self.name)))


class Template:
    """The migrated template on a cluster: `fresh()` clones it for one scenario."""

    def __init__(self, admin_dsn: str, dsn_for: Callable[[str], str]) -> None:
        self.admin_dsn = admin_dsn
        self.dsn_for = dsn_for
        self.name = f"chaos_template_{uuid.uuid4().hex[:6]}"
        query(admin_dsn, pgsql.SQL("CREATE DATABASE {}").format(pgsql.Identifier(self.name)))
        env = worker_env(dsn_for(self.name), "migrate")
        done = subprocess.run([sys.executable, "-m", "pgjobs", "--app", APP, "migrate"], env=env,
                              capture_output=True, text=True, timeout=120)
        if done.returncode != 0:
            raise RuntimeError(f"pgjobs migrate failed: {done.stderr.strip()}")

    def fresh(self, label: str) -> Database:
        name = f"chaos_{label}_{uuid.uuid4().hex[:6]}"
        query(self.admin_dsn, pgsql.SQL("CREATE DATABASE {} TEMPLATE {}").format(
            pgsql.Identifier(name), pgsql.Identifier(self.name)), timeout=60)
        return Database(self.admin_dsn, name, self.dsn_for(name))
