"""Claim floors: where a worker's claims start in jobs_claim_idx, so they skip its dead prefix.

Every claimed job leaves a dead entry in the claim index (the claim changes `state`, which the
index's predicate names). Vacuum removes none of them while another session holds an older
snapshot, and a claim that starts at the beginning of (queue, kind) walks them all with a heap
visit each: behind a REPEATABLE READ snapshot, 100,000 claimed jobs made every idle claim take
7.5 ms and a worker at concurrency 10 drain 3-4x slower (tests/bench, horizon workload).

A worker therefore remembers, per (queue, kind, priority), the largest (run_at, id) it claimed,
and claims through ranges that start there (claim_jobs in sql/queue/queries.sql has the SQL).
Within one priority a job that becomes queued sorts after the ones claimed before it (run_at is
now() or later), except for a transaction that committed after a later job was claimed: the SQL
moves floors younger than `margin` back by the margin. What no rule covers (a job enqueued with a
past run_at, a row skipped because someone else held its lock) a full scan finds: one claim
every `rescan` seconds scans whole ranges (the floors stay), or less often when that claim is slow
(behind 1,000,000 dead entries it took 186 ms): never more than ~1 % of the time. A worker that has
claimed nothing of a (queue, kind) yet has no floor there and scans it whole.
"""

from __future__ import annotations

import time
from datetime import datetime, timezone
from typing import Any, Iterable

# Sentinels for an open range: no job sorts below them (priority is int4, id bigint).
_LOW_PRIORITY = -(2**31)
_HIGH_PRIORITY = 2**31  # exclusive upper bound, compared as bigint
_LOW_RUN_AT = datetime(1, 1, 1, tzinfo=timezone.utc)
_LOW_ID = -(2**63)

MARGIN_SECONDS = 1.0  # floors younger than this are moved back (late commits of older run_at)
RESCAN_SECONDS = 5.0  # full ranges this often (past run_at, lock-skipped rows) ...
RESCAN_SHARE = 100  # ... or every 100x the last whole-range claim's duration, if that is longer


def full_ranges(queues: Iterable[str], kinds: Iterable[str]) -> dict[str, Any]:
    """claim_jobs / next_run_at parameters that scan every (queue, kind) from its start."""
    return ClaimFloors(list(queues), list(kinds)).params()


class ClaimFloors:
    """A worker's claim floors and the claim ranges they make."""

    def __init__(self, queues: list[str], kinds: list[str], *, margin: float = MARGIN_SECONDS,
                 rescan: float = RESCAN_SECONDS) -> None:
        self.pairs = [(q, k) for q in queues for k in kinds]
        self.margin = margin
        self.rescan = rescan
        self._floors: dict[tuple[str, str], dict[int, tuple[datetime, int]]] = {}
        self._since = time.monotonic()
        self._full_seconds = 0.0  # how long the last whole-range claim took
        self.full = False  # whether the last params() were whole ranges

    def params(self, *, claim: bool = True) -> dict[str, Any]:
        """The ranges as claim_jobs' (or, claim=False, next_run_at's) parallel arrays and
        %(floor_margin)s; a claim every `rescan` seconds gets whole ranges."""
        full = False
        interval = max(self.rescan, RESCAN_SHARE * self._full_seconds)
        if claim and self._floors and time.monotonic() - self._since > interval:
            full, self._since = True, time.monotonic()
        if claim:
            self.full = full or not self._floors
        queues, kinds, lo_p, lo_r, lo_i, hi_p = [], [], [], [], [], []

        def add(pair: tuple[str, str], low: tuple[int, datetime, int], high: int) -> None:
            queues.append(pair[0])
            kinds.append(pair[1])
            lo_p.append(low[0])
            lo_r.append(low[1])
            lo_i.append(low[2])
            hi_p.append(high)

        for pair in self.pairs:
            floors = None if full else self._floors.get(pair)
            if not floors:
                add(pair, (_LOW_PRIORITY, _LOW_RUN_AT, _LOW_ID), _HIGH_PRIORITY)
                continue
            priorities = sorted(floors)
            add(pair, (_LOW_PRIORITY, _LOW_RUN_AT, _LOW_ID), priorities[0])  # below the lowest floor
            for i, priority in enumerate(priorities):
                run_at, job_id = floors[priority]
                high = priorities[i + 1] if i + 1 < len(priorities) else _HIGH_PRIORITY
                add(pair, (priority, run_at, job_id), high)
        return {"r_queues": queues, "r_kinds": kinds, "lo_priorities": lo_p, "lo_run_ats": lo_r,
                "lo_ids": lo_i, "hi_priorities": hi_p, "floor_margin": self.margin}

    def rescan_next(self) -> None:
        """The next claim scans whole ranges: jobs went back below the floors (rescued ones keep
        their run_at, their place at the front of the queue)."""
        self._since = float("-inf")

    def advance(self, jobs: Iterable[Any], seconds: float = 0.0) -> None:
        """Raise the floors to the claimed jobs (anything with queue, kind, priority, run_at, id);
        `seconds`, what the claim took, spaces out the next whole-range claim."""
        if self.full:
            self._full_seconds = seconds
        for job in jobs:
            floors = self._floors.setdefault((job.queue, job.kind), {})
            key = (job.run_at, job.id)
            old = floors.get(job.priority)
            if old is None or key > old:
                floors[job.priority] = key
