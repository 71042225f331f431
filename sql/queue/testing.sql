-- Named queries of pgjobs.testing (an app's own tests): what its code enqueued.

-- name: enqueued
-- Jobs in the given states (default: queued), oldest first, optionally of one kind and queue; in
-- the caller's transaction, so jobs its code enqueued and has not committed are seen too.
SELECT kind, payload FROM pgjobs.jobs
WHERE state::text = ANY(%(states)s::text[])
  AND (%(kind)s::text IS NULL OR kind = %(kind)s::text)
  AND (%(queue)s::text IS NULL OR queue = %(queue)s::text)
ORDER BY id;
