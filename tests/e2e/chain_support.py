"""Helpers for the enrichment-chain end-to-end tests: the sandbox as a subprocess, the workers'
environment, and the one SQL invariant checker every chain run in tests/e2e ends with.

A uniquely named module (not a conftest) so test files import it by name.
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
from contextlib import contextmanager
from typing import Any, Callable, Iterator

import httpx
import psycopg

from pgjobs.cli.demo import DEMO_RELEASES
from pgjobs.sandbox.lifecycle import settings_overrides

COLLISION_COURSE = "b7ceb41b-c078-4e25-876b-f32c166e97e2"  # JAY-Z / Linkin Park: two credits, searches Discogs
ELLA_AND_LOUIS = "e61d5658-816d-4ba8-b3d2-e5c9f0c894fc"  # a medium without track data: Spotify fallback
RUSH_OF_BLOOD = "fc6d2797-78c2-4f47-8723-f36b3a92ef4f"  # Coldplay: Discogs id from a url-relation, no search
ALBUMS = (COLLISION_COURSE, ELLA_AND_LOUIS, RUSH_OF_BLOOD)
assert set(ALBUMS) == set(DEMO_RELEASES), "the fixture albums moved: update chain_support"

_LISTENING = re.compile(r"sandbox listening on (http://\S+)")


# --- processes ------------------------------------------------------------------------------------


def stop(proc: Any) -> None:
    """SIGKILL a Proc (tests/e2e/conftest.py) and its process group if it still runs, reap it, close
    its pipes: for `finally` blocks. Harmless on a process that already exited."""
    proc.kill()


@contextmanager
def reaped(*procs: Any) -> Iterator[None]:
    """`with reaped(worker): …` — whatever happens inside, the processes are dead and waited for."""
    try:
        yield
    finally:
        for proc in procs:
            stop(proc)


class Sandbox:
    """`pgjobs sandbox serve --port 0` in a subprocess, driven over its HTTP control API."""

    def __init__(self, proc: Any, url: str) -> None:
        self.proc = proc
        self.url = url
        self._http = httpx.Client(base_url=url, timeout=10)

    @classmethod
    def start(cls, cli: Any, wait_for: Callable[..., Any]) -> Sandbox:
        # Port 0: lifecycle.serve binds first and prints the URL with the port the kernel chose.
        proc = cli.start("sandbox", "serve", "--host", "127.0.0.1", "--port", "0")
        try:
            def listening() -> str | None:
                if proc.popen.poll() is not None:
                    raise AssertionError(f"the sandbox exited {proc.popen.returncode}:\n{proc.stderr}")
                found = _LISTENING.search(proc.stdout)
                return found.group(1) if found else None
            url = wait_for(listening, 20, "the sandbox's 'listening' line")
        except BaseException:
            stop(proc)
            raise
        return cls(proc, url)

    def close(self) -> None:
        self._http.close()
        if self.proc.popen.poll() is None:
            self.proc.signal(signal.SIGTERM)  # serve() stops on SIGTERM; stop() below reaps it either way
            try:
                self.proc.popen.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass
        stop(self.proc)

    def env(self) -> dict[str, str]:
        """The PGJOBS_* variables pointing every provider (and its credentials) at this sandbox."""
        return {f"PGJOBS_{name.upper()}": value for name, value in settings_overrides(self.url).items()}

    def requests(self, api: str | None = None) -> list[dict[str, Any]]:
        """Recorded requests (oldest first), optionally only one API's ('musicbrainz', 'discogs', …)."""
        response = self._http.get("/_sandbox/requests")
        response.raise_for_status()
        return [r for r in response.json() if api is None or r["api"] == api]

    def add_fault(self, **spec: Any) -> dict[str, Any]:
        response = self._http.post("/_sandbox/faults", content=json.dumps(spec))
        assert response.status_code == 201, response.text
        return response.json()

    def faults(self) -> list[dict[str, Any]]:
        return self._http.get("/_sandbox/faults").json()


# --- database -------------------------------------------------------------------------------------


def unfinished_jobs(dsn: str) -> int:
    with psycopg.connect(dsn, autocommit=True) as conn:
        return conn.execute("SELECT count(*) FROM pgjobs.jobs WHERE state IN ('queued', 'running')").fetchone()[0]


