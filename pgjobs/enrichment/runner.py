"""The one place an attempt becomes a log row: processors return a Result, the runner does the rest.

A processor calls its providers (outside any transaction) and returns a `Result`: status, reason,
metadata, an `apply` callback for entity updates and children, and the queue's own outcome for
the job (`Complete()` by default; `Discard(…)`, `Retry(…)`, `Snooze(…)` from pgjobs.queue). The
runner turns provider errors and bugs into FAILED results, counts API calls and time, and gives
that outcome a write that runs `apply`, then inserts exactly one enrichment_log row — lineage
taken from the job row — all in the completion transaction. No processor writes a log row itself.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable
from uuid import UUID

from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool
from pydantic import ValidationError

from pgjobs import jsontext
from pgjobs.errors import validation_message
from pgjobs.enrichment.kinds import BACKOFF_BASE_MS, ENTITIES, MAX_ATTEMPTS, PAYLOADS, PRIORITY, SOURCES, Op, Payload
from pgjobs.enrichment.providers import Providers, ProviderError, RateLimited, count_api_calls
from pgjobs.queue import (Complete, CopyInto, Discard, Enqueued, Job, JobContext, JobTransaction, Outcome, RescuedJob,
                          Retry, Snooze)
from pgjobs.enrichment.settings import EnrichmentSettings as Settings
from pgjobs.sqlfiles import load_queries

Q = load_queries("enrichment/queries.sql")
log = logging.getLogger("pgjobs.enrichment")
# Column types of Q["copy_log"], in order (metadata goes in as JSON text).
LOG_TYPES = ("text", "uuid", "text", "text[]", "text", "text", "text[]", "text", "text", "int4", "int4", "text",
             "text", "text", "int8", "int8", "bool", "int4", "text", "int4")
LOG = CopyInto(Q["copy_log"], LOG_TYPES)


@dataclass
class Result:
    """What one attempt found and will do."""

    status: str  # SUCCESS | PARTIAL_SUCCESS | FAILED | SKIPPED | NO_DATA_AVAILABLE
    reason: str
    fields_enriched: list[str] = field(default_factory=list)
    quality_before: str | None = None
    quality_after: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    error_code: str | None = None
    error_message: str | None = None
    apply: Callable[[JobTransaction, "Result"], Awaitable[None]] | None = None
    # What the queue does with the job; the runner attaches the write (apply + the log row).
    outcome: Outcome = field(default_factory=Complete)
    sources: list[str] | None = None  # defaults to the job type's


@dataclass(frozen=True)
class Env:
    """What processors get besides the job: providers, a pool for reads, settings."""

    providers: Providers
    pool: AsyncConnectionPool
    settings: Settings

    async def row(self, query: str, params: dict[str, Any]) -> dict[str, Any] | None:
        async with self.pool.connection() as conn:
            cur = conn.cursor(row_factory=dict_row)
            await cur.execute(Q[query], params)
            return await cur.fetchone()


Processor = Callable[[Env, Job, Any], Awaitable[Result]]


def failure(exc: ProviderError, job: Job) -> Result:
    """A provider error as a FAILED attempt: snooze on rate limits, retry transient ones, else stop."""
    metadata = {"provider": exc.provider, "httpStatus": exc.status, "upstreamCode": exc.upstream_code}
    if isinstance(exc, RateLimited):
        reason = f"rate limited by {exc.provider}; retrying in {exc.retry_after:.0f}s without spending an attempt"
        return Result("FAILED", reason, metadata=metadata | {"retryAfter": exc.retry_after}, error_code=exc.code,
                      error_message=str(exc), outcome=Snooze(exc.retry_after, reason))
    if exc.retryable:
        spent = job.attempt - job.snoozes >= job.max_attempts
        tail = "no attempts left" if spent else "will retry with backoff"
        return Result("FAILED", f"{exc.provider} failed ({exc.code}); {tail}", metadata=metadata,
                      error_code=exc.code, error_message=str(exc), outcome=Retry(str(exc)))
    return Result("FAILED", f"{exc.provider} refused the request ({exc.code}); not retried", metadata=metadata,
                  error_code=exc.code, error_message=str(exc), outcome=Discard(str(exc)))


def _entity_id(op: Op, raw: Any) -> UUID | None:
    value = raw.get(ENTITIES[op][1]) if isinstance(raw, dict) else None
    try:
        return UUID(str(value)) if value is not None else None
    except ValueError:
        return None


def _triggered_by(raw: Any) -> str:
    value = raw.get("triggered_by") if isinstance(raw, dict) else None
    return value if isinstance(value, str) and value else "system"


def log_row(job: Job, op: Op, result: Result, *, entity_id: UUID | None, duration_ms: int, api_calls: int,
            triggered_by: str, limiter_wait_ms: int | None = None) -> tuple:
    """This attempt's one log row, for LOG."""
    return (
        ENTITIES[op][0], entity_id, op.value, result.sources or SOURCES[op], result.status, result.reason,
        result.fields_enriched, result.quality_before, result.quality_after, duration_ms, api_calls,
        jsontext.dumps(result.metadata, default=str), result.error_message, result.error_code,
        # Lineage from the job row, never from a processor: flat link to the root.
        job.id, None if job.parent_id is None else job.root_id, job.parent_id is None, job.attempt, triggered_by,
        limiter_wait_ms,
    )


