"""Jobs as Python sees them, and enqueue on the caller's own connection and transaction.

`enqueue`/`enqueue_many` take a sync psycopg.Connection, `enqueue_async`/`enqueue_many_async`
an AsyncConnection; either way the insert joins whatever transaction the caller has open, so a
job is enqueued exactly when the caller's own writes commit. Only root jobs are enqueued here:
children are created through the parent's JobTransaction (pgjobs.queue.context).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Iterable, Mapping

import psycopg
from psycopg.pq import TransactionStatus
from psycopg.rows import tuple_row

from pgjobs import jsontext
from pgjobs.queue import defaults, handoff
from pgjobs.queue.errors import PayloadError
from pgjobs.sqlfiles import load_queries, positional

Q = load_queries("queue/queries.sql")
# The single-job enqueues run on raw cursors (positional parameters): see _statement.
_ENQUEUE = positional(Q["enqueue"])
_HANDOFF = positional(Q["enqueue_handoff"])
DEFAULT_QUEUE = "default"
_BULK_CHUNK = 5000


# Job, JobSpec and JobContext are built once per job on the hot path, so they are plain dataclasses:
# a frozen one sets each field through object.__setattr__, ~10x slower to build (4.6 vs 0.5 µs for
# Job's 15 fields, measured). Treat them as read-only all the same.
@dataclass(kw_only=True)
class JobSpec:
    """Everything needed to enqueue one job."""

    kind: str
    payload: Mapping[str, Any] = field(default_factory=dict)
    queue: str = DEFAULT_QUEUE
    priority: int = 0  # lower runs first
    delay: float = 0.0  # seconds after run_at (or now)
    run_at: datetime | None = None
    max_attempts: int = defaults.MAX_ATTEMPTS
    backoff_base_ms: int = defaults.BACKOFF_BASE_MS
    backoff_cap_ms: int = defaults.BACKOFF_CAP_MS
    dedupe_key: str | None = None

    def __post_init__(self) -> None:
        if not self.kind:
            raise PayloadError("job kind must not be empty")
        if not self.queue:
            raise PayloadError("queue name must not be empty")
        if not isinstance(self.payload, Mapping):
            raise PayloadError(f"payload must be a JSON object, got {type(self.payload).__name__}")
        if self.max_attempts < 1:
            raise PayloadError("max_attempts must be at least 1")
        if self.delay < 0:
            raise PayloadError("delay must not be negative")

    def params(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "queue": self.queue,
            "payload": payload_text(self),  # JSON text, cast to jsonb in SQL
            "priority": self.priority,
            "run_at": self.run_at,
            "delay": float(self.delay),
            "max_attempts": self.max_attempts,
            "backoff_base_ms": self.backoff_base_ms,
            "backoff_cap_ms": self.backoff_cap_ms,
            "dedupe_key": self.dedupe_key,
        }


@dataclass(frozen=True)
class Enqueued:
    id: int
    root_id: int
    created: bool  # False: an unfinished job already held the dedupe key; this is that job


_UNDECODED: Any = object()


@dataclass
class Job:
    """A claimed job, as its handler sees it."""

    id: int
    root_id: int
    parent_id: int | None
    kind: str
    queue: str
    payload_json: str  # the payload as stored; `payload` decodes it on first use
    priority: int
    run_at: datetime
    attempt: int
    snoozes: int
    max_attempts: int
    backoff_base_ms: int
    backoff_cap_ms: int
    dedupe_key: str | None
    lease_token: uuid.UUID
    # payload's cache; not functools.cached_property, which takes a lock on first access on
    # Python 3.11 (0.86 -> 0.37 µs for a handler's first read, measured)
    _decoded: Any = field(default=_UNDECODED, init=False, repr=False, compare=False)

    @property
    def payload(self) -> Any:
        """Whatever JSON the row holds (decoded lazily: a handler with a payload model parses
        `payload_json` straight into it, one that ignores its payload never pays for it)."""
        payload = self._decoded
        if payload is _UNDECODED:
            payload = self._decoded = jsontext.loads(self.payload_json)
        return payload

    @property
    def is_root(self) -> bool:
        return self.parent_id is None

    @property
    def attempts_left(self) -> int:
        return self.max_attempts - (self.attempt - self.snoozes)


@dataclass(slots=True)
class RescuedJob:
    """A job the rescuer took back from a worker whose lease expired, as its kind's
    `on_lease_expired` hook sees it: the lost attempt, and what became of the job (`state`
    "queued" for another attempt, "failed" when none is left). It holds no lease."""

    id: int
    root_id: int
    parent_id: int | None
    kind: str
    queue: str
    payload: Any  # the decoded JSON
    attempt: int  # the attempt that was lost
    state: str
    last_error: str


def claimed_jobs(rows: Iterable[tuple], lease_token: uuid.UUID) -> list[Job]:
    """The jobs of one claim_jobs call (rows without the claim's shared token), in claim order."""
    return sorted((Job(*row, lease_token) for row in rows), key=lambda j: (j.priority, j.run_at, j.id))


def _spec(kind: str, payload: Mapping[str, Any] | None, options: dict[str, Any]) -> JobSpec:
    return JobSpec(kind=kind, payload=payload if payload is not None else {}, **options)


def _first(rows: list[tuple]) -> Enqueued | None:
    if not rows:
        return None  # the key's holder finished between our insert and our look-up: try again
    job_id, root_id, created, _ = rows[0]
    return Enqueued(job_id, root_id, created)


def _statement(conn: psycopg.Connection | psycopg.AsyncConnection, spec: JobSpec) -> tuple[str, tuple[Any, ...]]:
    """enqueue_handoff when the statement is its own transaction and the job is plain (runnable now,
    no dedupe key): only then may it go to an idle worker already leased, because the lease then
    starts when the job becomes visible. Anything else is a plain enqueue.

    Returned as positional SQL and a tuple, for a raw cursor: on the wake-up path every step before
    the statement leaves counts, and on an idle machine psycopg's mapping of named parameters
    took ~60 µs of it (measured; a few µs when hot)."""
    params = spec.params()
    if (conn.autocommit and conn.pgconn.transaction_status == TransactionStatus.IDLE
            and spec.dedupe_key is None and spec.run_at is None and not spec.delay):
        params["note"] = handoff.note(spec)
        query, names = _HANDOFF
    else:
        query, names = _ENQUEUE
    return query, tuple([params[name] for name in names])


def enqueue(conn: psycopg.Connection, kind: str, payload: Mapping[str, Any] | None = None, **options: Any) -> Enqueued:
    """Enqueue one root job in the caller's transaction. Options: the fields of JobSpec."""
    spec = _spec(kind, payload, options)
    for _ in range(5):
        cur = psycopg.RawCursor(conn, row_factory=tuple_row)
        result = _first(cur.execute(*_statement(conn, spec)).fetchall())
        if result:
            return result
    raise psycopg.errors.SerializationFailure(f"could not settle dedupe key {spec.dedupe_key!r}")


async def enqueue_async(
    conn: psycopg.AsyncConnection, kind: str, payload: Mapping[str, Any] | None = None, **options: Any
) -> Enqueued:
    spec = _spec(kind, payload, options)
    for _ in range(5):
        cur = psycopg.AsyncRawCursor(conn, row_factory=tuple_row)
        await cur.execute(*_statement(conn, spec))
        result = _first(await cur.fetchall())
        if result:
            return result
    raise psycopg.errors.SerializationFailure(f"could not settle dedupe key {spec.dedupe_key!r}")


def bulk_params(specs: list[JobSpec]) -> dict[str, Any]:
    return {
        "kinds": [s.kind for s in specs],
        "queues": [s.queue for s in specs],
        # One JSON text per job, cast to jsonb[] in SQL: cheaper than adapting each as Jsonb.
        "payloads": [payload_text(s) for s in specs],
        "priorities": [s.priority for s in specs],
        "run_ats": [s.run_at for s in specs],
        "delays": [float(s.delay) for s in specs],
        "max_attempts": [s.max_attempts for s in specs],
        "backoff_base_ms": [s.backoff_base_ms for s in specs],
        "backoff_cap_ms": [s.backoff_cap_ms for s in specs],
        "dedupe_keys": [s.dedupe_key for s in specs],
    }


def _chunks(specs: Iterable[JobSpec]) -> Iterable[list[JobSpec]]:
    chunk: list[JobSpec] = []
    for spec in specs:
        chunk.append(spec)
        if len(chunk) >= _BULK_CHUNK:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def copyable(specs: Iterable[JobSpec]) -> bool:
    """COPY can take jobs that need nothing computed in SQL: no dedupe key, no schedule."""
    return all(s.dedupe_key is None and s.run_at is None and not s.delay for s in specs)


def payload_text(spec: JobSpec) -> str:
    return jsontext.dumps(dict(spec.payload))


def _copy_rows(ids: list[int], specs: list[JobSpec]) -> Iterable[tuple]:
    for job_id, s in zip(ids, specs):
        yield (job_id, job_id, s.kind, s.queue, payload_text(s), s.priority, s.max_attempts, s.backoff_base_ms,
               s.backoff_cap_ms)


def enqueue_many(conn: psycopg.Connection, specs: Iterable[JobSpec]) -> int:
    """Bulk-enqueue root jobs in the caller's transaction; returns how many were inserted.

    Plain jobs go in by COPY (ids drawn from the sequence first, so each root points at itself);
    a batch with dedupe keys or schedules goes through one set-based INSERT per 5,000, where a
    key an unfinished job already holds is skipped."""
    specs = list(specs)
    if specs and copyable(specs):
        ids = [row[0] for row in conn.execute(Q["next_job_ids"], {"n": len(specs)})]
        with conn.cursor().copy(Q["copy_jobs"]) as copy:
            for row in _copy_rows(ids, specs):
                copy.write_row(row)
        for queue in {s.queue for s in specs}:
            conn.execute(Q["notify_queue"], {"queue": queue})
        return len(specs)
    inserted = 0
    for chunk in _chunks(specs):
        rows = conn.execute(Q["enqueue_many"], bulk_params(chunk)).fetchall()
        inserted += sum(row[0] for row in rows)
    return inserted


async def enqueue_many_async(conn: psycopg.AsyncConnection, specs: Iterable[JobSpec]) -> int:
    specs = list(specs)
    if specs and copyable(specs):
        cur = await conn.execute(Q["next_job_ids"], {"n": len(specs)})
        ids = [row[0] for row in await cur.fetchall()]
        async with conn.cursor().copy(Q["copy_jobs"]) as copy:
            for row in _copy_rows(ids, specs):
                await copy.write_row(row)
        for queue in {s.queue for s in specs}:
            await conn.execute(Q["notify_queue"], {"queue": queue})
        return len(specs)
    inserted = 0
    for chunk in _chunks(specs):
        cur = await conn.execute(Q["enqueue_many"], bulk_params(chunk))
        inserted += sum(row[0] for row in await cur.fetchall())
    return inserted
