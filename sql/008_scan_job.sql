-- The job that made each scan. A replica killed after it stored a scan but
-- before it marked the job done leaves the job to run again; the re-run
-- finds its own finished scan and ends without scanning the digest twice.
ALTER TABLE scans ADD COLUMN job_id bigint;
CREATE INDEX scans_job ON scans (job_id) WHERE job_id IS NOT NULL;