async def write_log(tx: JobTransaction, op: Op, result: Result, **audit: Any) -> None:
    """Queue this attempt's one log row; it is COPYed in with the group's others, in the same
    transaction as the job's outcome."""
    tx.copy_rows_later([(LOG, log_row(tx.job, op, result, **audit))])


async def spawn(tx: JobTransaction, result: Result, op: Op, payload: Payload, *, dedupe_key: str | None = None
                ) -> Enqueued:
    """Enqueue a child of this job (root link from the parent row) and note it in the log metadata."""
    child = await tx.enqueue_child(op.value, payload.model_dump(mode="json", exclude_defaults=False),
                                   priority=PRIORITY[op], max_attempts=MAX_ATTEMPTS,
                                   backoff_base_ms=BACKOFF_BASE_MS, dedupe_key=dedupe_key)
    if child.created:
        result.metadata.setdefault("childrenQueued", []).append({"operation": op.value, "jobId": child.id})
    return child


def make_handler(op: Op, processor: Processor) -> Callable[[JobContext], Awaitable[Outcome]]:
    """The handler of one job type; its Env is the app's ctx.state."""
    model = PAYLOADS[op]

    async def handle(ctx: JobContext) -> Outcome:
        job, raw, env = ctx.job, ctx.job.payload, ctx.state
        started = time.perf_counter()
        with count_api_calls() as calls:
            try:
                payload = model.model_validate(raw)
            except ValidationError as exc:
                problem = validation_message(exc)
                result = Result("FAILED", "invalid payload; not retried", error_code="INVALID_PAYLOAD",
                                error_message=problem, outcome=Discard(problem))
            else:
                try:
                    result = await processor(env, job, payload)
                except ProviderError as exc:
                    result = failure(exc, job)
                except Exception as exc:  # a bug or an unforeseen answer: log it, fail the attempt
                    log.exception("%s job %s crashed", op.value, job.id)
                    problem = f"{type(exc).__name__}: {exc}"
                    result = Result("FAILED", "unexpected error; will retry", error_code="INTERNAL_ERROR",
                                    error_message=problem, outcome=Retry(problem))
        duration_ms = round((time.perf_counter() - started) * 1000)
        audit = {"entity_id": _entity_id(op, raw), "duration_ms": duration_ms, "api_calls": calls.value,
                 "triggered_by": _triggered_by(raw), "limiter_wait_ms": round(ctx.limiter_wait * 1000)}

        if result.apply is None:  # nothing to run in the transaction: the log row rides on the outcome
            write, rows = None, [(LOG, log_row(job, op, result, **audit))]
        else:
            async def write(tx: JobTransaction) -> None:
                await result.apply(tx, result)  # may note its children in result.metadata
                await write_log(tx, op, result, **audit)
            rows = None

        def on_write_error(message: str):
            failed = Result("FAILED", "could not save the results; will retry", error_code="WRITE_FAILED",
                            error_message=message, metadata={"intendedStatus": result.status})

            async def write_failure(tx: JobTransaction) -> None:
                await write_log(tx, op, failed, **audit)
            return write_failure

        outcome = result.outcome
        outcome.write, outcome.rows, outcome.on_write_error = write, rows, on_write_error
        return outcome

    return handle


def lease_expired_hook(op: Op):
    """The rescuer's record of an attempt whose worker died: one FAILED row, same transaction."""

    async def hook(tx: JobTransaction, job: RescuedJob) -> None:
        result = Result("FAILED", "worker stopped responding (lease expired); "
                        + ("re-queued" if job.state == "queued" else "no attempts left"),
                        error_code="LEASE_EXPIRED", error_message=job.last_error)
        await write_log(tx, op, result, entity_id=_entity_id(op, job.payload), duration_ms=0, api_calls=0,
                        triggered_by=_triggered_by(job.payload))

    return hook
