"""The providers' rate limits as the providers see them (issue 18, point 4): the enrichment app with
its own limits (pgjobs.enrichment.settings.RATE_LIMITS: MusicBrainz 1/s, Discogs 60/min), four real
`pgjobs worker` processes (4 slots each) sharing the global limiter (sql/queue/limits.sql), and the
sandbox recording every request's arrival. Three backlogs, one after the other, on the same workers:

1. MusicBrainz: albums of releases the sandbox does not know (one MusicBrainz call each, a 404);
2. Discogs: DISCOGS_SEARCH_ARTIST jobs for artists Discogs does not know (one search call each);
3. a short MusicBrainz backlog whose 6th request gets a 503 with Retry-After: every worker holds
   back (the limiter's penalty), so no MusicBrainz request arrives before Retry-After has elapsed.

Checked per backlog, on the sandbox's arrival times: no two consecutive arrivals closer than the
limiter's interval (60/min is spaced evenly, one call per second: never more than 60 in any 60 s);
the rate over the backlog (calls - 1 over first-to-last arrival) at least MIN_RATE of the limit.
"""

from __future__ import annotations

import json
import statistics
import time
import uuid
from pathlib import Path
from typing import Any

from psycopg import sql as pgsql

from pgjobs.queue.limits import _CONFIRM_AFTER

from chaoskit.chain import ENRICHMENT_APP, _chain_support, _pgjobs
from chaoskit.runner import Result
from chaoskit.workload import Database, WorkerProc, query, wait_until, worker_env

TITLE = "the providers' rate limits at the sandbox: four workers, a backlog per provider, then a 503"
MUSICBRAINZ_CALLS = 120  # ~2 minutes at 1/s
DISCOGS_CALLS = 120  # ~2 minutes at 60/min
FAULT_CALLS = 15  # the 503 backlog: its 6th request is answered 503 + Retry-After
FAULT_AT = 5
RETRY_AFTER = 3.0
MIN_RATE = 0.97  # of the limit, over the backlog
WORKERS, SLOTS = 4, 4
_UNKNOWN_RELEASE = "c4a05000-0000-4000-8000-"  # + 12 digits: release ids no sandbox fixture has


def intervals() -> dict[str, float]:
    """The app's own limits as the worker applies them: seconds between calls per provider."""
    from pgjobs.enrichment.settings import RATE_LIMITS
    from pgjobs.settings import parse_rate_limits
    return parse_rate_limits(",".join(f"{name}={rate}" for name, rate in RATE_LIMITS.items()))


def pacing(arrivals: list[float], interval: float) -> dict[str, float]:
    """What the provider saw: the smallest and typical gap between consecutive arrivals, the rate
    over the backlog (calls/s and as a fraction of the limit), the most calls in any 60 s window."""
    arrivals = sorted(arrivals)
    gaps = [b - a for a, b in zip(arrivals, arrivals[1:])]
    span = arrivals[-1] - arrivals[0] if len(arrivals) > 1 else 0.0
    rate = (len(arrivals) - 1) / span if span > 0 else 0.0
    window = max((sum(1 for t in arrivals[i:] if t < start + 60.0) for i, start in enumerate(arrivals)), default=0)
    return {"calls": len(arrivals), "min_gap": min(gaps, default=0.0), "median_gap": statistics.median(gaps or [0.0]),
            "max_gap": max(gaps, default=0.0), "span": span, "rate": rate, "of_limit": rate * interval,
            "max_per_60s": window}


def _describe(provider: str, p: dict[str, float]) -> str:
    return (f"{provider}: {p['calls']:.0f} calls in {p['span']:.1f} s, gaps min {p['min_gap']:.4f} s / median "
            f"{p['median_gap']:.4f} s / max {p['max_gap']:.3f} s, {p['rate']:.4f} calls/s "
            f"({p['of_limit']:.3f} of the limit), at most {p['max_per_60s']:.0f} in any 60 s")


def _arrivals(sandbox, api: str, since: float) -> list[dict[str, Any]]:
    return sorted((r for r in sandbox.requests() if r["api"] == api and r["wall"] >= since), key=lambda r: r["wall"])


def _backlog(db: Database, env: dict[str, str], tmp: Path, kind: str, payloads: list[dict]) -> None:
    bulk = tmp / f"{kind}-{uuid.uuid4().hex[:6]}.jsonl"
    bulk.write_text("".join(json.dumps(p) + "\n" for p in payloads))
    _pgjobs(env, "enqueue", kind, "--from", str(bulk))


