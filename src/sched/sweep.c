#include "hgfleet/sweep.h"
#include "hgfleet/jobs.h"
#include "hgfleet/log.h"
#include "hgfleet/report.h"
#include "hgfleet/timeutil.h"
#include "hgfleet/worker.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define ISO_SQL(col) "to_char(" col " AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"')"

/* ---- progress -------------------------------------------------------- */

typedef struct progress {
    int on;
    int conns_total, conns_done, conns_failed;
    long images, scans_total, scans_done, scans_failed, throttles;
    int64_t last_ms;
} progress;

static void progress_print(progress *p, int force)
{
    int64_t now = hgf_time_now_ms();
    if (!p->on || (!force && now - p->last_ms < 1000))
        return;
    p->last_ms = now;
    fprintf(stderr, "sweep: connections %d/%d (%d failed), images %ld, scans %ld/%ld (%ld failed), "
                    "throttles %ld\n",
            p->conns_done, p->conns_total, p->conns_failed, p->images, p->scans_done,
            p->scans_total, p->scans_failed, p->throttles);
}

static void on_job_done(int64_t job_id, const char *kind, const hgf_err *err, json_t *result,
                        void *arg)
{
    progress *p = arg;
    if (!strcmp(kind, "sync")) {
        p->conns_done++;
        p->conns_failed += err != NULL;
        p->images += (long)json_integer_value(json_object_get(result, "images"));
        p->throttles += (long)json_integer_value(json_object_get(result, "throttles"));
    } else {
        p->scans_done++;
        p->scans_failed += err != NULL;
    }
    progress_print(p, 0);
}

/* ---- queries --------------------------------------------------------- */

/* The first column of every row as ids; caller frees *ids. */
static int select_ids(hgf_store *s, const char *sql, int np, const char *const *p, int64_t **ids,
                      int *n, hgf_err *err)
{
    PGresult *r = NULL;
    int rc = hgf_store_exec(s, sql, np, p, &r, err);
    if (rc)
        return rc;
    *n = PQntuples(r);
    *ids = calloc((size_t)*n + 1, sizeof **ids);
    for (int i = 0; *ids && i < *n; i++)
        (*ids)[i] = strtoll(PQgetvalue(r, i, 0), NULL, 10);
    PQclear(r);
    return *ids ? 0 : hgf_err_set(err, HGF_ENOMEM, "out of memory");
}

static int ids_query(hgf_store *s, const char *sql, const int64_t *in, int n_in, int64_t **ids,
                     int *n, hgf_err *err)
{
    hgf_buf arr = HGF_BUF_INIT;
    hgf_jobs_id_array(in, n_in, &arr);
    const char *p[] = {hgf_buf_str(&arr)};
    int rc = select_ids(s, sql, 1, p, ids, n, err);
    hgf_buf_free(&arr);
    return rc;
}

static int insert_sweep(hgf_store *s, const char *by, int64_t *id, char *started, size_t n,
                        hgf_err *err)
{
    PGresult *r = NULL;
    const char *p[] = {by};
    int rc = hgf_store_exec(s, "INSERT INTO sweeps (requested_by) VALUES ($1) RETURNING id, "
                            ISO_SQL("started_at"), 1, p, &r, err);
    if (rc)
        return rc;
    *id = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
    snprintf(started, n, "%s", PQgetvalue(r, 0, 1));
    PQclear(r);
    return 0;
}

/* A sync already queued or running for a connection is waited for, not doubled. */
static int enqueue_syncs(hgf_store *s, const int64_t *conns, int n, int64_t *ids, hgf_err *err)
{
    for (int i = 0; i < n; i++) {
        char payload[64], key[64];
        snprintf(payload, sizeof payload, "{\"connection_id\":%lld}", (long long)conns[i]);
        snprintf(key, sizeof key, "sync:%lld", (long long)conns[i]);
        int rc = hgf_jobs_enqueue(s, "sync", payload, 5, key, &ids[i], NULL, err);
        if (rc)
            return rc;
    }
    return 0;
}

/* Digests due a scan: never scanned ok, or last ok scan older than the
 * rescan window and pushed within the active window (old images are not
 * rescanned, which bounds a sweep's cost). Scans already live keep their
 * job (and its priority). */
