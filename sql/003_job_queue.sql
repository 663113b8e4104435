-- The job queue and the scheduler shared by every replica.

-- Idle workers LISTEN on hgfleet_jobs; each statement that queues jobs wakes
-- them once, with the kinds it queued as the payload (e.g. "scan,sync"), so
-- a worker that cannot run a kind stays asleep. Polling remains the fallback
-- for notifications lost while a connection was down.
CREATE FUNCTION hgf_jobs_notify() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    v_kinds text;
BEGIN
    SELECT string_agg(DISTINCT kind, ',' ORDER BY kind) INTO v_kinds
      FROM new_jobs WHERE state = 'queued';
    IF v_kinds IS NOT NULL THEN
        PERFORM pg_notify('hgfleet_jobs', v_kinds);
    END IF;
    RETURN NULL;
END $$;

CREATE TRIGGER jobs_notify AFTER INSERT ON jobs
    REFERENCING NEW TABLE AS new_jobs
    FOR EACH STATEMENT EXECUTE FUNCTION hgf_jobs_notify();

-- The scheduler's tick runs every second on every replica: both ways a
-- connection can be due must be index lookups, so an idle fleet costs
-- nothing. A connection is due when next_sync_at has passed, or when it has
-- none but its schedule has a timer (a schedule just changed).
CREATE INDEX connections_due ON connections (next_sync_at) WHERE removed_at IS NULL;
CREATE INDEX connections_unplanned ON connections (id)
    WHERE removed_at IS NULL AND next_sync_at IS NULL
      AND lower(btrim(schedule)) NOT IN ('manual', 'on_push');

-- jobs list: newest first, optionally by state.
CREATE INDEX jobs_state_id ON jobs (state, id DESC);