def _stub_albums(db: Database, first: int, count: int) -> list[dict]:
    rows = db.q("INSERT INTO public.album (title, musicbrainz_id) SELECT 'unknown ' || n, "
                "(%s || lpad(n::text, 12, '0'))::uuid FROM generate_series(%s::int, %s::int) n RETURNING id",
                (_UNKNOWN_RELEASE, first, first + count - 1))
    return [{"album_id": str(album_id)} for (album_id,) in rows]


def _drained(db: Database, timeout: float) -> bool:
    unfinished = "SELECT count(*) FROM pgjobs.jobs WHERE state IN ('queued', 'running')"
    return bool(wait_until(lambda: db.q(unfinished)[0][0] == 0, timeout, every=0.5))


def lateness(db: Database, limiter: str, arrivals: list[float]) -> dict[str, float]:
    """Each call's arrival at the sandbox minus the moment its take let it go (the k-th arrival
    against the k-th slot, recorded by chain_support's trigger; one host, one clock): what the
    limiter's send margin must cover. Seconds: median, 95th percentile, max; how many past the
    confirm threshold (those moved the next call out)."""
    first, last = min(arrivals), max(arrivals)
    slots = [row[0] for row in db.q(
        "SELECT extract(epoch FROM slot)::float8 FROM public.e2e_limiter_slots WHERE name = %s "
        "AND slot BETWEEN to_timestamp(%s) - interval '5 s' AND to_timestamp(%s) ORDER BY slot",
        (limiter, first, last))]
    late = sorted(a - s for s, a in zip(slots[-len(arrivals):], sorted(arrivals)))
    return {"slots": len(slots), "median": statistics.median(late), "p95": late[int(0.95 * (len(late) - 1))],
            "max": late[-1], "min": late[0], "confirmed": sum(x > _CONFIRM_AFTER for x in late)}


def _paced(result: Result, provider: str, arrivals: list[float], interval: float, expected: int,
           db: Database | None = None) -> dict:
    p = pacing(arrivals, interval)
    result.notes.append(_describe(provider, p))
    if db is not None and arrivals:
        late = lateness(db, provider.lower(), arrivals)
        result.notes.append(f"{provider}: send after its slot median {late['median'] * 1000:.1f} ms, p95 "
                            f"{late['p95'] * 1000:.1f} ms, max {late['max'] * 1000:.1f} ms (min "
                            f"{late['min'] * 1000:.1f} ms); {late['confirmed']} past the confirm threshold")
    result.check(f"{provider}: every call reached the sandbox", p["calls"] == expected,
                 f"{p['calls']:.0f} of {expected}")
    result.check(f"{provider}: no two arrivals < {interval:.1f} s apart", p["min_gap"] >= interval,
                 f"closest {p['min_gap']:.4f} s")
    result.check(f"{provider}: busy, >= {MIN_RATE} of the limit over the backlog", p["of_limit"] >= MIN_RATE,
                 f"{p['rate']:.4f} calls/s")
    return p


