"""One scenario's run: a fresh database with N jobs, two workers (a, b) each behind its own proxy
listener, a watch that samples the lease invariant while the scenario waits, and the invariant
checks at the end (every job succeeded, exactly one effect per job, no job running on an expired
lease past the rescuer's reach, no worker process died).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from psycopg import sql as pgsql

from chaoskit.cluster import Cluster
from chaoskit.proxy import Proxy
from chaoskit.workload import LEASE_SECONDS, Database, Template, WorkerProc, wait_until, worker_env

# A running job whose lease expired longer ago than this is stranded: a live rescuer (every
# lease/2 ± 20 %) would have re-queued it well before.
STRANDED_GRACE = 3 * LEASE_SECONDS
_NO_WORKERS = object()
DRAIN_TIMEOUT = 90.0  # one worker alone drains ~1,700 jobs in ~45 s


@dataclass
class Check:
    name: str
    ok: bool
    detail: str = ""


@dataclass
class Result:
    scenario: str
    title: str
    n: int
    checks: list[Check] = field(default_factory=list)
    recovery_s: float | None = None
    recovery_what: str = ""
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0
    logs: dict[str, str] = field(default_factory=dict)

    @property
    def held(self) -> bool:
        return all(c.ok for c in self.checks)

    def check(self, name: str, ok: bool, detail: str = "") -> bool:
        self.checks.append(Check(name, bool(ok), detail))
        return bool(ok)

    def as_dict(self) -> dict[str, Any]:
        return {"scenario": self.scenario, "title": self.title, "n": self.n, "held": self.held,
                "failed": [c.name for c in self.checks if not c.ok],
                "checks": [vars(c) for c in self.checks], "recovery_s": self.recovery_s,
                "recovery_what": self.recovery_what, "notes": self.notes, "seconds": round(self.seconds, 1),
                "logs": self.logs}


class Lab:
    """The cluster, the proxy in front of it, the migrated template: shared by every scenario."""

    def __init__(self, cluster: Cluster, logdir: Path) -> None:
        self.cluster = cluster
        self.logdir = logdir
        self.proxy = Proxy("127.0.0.1", cluster.port)
        self.template = Template(cluster.dsn(), cluster.dsn)

    def close(self) -> None:
        self.proxy.close()


class Run:
    def __init__(self, lab: Lab, result: Result, *, payload: dict[str, int], concurrency: int = 4,
                 workers: tuple[str, ...] = ("a", "b"), tablespace: str | None = None) -> None:
        self.lab = lab
        self.result = result
        self.n = result.n
        self.db: Database = lab.template.fresh(result.scenario)
        self.tablespace = tablespace
        if tablespace:  # every table and index of the scenario's database there (not the catalogs)
            for kind in ("TABLE", "INDEX"):
                self.db.q(pgsql.SQL("ALTER {} ALL IN TABLESPACE pg_default SET TABLESPACE {}").format(
                    pgsql.SQL(kind), pgsql.Identifier(tablespace)))
        self.max_stranded = (0, 0.0)
        if self.n:
            self.db.enqueue(self.n, **payload)
        self.listener: dict[str, str] = {}
        self.workers: dict[str, WorkerProc] = {}
        for w in workers:
            self.add_worker(w, concurrency)

    # -- waiting, with the lease invariant sampled all along ------------------------------------
    def sample(self) -> None:
        count, age = self.db.stranded(STRANDED_GRACE)
        if count > self.max_stranded[0] or age > self.max_stranded[1]:
            self.max_stranded = (max(count, self.max_stranded[0]), max(age, self.max_stranded[1]))

    def watch(self, seconds: float) -> None:
        """Let a fault last `seconds` (it is the fault's duration, not a synchronisation)."""
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            self.sample()
            time.sleep(min(0.25, max(0.0, end - time.monotonic())))

    def until(self, condition, timeout: float):
        """Poll `condition` (sampling the lease invariant) until true or the deadline; None at the
        deadline, or at once when no worker process is left to make it true."""
        def probe():
            self.sample()
            return condition() or (None if any(p.alive() for p in self.workers.values()) else _NO_WORKERS)
        found = wait_until(probe, timeout, every=0.1)
        return None if found is _NO_WORKERS else found

    def add_worker(self, name: str, concurrency: int = 4) -> None:
        self.listener[name] = f"{self.db.name}-{name}"
        port = self.lab.proxy.listen(self.listener[name])
        self.workers[name] = WorkerProc(name, worker_env(self.lab.cluster.dsn(self.db.name, port=port), name),
                                        self.lab.logdir, concurrency=concurrency)

    def drained(self) -> bool:
        counts = self.db.counts()
        return counts is not None and counts.get("succeeded", 0) == self.n and sum(counts.values()) == self.n

    def wait_mid(self, fraction: float = 0.15) -> None:
        """Until `fraction` of the jobs are done and every worker has completed some: mid-drain."""
        def mid():
            rows = self.db.q("SELECT worker, count(*) FROM chaos_effects GROUP BY 1")
            done = dict(rows)
            return sum(done.values()) >= fraction * self.n and all(done.get(w) for w in self.workers)
        if not self.until(mid, 60):
            raise RuntimeError(f"{self.result.scenario}: the drain never got going\n" + self.tails())

    def resumed(self, since: float, worker: str | None, timeout: float = 30.0) -> float | None:
        """Seconds from `since` to the first completion (by `worker`) after it; None if none came
        before the deadline or before the others drained every job."""
        def found():
            at = self.db.first_effect_after(since, worker)
            if at is not None:
                return at
            return -1.0 if self.drained() else None
        at = self.until(found, timeout)
        return None if at is None or at < 0 else max(0.0, at - since)

    def drain(self, timeout: float = DRAIN_TIMEOUT) -> float | None:
        start = time.time()
        return (time.time() - start) if self.until(self.drained, timeout) else None

    # -- the invariants ---------------------------------------------------------------------------
    def check_invariants(self) -> None:
        r = self.result
        counts = self.db.counts() or {}
        r.check("every job succeeded", counts.get("succeeded", 0) == self.n and sum(counts.values()) == self.n,
                f"states {counts}")
        (jobs_with, dupes, orphans), = self.db.q(
            "SELECT count(*), count(*) FILTER (WHERE c > 1), count(*) FILTER (WHERE NOT EXISTS "
            "(SELECT 1 FROM pgjobs.jobs j WHERE j.id = e.job_id)) "
            "FROM (SELECT job_id, count(*) c FROM chaos_effects GROUP BY 1) e")
        r.check("exactly one effect per job", jobs_with == self.n and dupes == 0 and orphans == 0,
                f"{jobs_with}/{self.n} jobs with an effect, {dupes} duplicated, {orphans} orphaned")
        self.sample()
        count, age = self.max_stranded
        r.check("no job running without a live lease", count == 0,
                f"up to {count} jobs running on a lease expired > {STRANDED_GRACE:.0f} s (oldest {age:.1f} s)"
                if count else "")
        dead = [w for w, p in self.workers.items() if not p.alive()]
        r.check("workers kept running", not dead, f"exited: {dead}" if dead else "")
        (retried,), = self.db.q("SELECT count(*) FROM pgjobs.jobs WHERE attempt > 1")
        if retried:
            r.notes.append(f"{retried} jobs ran more than once (rescued or retried), each effect still once")

    def tails(self) -> str:
        return "\n".join(f"--- worker {w} ---\n{p.tail()}" for w, p in self.workers.items())

    def close(self) -> None:
        for name in self.listener.values():
            self.lab.proxy.restore(name)
            self.lab.proxy.reset(name)
        for proc in self.workers.values():
            proc.stop()
        if not self.result.held:
            self.result.logs = {w: p.tail(25) for w, p in self.workers.items()}
        try:
            self.db.drop()
        except Exception as exc:  # the report matters more than a leftover database in a temp cluster
            self.result.notes.append(f"could not drop {self.db.name}: {exc}")
