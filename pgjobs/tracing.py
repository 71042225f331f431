"""OpenTelemetry traces of job attempts (the `otel` extra): one span per attempt, one trace per family.

Turned on by `PGJOBS_OTEL=true` for `pgjobs worker`, or `await instrument(worker)` for a Worker
built by hand; the spans go to the TracerProvider the process configured (the global one, set by
the app or by `opentelemetry-instrument`), which must be the OpenTelemetry SDK's. Nothing imports
this module unless tracing is on, so without it the core never loads opentelemetry.

Ids are derived, never stored, so every worker on every host agrees on them:
- trace id  = 128 bits of BLAKE2b(database identity, root id): a root's whole family is one trace;
- span id of a job's FIRST attempt = 64 bits of BLAKE2b(database identity, job id): the job's node;
- a job's first attempt is parented on its parent job's node (none for a root), its later attempts
  (retries, snoozes, a rescued run's successor) on its own node, with ids of the provider's own.
So the flat lineage (root_id, parent_id: both on the claimed row, no extra query) shows as a tree:
root → child → grandchild, each job's retries under it. The database identity is the cluster's
`system_identifier` and the database's name: two databases never share a trace id, and a hot standby
(same identity) names the same traces.
"""

from __future__ import annotations

import hashlib
import logging
from typing import TYPE_CHECKING, Any, Awaitable, Callable

from pgjobs import __version__
from pgjobs.errors import ConfigError

if TYPE_CHECKING:
    import psycopg

    from pgjobs.queue.jobs import Job
    from pgjobs.queue.outcomes import Outcome
    from pgjobs.queue.worker import Worker

try:
    from opentelemetry import context as otel_context
    from opentelemetry import trace
    from opentelemetry.sdk.trace import Tracer as SdkTracer
    from opentelemetry.sdk.trace.id_generator import IdGenerator
    from opentelemetry.trace import NonRecordingSpan, SpanContext, SpanKind, Status, StatusCode, TraceFlags
except ImportError:  # the extra is optional: PGJOBS_OTEL says what to install
    trace = None
    IdGenerator = object

log = logging.getLogger("pgjobs.tracing")

_FAILED = {"retry", "failed", "discard"}  # outcomes of a failed attempt: the span's status is ERROR


def require() -> None:
    if trace is None:
        raise ConfigError("PGJOBS_OTEL needs OpenTelemetry: pip install 'pgjobs[otel]'")


def trace_id(identity: str, root_id: int) -> int:
    """The trace of a root's family: 128 bits, never 0 (an invalid id)."""
    digest = hashlib.blake2b(f"{identity}/{root_id}".encode(), digest_size=16).digest()
    return int.from_bytes(digest, "big") or 1


def job_span_id(identity: str, job_id: int) -> int:
    """The span id of a job's first attempt, which its children and its retries hang under."""
    digest = hashlib.blake2b(f"{identity}/{job_id}".encode(), digest_size=8, person=b"pgjobs.job").digest()
    return int.from_bytes(digest, "big") or 1


async def database_identity(conn: "psycopg.AsyncConnection") -> str:
    """`system_identifier/dbname`: the same for every worker of this database, wherever it runs.
    A server that hides pg_control_system() from the role gets its host address instead."""
    try:
        cur = await conn.execute("SELECT system_identifier::text || '/' || current_database() FROM pg_control_system()")
    except Exception as exc:  # e.g. a managed service's permission rule
        await conn.rollback()
        log.warning("pg_control_system() unreadable (%s): trace ids use the server address instead",
                    type(exc).__name__)
        cur = await conn.execute("SELECT coalesce(host(inet_server_addr()), 'local') || ':'"
                                 " || coalesce(inet_server_port(), 0) || '/' || current_database()")
    return (await cur.fetchone())[0]


class _GivenIds(IdGenerator):
    """The ids pgjobs derived for the span being started (set just before start_span, taken by it,
    all on the worker's loop), else the provider's own generator's."""

    def __init__(self, own: Any) -> None:
        self.own = own
        self.span_id = 0
        self.trace_id = 0

    def generate_span_id(self) -> int:
        given, self.span_id = self.span_id, 0
        return given or self.own.generate_span_id()

    def generate_trace_id(self) -> int:
        given, self.trace_id = self.trace_id, 0
        return given or self.own.generate_trace_id()

    def is_trace_id_random(self) -> bool:
        return False  # a hash of the root: uniform, but not the W3C "random" flag's promise