def provider_limits(lab, name: str) -> Result:
    from pgjobs.enrichment.sandbox.lifecycle import SandboxServer  # the enrichment extra

    limits = intervals()
    result = Result(name, TITLE, MUSICBRAINZ_CALLS + DISCOGS_CALLS + FAULT_CALLS)
    dbname = f"chaos_{name}_{uuid.uuid4().hex[:6]}"
    admin = lab.cluster.dsn()
    query(admin, pgsql.SQL("CREATE DATABASE {}").format(pgsql.Identifier(dbname)))
    db = Database(admin, dbname, lab.cluster.dsn(dbname))
    workers: list[WorkerProc] = []
    started = time.monotonic()
    with SandboxServer("127.0.0.1", 0) as sandbox:
        providers = {f"PGJOBS_{k.upper()}": v for k, v in sandbox.settings_overrides().items()}
        env = worker_env(db.dsn, "cli", PGJOBS_APP=ENRICHMENT_APP, **providers)  # no PGJOBS_RATE_LIMITS
        try:
            _pgjobs(env, "migrate")
            _chain_support().record_limiter_slots(db.dsn)
            workers = [WorkerProc(f"limits-{i}", env | {"CHAOS_WORKER": f"limits-{i}"}, lab.logdir,
                                  concurrency=SLOTS, app=ENRICHMENT_APP) for i in range(WORKERS)]
            up = wait_until(lambda: db.q("SELECT count(*) FROM pgjobs.workers")[0][0] >= WORKERS, 60, every=0.2)
            result.check("four workers up", bool(up))

            # 1. MusicBrainz's backlog.
            since = time.time()
            _backlog(db, env, lab.logdir, "ENRICH_ALBUM", _stub_albums(db, 1, MUSICBRAINZ_CALLS))
            result.check("the MusicBrainz backlog drained",
                         _drained(db, MUSICBRAINZ_CALLS * limits["musicbrainz"] * 1.5 + 30))
            _paced(result, "MusicBrainz", [r["wall"] for r in _arrivals(sandbox, "musicbrainz", since)],
                   limits["musicbrainz"], MUSICBRAINZ_CALLS, db)

            # 2. Discogs's backlog: artists it does not know, one search each.
            since = time.time()
            artists = db.q("INSERT INTO public.artist (name) SELECT 'chaos unknown artist ' || n "
                           "FROM generate_series(1, %s::int) n RETURNING id, name", (DISCOGS_CALLS,))
            _backlog(db, env, lab.logdir, "DISCOGS_SEARCH_ARTIST",
                     [{"artist_id": str(a), "artist_name": n} for a, n in artists])
            result.check("the Discogs backlog drained", _drained(db, DISCOGS_CALLS * limits["discogs"] * 1.5 + 30))
            _paced(result, "Discogs", [r["wall"] for r in _arrivals(sandbox, "discogs", since)],
                   limits["discogs"], DISCOGS_CALLS, db)

            # 3. A 503 with Retry-After mid-backlog pushes every worker back.
            since = time.time()
            _backlog(db, env, lab.logdir, "ENRICH_ALBUM", _stub_albums(db, MUSICBRAINZ_CALLS + 1, FAULT_CALLS))
            wait_until(lambda: len(_arrivals(sandbox, "musicbrainz", since)) >= FAULT_AT, 60, every=0.02)
            sandbox.add_fault("/musicbrainz/ws/2/release/", status=503, retry_after=RETRY_AFTER, times=1)
            result.check("the 503 backlog drained", _drained(db, FAULT_CALLS * 3 + RETRY_AFTER + 30))
            calls = _arrivals(sandbox, "musicbrainz", since)
            faulted = [i for i, r in enumerate(calls) if r["status"] == 503]
            hit = faulted[0] if len(faulted) == 1 and faulted[0] + 1 < len(calls) else None
            result.check("one request was answered 503 mid-backlog", hit is not None,
                         f"503s at {faulted} of {len(calls)} calls")
            if hit is not None:
                held = calls[hit + 1]["wall"] - calls[hit]["wall"]
                result.recovery_s = held
                result.notes.append(f"503 + Retry-After {RETRY_AFTER:.0f} s on MusicBrainz call {hit + 1} of "
                                    f"{len(calls)}: the next call arrived {held:.3f} s later")
                result.check(f"no MusicBrainz request within Retry-After ({RETRY_AFTER:.0f} s) of the 503",
                             held >= RETRY_AFTER, f"next after {held:.3f} s")
                gaps = [b["wall"] - a["wall"] for a, b in zip(calls, calls[1:])]
                result.check("the 503 backlog paced too", min(gaps) >= limits["musicbrainz"],
                             f"closest {min(gaps):.4f} s")
            result.recovery_what = f"503 + Retry-After {RETRY_AFTER:.0f} s -> the next MusicBrainz request"
            violations = _chain_support().chain_violations(db.dsn)
            result.check("the timeline invariants held", not violations,
                         "; ".join(f"{k}: {v[:3]}" for k, v in violations.items()))
            dead = [w.name for w in workers if not w.alive()]
            result.check("workers kept running", not dead, f"exited: {dead}" if dead else "")
        except Exception as exc:  # a harness step failed: this scenario's failure
            result.check("scenario ran to the end", False, f"{type(exc).__name__}: {exc}")
        finally:
            for proc in workers:
                proc.stop()
            if not result.held:
                result.logs = {w.name: w.tail(25) for w in workers}
            db.drop()
    result.seconds = time.monotonic() - started
    return result
