#include "hgfleet/buf.h"
#include "hgfleet/jobs.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void hgf_jobs_id_array(const int64_t *ids, int n, hgf_buf *out)
{
    hgf_buf_putc(out, '{');
    for (int i = 0; i < n; i++)
        hgf_buf_printf(out, "%s%lld", i ? "," : "", (long long)ids[i]);
    hgf_buf_putc(out, '}');
}

int hgf_jobs_enqueue(hgf_store *s, const char *kind, const char *payload_json, int priority,
                     const char *dedup_key, int64_t *job_id, int *created, hgf_err *err)
{
    char prio[16];
    snprintf(prio, sizeof prio, "%d", priority);
    const char *p[] = {kind, payload_json, prio, dedup_key};
    /* The CTE either inserts or finds the live job; a concurrent insert of
     * the same key loses the race on the unique index and retries once. */
    const char *sql =
        "WITH ins AS (INSERT INTO jobs (kind, payload, priority, dedup_key) "
        "VALUES ($1, $2::jsonb, $3::int, $4) "
        "ON CONFLICT (dedup_key) WHERE state IN ('queued', 'running') DO NOTHING RETURNING id) "
        "SELECT id, true FROM ins UNION ALL "
        "SELECT id, false FROM jobs WHERE dedup_key = $4 AND state IN ('queued', 'running') "
        "AND NOT EXISTS (SELECT 1 FROM ins) LIMIT 1";
    for (int attempt = 0; attempt < 2; attempt++) {
        PGresult *r;
        int rc = hgf_store_exec(s, sql, 4, p, &r, err);
        if (rc)
            return rc;
        if (PQntuples(r) == 1) {
            *job_id = atoll(PQgetvalue(r, 0, 0));
            if (created)
                *created = PQgetvalue(r, 0, 1)[0] == 't';
            PQclear(r);
            return 0;
        }
        PQclear(r);
    }
    return hgf_err_set(err, HGF_EDB, "could not enqueue job %s", dedup_key);
}

static int requeue_expired(hgf_store *s, hgf_err *err)
{
    return hgf_store_exec(s,
                          "UPDATE jobs SET state = 'queued', lease_owner = NULL, "
                          "lease_expires_at = NULL, updated_at = now() "
                          "WHERE state = 'running' AND lease_expires_at < now()",
                          0, NULL, NULL, err);
}

int hgf_jobs_claim(hgf_store *s, const char *owner, int lease_seconds, const char *kind,
                   const int64_t *ids, int n_ids, int limit, hgf_job **out, int *n, hgf_err *err)
{
    *out = NULL;
    *n = 0;
    int rc = requeue_expired(s, err);
    if (rc)
        return rc;
    char lease[16], lim[16];
    snprintf(lease, sizeof lease, "%d", lease_seconds);
    snprintf(lim, sizeof lim, "%d", limit);
    hgf_buf idarr = HGF_BUF_INIT;
    if (ids)
        hgf_jobs_id_array(ids, n_ids, &idarr);
    const char *p[] = {owner, lease, kind, ids ? idarr.data : NULL, lim};
    PGresult *r;
    rc = hgf_store_exec(s,
                        "UPDATE jobs SET state = 'running', lease_owner = $1, attempts = attempts + 1,"
                        " lease_expires_at = now() + make_interval(secs => $2::int), updated_at = now()"
                        " WHERE id IN (SELECT id FROM jobs WHERE state = 'queued' AND run_at <= now()"
                        " AND ($3::text IS NULL OR kind = $3) AND ($4::bigint[] IS NULL OR id = ANY($4))"
                        " ORDER BY priority DESC, run_at, id LIMIT $5::int FOR UPDATE SKIP LOCKED)"
                        " RETURNING id, kind, payload::text, attempts, max_attempts",
                        5, p, &r, err);
    hgf_buf_free(&idarr);
    if (rc)
        return rc;
    int rows = PQntuples(r);
    *out = calloc(rows ? rows : 1, sizeof **out);
    for (int i = 0; *out && i < rows; i++) {
        hgf_job *j = &(*out)[i];
        j->id = atoll(PQgetvalue(r, i, 0));
        snprintf(j->kind, sizeof j->kind, "%s", PQgetvalue(r, i, 1));
        j->payload = json_loads(PQgetvalue(r, i, 2), 0, NULL);
        j->attempts = atoi(PQgetvalue(r, i, 3));
        j->max_attempts = atoi(PQgetvalue(r, i, 4));
        *n = i + 1;
    }
    PQclear(r);
    return *out ? 0 : hgf_err_set(err, HGF_ENOMEM, "out of memory");
}

void hgf_jobs_free(hgf_job *jobs, int n)
{
    for (int i = 0; i < n; i++)
        json_decref(jobs[i].payload);
    free(jobs);
}

static void ignore_result(PGresult *res, const hgf_err *err, void *arg)
{
    PQclear(res);
}

int hgf_jobs_finish(hgf_store *s, int64_t id, const char *owner, const char *error,
                    const char *result_json, hgf_store_cb cb, void *arg)
{
    char v[24];
    snprintf(v, sizeof v, "%lld", (long long)id);
    const char *p[] = {v, owner, error, result_json};
    /* The owner check keeps a replica whose lease expired from overwriting
     * the outcome of the replica that took the job over. */
    return hgf_store_query(s,
                           "UPDATE jobs SET state = CASE WHEN $3::text IS NULL THEN 'done' ELSE "
                           "'failed' END, last_error = $3, result = $4::jsonb, finished_at = now(), "
                           "updated_at = now(), lease_owner = NULL, lease_expires_at = NULL "
                           "WHERE id = $1 AND lease_owner = $2 AND state = 'running'",
                           4, p, cb ? cb : ignore_result, arg);
}

int hgf_jobs_heartbeat(hgf_store *s, const char *owner, int lease_seconds)
{
    char lease[16];
    snprintf(lease, sizeof lease, "%d", lease_seconds);
    const char *p[] = {owner, lease};
    return hgf_store_query(s,
                           "UPDATE jobs SET lease_expires_at = now() + make_interval(secs => "
                           "$2::int) WHERE lease_owner = $1 AND state = 'running'",
                           2, p, ignore_result, NULL);
}

int hgf_jobs_count_live(hgf_store *s, const int64_t *ids, int n_ids, int *live, hgf_err *err)
{
    hgf_buf arr = HGF_BUF_INIT;
    hgf_jobs_id_array(ids, n_ids, &arr);
    const char *p[] = {arr.data};
    PGresult *r;
    int rc = hgf_store_exec(s,
                            "SELECT count(*) FROM jobs WHERE id = ANY($1::bigint[]) AND "
                            "state IN ('queued', 'running')",
                            1, p, &r, err);
    hgf_buf_free(&arr);
    if (rc)
        return rc;
    *live = atoi(PQgetvalue(r, 0, 0));
    PQclear(r);
    return 0;
}