class AttemptTracer:
    """What the executor calls around each attempt (pgjobs.queue.executor.Executor.tracer)."""

    def __init__(self, tracer: Any, identity: str) -> None:
        if not isinstance(tracer, SdkTracer):
            raise ConfigError("PGJOBS_OTEL needs the OpenTelemetry SDK's TracerProvider, configured before the "
                              "worker starts (trace.set_tracer_provider in the app, or opentelemetry-instrument)")
        self.identity = identity
        self._ids = _GivenIds(tracer.id_generator)
        tracer.id_generator = self._ids  # our own Tracer object: the provider's other tracers keep theirs
        self._tracer = tracer

    def start(self, job: "Job") -> Any:
        identity = self.identity
        family = trace_id(identity, job.root_id)
        node = job_span_id(identity, job.id)
        if job.attempt <= 1:
            self._ids.span_id = node
            parent = None if job.parent_id is None else job_span_id(identity, job.parent_id)
        else:
            parent = node
        if parent is None:
            self._ids.trace_id = family
            context = otel_context.Context()  # a root: no parent, whatever the loop's context holds
        else:
            remote = SpanContext(family, parent, is_remote=True, trace_flags=TraceFlags(TraceFlags.SAMPLED))
            context = trace.set_span_in_context(NonRecordingSpan(remote))
        # pgjobs' own names only: the SDK checks every attribute (~2 µs each), and the messaging
        # conventions' copies of the same values would double that
        attributes = {"pgjobs.job.id": job.id, "pgjobs.job.kind": job.kind, "pgjobs.job.queue": job.queue,
                      "pgjobs.job.attempt": job.attempt, "pgjobs.job.root_id": job.root_id}
        if job.parent_id is not None:
            attributes["pgjobs.job.parent_id"] = job.parent_id
        try:
            return self._tracer.start_span(f"pgjobs.run {job.kind}", context=context, kind=SpanKind.CONSUMER,
                                           attributes=attributes)
        finally:
            self._ids.span_id = self._ids.trace_id = 0  # never left for another span (a sampler said no)

    async def traced(self, job: "Job", attempt: Callable[["Job"], Awaitable["Outcome"]]) -> "Outcome":
        """Run the attempt inside its span, which is current meanwhile: the handler's own spans (HTTP
        clients, database drivers) nest under it, in a sync handler's thread too."""
        span = self.start(job)
        token = otel_context.attach(trace.set_span_in_context(span))
        try:
            outcome = await attempt(job)
        except BaseException:  # cancelled: the worker is shutting down or the lease was lost
            span.set_attribute("pgjobs.outcome", "cancelled")
            span.end()
            raise
        finally:
            otel_context.detach(token)
        self.finish(span, job, outcome)
        return outcome

    @staticmethod
    def finish(span: Any, job: "Job", outcome: "Outcome") -> None:
        name = outcome.name
        if name == "retry" and job.attempts_left <= 0:
            name = "failed"  # the last attempt: the job fails for good
        span.set_attribute("pgjobs.outcome", name)
        if name in _FAILED:
            error_type = outcome.error_type or type(outcome).__name__
            span.set_attribute("error.type", error_type)
            span.set_status(Status(StatusCode.ERROR, outcome.error))
            if outcome.traceback:
                span.add_event("exception", {"exception.type": error_type, "exception.message": outcome.error or "",
                                             "exception.stacktrace": outcome.traceback})
        span.end()


async def instrument(worker: "Worker", tracer_provider: Any = None) -> AttemptTracer:
    """Trace the worker's attempts through `tracer_provider` (default: the global one)."""
    require()
    provider = tracer_provider or trace.get_tracer_provider()
    async with worker.pool.connection() as conn:
        identity = await database_identity(conn)
    tracer = AttemptTracer(provider.get_tracer("pgjobs", __version__), identity)
    worker.executor.tracer = tracer
    return tracer
