"""Hand-offs: an idle worker is given a job by the enqueuer's own statement, with no claim.

The protocol, end to end (each step's statement is named in sql/queue/queries.sql):
1. Offer. A claim that finds less than it asked writes the worker's free slots, kinds, channel,
   liveness lock key and hand-off lease token into pgjobs.waiters (claim_jobs' offer CTEs), while
   its listener is connected.
2. Liveness. An offer expires unless refreshed (`offer_ttl`: two of the longest gaps between
   refreshes, 4.8 s by default): by the worker's idle claims (at least every 1.2 poll intervals,
   written at most every OFFER_REFRESH seconds) and by its listener's probe, on the session that
   LISTENs on the channel. enqueue_handoff picks only an offer that has not expired,
   whose listener session still holds the worker's advisory lock (the server frees it the moment
   that session ends), and among those the one heard from most recently: a worker that went
   silent (half-open network, SIGSTOP) is passed over as soon as another live one has refreshed.
3. Hand-off. An autocommit enqueue of a plain job (enqueue_handoff) inserts the row already leased
   to a waiter that serves its queue (not paused) and kind, and NOTIFYs the waiter's channel with
   the job (`note` builds the middle of that notification, SQL adds the rest; `encode` is the same
   format in Python, for tests).
4. Accept. The listener passes the notification to the worker, which `decode`s it into a Job.
5. Withdraw. A full or stopping worker deletes its offer (withdraw_waiter); the rescuer deletes
   offers whose lock is free or that expired (prune_dead_waiters); a stopping worker hands back what was handed to
   it after its listener closed (hand_back_orphans).
The off switch: `Worker(handoff=False)` (PGJOBS_HANDOFF=false) never offers, so nothing is handed
to it; every job then reaches it by claim.
"""

from __future__ import annotations

import random
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Callable

import orjson

if TYPE_CHECKING:
    from pgjobs.queue.jobs import Job, JobSpec

_MAX_NOTE = 1000  # bytes of a note: with the payload's 6,900 the notification stays < 8,000
# An idle claim refreshes its standing offer when last heard of longer ago than this: how finely
# "heard from most recently" tells a live waiter from a silent one, at one small write each time.
OFFER_REFRESH = 0.2


@dataclass(frozen=True)
class Handoff:
    """A worker's hand-off identity: its own channel, its liveness lock, the lease token every job
    handed to it carries (its offer holds it), where notifications go (`accept`), and the worker
    whose offer its listener's probes keep alive for `offer_ttl` seconds."""

    accept: Callable[[str], None]
    worker_id: str
    offer_ttl: float
    channel: str = field(default_factory=lambda: f"pgjobs_w_{uuid.uuid4().hex[:16]}")
    lock_key: int = field(default_factory=lambda: random.getrandbits(63))
    token: uuid.UUID = field(default_factory=uuid.uuid4)


def note(spec: JobSpec) -> str | None:
    """The middle of the notification: `,"kind","queue",priority,max_attempts,backoff_base_ms,
    backoff_cap_ms]` (made here: json_build_array in SQL cost ~40 µs of every wake-up). None when
    the kind or queue name would make the notification too long: that job is simply queued."""
    text = orjson.dumps([spec.kind, spec.queue, spec.priority, spec.max_attempts, spec.backoff_base_ms,
                         spec.backoff_cap_ms])  # str and int only: plain orjson will do
    return "," + text[1:].decode() if len(text) <= _MAX_NOTE else None


def encode(job_id: int, run_at_epoch: float, middle: str, payload_json: str) -> str:
    """The whole notification, as enqueue_handoff's SQL builds it: `[id,run_at epoch` + note, a
    newline, then the payload as jsonb prints it (so a handed job reads the same text as a claimed one)."""
    return f"[{job_id},{run_at_epoch}{middle}\n{payload_json}"


def decode(payload: str, token: uuid.UUID) -> Job:
    """The job a notification carries, leased with `token` (attempt 1). Raises ValueError or
    TypeError on anything not in our format."""
    from pgjobs.queue.jobs import Job  # here, not at import: jobs imports this module

    head, newline, payload_json = payload.partition("\n")
    if not newline:
        raise ValueError("no payload line")
    # Our own format (ints within int64, a float, strings): orjson as is.
    (job_id, run_at, kind, queue, priority, max_attempts, backoff_base_ms, backoff_cap_ms) = orjson.loads(head)
    return Job(job_id, job_id, None, kind, queue, payload_json, priority, datetime.fromtimestamp(run_at, timezone.utc),
               1, 0, max_attempts, backoff_base_ms, backoff_cap_ms, None, token)