static const char ENQUEUE_SCANS_SQL[] =
    "WITH cand AS ("
    " SELECT c.id AS cid, c.registry, rp.name AS repo, i.id AS iid, i.digest "
    "   FROM connections c JOIN repositories rp ON rp.connection_id = c.id AND rp.deleted_at IS NULL "
    "   JOIN images i ON i.repository_id = rp.id AND i.deleted_at IS NULL "
    "   LEFT JOIN LATERAL (SELECT s.finished_at FROM scans s WHERE s.image_id = i.id "
    "                       AND s.status = 'ok' ORDER BY s.id DESC LIMIT 1) ls ON true "
    "  WHERE c.id = ANY($1::bigint[]) AND c.removed_at IS NULL "
    "    AND (ls IS NULL OR (coalesce(ls.finished_at, '-infinity') < now() - make_interval(secs => $2::bigint) "
    "         AND coalesce(i.pushed_at, now()) >= now() - make_interval(secs => $3::bigint)))), "
    "ins AS (INSERT INTO jobs (kind, payload, priority, dedup_key) "
    " SELECT 'scan', jsonb_build_object('connection_id', cid, 'image_id', iid, 'repository', repo, "
    "        'digest', digest, 'reason', 'sweep'), $4::int, 'scan:' || registry || '/' || repo || '@' || digest "
    "   FROM cand ON CONFLICT (dedup_key) WHERE state IN ('queued', 'running') DO NOTHING RETURNING id) "
    "SELECT count(*) FROM ins";

/* Every scan job live for these connections: ours, the ones their syncs
 * queued for new digests, and push scans; not those parked in a long
 * retry backoff by a server. */
static const char LIVE_SCANS_SQL[] =
    "SELECT id FROM jobs WHERE kind = 'scan' AND state IN ('queued', 'running') "
    "   AND (payload->>'connection_id')::bigint = ANY($1::bigint[]) "
    "   AND run_at <= now() + interval '30 seconds' ORDER BY id";

static int enqueue_scans(hgf_store *s, const hgf_sweep_opts *o, const int64_t *conns, int n,
                         long *queued, hgf_err *err)
{
    hgf_buf arr = HGF_BUF_INIT;
    hgf_jobs_id_array(conns, n, &arr);
    char rescan[24], active[24], prio[8];
    snprintf(rescan, sizeof rescan, "%lld", (long long)o->rescan_after_s);
    snprintf(active, sizeof active, "%lld", (long long)o->active_within_s);
    snprintf(prio, sizeof prio, "%d", HGF_SWEEP_SCAN_PRIORITY);
    const char *p[] = {hgf_buf_str(&arr), rescan, active, prio};
    PGresult *r = NULL;
    int rc = hgf_store_exec(s, ENQUEUE_SCANS_SQL, 4, p, &r, err);
    hgf_buf_free(&arr);
    if (rc)
        return rc;
    *queued = strtol(PQgetvalue(r, 0, 0), NULL, 10);
    PQclear(r);
    return 0;
}

/* ---- phases ---------------------------------------------------------- */

typedef struct sweep_state {
    int64_t *conns, *ok, *failed;
    int n_conns, n_ok, n_failed;
    long scans_queued;
    progress prog;
} sweep_state;

static void state_free(sweep_state *st)
{
    free(st->conns);
    free(st->ok);
    free(st->failed);
}

static int sync_phase(hgf_runtime *rt, sweep_state *st, hgf_err *err)
{
    int64_t *jobs = calloc((size_t)st->n_conns + 1, sizeof *jobs);
    if (!jobs)
        return hgf_err_set(err, HGF_ENOMEM, "out of memory");
    int rc = enqueue_syncs(rt->store, st->conns, st->n_conns, jobs, err);
    if (!rc)
        rc = hgf_worker_drain(rt, jobs, st->n_conns, rt->cfg->workers, on_job_done, &st->prog,
                              err);
    /* Whoever ran a sync (here or a server), its final state decides. */
    if (!rc)
        rc = ids_query(rt->store,
                       "SELECT DISTINCT (payload->>'connection_id')::bigint FROM jobs "
                       "WHERE id = ANY($1::bigint[]) AND state <> 'done'",
                       jobs, st->n_conns, &st->failed, &st->n_failed, err);
    free(jobs);
    return rc;
}

