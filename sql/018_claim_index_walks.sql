-- Every walk of the queue that a claim or a drain's check makes is a function
-- below, whose plan is the index walk whatever the statistics say (issue #8):
-- a batch's due jobs (hgf_jobs_batch_due) and whether it has any live one
-- (hgf_jobs_batch_live), a sweep phase's due jobs (hgf_jobs_phase_due), and
-- the queue's head (hgf_jobs_queue_due).
--
-- First, the batch of `sync --wait`. The claim (IDS_CLAIM_SQL in
-- src/store/jobs.c) wants the first few due jobs of its batch in run_at order.
-- PostgreSQL plans it with the batch id as a value, and a batch is new to the
-- statistics by construction: each waiter draws its id from jobs_batch_seq.
-- When ANALYZE last saw the batch small (or saw few queued jobs), the planner
-- expects a handful of rows, prices "read them all, then sort" about the same
-- as "read in the index's order and stop at the limit", and sometimes picks
-- the first: a Bitmap Heap Scan of every live entry of the batch, then a sort,
-- on every claim. In an org-1k full sync with one bulk connection,
-- auto_explain logged 26 claims over 8 ms; 22 of them were that plan, sorting
-- 692 to 3,117 rows to take one or two. Across that run the claims took 15 ms
-- each (43 s of 79 s); in another run of the same code, 0.8 ms. Claims are
-- planned with their values on every call, so each one could flip.
--
-- The function below is that part of the claim with the choice taken away:
-- no bitmap, no sort, no sequential scan, so the only plan left walks
-- jobs_batch_live from the batch's first due entry and stops at the limit.
-- Its SET clause applies to its own statement only; the rest of the claim
-- is planned as before. jit is off because a disabled plan node is priced
-- at 10^10: when no plan avoids one (a NULL batch leaves a Sort above an
-- empty Result), the statement's cost passes jit_above_cost, and compiling
-- it took 130 ms of a 200 ms call. And its plan is generic, made once per
-- session: with the walk the only plan, planning it again on every call
-- (PL/pgSQL's first five, and whenever a custom plan looks cheaper) was most
-- of the function's cost, 0.15-0.2 ms a claim. It locks what it returns
-- (FOR UPDATE SKIP LOCKED), as the CTE it replaces did, for the claim's
-- transaction. A NULL batch returns nothing. ROWS: a claim takes a few jobs;
-- at the default guess of 1,000 the claim's UPDATE could join jobs by hash
-- rather than probe its key. The functions below are built the same way.
CREATE FUNCTION hgf_jobs_batch_due(p_batch bigint, p_kinds text[], p_limit int)
RETURNS SETOF bigint LANGUAGE plpgsql ROWS 4
SET enable_bitmapscan = off SET enable_sort = off SET enable_seqscan = off
SET enable_indexscan = on SET jit = off SET plan_cache_mode = force_generic_plan
AS $$
BEGIN
    RETURN QUERY
        SELECT id FROM jobs
         WHERE batch_id = p_batch AND state = 'queued' AND run_at <= now()
           AND kind = ANY (p_kinds)
         ORDER BY run_at LIMIT p_limit
           FOR UPDATE SKIP LOCKED;
END
$$;

-- The waiter's check of whether its batch still has live jobs (BATCH_LIVE_SQL
-- in src/store/jobs.c, once per finished job) has the same trap: with index
-- scans out of favour, its probe became a Bitmap Heap Scan of the batch and a
-- sort (70 buffers for a batch of 4,000 in test_sync_wait, against 4). Here
-- the only plan left is one probe of jobs_batch_live.
CREATE FUNCTION hgf_jobs_batch_live(p_batch bigint)
RETURNS boolean LANGUAGE plpgsql STABLE
SET enable_bitmapscan = off SET enable_sort = off SET enable_seqscan = off
SET enable_indexscan = on SET jit = off SET plan_cache_mode = force_generic_plan
AS $$
BEGIN
    RETURN EXISTS (SELECT 1 FROM jobs
                    WHERE batch_id = p_batch AND state IN ('queued', 'running'));
END
$$;

-- A `sweep --wait` claim's phase part (phase_job in IDS_CLAIM_SQL) has the
-- same trap: its sweep and kind reach the planner as the sweep's own values,
-- read by the same statement, so the planner guesses how many jobs a phase
-- holds. With index scans out of favour, test_sweep_checks' claim on a sweep
-- of 200,000 queued scans read 3,349 buffers (a Bitmap Heap Scan of the
-- whole phase and a sort) against 106. Here the only plan left walks
-- jobs_sweep_live from the phase's first due job. A NULL sweep (no sweep
-- waited for, or one not running) returns nothing.
CREATE FUNCTION hgf_jobs_phase_due(p_sweep bigint, p_kind text, p_kinds text[], p_limit int)
RETURNS SETOF bigint LANGUAGE plpgsql ROWS 4
SET enable_bitmapscan = off SET enable_sort = off SET enable_seqscan = off
SET enable_indexscan = on SET jit = off SET plan_cache_mode = force_generic_plan
AS $$
BEGIN
    RETURN QUERY
        SELECT id FROM jobs
         WHERE sweep_id = p_sweep AND kind = p_kind AND state = 'queued'
           AND run_at <= now() AND kind = ANY (p_kinds)
         ORDER BY run_at LIMIT p_limit
           FOR UPDATE SKIP LOCKED;
END
$$;

-- A server's claim (ANY_CLAIM_SQL: the queue's first jobs, and the first of
-- priority >= N ahead) has the trap at its worst. After a quiet spell, a
-- `jobs` table of 1,000,000 done jobs and 20 queued was analyzed; ANALYZE's
-- sample held no queued job, so both partial indexes on queued jobs were
-- recorded as empty. A burst of 100,000 scans was then queued (50,000 push
-- scans at priority 10), too few to trigger autoanalyze on a table that
-- size. Every claim then read the whole queue through jobs_dedup_live and
-- sorted it on disk: 220 ms and 41,000 buffers a claim, where walking
-- jobs_claim takes 1 ms. Here the walk is the only plan: jobs_claim from
-- its first job of priority >= p_min_priority, in the claim's order.
CREATE FUNCTION hgf_jobs_queue_due(p_kinds text[], p_min_priority int, p_limit int)
RETURNS SETOF bigint LANGUAGE plpgsql ROWS 4
SET enable_bitmapscan = off SET enable_sort = off SET enable_seqscan = off
SET enable_indexscan = on SET jit = off SET plan_cache_mode = force_generic_plan
AS $$
BEGIN
    RETURN QUERY
        SELECT id FROM jobs
         WHERE state = 'queued' AND priority >= p_min_priority AND run_at <= now()
           AND kind = ANY (p_kinds)
         ORDER BY priority DESC, run_at, id LIMIT p_limit
           FOR UPDATE SKIP LOCKED;
END
$$;
