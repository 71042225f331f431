"""pgjobs: a PostgreSQL job queue whose jobs commit their effects, audit row and children together.

The public API: declare an `App` with its tasks, enqueue them on your own connection, run them
with `pgjobs --app module:attr worker`. Everything here is importable from `pgjobs` directly.
"""

from pgjobs.app import App, Periodic, Task, WorkerResources
from pgjobs.errors import ConfigError, PgjobsError
from pgjobs.queue import (
    Complete,
    CopyInto,
    Discard,
    Enqueued,
    Job,
    JobContext,
    JobSpec,
    JobTransaction,
    QueueError,
    Retry,
    Snooze,
    enqueue,
    enqueue_async,
    enqueue_many,
    enqueue_many_async,
)

__version__ = "0.1.0"

__all__ = [
    "App", "Complete", "ConfigError", "CopyInto", "Discard", "Enqueued", "Job", "JobContext", "JobSpec",
    "JobTransaction", "Periodic", "PgjobsError", "QueueError", "Retry", "Snooze", "Task", "WorkerResources",
    "enqueue", "enqueue_async", "enqueue_many", "enqueue_many_async",
]
