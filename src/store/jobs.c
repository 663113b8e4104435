#include "hgfleet/jobs.h"
#include "hgfleet/catalog.h"
#include "hgfleet/buf.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define BACKOFF_BASE_S 5
#define BACKOFF_MAX_S 600

static const char *const STATES[] = {"queued", "running", "done", "failed"};
static const char *const KINDS[] = {"sync", "scan", "sweep"};

static int in_list(const char *name, const char *const *list, size_t n)
{
    for (size_t i = 0; name && i < n; i++)
        if (!strcmp(name, list[i]))
            return 1;
    return 0;
}

int hgf_jobs_valid_state(const char *name)
{
    return in_list(name, STATES, sizeof STATES / sizeof *STATES);
}

int hgf_jobs_valid_kind(const char *name)
{
    return in_list(name, KINDS, sizeof KINDS / sizeof *KINDS);
}

int hgf_jobs_backoff_seconds(int attempts)
{
    if (attempts < 0)
        attempts = 0;
    if (attempts >= 7) /* 2^7 * 5 > 600 already; also keeps the shift in range */
        return BACKOFF_MAX_S;
    int d = BACKOFF_BASE_S << attempts;
    return d < BACKOFF_MAX_S ? d : BACKOFF_MAX_S;
}

void hgf_jobs_id_array(const int64_t *ids, int n, hgf_buf *out)
{
    hgf_buf_putc(out, '{');
    for (int i = 0; i < n; i++)
        hgf_buf_printf(out, "%s%lld", i ? "," : "", (long long)ids[i]);
    hgf_buf_putc(out, '}');
}

/* The CTE either inserts or finds the live job; a concurrent insert of the
 * same key loses the race on the unique index and retries once. A live job
 * joins the batch ($5) only when it has none: the third column says whether
 * it is in the batch now. */
static const char ENQUEUE_SQL[] =
    "WITH ins AS (INSERT INTO jobs (kind, payload, priority, dedup_key, batch_id) "
    " VALUES ($1, $2::jsonb, $3::int, $4, $5::bigint) "
    " ON CONFLICT (dedup_key) WHERE state IN ('queued', 'running') DO NOTHING RETURNING id), "
    "old AS (SELECT id, batch_id FROM jobs WHERE dedup_key = $4 AND state IN ('queued', 'running') "
    " AND NOT EXISTS (SELECT 1 FROM ins) LIMIT 1), "
    "joined AS (UPDATE jobs j SET batch_id = $5::bigint FROM old WHERE j.id = old.id "
    " AND j.batch_id IS NULL AND $5::bigint IS NOT NULL AND j.state IN ('queued', 'running') "
    " RETURNING j.id) "
    "SELECT id, true, true FROM ins UNION ALL "
    "SELECT id, false, batch_id = $5::bigint OR EXISTS (SELECT 1 FROM joined) FROM old";

int hgf_jobs_enqueue_batch(hgf_store *s, const char *kind, const char *payload_json, int priority,
                           const char *dedup_key, int64_t batch, int64_t *job_id, int *created,
                           int *in_batch, hgf_err *err)
{
    char prio[16], b[24];
    snprintf(prio, sizeof prio, "%d", priority);
    snprintf(b, sizeof b, "%lld", (long long)batch);
    const char *p[] = {kind, payload_json, prio, dedup_key, batch ? b : NULL};
    for (int attempt = 0; attempt < 2; attempt++) {
        PGresult *r;
        int rc = hgf_store_exec(s, ENQUEUE_SQL, 5, p, &r, err);
        if (rc)
            return rc;
        if (PQntuples(r) == 1) {
            *job_id = atoll(PQgetvalue(r, 0, 0));
            if (created)
                *created = PQgetvalue(r, 0, 1)[0] == 't';
            if (in_batch)
                *in_batch = batch && PQgetvalue(r, 0, 2)[0] == 't';
            PQclear(r);
            return 0;
        }
        PQclear(r);
    }
    return hgf_err_set(err, HGF_EDB, "could not enqueue job %s", dedup_key);
}

