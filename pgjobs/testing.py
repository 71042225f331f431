"""pgjobs.testing: helpers for an app's own tests (like River's rivertest and Oban.Testing).

- `await run(app, kind, payload)`: run one kind's handler inline, the way the worker calls it
  (payload validated by the kind's model, ctx first if it takes one), with no job row and no
  worker; returns its Outcome (Complete when it returned nothing). An outcome's `write` and `rows`
  are not applied (nothing is committed); any other exception propagates to the test. `state=` is
  its ctx.state (the app's lifespan is not entered); `pool=` gives it ctx.pool and ctx.limits
  (the app's rate limits), which are None without it.
- `await drain(app, dsn)`: the real Worker, in burst mode, in this process: runs every runnable job
  of the app's queues (and those they spawn) until nothing is runnable or running, then returns
  the Finished attempts (job, outcome, state). The app's lifespan runs unless `state=` is given.
- `enqueued(conn, kind=..., queue=...)`: the (kind, payload) of every queued job, oldest first, in
  the caller's transaction (so before it commits too); `assert_enqueued(conn, kind, payload)`
  fails listing what is there.

    outcome = asyncio.run(testing.run(app, "send_receipt", {"order_id": 42}))
    assert isinstance(outcome, Complete)

    with psycopg.connect(dsn) as conn:
        place_order(conn, 42)  # your code: inserts the order, enqueues charge_card
        testing.assert_enqueued(conn, "charge_card", {"order_id": 42})
"""

from __future__ import annotations

import asyncio
import uuid
from contextlib import nullcontext
from datetime import datetime, timezone
from typing import Any, Iterable, Mapping

import psycopg
from psycopg_pool import AsyncConnectionPool

from pgjobs import jsontext
from pgjobs.app import App, WorkerResources
from pgjobs.database import open_pool
from pgjobs.queue import Complete, Finished, Job, JobContext, JobSpec, Outcome, RateLimits, Worker, WorkerHooks
from pgjobs.queue.errors import QueueError
from pgjobs.settings import Settings
from pgjobs.sqlfiles import load_queries

Q = load_queries("queue/testing.sql")
_LIFESPAN: Any = object()  # drain's default state: the app's lifespan yields it


def _task(app: App, kind: str):
    try:
        return app.tasks[kind]
    except KeyError:
        raise QueueError(f"app {app.name!r} declares no kind {kind!r}") from None


async def run(app: App, kind: str, payload: Mapping[str, Any] | None = None, *, state: Any = None,
              pool: AsyncConnectionPool | None = None, attempt: int = 1, **fields: Any) -> Outcome:
    """Run `kind`'s handler once, inline, with `payload` (or keyword fields); see the module docstring.

    The job it sees was never stored: its id and root_id are 0, its attempt is `attempt`."""
    task = _task(app, kind)
    handler = task.handler()
    stored = task.payload(payload, **fields) if handler.validate_payload else dict(payload or {}) | fields
    spec = task.spec(stored) if handler.validate_payload else JobSpec(kind=kind, payload=stored, queue=task.queue)
    job = Job(0, 0, None, kind, spec.queue, jsontext.dumps(stored), spec.priority, datetime.now(timezone.utc),
              attempt, 0, spec.max_attempts, spec.backoff_base_ms, spec.backoff_cap_ms, None, uuid.uuid4())
    validated = None
    if handler.payload_model is not None and handler.validate_payload:
        validated = handler.payload_model.model_validate_json(job.payload_json)
    limits = RateLimits(pool, app.intervals()) if pool is not None else None
    ctx = JobContext(job, pool, limits, "pgjobs.testing", validated, state)  # type: ignore[arg-type]
    try:
        async with asyncio.timeout(handler.timeout):
            result = await handler.run(ctx) if handler.is_async else await asyncio.to_thread(handler.run, ctx)
    except Outcome as raised:
        return raised
    return result if isinstance(result, Outcome) else Complete()


async def drain(app: App, dsn: str, *, queues: Iterable[str] | None = None, state: Any = _LIFESPAN,
                concurrency: int = 10, wait_scheduled: bool = False, timeout: float = 60.0) -> list[Finished]:
    """Run the app's jobs with the real Worker until its queues have nothing runnable or running
    (with `wait_scheduled`, nothing scheduled later either: retries in backoff, delayed jobs);
    return every finished attempt, in the order they were written. TimeoutError after `timeout` s."""
    finished: list[Finished] = []
    pool = await open_pool(dsn, max_size=4)
    try:
        limits = RateLimits(pool, app.intervals())
        resources = WorkerResources(pool, limits, Settings(), dsn)
        lifespan = app.running(resources) if state is _LIFESPAN else nullcontext(state)
        async with lifespan as handlers_state:
            worker = Worker(pool, app.registry(), conninfo=dsn, limits=limits,
                            queues=list(queues) if queues is not None else app.queues, concurrency=concurrency,
                            burst=True, burst_waits_for_scheduled=wait_scheduled,
                            hooks=WorkerHooks(finished=finished.append), state=handlers_state,
                            app_name=app.name, on_error=app.error_hooks)
            await asyncio.wait_for(worker.run(), timeout)
    finally:
        await pool.close()
    return finished


def enqueued(conn: psycopg.Connection, *, kind: str | None = None, queue: str | None = None,
             states: Iterable[str] = ("queued",)) -> list[tuple[str, Any]]:
    """(kind, payload) of the jobs in `states`, oldest first, seen from the caller's transaction."""
    rows = conn.execute(Q["enqueued"], {"kind": kind, "queue": queue, "states": list(states)}).fetchall()
    return [(row[0], row[1]) for row in rows]


def assert_enqueued(conn: psycopg.Connection, kind: str, payload: Mapping[str, Any] | None = None, *,
                    queue: str | None = None) -> list[Any]:
    """Fail unless a queued job of `kind` (in `queue`) has `payload` (when given: these keys with
    these values); return the payloads that match."""
    jobs = enqueued(conn, queue=queue)
    wanted = dict(payload or {})
    matches = [p for k, p in jobs
               if k == kind and isinstance(p, dict) and all(key in p and p[key] == v for key, v in wanted.items())]
    if not matches:
        listing = "\n".join(f"  {k} {jsontext.dumps(p)}" for k, p in jobs) or "  (none)"
        where = f" in queue {queue!r}" if queue else ""
        raise AssertionError(f"no queued {kind} job{where} with payload {wanted}; queued jobs:\n{listing}")
    return matches


__all__ = ["assert_enqueued", "drain", "enqueued", "run"]
