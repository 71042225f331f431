"""pgbench ceilings: what PostgreSQL itself allows for claim+complete on a plain job table.

No queue library, no Python: pgbench runs tests/bench/pgbench/claim_complete.sql, each
transaction claiming `batch` jobs with SKIP LOCKED and completing them. `-t` is set so the
clients claim exactly N jobs between them, which the harness then verifies like any other run.
A warm-up of a few transactions runs first on extra rows; the measured tps excludes it.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import psycopg

SCRIPT = Path(__file__).resolve().parents[1] / "pgbench" / "claim_complete.sql"

TABLE = """
DROP TABLE IF EXISTS bench_jobs;
CREATE TABLE bench_jobs (
    id               bigserial PRIMARY KEY,
    kind             text NOT NULL DEFAULT 'noop',
    queue            text NOT NULL DEFAULT 'default',
    payload          jsonb NOT NULL DEFAULT '{}',
    state            text NOT NULL DEFAULT 'queued',
    priority         integer NOT NULL DEFAULT 0,
    run_at           timestamptz NOT NULL DEFAULT now(),
    attempt          integer NOT NULL DEFAULT 0,
    lease_token      uuid,
    lease_expires_at timestamptz,
    created_at       timestamptz NOT NULL DEFAULT now(),
    attempted_at     timestamptz,
    finished_at      timestamptz
);
CREATE INDEX bench_jobs_runnable_idx ON bench_jobs (queue, priority, run_at, id) WHERE state = 'queued';
"""


def run(pgbench: str, dsn: str, n: int, batch: int, clients: int, warmup: int) -> dict:
    """Claim+complete exactly n jobs (rounded down to whole transactions per client); returns the result."""
    per_client = n // (batch * clients)
    n = per_client * batch * clients
    warm_per_client = max(1, warmup // (batch * clients))
    warm = warm_per_client * batch * clients
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(TABLE)
        conn.execute("INSERT INTO bench_jobs (payload) SELECT jsonb_build_object('seq', g) FROM generate_series(1, %s) g",
                     (n + warm,))
        conn.execute("VACUUM ANALYZE bench_jobs")
    common = [pgbench, "--no-vacuum", "--protocol=simple", "--file", str(SCRIPT), "--define", f"batch={batch}",
              "--client", str(clients), "--jobs", str(clients), dsn]
    _pgbench(common + ["--transactions", str(warm_per_client)])
    out = _pgbench(common + ["--transactions", str(per_client)])
    tps = float(re.search(r"tps = ([\d.]+) \(without initial connection time\)", out).group(1))
    seconds = per_client * clients / tps
    return {"n": n + warm, "measured": n, "rate": tps * batch, "seconds": seconds, "tps": tps,
            "setting": {"batch": batch, "clients": clients}}


def _pgbench(cmd: list[str]) -> str:
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    if proc.returncode != 0 or "number of failed transactions: 0" not in proc.stdout:
        raise RuntimeError(f"pgbench failed (exit {proc.returncode}): {(proc.stderr or proc.stdout).strip()[-500:]}")
    return proc.stdout
