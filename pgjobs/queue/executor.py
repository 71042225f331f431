"""The executor: runs one job's handler and turns its result, exception or timeout into an outcome.

A handler returns an Outcome (or None: Complete), raises one, or raises anything else: a Retry
whose error is `Type: message` and whose `traceback` (the last 8 KB) goes to the attempt's entry in
the job's `errors` history, the outcome log line and the worker's `on_error` hooks. Only the
failure path formats a traceback: the success path pays nothing for it.

`Handler.timeout` (seconds) bounds an attempt: at the deadline an async handler is cancelled and
the attempt fails as `Retry("timeout: …")`, retried per the job's policy. A sync handler runs in a
thread, which Python cannot cancel: the attempt fails at the deadline all the same and its slot is
freed, but the thread runs on until the function returns, and whatever it returns is ignored (its
effects, if it has any outside the outcome's `write`, may then happen after the retry started:
keep them idempotent, as at-least-once execution asks anyway).
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import traceback
from typing import Any, Awaitable, Callable, Sequence

from psycopg_pool import AsyncConnectionPool
from pydantic import ValidationError

from pgjobs.errors import validation_message
from pgjobs.queue.context import JobContext
from pgjobs.queue.jobs import Job
from pgjobs.queue.limits import RateLimits
from pgjobs.queue.outcomes import Complete, Discard, HandBack, Outcome, Retry
from pgjobs.queue.registry import Registry

log = logging.getLogger("pgjobs.worker")

# (job, error text, traceback text) after a failed attempt caused by an exception or a timeout.
ErrorHook = Callable[[Job, str, str], Awaitable[None] | None]

TRACEBACK_LIMIT = 8192  # characters of a traceback kept: the end, where the error was raised


def traceback_text(exc: BaseException) -> str:
    text = "".join(traceback.format_exception(exc))
    return text if len(text) <= TRACEBACK_LIMIT else "…" + text[-TRACEBACK_LIMIT:]


class _Timeout(Exception):
    """The handler's own deadline passed (not a TimeoutError the handler raised itself)."""


class Executor:
    def __init__(self, registry: Registry, pool: AsyncConnectionPool, limits: RateLimits, worker_id: str,
                 state: object, on_error: Sequence[ErrorHook] = ()) -> None:
        self.registry = registry
        self.pool = pool
        self.limits = limits
        self.worker_id = worker_id
        self.state = state
        self.on_error = list(on_error)
        # pgjobs.tracing.AttemptTracer when OpenTelemetry tracing is on (pgjobs.tracing.instrument);
        # None costs one attribute test per attempt, and nothing of opentelemetry is imported.
        self.tracer: Any = None

    async def execute(self, job: Job) -> Outcome:
        """The attempt's outcome; asyncio.CancelledError (shutdown, lost lease) propagates."""
        if self.tracer is not None:
            return await self.tracer.traced(job, self._attempt)
        return await self._attempt(job)

    async def _attempt(self, job: Job) -> Outcome:
        try:
            return await self._run(job)
        except Outcome as raised:
            return raised
        except _Timeout as exc:
            return await self._failed(job, str(exc), exc.__cause__ or exc)
        except Exception as exc:
            return await self._failed(job, f"{type(exc).__name__}: {exc}", exc)

    async def _failed(self, job: Job, error: str, exc: BaseException) -> Retry:
        outcome = Retry(error)
        outcome.traceback = traceback_text(exc)
        outcome.error_type = type(exc).__name__
        for hook in self.on_error:
            try:
                result: Any = hook(job, error, outcome.traceback)
                if inspect.isawaitable(result):
                    await result
            except Exception:  # a hook's own failure must not change the job's outcome
                log.warning("an on_error hook failed", exc_info=True,
                            extra={"kind": job.kind, "job_id": job.id, "hook": getattr(hook, "__name__", repr(hook))})
        return outcome

    async def _run(self, job: Job) -> Outcome:
        handler = self.registry.get(job.kind)
        if handler is None:
            # The claim only takes our kinds, so this is a hand-off from a mismatched offer: give
            # it back untouched for a worker that knows the kind (never fail a job we cannot run).
            return HandBack(f"unknown job kind {job.kind!r}: no handler is registered for it here")
        if handler.payload_model is not None and handler.validate_payload:
            try:  # straight from the stored JSON text into the model (pydantic's own parser)
                payload = handler.payload_model.model_validate_json(job.payload_json)
            except ValidationError as exc:
                return Discard(f"invalid payload for {job.kind}: {validation_message(exc, count_more=True)}")
            ctx = JobContext(job, self.pool, self.limits, self.worker_id, payload, self.state)
        else:
            ctx = JobContext(job, self.pool, self.limits, self.worker_id, None, self.state)
        call = handler.run(ctx) if handler.is_async else asyncio.to_thread(handler.run, ctx)
        if handler.timeout is None:
            result = await call
        else:
            deadline = asyncio.timeout(handler.timeout)
            try:
                async with deadline:
                    result = await call
            except TimeoutError as exc:
                if not deadline.expired():
                    raise  # the handler's own TimeoutError: an ordinary failure
                raise _Timeout(f"timeout: the handler ran past its {handler.timeout:g}s limit") from exc
        return result if isinstance(result, Outcome) else Complete()
