"""The enrichment chain under a fault: the enrichment app (pgjobs.enrichment) on its own database,
its sandbox standing in for the five APIs, two real `pgjobs worker` processes behind the proxy, the
three fixture albums enqueued through the CLI; one worker is stopped (SIGSTOP) for 2.5 leases while
it holds chain jobs, then let go. Checked after: every job final, the chain's timeline invariants
(tests/enrichment/e2e/chain_support.py: one audit row per attempt, flat lineage — every
descendant's root is the family's root —, no duplicate children, one enrichment_roots row per
root), no worker exited.
"""

from __future__ import annotations

import importlib.util
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

from psycopg import sql as pgsql

from chaoskit.runner import Lab, Result
from chaoskit.workload import LEASE_SECONDS, Database, WorkerProc, query, wait_until, worker_env

ENRICHMENT_APP = "pgjobs.enrichment.app:app"
ALBUM_TIMEOUT = 120.0  # MusicBrainz's 1 request/s paces the chain: ~10 s clean, plus the fault
_CHAIN_SUPPORT = Path(__file__).resolve().parents[2] / "enrichment" / "e2e" / "chain_support.py"


def _chain_support():
    """The enrichment e2e tests' invariant checker, one home for those checks."""
    spec = importlib.util.spec_from_file_location("chain_support", _CHAIN_SUPPORT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _pgjobs(env: dict[str, str], *args: str) -> str:
    done = subprocess.run([sys.executable, "-m", "pgjobs", *args], env=env, capture_output=True, text=True,
                          timeout=120)
    if done.returncode != 0:
        raise RuntimeError(f"pgjobs {' '.join(args)} failed: {done.stderr.strip()[-500:]}")
    return done.stdout


def chain_sigstop(lab: Lab, name: str) -> Result:
    from pgjobs.enrichment.sandbox.lifecycle import SandboxServer  # the enrichment extra

    support = _chain_support()
    result = Result(name, "the enrichment chain, a worker SIGSTOPped for 2.5 x the lease mid-chain", len(support.ALBUMS))
    dbname = f"chaos_{name}_{uuid.uuid4().hex[:6]}"
    admin = lab.cluster.dsn()
    query(admin, pgsql.SQL("CREATE DATABASE {}").format(pgsql.Identifier(dbname)))
    db = Database(admin, dbname, lab.cluster.dsn(dbname))
    workers: dict[str, WorkerProc] = {}
    listeners: list[str] = []
    started = time.monotonic()
    with SandboxServer("127.0.0.1", 0) as sandbox:
        providers = {f"PGJOBS_{k.upper()}": v for k, v in sandbox.settings_overrides().items()}
        direct = worker_env(db.dsn, "cli", PGJOBS_APP=ENRICHMENT_APP, **providers)
        try:
            _pgjobs(direct, "migrate")
            for w in ("a", "b"):
                listeners.append(f"{dbname}-{w}")
                port = lab.proxy.listen(listeners[-1])
                env = worker_env(lab.cluster.dsn(dbname, port=port), w, PGJOBS_APP=ENRICHMENT_APP, **providers)
                workers[w] = WorkerProc(w, env, lab.logdir, app=ENRICHMENT_APP)
            for mbid in support.ALBUMS:
                _pgjobs(direct, "enqueue", "enrich-album", "--mbid", mbid)
            # Strike when worker a holds chain jobs (running, leased to it).
            holds = ("SELECT count(*) FROM pgjobs.jobs j JOIN pgjobs.workers w USING (worker_id) "
                     "WHERE j.state = 'running' AND w.pid = %s")
            struck = wait_until(lambda: db.q(holds, (workers["a"].pid,))[0][0], 60, every=0.05)
            result.check("worker a took chain jobs", bool(struck))
            result.notes.append(f"worker a held {struck or 0} running job(s) when stopped")
            workers["a"].signal(signal.SIGSTOP)
            stopped = time.time()
            unfinished = "SELECT count(*) FROM pgjobs.jobs WHERE state IN ('queued', 'running')"
            time.sleep(2.5 * LEASE_SECONDS)  # the fault's duration, not a synchronisation
            workers["a"].signal(signal.SIGCONT)
            final = wait_until(lambda: db.q(unfinished)[0][0] == 0, ALBUM_TIMEOUT, every=0.2)
            (done_at,), = db.q("SELECT extract(epoch FROM max(finished_at))::float8 FROM pgjobs.jobs")
            result.recovery_s = done_at - stopped if final and done_at else None
            result.recovery_what = (f"SIGSTOP (for {2.5 * LEASE_SECONDS:.1f} s) -> the last chain job finished "
                                    "(~10 s for a clean run: MusicBrainz's 1 request/s)")
            result.check("every chain job final", bool(final), f"{db.q(unfinished)[0][0]} still queued or running")
            (failed, rescued, attempts, logged), = db.q(
                "SELECT count(*) FILTER (WHERE state <> 'succeeded'), "
                "count(*) FILTER (WHERE errors @> '[{\"outcome\": \"lease_expired\"}]'), sum(attempt), "
                "(SELECT count(*) FROM public.enrichment_log WHERE job_id IS NOT NULL) FROM pgjobs.jobs")
            result.check("every chain job succeeded", failed == 0, f"{failed} did not")
            result.notes.append(f"{rescued} job(s) rescued from the stopped worker; {attempts} attempts, "
                                f"{logged} audit rows")
            violations = support.chain_violations(db.dsn)
            result.check("the timeline invariants held (one audit row per attempt, flat lineage, no duplicate "
                         "children, one roots row per root)", logged > 0 and not violations,
                         "; ".join(f"{k}: {v[:3]}" for k, v in violations.items()) if violations
                         else "" if logged else "no audit rows: the run proves nothing")
            dead = [w for w, p in workers.items() if not p.alive()]
            result.check("workers kept running", not dead, f"exited: {dead}" if dead else "")
        except Exception as exc:  # a harness step failed: this scenario's failure
            result.check("scenario ran to the end", False, f"{type(exc).__name__}: {exc}")
        finally:
            for listener in listeners:
                lab.proxy.restore(listener)
                lab.proxy.reset(listener)
            for proc in workers.values():
                proc.stop()
            if not result.held:
                result.logs = {w: p.tail(25) for w, p in workers.items()}
            db.drop()
    result.seconds = time.monotonic() - started
    return result