static int split_ok(sweep_state *st, hgf_err *err)
{
    st->ok = calloc((size_t)st->n_conns + 1, sizeof *st->ok);
    if (!st->ok)
        return hgf_err_set(err, HGF_ENOMEM, "out of memory");
    for (int i = 0; i < st->n_conns; i++) {
        int bad = 0;
        for (int k = 0; k < st->n_failed; k++)
            bad |= st->failed[k] == st->conns[i];
        if (!bad)
            st->ok[st->n_ok++] = st->conns[i];
    }
    return 0;
}

static int scan_phase(hgf_runtime *rt, const hgf_sweep_opts *o, sweep_state *st, hgf_err *err)
{
    int rc = split_ok(st, err);
    if (!rc)
        rc = enqueue_scans(rt->store, o, st->ok, st->n_ok, &st->scans_queued, err);
    int64_t *jobs = NULL;
    int n = 0;
    if (!rc)
        rc = ids_query(rt->store, LIVE_SCANS_SQL, st->ok, st->n_ok, &jobs, &n, err);
    if (!rc && n) {
        st->prog.scans_total = n;
        progress_print(&st->prog, 1);
        rc = hgf_worker_drain(rt, jobs, n, rt->cfg->workers, on_job_done, &st->prog, err);
    }
    free(jobs);
    return rc;
}

/* ---- the report ------------------------------------------------------ */

