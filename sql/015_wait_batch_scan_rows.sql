-- Two leftovers of issue #8.
--
-- 1. `sync --wait` claims its syncs by a batch, not by a list of ids.
--    Each claim of its pool sent every job id it waited for (4,000 at org
--    scale) and each check of what is still live sent them again: the claim
--    was planned against the whole array, and behind a backlog of push scans
--    (which come first in jobs_claim) it tested every queued scan against
--    it. Its syncs now carry a batch id from jobs_batch_seq, and its claims
--    and checks read the live jobs of that batch from the index below, the
--    way a sweep's do through jobs_sweep_live (sql/011). A live sync the
--    waiter finds already queued (by the scheduler, a server, a sweep) joins
--    the batch when it has none; one already in another waiter's batch keeps
--    it, and this waiter names it by id (hgf_jobs_enqueue_batch).
CREATE SEQUENCE jobs_batch_seq;
ALTER TABLE jobs ADD COLUMN batch_id bigint;
-- run_at last: a claim reads the batch's due jobs in order and stops at its
-- limit; a check counts the batch's live entries, index-only once vacuumed.
CREATE INDEX jobs_batch_live ON jobs (batch_id, run_at)
    WHERE batch_id IS NOT NULL AND state IN ('queued', 'running');

-- 2. A scan's row follows its job when the job leaves a run without the run
--    storing an outcome: its lease expired and the job was re-queued (the
--    run, fenced by its lease, stores nothing once another replica holds
--    the job: src/sched/scan.c), it was released at shutdown, or it failed
--    without running (its connection was removed). Such a row used to stay
--    `running` for ever. Now, in the statement that moves the job:
--      - back to the queue: the job's newest open row is `queued` again, and
--        the next run takes it up (scan.c's OPEN_SQL) rather than adding
--        one, so a scan job has one row however often it is interrupted;
--      - failed: that row is `failed`, with the job's last_error;
--      - done (another run stored the result on a row of its own) and, in
--        every case, any older open row of the job: `failed`, interrupted.
--    A run that stores its outcome does so before its job moves (scan.c),
--    so its row is no longer open here. When the replica whose lease expired
--    claims the job again itself, its stale run may still store its (real)
--    scan on the row while the new run holds the job: the row holds one run's
--    scan of the digest either way, and only the new run can end the job
--    (hgf_jobs_finish names a run by its owner and its attempt).
-- Claims (queued -> running) and lease renewals never call the function
-- (the WHEN clause, UPDATE OF state). A scan job that ends costs one call:
-- about 30-45 us a job on a loaded 2-core machine, against 20-25 us for
-- the job's own UPDATE (10,000 jobs in one statement).
CREATE FUNCTION hgf_scan_rows_follow_job() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE scans s SET
        status = CASE WHEN s.id <> o.newest OR NEW.state = 'done' THEN 'failed'
                      ELSE NEW.state END,
        started_at = CASE WHEN s.id = o.newest AND NEW.state = 'queued' THEN NULL
                          ELSE s.started_at END,
        finished_at = CASE WHEN s.id = o.newest AND NEW.state = 'queued' THEN NULL
                           ELSE now() END,
        error = CASE WHEN s.id = o.newest AND NEW.state = 'queued' THEN NULL
                     WHEN s.id = o.newest AND NEW.state = 'failed'
                          THEN coalesce(NEW.last_error, 'job ' || NEW.id || ' failed')
                     ELSE 'interrupted: another run of job ' || NEW.id || ' took over' END
      FROM (SELECT max(id) AS newest FROM scans
             WHERE job_id = NEW.id AND status IN ('queued', 'running')) o
     WHERE s.job_id = NEW.id AND s.status IN ('queued', 'running')
       AND NOT (s.id = o.newest AND s.status = 'queued' AND NEW.state = 'queued');
    RETURN NULL;
END $$;

CREATE TRIGGER jobs_scan_rows AFTER UPDATE OF state ON jobs
    FOR EACH ROW
    WHEN (OLD.kind = 'scan' AND OLD.state IN ('queued', 'running')
          AND NEW.state IN ('queued', 'done', 'failed') AND NEW.state <> OLD.state)
    EXECUTE FUNCTION hgf_scan_rows_follow_job();

-- The rows left open so far get the same treatment: the newest open row of
-- a queued job waits with it, that of a running job is its run's, and every
-- other open row of a job is over. (Rows of no job, from before sql/008,
-- are left alone: nothing says whether their run still goes on.)
WITH open AS (
    SELECT s.id, j.id AS job_id, j.state AS job_state, j.last_error,
           s.id = max(s.id) OVER (PARTITION BY s.job_id) AS newest
      FROM scans s LEFT JOIN jobs j ON j.id = s.job_id
     WHERE s.job_id IS NOT NULL AND s.status IN ('queued', 'running'))
UPDATE scans s SET
    status = CASE WHEN o.newest AND o.job_state = 'queued' THEN 'queued' ELSE 'failed' END,
    started_at = CASE WHEN o.newest AND o.job_state = 'queued' THEN NULL ELSE s.started_at END,
    finished_at = CASE WHEN o.newest AND o.job_state = 'queued' THEN NULL ELSE now() END,
    error = CASE WHEN o.newest AND o.job_state = 'queued' THEN NULL
                 WHEN o.newest AND o.job_state = 'failed'
                      THEN coalesce(o.last_error, 'job ' || o.job_id || ' failed')
                 ELSE 'interrupted: its run ended without storing a result' END
  FROM open o
 WHERE s.id = o.id AND NOT (o.newest AND o.job_state = 'running');
