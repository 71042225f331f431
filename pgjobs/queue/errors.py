"""Exceptions of the queue core (under pgjobs.errors.PgjobsError, the library's one base).

    QueueError
    ├── LeaseLost        an outcome matched no row: the lease expired, was rescued or cancelled
    ├── JobNotFound      no job with that id (or not in a state the operation accepts)
    └── PayloadError     a payload that is not a JSON object, or fails its kind's model
"""


from pgjobs.errors import PgjobsError


class QueueError(PgjobsError):
    pass


class LeaseLost(QueueError):
    def __init__(self, job_id: int, attempt: int | None = None) -> None:
        self.job_id = job_id
        self.attempt = attempt
        at = f" (attempt {attempt})" if attempt is not None else ""
        super().__init__(f"job {job_id}{at} no longer holds its lease; its transaction was rolled back")


class JobNotFound(QueueError):
    pass


class PayloadError(QueueError):
    pass
