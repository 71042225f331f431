"""The fault scenarios, in issue 18's order. Each takes the Lab and N, runs its fault mid-drain
over two workers, and returns a Result: the invariant checks, its own checks, and a recovery time.
"""

from __future__ import annotations

import signal
import subprocess
import time
from contextlib import ExitStack
from typing import Callable

import psycopg
from psycopg import sql as pgsql

from pgjobs.queue import enqueue

from chaoskit.chain import chain_sigstop
from chaoskit.limits import TITLE as LIMITS_TITLE, provider_limits
from chaoskit.runner import Lab, Result, Run
from chaoskit.workload import LEASE_SECONDS, query

PAYLOAD = {"sleep_ms": 100}  # 4 slots per worker: ~40 jobs/s each, so a 20 s fault ends mid-drain
RESUME_TIMEOUT = 30.0
LOCK_WINDOW = 30.0  # how long the in-transaction scenario waits for the server to drop the locks
VOLUME_MB = 16  # the disk-full scenario's tmpfs: the scenario's database (~2 MB) and the filler
# bin/test's subset (tests/chaos/test_fast_scenarios.py): scenario -> jobs (0: the scenario's own).
FAST = {"pg_restart": 300, "backends_terminated": 300, "read_only": 150, "in_transaction": 150,
        "handoff_partitioned": 0, "disk_full": 300, "chain_sigstop": 0}


def _fmt(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds:.1f} s"


