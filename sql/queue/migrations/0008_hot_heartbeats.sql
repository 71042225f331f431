-- Heartbeats as HOT updates: extend_leases changes only lease_expires_at, which jobs_lease_idx
-- named, so every heartbeat of every running job was a non-HOT update (a new entry in the primary
-- key, jobs_root_idx and jobs_lease_idx, and one more dead version behind any old snapshot). The
-- running jobs are now found through jobs_running_idx (worker_id, set by the claim, which changes
-- `state` anyway): hand_back_orphans reads one worker's, the workers page counts them per worker,
-- and rescue_expired reads every running job (bounded by the live workers' concurrency) and sorts
-- the few whose lease expired. lease_expires_at is named by no index or predicate any more, so a
-- heartbeat is HOT when the row's page has room: fillfactor 90 keeps that room on pages written
-- from now on (claims and completions still change `state`, named by the claim index's predicate,
-- and are never HOT: claim floors, pgjobs.queue.floors, keep claims off their dead entries).
-- Measured (tests/core/db/test_storage.py): 200 heartbeats of 100 running jobs, 0 HOT before, all
-- HOT after (n_tup_hot_upd). The drain/audited/fan-out figures, which send no heartbeats, are in
-- docs/performance.md ("Storage").
CREATE INDEX jobs_running_idx ON pgjobs.jobs (worker_id) WHERE state = 'running';
DROP INDEX pgjobs.jobs_lease_idx;
ALTER TABLE pgjobs.jobs SET (fillfactor = 90);
