-- Sweeps as durable jobs. A sweep is driven by one `sweep` job (dedup key
-- 'sweep', so one sweep runs at a time) whose every run is a short step: it
-- advances the phase below and re-queues itself a second later. Everything
-- a step needs lives in the sweeps row, so when the replica running a step
-- dies, the job's lease expires and any other replica carries on.
--
-- phase: start    -> the connections are snapshot and their syncs queued
--        syncing  -> waiting for sync_jobs; then failed_ids, scans queued
--        scanning -> waiting for scan_jobs; then the report is stored
--        done
ALTER TABLE sweeps
    ADD COLUMN job_id         bigint,
    ADD COLUMN phase          text NOT NULL DEFAULT 'start'
                              CHECK (phase IN ('start', 'syncing', 'scanning', 'done')),
    ADD COLUMN options        jsonb NOT NULL DEFAULT '{}',
    ADD COLUMN connection_ids bigint[] NOT NULL DEFAULT '{}',
    ADD COLUMN sync_jobs      bigint[] NOT NULL DEFAULT '{}',
    ADD COLUMN scan_jobs      bigint[] NOT NULL DEFAULT '{}',
    ADD COLUMN failed_ids     bigint[] NOT NULL DEFAULT '{}',
    ADD COLUMN scans_queued   bigint NOT NULL DEFAULT 0;

-- Sweeps from before this migration ran in the process that asked for them;
-- one still marked running lost that process.
UPDATE sweeps SET phase = 'done' WHERE status <> 'running';
UPDATE sweeps SET phase = 'done', status = 'failed', finished_at = now() WHERE status = 'running';

-- The last due time of HGFLEET_SWEEP_SCHEDULE that queued a sweep: every
-- replica fires the same due time, and only the first one that moves this
-- forward queues the sweep. One row.
CREATE TABLE sweep_schedule (
    id       boolean PRIMARY KEY DEFAULT true CHECK (id),
    last_due timestamptz
);
INSERT INTO sweep_schedule (id) VALUES (true);

-- Queues a sweep, or returns the one already queued or running (created is
-- false then). p_due: the schedule's due time, NULL when a person asked; a
-- due time already handled by another replica returns no row.
CREATE FUNCTION hgf_sweep_enqueue(p_by text, p_options jsonb, p_priority int, p_due timestamptz)
RETURNS TABLE (sweep_id bigint, job_id bigint, created boolean) LANGUAGE plpgsql AS $$
DECLARE
    v_sid bigint;
    v_jid bigint;
BEGIN
    IF p_due IS NOT NULL THEN
        UPDATE sweep_schedule SET last_due = p_due
         WHERE last_due IS NULL OR last_due < p_due;
        IF NOT FOUND THEN
            RETURN;
        END IF;
    END IF;
    -- A sweep whose job failed for good (every attempt used) is over.
    UPDATE sweeps s SET status = 'failed', phase = 'done', finished_at = now()
     WHERE s.status = 'running' AND NOT EXISTS
           (SELECT 1 FROM jobs j WHERE j.id = s.job_id AND j.state IN ('queued', 'running'));
    FOR attempt IN 1..2 LOOP
        v_sid := nextval(pg_get_serial_sequence('sweeps', 'id'));
        INSERT INTO jobs (kind, payload, priority, dedup_key)
             VALUES ('sweep', jsonb_build_object('sweep_id', v_sid), p_priority, 'sweep')
        ON CONFLICT (dedup_key) WHERE state IN ('queued', 'running') DO NOTHING
        RETURNING id INTO v_jid;
        IF v_jid IS NOT NULL THEN
            INSERT INTO sweeps (id, requested_by, job_id, options)
                 VALUES (v_sid, p_by, v_jid, p_options);
            RETURN QUERY SELECT v_sid, v_jid, true;
            RETURN;
        END IF;
        SELECT (j.payload->>'sweep_id')::bigint, j.id INTO v_sid, v_jid
          FROM jobs j WHERE j.dedup_key = 'sweep' AND j.state IN ('queued', 'running');
        IF FOUND THEN
            RETURN QUERY SELECT v_sid, v_jid, false;
            RETURN;
        END IF;
        -- The live sweep ended between the insert and the look-up: again.
    END LOOP;
    RAISE EXCEPTION 'could not queue a sweep: the sweep job kept changing';
END $$;