int hgf_jobs_enqueue(hgf_store *s, const char *kind, const char *payload_json, int priority,
                     const char *dedup_key, int64_t *job_id, int *created, hgf_err *err)
{
    return hgf_jobs_enqueue_batch(s, kind, payload_json, priority, dedup_key, 0, job_id, created,
                                  NULL, err);
}

int hgf_jobs_new_batch(hgf_store *s, int64_t *batch, hgf_err *err)
{
    PGresult *r;
    int rc = hgf_store_exec(s, "SELECT nextval('jobs_batch_seq')", 0, NULL, &r, err);
    if (rc)
        return rc;
    *batch = atoll(PQgetvalue(r, 0, 0));
    PQclear(r);
    return 0;
}

/* ---- claiming -------------------------------------------------------- */

typedef struct claim_ctx {
    hgf_jobs_claim_cb cb;
    void *arg;
} claim_ctx;

static int parse_jobs(const PGresult *r, hgf_job **out, int *n, hgf_err *err)
{
    int rows = PQntuples(r);
    *out = calloc(rows ? (size_t)rows : 1, sizeof **out);
    if (!*out)
        return hgf_err_set(err, HGF_ENOMEM, "out of memory");
    for (int i = 0; i < rows; i++) {
        hgf_job *j = &(*out)[i];
        j->id = atoll(PQgetvalue(r, i, 0));
        snprintf(j->kind, sizeof j->kind, "%s", PQgetvalue(r, i, 1));
        j->payload = json_loads(PQgetvalue(r, i, 2), 0, NULL);
        j->attempts = atoi(PQgetvalue(r, i, 3));
        j->max_attempts = atoi(PQgetvalue(r, i, 4));
        j->priority = atoi(PQgetvalue(r, i, 5));
    }
    *n = rows;
    return 0;
}

static void claimed(PGresult *res, const hgf_err *err, void *arg)
{
    claim_ctx c = *(claim_ctx *)arg;
    free(arg);
    hgf_err e;
    hgf_err_clear(&e);
    hgf_job *jobs = NULL;
    int n = 0;
    if (err)
        e = *err;
    else if (!hgf_store_check(res, &e))
        parse_jobs(res, &jobs, &n, &e);
    PQclear(res);
    c.cb(jobs, n, e.code ? &e : NULL, c.arg);
}

/* Kinds come from the executor table: plain words, so no quoting is needed. */
static int kinds_array(const char *const *kinds, int n, hgf_buf *out)
{
    hgf_buf_putc(out, '{');
    for (int i = 0; i < n; i++) {
        for (const char *c = kinds[i]; *c; c++)
            if (!isalnum((unsigned char)*c) && *c != '_')
                return HGF_EINPUT;
        hgf_buf_printf(out, "%s%s", i ? "," : "", kinds[i]);
    }
    hgf_buf_putc(out, '}');
    return 0;
}

/* A claim is one of two statements, so that each plans only what it can
 * use: PostgreSQL plans a claim on every call (a generic plan made while
 * `jobs` is nearly empty reads the wrong index once it is not; see
 * docs/benchmarks.md), and planning grows with every reference to `jobs`
 * and its partial indexes.
 *
 * A pool that works any job claims ANY_CLAIM_SQL: the first $4 claimable
 * jobs, plus the first $4 + $5 of priority >= $6 when it asks for $5 > 0
 * ahead (with none, those are among the first $4). The second part reads
 * only the jobs_claim index's high-priority end, so asking for push scans
 * ahead never locks a backlog of sweep scans. Both walk jobs_claim in
 * hgf_jobs_queue_due (sql/018), where the planner has no other choice: with
 * statistics taken while the queue was empty, the plain subqueries read and
 * sorted the whole queue on every claim. */
#define CLAIMABLE                                                                  \
    "SELECT id FROM jobs WHERE state = 'queued' AND run_at <= now()"               \
    " AND kind = ANY($3::text[])"

#define LEASE_SET                                                                          \
    " UPDATE jobs SET state = 'running', lease_owner = $1, attempts = attempts + 1,"      \
    " lease_expires_at = now() + make_interval(secs => $2::int), updated_at = now(),"     \
    " claimed_at = coalesce(claimed_at, clock_timestamp())"

