"""pgjobs.queue: the generic PostgreSQL job queue. It knows nothing of music (a test enforces it).

Enqueue on your own connection (`enqueue`, `enqueue_async`, `enqueue_many`), register handlers by
kind in a `Registry`, run a `Worker`. Handlers return or raise `Complete`, `Retry`, `Snooze` or
`Discard`, each optionally carrying a `write` callback and append-only `rows` (`CopyInto`) that
commit with the job's outcome.
"""

from pgjobs.queue import handoff
from pgjobs.queue.completer import Finished, record_outcome
from pgjobs.queue.context import JobContext, JobTransaction
from pgjobs.queue.errors import JobNotFound, LeaseLost, PayloadError, QueueError
from pgjobs.queue.jobs import (
    DEFAULT_QUEUE,
    Enqueued,
    Job,
    JobSpec,
    RescuedJob,
    enqueue,
    enqueue_async,
    enqueue_many,
    enqueue_many_async,
)
from pgjobs.queue.limits import RateLimits
from pgjobs.queue.outcomes import Complete, CopyInto, Discard, HandBack, Outcome, Retry, Snooze
from pgjobs.queue.registry import Handler, Registry, default_registry
from pgjobs.queue.worker import Worker, WorkerHooks

__all__ = [
    "DEFAULT_QUEUE", "Complete", "CopyInto", "Discard", "Enqueued", "Finished", "HandBack", "Handler", "Job",
    "JobContext", "JobNotFound", "JobSpec", "JobTransaction", "LeaseLost", "Outcome", "PayloadError", "QueueError",
    "RateLimits", "Registry", "RescuedJob", "Retry", "Snooze", "Worker", "WorkerHooks", "default_registry", "enqueue",
    "enqueue_async", "enqueue_many", "enqueue_many_async", "handoff", "record_outcome",
]