# Each check lists the rows that break it; an empty list everywhere means the chain is sound.
INVARIANTS: dict[str, str] = {
    # The checker describes finished work: a running job's current attempt has no row yet.
    "no job still running": "SELECT id, kind FROM pgjobs.jobs WHERE state = 'running' ORDER BY id",

    # (a) Every linked log row is a root row XOR a descendant row whose parent_job_id names a root:
    # a job with parent_id IS NULL in pgjobs.jobs that has an is_root_job row of its own.
    "(a) log row is a root xor names a root": """
        SELECT l.id, l.job_id, l.operation, l.is_root_job, l.parent_job_id
        FROM public.enrichment_log l
        LEFT JOIN pgjobs.jobs j ON j.id = l.job_id
        WHERE l.job_id IS NOT NULL
          AND (l.is_root_job AND l.parent_job_id IS NULL AND j.parent_id IS NULL AND j.id IS NOT NULL)::int
            + (NOT l.is_root_job AND l.parent_job_id IS NOT NULL AND j.parent_id IS NOT NULL
               AND EXISTS (SELECT FROM pgjobs.jobs r WHERE r.id = l.parent_job_id AND r.parent_id IS NULL)
               AND EXISTS (SELECT FROM public.enrichment_log rl
                           WHERE rl.job_id = l.parent_job_id AND rl.is_root_job))::int <> 1
        ORDER BY l.id""",

    # (b) Exactly one log row per attempt: for every job, the attempts logged are exactly 1..attempt
    # (a job still queued before its first run has attempt 0 and expects none).
    "(b) one log row per attempt": """
        WITH expected AS (
            SELECT j.id AS job_id, j.kind, a.attempt
            FROM pgjobs.jobs j CROSS JOIN LATERAL generate_series(1, j.attempt) AS a(attempt)
        ), logged AS (
            -- A row without an attempt number counts as attempt 0, which no job expects.
            SELECT job_id, coalesce(attempt, 0) AS attempt, count(*) AS rows
            FROM public.enrichment_log WHERE job_id IS NOT NULL GROUP BY 1, 2
        )
        SELECT coalesce(e.job_id, l.job_id) AS job_id, e.kind, coalesce(e.attempt, l.attempt) AS attempt,
               coalesce(l.rows, 0) AS log_rows, e.job_id IS NOT NULL AS attempt_exists
        FROM expected e FULL JOIN logged l ON l.job_id = e.job_id AND l.attempt = e.attempt
        WHERE e.job_id IS NULL OR l.job_id IS NULL OR l.rows <> 1
        ORDER BY 1, 3""",

    # (c) The job row and its log rows agree on the root.
    "(c) job root_id = log coalesce(parent_job_id, job_id)": """
        SELECT l.id, l.job_id, j.root_id, l.parent_job_id
        FROM public.enrichment_log l JOIN pgjobs.jobs j ON j.id = l.job_id
        WHERE j.root_id <> coalesce(l.parent_job_id, l.job_id)
        ORDER BY l.id""",

    # (d) No duplicate children: a parent never spawned the same kind with the same payload twice.
    "(d) no duplicate children": """
        SELECT parent_id, kind, payload, array_agg(id ORDER BY id) AS ids
        FROM pgjobs.jobs WHERE parent_id IS NOT NULL
        GROUP BY parent_id, kind, payload HAVING count(*) > 1
        ORDER BY parent_id""",

    # (e) enrichment_roots: one row per root job that ran, and nothing else.
    "(e) enrichment_roots has one row per root": """
        WITH shown AS (
            SELECT root_job_id, count(*) AS rows FROM public.enrichment_roots GROUP BY root_job_id
        ), ran AS (
            SELECT id AS root_job_id FROM pgjobs.jobs WHERE parent_id IS NULL AND attempt > 0
        )
        SELECT coalesce(s.root_job_id, r.root_job_id) AS root_job_id, coalesce(s.rows, 0) AS rows
        FROM shown s FULL JOIN ran r USING (root_job_id)
        WHERE s.rows IS DISTINCT FROM 1 OR r.root_job_id IS NULL
        ORDER BY 1""",
}


def chain_violations(dsn: str) -> dict[str, list[tuple]]:
    """Every invariant's offending rows (only the broken ones appear)."""
    found: dict[str, list[tuple]] = {}
    with psycopg.connect(dsn, autocommit=True) as conn:
        for name, query in INVARIANTS.items():
            rows = conn.execute(query).fetchall()
            if rows:
                found[name] = rows
    return found


def assert_chain_invariants(dsn: str) -> None:
    """The shared end-of-run check: lineage, one log row per attempt, no duplicate children, roots view."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        logged = conn.execute("SELECT count(*) FROM public.enrichment_log WHERE job_id IS NOT NULL").fetchone()[0]
    assert logged > 0, "no linked log rows: the run under test did nothing, so the invariants prove nothing"
    violations = chain_violations(dsn)
    assert not violations, "chain invariants broken:\n" + "\n".join(
        f"  {name}: {rows[:10]}{' …' if len(rows) > 10 else ''}" for name, rows in violations.items())