#define CLAIMED " RETURNING id, kind, payload::text, attempts, max_attempts, priority"

static const char ANY_CLAIM_SQL[] =
    "WITH any_job AS (SELECT id FROM hgf_jobs_queue_due($3::text[], -2147483648, $4::int) a(id)),"
    " urgent AS (SELECT id FROM hgf_jobs_queue_due($3::text[], $6::int, $4::int + $5::int) u(id)"
    "   WHERE $5::int > 0)"
    LEASE_SET
    " WHERE id IN (SELECT id FROM any_job UNION SELECT id FROM urgent)"
    CLAIMED;

/* A drain (`sweep --wait`, `sync --wait`) claims IDS_CLAIM_SQL: its own jobs
 * among $4, then the work they stand for.
 *
 * A sweep's job among $4 brings in the jobs its current phase waits for,
 * read through their tag from the jobs_sweep_live index in its run_at order,
 * never listed as ids: the claim costs the same at ten scans as at a million.
 * Phases as in sql/006; 'start' and 'done' wait for no job.
 *
 * The batch of `sync --wait` ($6, NULL for none): its queued jobs, read from
 * the jobs_batch_live index in run_at order, however many jobs the batch or
 * the queue holds.
 *
 * Those two walks are functions (sql/018) with the planner's other choices
 * taken away: planned inside this statement, a guess of a few rows in the
 * phase or the batch could turn either into a read and sort of all of it on
 * every claim. phase_job, then batch_job, fill what own_job left of the $5;
 * each locks no more than that. */
static const char IDS_CLAIM_SQL[] =
    "WITH own_job AS (" CLAIMABLE " AND id = ANY($4::bigint[])"
    " ORDER BY priority DESC, run_at, id LIMIT $5::int FOR UPDATE SKIP LOCKED),"
    " waited AS (SELECT s.id, CASE s.phase WHEN 'syncing' THEN 'sync'"
    "   WHEN 'scanning' THEN 'scan' END AS kind"
    "   FROM jobs j JOIN sweeps s ON s.id = (j.payload->>'sweep_id')::bigint"
    "   WHERE j.id = ANY($4) AND j.kind = 'sweep' AND s.status = 'running' LIMIT 1),"
    " left_over AS (SELECT $5::int - count(*)::int AS n FROM own_job),"
    " phase_job AS (SELECT id FROM hgf_jobs_phase_due((SELECT id FROM waited),"
    "   (SELECT kind FROM waited), $3::text[], (SELECT n FROM left_over)) p(id)),"
    " batch_job AS (SELECT id FROM hgf_jobs_batch_due($6::bigint, $3::text[],"
    "   (SELECT n FROM left_over)) b(id))"
    LEASE_SET
    " WHERE id IN (SELECT id FROM own_job"
    " UNION (SELECT id FROM (SELECT id FROM phase_job UNION ALL SELECT id FROM batch_job) w"
    " LIMIT (SELECT n FROM left_over)))"
    CLAIMED;

int hgf_jobs_claim(hgf_store *s, const hgf_jobs_claim_opts *o, hgf_jobs_claim_cb cb, void *arg)
{
    char lease[16], lim[16], ahead[16], prio[16], batch[24];
    snprintf(lease, sizeof lease, "%d", o->lease_seconds);
    snprintf(batch, sizeof batch, "%lld", (long long)o->batch);
    snprintf(lim, sizeof lim, "%d", o->limit);
    snprintf(ahead, sizeof ahead, "%d", o->ahead > 0 ? o->ahead : 0);
    snprintf(prio, sizeof prio, "%d", o->ahead_min_priority);
    hgf_buf kinds = HGF_BUF_INIT, ids = HGF_BUF_INIT;
    int rc = kinds_array(o->kinds, o->n_kinds, &kinds);
    if (o->ids)
        hgf_jobs_id_array(o->ids, o->n_ids, &ids);
    claim_ctx *c = rc ? NULL : malloc(sizeof *c);
    if (c) {
        *c = (claim_ctx){cb, arg};
        const char *any[] = {o->owner, lease, kinds.data, lim, ahead, prio};
        const char *own[] = {o->owner, lease, kinds.data, ids.data, lim,
                             o->batch ? batch : NULL};
        rc = o->ids ? hgf_store_query(s, IDS_CLAIM_SQL, 6, own, claimed, c)
                    : hgf_store_query(s, ANY_CLAIM_SQL, 6, any, claimed, c);
        if (rc)
            free(c);
    } else if (!rc) {
        rc = HGF_ENOMEM;
    }
    hgf_buf_free(&kinds);
    hgf_buf_free(&ids);
    return rc;
}

