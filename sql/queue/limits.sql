-- Global rate limiters (pgjobs.queue.limits): one row per limiter; next_slot is the earliest
-- moment the next call may go out, i.e. the last call's take time + interval. Each granted take
-- also counts in pgjobs.rate_limit_usage (calls per limiter per minute).

-- name: rate_limit_take
-- Take the limiter for a send at `go` = greatest(now, next_slot + %(margin_ms)s), granted only when
-- `go` is at most %(lead_ms)s away: next_slot becomes go + interval. Taking a little ahead keeps
-- this round trip out of the gap between two calls; taking no further ahead than that keeps the
-- spacing a matter of actual sends: the caller sleeps until `go` and confirms the take right
-- before sending (rate_limit_confirm), so a late sender moves the next call out (a late wake-up
-- followed by a punctual one sent two calls closer than the interval: issue 18). Not granted:
-- how long to wait before asking again. The fallback SELECT may read a next_slot older than a
-- concurrent take's: the caller then only asks again sooner.
WITH taken AS (
    INSERT INTO pgjobs.rate_limits AS r (name, interval_ms, next_slot, updated_at)
    VALUES (%(name)s, %(interval_ms)s, clock_timestamp() + make_interval(secs => %(interval_ms)s / 1000.0),
            clock_timestamp())
    ON CONFLICT (name) DO UPDATE
    SET interval_ms = excluded.interval_ms,
        -- clock_timestamp() here, after the row lock: a take that queued behind another is
        -- anchored to when it went through.
        next_slot = greatest(clock_timestamp(), r.next_slot + make_interval(secs => %(margin_ms)s / 1000.0))
                    + make_interval(secs => excluded.interval_ms / 1000.0),
        updated_at = clock_timestamp()
    WHERE r.next_slot + make_interval(secs => (%(margin_ms)s - %(lead_ms)s) / 1000.0) <= clock_timestamp()
    RETURNING greatest(0.0, extract(epoch FROM r.next_slot - make_interval(secs => r.interval_ms / 1000.0)
                                               - clock_timestamp()))::float8 AS wait_seconds,
              r.next_slot
), used AS (
    -- The call counts in its minute's usage row (the overview's "busy over the last hour"); the
    -- limiter's rows older than two days go (an index range that is empty but once a minute).
    INSERT INTO pgjobs.rate_limit_usage AS u (name, minute, calls)
    SELECT %(name)s, date_trunc('minute', clock_timestamp()), 1 FROM taken
    ON CONFLICT (name, minute) DO UPDATE SET calls = u.calls + 1
), pruned AS (
    DELETE FROM pgjobs.rate_limit_usage
    WHERE name = %(name)s AND minute < clock_timestamp() - interval '2 days' AND EXISTS (SELECT FROM taken)
)
SELECT wait_seconds, next_slot FROM taken
UNION ALL
SELECT greatest(0.001, extract(epoch FROM r.next_slot - clock_timestamp())
                       + (%(margin_ms)s - %(lead_ms)s) / 1000.0)::float8,
       NULL
FROM pgjobs.rate_limits r
WHERE r.name = %(name)s AND NOT EXISTS (SELECT FROM taken)
LIMIT 1;

-- name: rate_limit_confirm
-- The call taken with next_slot = %(taken_next)s is going out now, later than its take (the
-- caller's loop, a new HTTP connection): the next call may go no earlier than an interval after
-- now, so the spacing holds from the actual send (the database's clock, like the take's: the
-- client's own lateness would miss its wait for a pool connection). No row when next_slot moved
-- since (another call was taken, or a penalty came): the caller's take is stale and it takes
-- again. updated_at stays: this is no take.
UPDATE pgjobs.rate_limits
SET next_slot = greatest(next_slot, clock_timestamp() + make_interval(secs => interval_ms / 1000.0))
WHERE name = %(name)s AND next_slot = %(taken_next)s
RETURNING next_slot;

-- name: rate_limit_penalize
-- The upstream said "slow down" (Retry-After): no call before now() + %(seconds)s for anyone.
INSERT INTO pgjobs.rate_limits AS r (name, interval_ms, next_slot, updated_at)
VALUES (%(name)s, %(interval_ms)s, clock_timestamp() + make_interval(secs => %(seconds)s), clock_timestamp())
ON CONFLICT (name) DO UPDATE
SET next_slot = greatest(r.next_slot, clock_timestamp() + make_interval(secs => %(seconds)s)),
    updated_at = clock_timestamp();