def _terminate(run: Run, worker: str | None = None) -> int:
    """pg_terminate_backend on a worker's sessions (matched by the proxy's client ports), or on
    every session of the scenario's database but ours."""
    if worker is None:
        rows = run.db.q("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                        "WHERE datname = current_database() AND pid <> pg_backend_pid()")
    else:
        ports = run.lab.proxy.upstream_ports(run.listener[worker])
        rows = run.db.q("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                        "WHERE client_port = ANY(%s) AND client_addr = '127.0.0.1'", (ports,))
    return rows[0][0]


def pg_restart(run: Run) -> None:
    run.wait_mid()
    run.lab.cluster.restart_immediate()
    back = time.time()
    each = {w: run.resumed(back, w) for w in run.workers}
    first = [s for s in each.values() if s is not None]
    run.result.recovery_s = min(first) if first else None
    run.result.recovery_what = "server back -> first completion"
    run.result.notes.append("resumed: " + ", ".join(f"{w} {_fmt(s)}" for w, s in each.items()))
    run.result.check("the workers resumed", all(s is not None for s in each.values()) or run.drained(),
                     f"resumed after: {each}")


def backends_terminated(run: Run) -> None:
    run.wait_mid()
    times = []
    for _ in range(2):
        killed = _terminate(run, "a")
        at = time.time()
        times.append(run.resumed(at, "a"))
        run.result.notes.append(f"terminated {killed} backends of worker a")
    measured = [t for t in times if t is not None]
    run.result.recovery_s = max(measured) if measured else None
    run.result.recovery_what = "terminated -> worker's next completion (worst of 2)"
    run.result.check("the worker resumed after each termination", len(measured) == len(times) or run.drained(),
                     f"resumed after: {times}")


def half_open(run: Run, seconds: float = 20.0) -> None:
    run.wait_mid()
    run.lab.proxy.blackhole(run.listener["a"])
    run.watch(seconds)
    run.lab.proxy.restore(run.listener["a"])
    healed = time.time()
    run.result.recovery_s = run.resumed(healed, "a")
    run.result.recovery_what = f"network back after {seconds:.0f} s -> worker's next completion"
    run.result.check("the worker resumed within 30 s", run.result.recovery_s is not None or run.drained(),
                     "no completion by the healed worker")


def partition(run: Run) -> None:
    run.wait_mid()
    (worker_id,), = run.db.q("SELECT worker_id FROM pgjobs.workers WHERE pid = %s", (run.workers["a"].pid,))
    run.lab.proxy.blackhole(run.listener["a"])
    struck = time.time()
    drained = run.drain()
    drained = None if drained is None else time.time() - struck
    run.result.check("the other worker finished every job", drained is not None)
    (rescued, requeued, last), = run.db.q(
        "SELECT count(*), extract(epoch FROM max((x->>'at')::timestamptz))::float8, "
        "extract(epoch FROM max(e.at))::float8 FROM pgjobs.jobs j JOIN chaos_effects e ON e.job_id = j.id "
        "CROSS JOIN LATERAL jsonb_array_elements(j.errors) x "
        "WHERE x->>'outcome' = 'lease_expired' AND x->>'worker' = %s", (worker_id,))
    run.result.recovery_s = None if requeued is None else requeued - struck
    run.result.recovery_what = "partition -> the last of its jobs re-queued by the other worker's rescuer"
    run.result.notes.append(
        f"{rescued} jobs rescued from the partitioned worker, the last finished "
        f"{_fmt(None if last is None else last - struck)} after the partition; the other worker drained "
        f"everything {_fmt(None if drained is None else drained)} after it")
    run.result.check("the partitioned worker's jobs were rescued", rescued > 0)
    # The stranded worker's network comes back: whatever it still sends must be fenced.
    run.lab.proxy.restore(run.listener["a"])
    run.watch(LEASE_SECONDS)


def sigstop(run: Run) -> None:
    run.wait_mid()
    pause = 2.5 * LEASE_SECONDS
    run.workers["a"].signal(signal.SIGSTOP)
    run.watch(pause)
    run.workers["a"].signal(signal.SIGCONT)
    cont = time.time()
    run.result.recovery_s = run.resumed(cont, "a")
    run.result.recovery_what = f"SIGCONT after {pause:.1f} s -> worker's next completion"
    run.result.check("the worker went on after SIGCONT", run.result.recovery_s is not None or run.drained())


def _locked_running(run: Run) -> int:
    """Running jobs whose rows someone holds locked (what a rescuer cannot touch)."""
    with psycopg.connect(run.db.dsn) as conn:
        (running,), = conn.execute("SELECT count(*) FROM pgjobs.jobs WHERE state = 'running'").fetchall()
        (free,), = conn.execute("SELECT count(*) FROM (SELECT id FROM pgjobs.jobs WHERE state = 'running' "
                                "FOR UPDATE SKIP LOCKED) f").fetchall()
        conn.rollback()
    return running - free


def in_transaction(run: Run) -> None:
    run.wait_mid()
    ports = run.lab.proxy.upstream_ports(run.listener["a"])
    inside = ("SELECT pid FROM pg_stat_activity WHERE client_port = ANY(%s) AND client_addr = '127.0.0.1' "
              "AND xact_start IS NOT NULL AND backend_xid IS NOT NULL AND pid <> pg_backend_pid()")
    with psycopg.connect(run.db.dsn, autocommit=True) as conn:  # poll fast: strike inside a write
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and not conn.execute(inside, (ports,)).fetchall():
            time.sleep(0.005)
    run.lab.proxy.blackhole(run.listener["a"])
    struck = time.time()
    run.watch(0.5)
    locked_at_start = _locked_running(run)
    released = run.until(lambda: not run.db.q(inside, (ports,)), LOCK_WINDOW)
    held_for = time.time() - struck
    stranded = run.db.stranded(0)[0]
    locked = _locked_running(run)
    run.result.recovery_s = held_for if released else None
    run.result.recovery_what = f"partition inside a transaction -> its locks released (window {LOCK_WINDOW:.0f} s)"
    run.result.notes.append(f"{locked_at_start} running jobs locked just after the partition; "
                            f"after {held_for:.0f} s: {locked} still locked, {stranded} running on an expired lease")
    run.result.check(f"the server ended the transaction within {LOCK_WINDOW:.0f} s", released,
                     f"still open after {held_for:.0f} s ({locked} job rows locked)")
    if not released:  # the operator's hand: end the stranded sessions, then see the rest drain
        run.result.notes.append(f"harness then terminated {_terminate(run, 'a')} backends of the partitioned worker")
    run.result.check("the other worker finished every job", run.drain() is not None)


def read_only(run: Run, seconds: float = 5.0) -> None:
    run.wait_mid()
    admin = run.db.admin_dsn
    name = pgsql.Identifier(run.db.name)
    query(admin, pgsql.SQL("ALTER DATABASE {} SET default_transaction_read_only = on").format(name))
    _terminate(run)
    run.watch(seconds)
    query(admin, pgsql.SQL("ALTER DATABASE {} RESET default_transaction_read_only").format(name))
    cleared = time.time()
    run.result.recovery_s = run.resumed(cleared, None)
    run.result.recovery_what = f"read-only for {seconds:.0f} s, cleared -> first completion"
    recovered = run.result.check("work resumed within 30 s of clearing", run.result.recovery_s is not None)
    said = sum("read-only" in p.log_path.read_text(errors="replace") for p in run.workers.values())
    run.result.notes.append(f"{said} of {len(run.workers)} workers logged a read-only error")
    dead = [w for w, p in list(run.workers.items()) if not p.alive()]
    if dead:  # nothing lost? a fresh worker (the restart nobody should need) must finish exactly once
        run.result.notes.append(f"worker(s) {', '.join(dead)} exited on the read-only error; "
                                "the harness started a fresh one to finish the jobs")
        run.add_worker("c")
    elif not recovered:
        run.result.notes.append(f"harness then terminated {_terminate(run)} sessions (they stayed read-only)")
    run.result.check("every job finished once writable", run.drain() is not None)


def _fill(run: Run) -> int:
    """Fill the scenario's tablespace with a table of our own until the disk is full; its size."""
    table = pgsql.SQL("CREATE TABLE chaos_filler (b text) TABLESPACE {}").format(pgsql.Identifier(run.tablespace))
    with psycopg.connect(run.db.dsn, autocommit=True) as conn:
        conn.execute(table)
        conn.execute("ALTER TABLE chaos_filler ALTER b SET STORAGE PLAIN")  # no compression, no TOAST
        for rows in (1000, 1):  # big batches, then one row (one new page) at a time to the last page
            while True:
                try:
                    conn.execute("INSERT INTO chaos_filler SELECT repeat('x', 1000) FROM generate_series(1, %s)",
                                 (rows,))
                except psycopg.errors.DiskFull:
                    break
        return conn.execute("SELECT pg_total_relation_size('chaos_filler')").fetchone()[0]


def disk_full(run: Run, seconds: float = 5.0) -> None:
    run.wait_mid()
    filler = _fill(run)
    full = time.time()
    run.result.notes.append(f"the tablespace (a {VOLUME_MB} MB tmpfs) filled with {filler / 2**20:.1f} MB")
    said = run.until(lambda: sum(_logged(p, "DiskFull") for p in run.workers.values()) == len(run.workers),
                     RESUME_TIMEOUT)
    run.result.check("every worker logged the disk-full error", said)
    run.watch(max(0.0, seconds - (time.time() - full)))
    run.db.q("DROP TABLE chaos_filler")
    cleared = time.time()
    run.result.recovery_s = run.resumed(cleared, None)
    run.result.recovery_what = f"disk full for {cleared - full:.0f} s, space freed -> first completion"
    run.result.check("work resumed within 30 s of freeing space", run.result.recovery_s is not None)
    run.result.check("every job finished once there was room", run.drain() is not None)


def _logged(proc, text: str) -> bool:
    return text in proc.log_path.read_text(errors="replace")


def handoff_partitioned(run: Run, count: int = 20) -> None:
    offering = run.until(lambda: run.db.q("SELECT count(*) FROM pgjobs.waiters WHERE free > 0")[0][0] >= 2, 30)
    run.result.check("both idle workers offered hand-offs", offering)
    # Partition the worker an enqueue would hand to right now (enqueue_handoff's order: the offer
    # heard from most recently; the oldest offer before offers expired, migration 0010).
    order = "w.heard_at DESC" if run.db.q("SELECT count(*) FROM information_schema.columns WHERE "
                                          "table_name = 'waiters' AND column_name = 'heard_at'")[0][0] else "w.since"
    pids = [pid for (pid,) in run.db.q("SELECT k.pid FROM pgjobs.waiters w JOIN pgjobs.workers k USING (worker_id) "
                                       f"WHERE w.free > 0 ORDER BY {order}")]
    victim = next((w for w, p in run.workers.items() if pids and p.pid == pids[0]), "a")
    run.result.notes.append(f"partitioned worker {victim}, the one an enqueue would have picked")
    run.lab.proxy.blackhole(run.listener[victim])
    run.watch(1.0)
    with psycopg.connect(run.db.dsn, autocommit=True) as conn:
        for _ in range(count):
            enqueue(conn, "chaos", {"sleep_ms": 0}, max_attempts=25)
            run.watch(0.25)
    run.n = run.result.n = count
    run.drain()
    waits = [row[0] for row in run.db.q("SELECT extract(epoch FROM finished_at - created_at)::float8 "
                                        "FROM pgjobs.jobs WHERE finished_at IS NOT NULL ORDER BY 1")]
    (spent,), = run.db.q("SELECT count(*) FROM pgjobs.jobs WHERE attempt > 1")
    worst = max(waits) if waits else None
    run.result.recovery_s = worst
    run.result.recovery_what = "autocommit enqueue -> done, worst of 20 (healthy worker idle and offering)"
    if waits:
        run.result.notes.append(f"enqueue -> done: median {waits[len(waits) // 2]:.2f} s, worst {worst:.2f} s; "
                                f"{spent} jobs spent an attempt on the partitioned worker")
    run.result.check("every enqueue ran within 1 s", worst is not None and worst < 1.0,
                     f"worst {_fmt(worst)}")


# name -> (title, function, n override, payload override)
SCENARIOS: dict[str, tuple[str, Callable[[Run], None], dict]] = {
    "pg_restart": ("PostgreSQL restart (immediate mode) mid-drain", pg_restart, {}),
    "backends_terminated": ("every backend of a worker terminated (twice)", backends_terminated, {}),
    "half_open": ("half-open network for 20 s on one worker, then restored", half_open, {}),
    "partition": ("one worker partitioned for good", partition, {}),
    "sigstop": ("SIGSTOP a worker for 2.5 x the lease, then SIGCONT", sigstop, {}),
    "in_transaction": ("a partition striking inside a worker's transaction", in_transaction,
                       {"payload": {"sleep_ms": 100, "write_sleep_ms": 30}}),
    "read_only": ("read-only database for 5 s (default_transaction_read_only)", read_only, {}),
    "handoff_partitioned": ("an idle worker partitioned while offering hand-offs", handoff_partitioned, {"n": 0}),
    "disk_full": (f"disk full (the database's tablespace on a {VOLUME_MB} MB tmpfs) for 5 s", disk_full,
                  {"volume": VOLUME_MB}),
    # Its own workload and checks (chaoskit.chain): the enrichment app and its sandbox.
    "chain_sigstop": ("the enrichment chain, a worker SIGSTOPped for 2.5 x the lease mid-chain", chain_sigstop,
                      {"own_run": True}),
    # The enrichment app's providers' rate limits as the sandbox saw them (chaoskit.limits).
    "provider_limits": (LIMITS_TITLE, provider_limits, {"own_run": True}),
}


def run_scenario(lab: Lab, name: str, n: int) -> Result:
    title, function, options = SCENARIOS[name]
    if options.get("own_run"):
        return function(lab, name)
    result = Result(name, title, options.get("n", n))
    started = time.monotonic()
    with ExitStack() as stack:
        try:
            tablespace = stack.enter_context(lab.cluster.small_tablespace(f"chaos_{name}", options["volume"])) \
                if "volume" in options else None
        except (OSError, subprocess.SubprocessError, psycopg.Error) as exc:
            result.check("the drill could be set up", False, f"{type(exc).__name__}: {exc}")
            return result
        run = Run(lab, result, payload=options.get("payload", PAYLOAD), tablespace=tablespace)
        try:
            function(run)
            if not run.drained():
                run.drain()
            run.check_invariants()
        except Exception as exc:  # a harness step failed: report it as this scenario's failure
            result.check("scenario ran to the end", False, f"{type(exc).__name__}: {exc}")
        finally:
            run.close()
            result.seconds = time.monotonic() - started
    return result