void hgf_jobs_free(hgf_job *jobs, int n)
{
    for (int i = 0; i < n; i++)
        json_decref(jobs[i].payload);
    free(jobs);
}

/* ---- leases and outcomes -------------------------------------------- */

static void ignore_result(PGresult *res, const hgf_err *err, void *arg)
{
    PQclear(res);
}

/* A job whose runs keep dying (say, it crashes its worker) must not loop
 * forever: its last expired lease fails it. */
int hgf_jobs_requeue_expired(hgf_store *s, hgf_store_cb cb, void *arg)
{
    return hgf_store_query(
        s,
        "WITH r AS (UPDATE jobs SET"
        " state = CASE WHEN attempts >= max_attempts THEN 'failed' ELSE 'queued' END,"
        " last_error = CASE WHEN attempts >= max_attempts THEN 'lease of ' || lease_owner ||"
        "   ' expired on attempt ' || attempts || ' of ' || max_attempts ELSE last_error END,"
        " finished_at = CASE WHEN attempts >= max_attempts THEN now() END,"
        " lease_owner = NULL, lease_expires_at = NULL, updated_at = now()"
        " WHERE state = 'running' AND lease_expires_at < now() RETURNING kind, state)"
        " SELECT count(*), pg_notify('" HGF_JOBS_CHANNEL "', string_agg(DISTINCT kind, ','))"
        " FROM r WHERE state = 'queued' HAVING count(*) > 0",
        0, NULL, cb ? cb : ignore_result, arg);
}

#define RETRYING "($3::text IS NOT NULL AND $5::int >= 0 AND attempts < max_attempts)"

int hgf_jobs_finish(hgf_store *s, int64_t id, const char *owner, int attempt, const char *error,
                    int retry_after_s, const char *result_json, hgf_store_cb cb, void *arg)
{
    char v[24], delay[16], run[16];
    snprintf(v, sizeof v, "%lld", (long long)id);
    snprintf(delay, sizeof delay, "%d", retry_after_s < 0 ? -1 : retry_after_s);
    snprintf(run, sizeof run, "%d", attempt);
    const char *p[] = {v, owner, error, result_json, delay, run};
    return hgf_store_query(
        s,
        "UPDATE jobs SET"
        " state = CASE WHEN $3::text IS NULL THEN 'done' WHEN " RETRYING " THEN 'queued'"
        "   ELSE 'failed' END,"
        " run_at = CASE WHEN " RETRYING " THEN now() + make_interval(secs => $5::int)"
        "   ELSE run_at END,"
        " finished_at = CASE WHEN " RETRYING " THEN NULL ELSE now() END,"
        " last_error = $3, result = $4::jsonb, updated_at = now(),"
        " lease_owner = NULL, lease_expires_at = NULL"
        " WHERE id = $1 AND lease_owner = $2 AND attempts = $6::int AND state = 'running'"
        " RETURNING state",
        6, p, cb ? cb : ignore_result, arg);
}

int hgf_jobs_continue(hgf_store *s, int64_t id, const char *owner, int attempt, int delay_s,
                      const char *result_json, hgf_store_cb cb, void *arg)
{
    char v[24], delay[16], run[16];
    snprintf(v, sizeof v, "%lld", (long long)id);
    snprintf(delay, sizeof delay, "%d", delay_s < 0 ? 0 : delay_s);
    snprintf(run, sizeof run, "%d", attempt);
    const char *p[] = {v, owner, delay, result_json, run};
    return hgf_store_query(
        s,
        "UPDATE jobs SET state = 'queued', run_at = now() + make_interval(secs => $3::int),"
        " attempts = greatest(attempts - 1, 0), result = coalesce($4::jsonb, result),"
        " last_error = NULL, lease_owner = NULL, lease_expires_at = NULL, updated_at = now()"
        " WHERE id = $1 AND lease_owner = $2 AND attempts = $5::int AND state = 'running'"
        " RETURNING state",
        5, p, cb ? cb : ignore_result, arg);
}

