-- A sweep's checks ("is anything I wait for still live?" every second, and
-- `sweep --wait`'s progress) must not walk sync_jobs/scan_jobs: at a million
-- scan jobs each walk costs seconds. Each job a sweep waits for carries its
-- sweep_id instead, set once when the phase starts (a newer sweep takes over
-- a job still live from an older one), and the checks read the partial
-- indexes below, which only hold what is live, or failed, for some sweep.
ALTER TABLE jobs ADD COLUMN sweep_id bigint;

-- run_at last: "is a job of this phase live and due within 30 s?" is one
-- range probe, with no heap visit for the other sweeps' or untagged jobs.
CREATE INDEX jobs_sweep_live ON jobs (sweep_id, kind, run_at)
    WHERE sweep_id IS NOT NULL AND state IN ('queued', 'running');
CREATE INDEX jobs_sweep_failed ON jobs (sweep_id, kind)
    WHERE sweep_id IS NOT NULL AND state = 'failed';

-- How many scans the scanning phase waits for: progress reads this rather
-- than cardinality(scan_jobs), which would fetch the whole array.
ALTER TABLE sweeps ADD COLUMN scans_waited bigint NOT NULL DEFAULT 0;

-- A sweep running across this migration goes on with its jobs tagged.
UPDATE jobs j SET sweep_id = s.id
  FROM sweeps s, unnest(s.sync_jobs || s.scan_jobs) AS u(id)
 WHERE s.status = 'running' AND j.id = u.id;
UPDATE sweeps SET scans_waited = cardinality(scan_jobs) WHERE status = 'running';
