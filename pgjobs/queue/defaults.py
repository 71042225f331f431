"""The queue's defaults, defined once: JobSpec, Worker and Settings (PGJOBS_*) all read them here."""

MAX_ATTEMPTS = 3  # attempts a job gets (snoozes do not count)
BACKOFF_BASE_MS = 2000  # first retry after ~2 s, doubling, with jitter
BACKOFF_CAP_MS = 600_000  # … never more than 10 minutes apart
LEASE_SECONDS = 30.0  # a running job's lease; the heartbeat extends it every third of it
POLL_INTERVAL = 2.0  # seconds between claims of an idle worker when no NOTIFY arrives (jittered)
SHUTDOWN_GRACE = 10.0  # seconds running jobs get to finish after SIGTERM before they are handed back
CONCURRENCY = 10  # jobs a worker runs at once
HANDOFF = True  # an idle worker offers its free slots: an autocommit enqueue hands it the job at once
LIVE_VACUUM_AFTER = 50_000  # outcomes a worker writes between two VACUUMs of jobs_live (pgjobs.queue.vacuum)