int hgf_jobs_heartbeat(hgf_store *s, const char *owner, int lease_seconds, const int64_t *ids,
                       int n_ids)
{
    char lease[16];
    snprintf(lease, sizeof lease, "%d", lease_seconds);
    hgf_buf arr = HGF_BUF_INIT;
    hgf_jobs_id_array(ids, n_ids, &arr);
    const char *p[] = {owner, lease, arr.data};
    /* A pool holding jobs claimed ahead renews a thousand rows at once: off
     * the main connection, where it would hold up the claims behind it. */
    int rc = hgf_store_query_bulk(s,
                                  "UPDATE jobs SET lease_expires_at = now() + "
                                  "make_interval(secs => $2::int) WHERE id = ANY($3::bigint[]) "
                                  "AND lease_owner = $1 AND state = 'running'",
                                  3, p, ignore_result, NULL);
    hgf_buf_free(&arr);
    return rc;
}

int hgf_jobs_release(hgf_store *s, const char *owner, const int64_t *ids, int n_ids,
                     hgf_store_cb cb, void *arg)
{
    hgf_buf arr = HGF_BUF_INIT;
    hgf_jobs_id_array(ids, n_ids, &arr);
    const char *p[] = {owner, arr.data};
    int rc = hgf_store_query(
        s,
        "WITH r AS (UPDATE jobs SET state = 'queued', lease_owner = NULL,"
        " lease_expires_at = NULL, attempts = greatest(attempts - 1, 0), updated_at = now()"
        " WHERE id = ANY($2::bigint[]) AND lease_owner = $1 AND state = 'running' RETURNING kind)"
        " SELECT count(*), pg_notify('" HGF_JOBS_CHANNEL "', string_agg(DISTINCT kind, ','))"
        " FROM r HAVING count(*) > 0",
        2, p, cb ? cb : ignore_result, arg);
    hgf_buf_free(&arr);
    return rc;
}

/* One probe of jobs_batch_live, however many jobs the batch has, and one of
 * the primary key per id. The batch's probe is hgf_jobs_batch_live (sql/018),
 * whose plan cannot read the batch whole: as a plain subquery it became a
 * Seq Scan (a CI run's plan flipped with ANALYZE's sample) or a Bitmap Heap
 * Scan and a sort, whenever the planner's costs favoured them. */
static const char BATCH_LIVE_SQL[] =
    "SELECT hgf_jobs_batch_live($1::bigint)"
    "    OR EXISTS (SELECT 1 FROM jobs WHERE id = ANY($2::bigint[])"
    "               AND state IN ('queued', 'running'))";

int hgf_jobs_batch_live(hgf_store *s, int64_t batch, const int64_t *ids, int n_ids, int *live,
                        hgf_err *err)
{
    char b[24];
    snprintf(b, sizeof b, "%lld", (long long)batch);
    hgf_buf arr = HGF_BUF_INIT;
    hgf_jobs_id_array(ids, n_ids, &arr);
    const char *p[] = {b, arr.data};
    PGresult *r;
    int rc = hgf_store_exec(s, BATCH_LIVE_SQL, 2, p, &r, err);
    hgf_buf_free(&arr);
    if (rc)
        return rc;
    *live = PQgetvalue(r, 0, 0)[0] == 't';
    PQclear(r);
    return 0;
}

/* ---- listing --------------------------------------------------------- */

int hgf_jobs_list(hgf_store *s, const char *state, const char *kind, int limit, json_t **out,
                  hgf_err *err)
{
    hgf_catalog_query q;
    int rc = hgf_catalog_jobs(&q, state, kind, limit, "", err);
    return rc ? rc : hgf_catalog_exec(s, &q, out, err);
}