/* The stored copy is bounded: above the limit only the totals stay. */
static char *stored_text(json_t *report)
{
    char *t = json_dumps(report, JSON_COMPACT | JSON_PRESERVE_ORDER);
    if (t && strlen(t) <= HGF_SWEEP_MAX_STORED_REPORT)
        return t;
    free(t);
    json_t *small = json_pack("{s:O, s:O, s:O, s:O, s:O, s:[], s:s}", "sweep_id",
                              json_object_get(report, "sweep_id"), "started_at",
                              json_object_get(report, "started_at"), "finished_at",
                              json_object_get(report, "finished_at"), "status",
                              json_object_get(report, "status"), "totals",
                              json_object_get(report, "totals"), "connections", "note",
                              "the full report exceeded 16 MiB; only the totals were stored");
    t = small ? json_dumps(small, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
    json_decref(small);
    return t;
}

static int finish(hgf_runtime *rt, int64_t id, const char *started, const sweep_state *st,
                  const hgf_sweep_opts *o, json_t **out, hgf_err *err)
{
    json_t *body = NULL;
    int rc = hgf_report_build(rt->store, st->conns, st->n_conns, st->failed, st->n_failed,
                              o->stale_days, &body, err);
    if (rc)
        return rc;
    char finished[32];
    hgf_time_format_iso(time(NULL), finished, sizeof finished);
    const char *status = st->n_failed ? "partial" : "complete";
    json_t *r = json_pack("{s:I, s:s, s:s, s:s, s:I}", "sweep_id", (json_int_t)id, "started_at",
                          started, "finished_at", finished, "status", status, "scans_queued",
                          (json_int_t)st->scans_queued);
    json_object_update(r, body);
    json_decref(body);
    char *text = stored_text(r);
    char ids[24];
    snprintf(ids, sizeof ids, "%lld", (long long)id);
    const char *p[] = {ids, status, text, finished};
    PGresult *res = NULL;
    rc = text ? hgf_store_exec(rt->store,
                               "UPDATE sweeps SET status = $2, report = $3::jsonb, "
                               "finished_at = $4::timestamptz WHERE id = $1",
                               4, p, &res, err)
              : hgf_err_set(err, HGF_ENOMEM, "out of memory");
    PQclear(res);
    free(text);
    if (rc)
        json_decref(r);
    else
        *out = r;
    return rc;
}

static void mark_failed(hgf_runtime *rt, int64_t id)
{
    char ids[24];
    snprintf(ids, sizeof ids, "%lld", (long long)id);
    const char *p[] = {ids};
    PGresult *res = NULL;
    hgf_err e;
    hgf_store_exec(rt->store, "UPDATE sweeps SET status = 'failed', finished_at = now() "
                              "WHERE id = $1", 1, p, &res, &e);
    PQclear(res);
}

int hgf_sweep_run(hgf_runtime *rt, const hgf_sweep_opts *o, int64_t *sweep_id, json_t **report,
                  hgf_err *err)
{
    sweep_state st = {.prog = {.on = o->progress}};
    char started[40];
    int rc = select_ids(rt->store, "SELECT id FROM connections WHERE removed_at IS NULL "
                        "ORDER BY id", 0, NULL, &st.conns, &st.n_conns, err);
    if (!rc)
        rc = insert_sweep(rt->store, o->requested_by, sweep_id, started, sizeof started, err);
    if (rc) {
        state_free(&st);
        return rc;
    }
    hgf_log_info("sweep.start", "sweep=%lld connections=%d", (long long)*sweep_id, st.n_conns);
    st.prog.conns_total = st.n_conns;
    progress_print(&st.prog, 1);
    rc = sync_phase(rt, &st, err);
    if (!rc)
        rc = scan_phase(rt, o, &st, err);
    progress_print(&st.prog, 1);
    if (!rc)
        rc = finish(rt, *sweep_id, started, &st, o, report, err);
    if (rc)
        mark_failed(rt, *sweep_id);
    else
        hgf_log_info("sweep.done", "sweep=%lld failed_connections=%d scans_queued=%ld",
                     (long long)*sweep_id, st.n_failed, st.scans_queued);
    state_free(&st);
    return rc;
}

/* ---- reading back ---------------------------------------------------- */

int hgf_sweep_list(hgf_store *s, int limit, json_t **out, hgf_err *err)
{
    char lim[16];
    snprintf(lim, sizeof lim, "%d", limit);
    const char *p[] = {lim};
    PGresult *r = NULL;
    int rc = hgf_store_exec(s,
                            "SELECT id, requested_by, " ISO_SQL("started_at") ", "
                            ISO_SQL("finished_at") ", status, (report->'totals')::text "
                            "FROM sweeps ORDER BY id DESC LIMIT $1::int",
                            1, p, &r, err);
    if (rc)
        return rc;
    json_t *a = json_array();
    for (int i = 0; a && i < PQntuples(r); i++) {
        json_t *t = PQgetisnull(r, i, 5) ? NULL : json_loads(PQgetvalue(r, i, 5), 0, NULL);
        json_t *o = json_pack("{s:I, s:s, s:s, s:o, s:s, s:o}", "id",
                              (json_int_t)strtoll(PQgetvalue(r, i, 0), NULL, 10), "requested_by",
                              PQgetvalue(r, i, 1), "started_at", PQgetvalue(r, i, 2),
                              "finished_at",
                              PQgetisnull(r, i, 3) ? json_null() : json_string(PQgetvalue(r, i, 3)),
                              "status", PQgetvalue(r, i, 4), "totals", t ? t : json_null());
        json_array_append_new(a, o);
    }
    PQclear(r);
    *out = a;
    return a ? 0 : hgf_err_set(err, HGF_ENOMEM, "out of memory");
}

int hgf_sweep_get(hgf_store *s, int64_t id, json_t **report, hgf_err *err)
{
    char ids[24];
    snprintf(ids, sizeof ids, "%lld", (long long)id);
    const char *p[] = {ids};
    PGresult *r = NULL;
    int rc = hgf_store_exec(s, "SELECT status, report::text FROM sweeps WHERE id = $1", 1, p, &r,
                            err);
    if (rc)
        return rc;
    if (PQntuples(r) == 0)
        rc = hgf_err_set(err, HGF_ENOTFOUND, "sweep %lld does not exist", (long long)id);
    else if (PQgetisnull(r, 0, 1))
        rc = hgf_err_set(err, HGF_EFAIL, "sweep %lld has no report (status %s)", (long long)id,
                         PQgetvalue(r, 0, 0));
    else if (!(*report = json_loads(PQgetvalue(r, 0, 1), 0, NULL)))
        rc = hgf_err_set(err, HGF_EFAIL, "sweep %lld: stored report is not JSON", (long long)id);
    PQclear(r);
    return rc;
}
