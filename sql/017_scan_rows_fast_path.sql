-- sql/015's trigger, which moves a scan job's open `scans` rows with the job,
-- first checks that the job has an open row at all (issue #8).
--
-- A scan that ends normally has already stored its row as ok, skipped or
-- failed, so when its job is then marked done the trigger's UPDATE matches
-- nothing. PL/pgSQL still planned that UPDATE afresh on every call (a custom
-- plan each time: its CASEs fold NEW.state): in a `small` sweep, 25,642
-- calls, 0.42 s of execution and 3.40 s of planning. The probe below reads the
-- scans_job index and is planned once per session; the UPDATE is unchanged.
CREATE OR REPLACE FUNCTION hgf_scan_rows_follow_job() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM scans
                    WHERE job_id = NEW.id AND status IN ('queued', 'running')) THEN
        RETURN NULL;
    END IF;
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
