"""Helpers for the enrichment-chain end-to-end tests: the sandbox as a subprocess, the workers'
environment, and the one SQL invariant checker every chain run in tests/e2e ends with.

A uniquely named module (not a conftest) so test files import it by name.
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
import time
from contextlib import contextmanager
from typing import Any, Callable, Iterator

import httpx
import psycopg

from pgjobs.enrichment.demo import DEMO_RELEASES
from pgjobs.enrichment.sandbox.lifecycle import settings_overrides

COLLISION_COURSE = "b7ceb41b-c078-4e25-876b-f32c166e97e2"  # JAY-Z / Linkin Park: two credits, searches Discogs
ELLA_AND_LOUIS = "e61d5658-816d-4ba8-b3d2-e5c9f0c894fc"  # a medium without track data: Spotify fallback
RUSH_OF_BLOOD = "fc6d2797-78c2-4f47-8723-f36b3a92ef4f"  # Coldplay: Discogs id from a url-relation, no search
ALBUMS = (COLLISION_COURSE, ELLA_AND_LOUIS, RUSH_OF_BLOOD)
assert set(ALBUMS) == set(DEMO_RELEASES), "the fixture albums moved: update chain_support"

_LISTENING = re.compile(r"sandbox listening on (http://\S+)")


# --- processes ------------------------------------------------------------------------------------


@contextmanager
def reaped(*procs: Any) -> Iterator[None]:
    """`with reaped(worker): …` — whatever happens inside, on the way out each process (a Proc of
    tests/e2e/conftest.py) still running is SIGKILLed with its process group, and each is reaped."""
    try:
        yield
    finally:
        for proc in procs:
            proc.kill()


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
            proc.kill()
            raise
        return cls(proc, url)

    def close(self) -> None:
        self._http.close()
        if self.proc.popen.poll() is None:
            self.proc.signal(signal.SIGTERM)  # serve() stops on SIGTERM; kill() below reaps it either way
            try:
                self.proc.popen.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass
        self.proc.kill()

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


# --- the global rate limiters -----------------------------------------------------------------------

# Test instrumentation on the test's own database: every slot a limiter hands out, as the row's
# new next_slot minus its interval: the moment rate_limit_take let the call through (rate_limit_sent
# leaves updated_at alone: it is no take).
_SLOT_RECORDER = """
CREATE TABLE public.e2e_limiter_slots (name text NOT NULL, slot timestamptz NOT NULL);
CREATE FUNCTION public.e2e_record_slot() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO public.e2e_limiter_slots (name, slot)
    VALUES (NEW.name, NEW.next_slot - make_interval(secs => NEW.interval_ms / 1000.0));
    RETURN NEW;
END $$;
CREATE TRIGGER e2e_record_slot AFTER INSERT OR UPDATE OF updated_at ON pgjobs.rate_limits
    FOR EACH ROW EXECUTE FUNCTION public.e2e_record_slot();
"""


def record_limiter_slots(dsn: str) -> None:
    """Record every limiter slot from now on (call before any worker runs; no penalties expected)."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(_SLOT_RECORDER)


def _db_clock_offset(conn: psycopg.Connection) -> tuple[float, float]:
    """(database clock - this host's clock, uncertainty), both in seconds, from one round trip."""
    before = time.time()
    (db_now,) = conn.execute("SELECT extract(epoch FROM clock_timestamp())::float8").fetchone()
    after = time.time()
    return db_now - (before + after) / 2, (after - before) / 2


def assert_paced(dsn: str, limiter: str, requests: list[dict[str, Any]], interval: float,
                 *, min_rate: float | None = None, cold: int = 0) -> None:
    """The global limiter held `limiter`'s calls (as the sandbox recorded them) to one per `interval`.

    1. the limiter let one call through per request, each take `interval` or more after the last
       (database arithmetic on one clock: no slack);
    2. no call went out before its take: the k-th arrival is no earlier than the k-th take;
    3. the API's own view: no two arrivals closer than `interval` (the limiter takes at the send,
       with a margin for what lies between the take and the API: pgjobs.queue.limits);
    4. with `min_rate`: the API stayed busy, calls/s >= min_rate over the backlog: from the
       `cold`-th arrival on (each worker's first call opens its HTTP connection and may come late;
       bin/chaos provider_limits measures the rate over a 2-minute backlog).
    """
    with psycopg.connect(dsn, autocommit=True) as conn:
        slots = [row[0] for row in conn.execute(
            "SELECT extract(epoch FROM slot)::float8 FROM public.e2e_limiter_slots WHERE name = %s ORDER BY slot",
            (limiter,))]
        offset, uncertainty = _db_clock_offset(conn)
    arrivals = sorted(r["wall"] for r in requests)  # the sandbox runs on this host: this host's clock
    assert len(slots) == len(arrivals), f"{limiter}: {len(slots)} slots handed out for {len(arrivals)} calls"
    gaps = [round(b - a, 4) for a, b in zip(slots, slots[1:])]
    assert all(gap >= interval - 1e-6 for gap in gaps), f"{limiter}: slots closer than {interval}s: {gaps}"
    late = [round(arrival - (slot - offset), 4) for slot, arrival in zip(slots, arrivals)]
    # 2 ms on top of the measured clock uncertainty: float rounding of epoch seconds, timer resolution.
    assert min(late) >= -(uncertainty + 0.002), f"{limiter}: a call went out before its slot (s late: {late})"
    sent = [round(b - a, 4) for a, b in zip(arrivals, arrivals[1:])]
    assert min(sent) >= interval, (f"{limiter}: two calls arrived less than {interval}s apart: {sorted(sent)[:5]}"
                                   f" (s after their take: {late})")
    if min_rate is not None:
        rate = (len(arrivals) - 1 - cold) / (arrivals[-1] - arrivals[cold])
        assert rate >= min_rate, f"{limiter}: {rate:.3f} calls/s < {min_rate} (gaps {sent}; s after their take: {late})"


# Each check lists the rows that break it; an empty list everywhere means the chain is sound. Jobs of
# the maintenance kinds REENRICH_STALE_ALBUMS and PRUNE_ENRICHMENT_LOG are no part of a chain and
# write no log row: (b) and (e) leave them out.
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
            WHERE j.kind NOT IN ('REENRICH_STALE_ALBUMS', 'PRUNE_ENRICHMENT_LOG')
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
            SELECT id AS root_job_id FROM pgjobs.jobs
            WHERE parent_id IS NULL AND attempt > 0 AND kind NOT IN ('REENRICH_STALE_ALBUMS', 'PRUNE_ENRICHMENT_LOG')
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
