#include "hgfleet/sweep.h"
#include "hgfleet/catalog.h"
#include "hgfleet/buf.h"
#include "hgfleet/jobs.h"
#include "hgfleet/log.h"
#include "hgfleet/report.h"
#include "hgfleet/timeutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define ISO_SQL(col) "to_char(" col " AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"')"
/* A step advances at most this many phases before it yields its worker. */
#define MAX_PHASES_PER_STEP 4

/* ---- small helpers ---------------------------------------------------- */

static void id_text(int64_t id, char *out, size_t n)
{
    snprintf(out, n, "%lld", (long long)id);
}

/* Parses a PostgreSQL bigint[] text ("{1,2,3}"); caller frees *ids. */
static int parse_ids(const char *text, int64_t **ids, int *n, hgf_err *err)
{
    int slots = 1;
    for (const char *c = text; *c; c++)
        slots += *c == ',';
    *ids = calloc((size_t)slots + 1, sizeof **ids);
    *n = 0;
    if (!*ids)
        return hgf_err_set(err, HGF_ENOMEM, "out of memory");
    for (const char *c = text; *c;) {
        char *end;
        long long v = strtoll(c, &end, 10);
        if (end != c) {
            (*ids)[(*n)++] = v;
            c = end;
        } else {
            c++;
        }
    }
    return 0;
}

/* The first column of every row of r as ids, and clears r; caller frees *ids. */
static int take_ids(PGresult *r, int64_t **ids, int *n, hgf_err *err)
{
    *n = PQntuples(r);
    *ids = calloc((size_t)*n + 1, sizeof **ids);
    for (int i = 0; *ids && i < *n; i++)
        (*ids)[i] = strtoll(PQgetvalue(r, i, 0), NULL, 10);
    PQclear(r);
    return *ids ? 0 : hgf_err_set(err, HGF_ENOMEM, "out of memory");
}

static int select_ids(hgf_store *s, const char *sql, int np, const char *const *p, int64_t **ids,
                      int *n, hgf_err *err)
{
    PGresult *r = NULL;
    int rc = hgf_store_exec(s, sql, np, p, &r, err);
    return rc ? rc : take_ids(r, ids, n, err);
}

/* Runs a statement with an id array as $1 and the extra text parameters. */
static int exec_with_ids(hgf_store *s, const char *sql, const int64_t *ids, int n,
                         const char *const *more, int n_more, PGresult **out, hgf_err *err)
{
    hgf_buf arr = HGF_BUF_INIT;
    hgf_jobs_id_array(ids, n, &arr);
    const char *p[6] = {hgf_buf_str(&arr)};
    for (int i = 0; i < n_more && i < 5; i++)
        p[i + 1] = more[i];
    int rc = hgf_store_exec(s, sql, 1 + n_more, p, out, err);
    hgf_buf_free(&arr);
    return rc;
}

static int ids_query(hgf_store *s, const char *sql, const int64_t *in, int n_in, int64_t **ids,
                     int *n, hgf_err *err)
{
    PGresult *r = NULL;
    int rc = exec_with_ids(s, sql, in, n_in, NULL, 0, &r, err);
    if (rc)
        return rc;
    *n = PQntuples(r);
    *ids = calloc((size_t)*n + 1, sizeof **ids);
    for (int i = 0; *ids && i < *n; i++)
        (*ids)[i] = strtoll(PQgetvalue(r, i, 0), NULL, 10);
    PQclear(r);
    return *ids ? 0 : hgf_err_set(err, HGF_ENOMEM, "out of memory");
}

/* A statement whose result is not needed. The phase changes below are
 * guarded by the phase they leave, so when another runner of the same step
 * (a replica whose lease had expired) got there first, they change nothing. */
static int exec_update(hgf_store *s, const char *sql, int np, const char *const *p, hgf_err *err)
{
    PGresult *r = NULL;
    int rc = hgf_store_exec(s, sql, np, p, &r, err);
    PQclear(r);
    return rc;
}

/* ---- enqueueing a sweep ------------------------------------------------ */

static const char ENQUEUE_SQL[] =
    "SELECT sweep_id, job_id, created FROM hgf_sweep_enqueue($1, $2::jsonb, $3::int, "
    "CASE WHEN $4::bigint IS NULL THEN NULL ELSE to_timestamp($4::bigint) END)";

static char *options_text(const hgf_sweep_opts *o)
{
    json_t *j = json_pack("{s:I, s:I, s:i}", "rescan_after_s", (json_int_t)o->rescan_after_s,
                          "active_within_s", (json_int_t)o->active_within_s, "stale_days",
                          o->stale_days);
    char *t = j ? json_dumps(j, JSON_COMPACT) : NULL;
    json_decref(j);
    return t;
}

int hgf_sweep_enqueue(hgf_store *s, const hgf_sweep_opts *o, int64_t *sweep_id, int64_t *job_id,
                      int *created, hgf_err *err)
{
    char *opts = options_text(o);
    char prio[16];
    snprintf(prio, sizeof prio, "%d", HGF_SWEEP_JOB_PRIORITY);
    const char *p[] = {o->requested_by, opts, prio, NULL};
    PGresult *r = NULL;
    int rc = opts ? hgf_store_exec(s, ENQUEUE_SQL, 4, p, &r, err)
                  : hgf_err_set(err, HGF_ENOMEM, "out of memory");
    free(opts);
    if (rc)
        return rc;
    if (PQntuples(r) != 1) {
        PQclear(r);
        return hgf_err_set(err, HGF_EDB, "queuing a sweep returned no sweep");
    }
    *sweep_id = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
    *job_id = strtoll(PQgetvalue(r, 0, 1), NULL, 10);
    *created = PQgetvalue(r, 0, 2)[0] == 't';
    PQclear(r);
    return 0;
}

int hgf_sweep_enqueue_due(hgf_store *s, const hgf_sweep_opts *o, int64_t due, hgf_store_cb cb,
                          void *arg)
{
    char *opts = options_text(o);
    char prio[16], when[24];
    snprintf(prio, sizeof prio, "%d", HGF_SWEEP_JOB_PRIORITY);
    id_text(due, when, sizeof when);
    const char *p[] = {o->requested_by, opts, prio, when};
    int rc = opts ? hgf_store_query(s, ENQUEUE_SQL, 4, p, cb, arg) : HGF_ENOMEM;
    free(opts);
    return rc;
}

void hgf_sweep_mark_failed(hgf_store *s, int64_t id)
{
    char ids[24];
    id_text(id, ids, sizeof ids);
    const char *p[] = {ids};
    hgf_err e;
    if (exec_update(s, "UPDATE sweeps SET status = 'failed', phase = 'done', finished_at = now() "
                       "WHERE id = $1 AND status = 'running'", 1, p, &e))
        hgf_log_warn("sweep.mark_failed", "sweep=%lld %s", (long long)id, e.msg);
}

/* ---- the sweep row ----------------------------------------------------- */

typedef struct sweep_row {
    int64_t id;
    char ids[24];           /* id as text, for parameters */
    char status[16], phase[16], started[40];
    hgf_sweep_opts o;
    int64_t *conns, *syncs, *failed;
    int n_conns, n_syncs, n_failed;
    long scans_queued;
} sweep_row;

static void row_free(sweep_row *w)
{
    free(w->conns);
    free(w->syncs);
    free(w->failed);
    w->conns = w->syncs = w->failed = NULL;
}

static void read_options(sweep_row *w, const char *text)
{
    json_t *j = json_loads(text, 0, NULL);
    json_t *v;
    w->o.rescan_after_s = HGF_SWEEP_DEFAULT_RESCAN_S;
    w->o.active_within_s = HGF_SWEEP_DEFAULT_ACTIVE_S;
    w->o.stale_days = HGF_REPORT_STALE_DAYS;
    if (json_is_integer(v = json_object_get(j, "rescan_after_s")))
        w->o.rescan_after_s = json_integer_value(v);
    if (json_is_integer(v = json_object_get(j, "active_within_s")))
        w->o.active_within_s = json_integer_value(v);
    if (json_is_integer(v = json_object_get(j, "stale_days")))
        w->o.stale_days = (int)json_integer_value(v);
    json_decref(j);
}

/* Status and phase only; the arrays when `full` (they can be long). */
static int row_load(hgf_store *s, sweep_row *w, int full, hgf_err *err)
{
    const char *p[] = {w->ids};
    PGresult *r = NULL;
    int rc = hgf_store_exec(s,
                            full ? "SELECT status, phase, " ISO_SQL("started_at") ", options::text, "
                                   "scans_queued, connection_ids::text, sync_jobs::text, "
                                   "failed_ids::text FROM sweeps WHERE id = $1"
                                 : "SELECT status, phase FROM sweeps WHERE id = $1",
                            1, p, &r, err);
    if (rc)
        return rc;
    if (PQntuples(r) != 1) {
        PQclear(r);
        return hgf_err_set(err, HGF_ENOTFOUND, "sweep %s does not exist", w->ids);
    }
    snprintf(w->status, sizeof w->status, "%s", PQgetvalue(r, 0, 0));
    snprintf(w->phase, sizeof w->phase, "%s", PQgetvalue(r, 0, 1));
    if (full) {
        snprintf(w->started, sizeof w->started, "%s", PQgetvalue(r, 0, 2));
        read_options(w, PQgetvalue(r, 0, 3));
        w->scans_queued = strtol(PQgetvalue(r, 0, 4), NULL, 10);
        row_free(w);
        rc = parse_ids(PQgetvalue(r, 0, 5), &w->conns, &w->n_conns, err);
        if (!rc)
            rc = parse_ids(PQgetvalue(r, 0, 6), &w->syncs, &w->n_syncs, err);
        if (!rc)
            rc = parse_ids(PQgetvalue(r, 0, 7), &w->failed, &w->n_failed, err);
    }
    PQclear(r);
    return rc;
}

/* ---- phase start: every live connection's sync, with posture -------- */

/* A sync already queued for a connection is waited for, not doubled; it
 * only learns to collect posture too. */
static const char POSTURE_SQL[] =
    "UPDATE jobs SET payload = payload || '{\"posture\": true}', updated_at = now() "
    " WHERE dedup_key IN (SELECT 'sync:' || c FROM unnest($1::bigint[]) c) "
    "   AND state = 'queued' AND payload->'posture' IS DISTINCT FROM 'true'::jsonb";

/* The syncs are tagged with the sweep (the ones already live too, even when
 * an older sweep had tagged them): the sweep's checks count its live jobs
 * through that tag and the jobs_sweep_live index, never through the array. */
static const char ENQUEUE_SYNCS_SQL[] =
    "WITH c AS (SELECT unnest($1::bigint[]) AS id), "
    "ins AS (INSERT INTO jobs (kind, payload, priority, dedup_key, sweep_id) "
    " SELECT 'sync', jsonb_build_object('connection_id', id, 'posture', true), $2::int, "
    "        'sync:' || id, $3::bigint FROM c "
    " ON CONFLICT (dedup_key) WHERE state IN ('queued', 'running') DO NOTHING RETURNING id), "
    "old AS (UPDATE jobs j SET sweep_id = $3::bigint FROM c "
    " WHERE j.dedup_key = 'sync:' || c.id AND j.state IN ('queued', 'running') RETURNING j.id) "
    "SELECT id FROM ins UNION SELECT id FROM old ORDER BY 1";

/* Queues (or finds) the sync of every connection; *jobs are their job ids. */
static int enqueue_syncs(hgf_store *s, const sweep_row *w, const int64_t *conns, int n_conns,
                         int64_t **jobs, int *n_jobs, hgf_err *err)
{
    char prio[16];
    snprintf(prio, sizeof prio, "%d", HGF_SWEEP_SYNC_PRIORITY);
    const char *more[] = {prio, w->ids};
    PGresult *r = NULL;
    int rc = exec_with_ids(s, POSTURE_SQL, conns, n_conns, NULL, 0, &r, err);
    PQclear(r);
    if (rc)
        return rc;
    rc = exec_with_ids(s, ENQUEUE_SYNCS_SQL, conns, n_conns, more, 2, &r, err);
    return rc ? rc : take_ids(r, jobs, n_jobs, err);
}

static int save_syncing(hgf_store *s, const sweep_row *w, const int64_t *conns, int n_conns,
                        const int64_t *jobs, int n_jobs, hgf_err *err)
{
    hgf_buf a = HGF_BUF_INIT, b = HGF_BUF_INIT;
    hgf_jobs_id_array(conns, n_conns, &a);
    hgf_jobs_id_array(jobs, n_jobs, &b);
    const char *p[] = {w->ids, hgf_buf_str(&a), hgf_buf_str(&b)};
    int rc = exec_update(s, "UPDATE sweeps SET phase = 'syncing', connection_ids = $2::bigint[], "
                            "sync_jobs = $3::bigint[] WHERE id = $1 AND phase = 'start'",
                         3, p, err);
    hgf_buf_free(&a);
    hgf_buf_free(&b);
    return rc;
}

static int phase_start(hgf_store *s, sweep_row *w, hgf_err *err)
{
    int64_t *conns = NULL, *jobs = NULL;
    int n_conns = 0, n_jobs = 0;
    int rc = select_ids(s, "SELECT id FROM connections WHERE removed_at IS NULL ORDER BY id", 0,
                        NULL, &conns, &n_conns, err);
    if (!rc)
        rc = enqueue_syncs(s, w, conns, n_conns, &jobs, &n_jobs, err);
    if (!rc)
        rc = save_syncing(s, w, conns, n_conns, jobs, n_jobs, err);
    if (!rc)
        hgf_log_info("sweep.syncing", "sweep=%s connections=%d syncs=%d", w->ids, n_conns, n_jobs);
    free(conns);
    free(jobs);
    return rc;
}

/* ---- waiting ----------------------------------------------------------- */

/* The kind of job a phase waits for. */
static const char *phase_kind(const char *phase)
{
    return !strcmp(phase, "syncing") ? "sync" : "scan";
}

/* One range probe of the jobs_sweep_live index, however many jobs the
 * sweep has: this runs every HGF_SWEEP_STEP_DELAY_S. The kind keeps a phase
 * from waiting for the other phase's jobs (scans tagged by a step that died
 * before it left the syncing phase). Scans parked in a long retry backoff by
 * a server are not waited for: the report shows those images unscanned
 * rather than hold the sweep. A running job is always waited for: it was
 * claimed once due, so its run_at is past. ORDER BY, which only that index
 * serves presorted, rather than EXISTS: EXISTS would let the planner prefer
 * walking every live job of the queue (jobs_state_id) when it believes most
 * of them are this sweep's. */
static const char LIVE_SQL[] =
    "SELECT run_at FROM jobs WHERE sweep_id = $1::bigint AND kind = $2::text "
    "   AND state IN ('queued', 'running') "
    "   AND run_at <= CASE WHEN $2::text = 'sync' THEN 'infinity'::timestamptz "
    "                      ELSE now() + interval '30 seconds' END "
    " ORDER BY run_at LIMIT 1";

static int any_live(hgf_store *s, const sweep_row *w, int *live, hgf_err *err)
{
    const char *p[] = {w->ids, phase_kind(w->phase)};
    PGresult *r = NULL;
    int rc = hgf_store_exec(s, LIVE_SQL, 2, p, &r, err);
    if (rc)
        return rc;
    *live = PQntuples(r) > 0;
    PQclear(r);
    return 0;
}

/* ---- phase syncing -> scanning ------------------------------------------ */

/* Digests due a scan: never scanned ok, or last ok scan older than the
 * rescan window and pushed within the active window (old images are not
 * rescanned, which bounds a sweep's cost). Scans already live keep their
 * job (and its priority). Each job carries the window's start: a scan that
 * ends after this statement's snapshot is not seen here, and its job no
 * longer dedups, so the scan's open checks again (OPEN_SQL, scan.c). */
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
    "ins AS (INSERT INTO jobs (kind, payload, priority, dedup_key, sweep_id) "
    " SELECT 'scan', jsonb_build_object('connection_id', cid, 'image_id', iid, 'repository', repo, "
    "        'digest', digest, 'reason', 'sweep', "
    "        'fresh_after', now() - make_interval(secs => $2::bigint)), $4::int, "
    "        'scan:' || registry || '/' || repo || '@' || digest, $5::bigint "
    "   FROM cand ON CONFLICT (dedup_key) WHERE state IN ('queued', 'running') DO NOTHING RETURNING id) "
    "SELECT count(*) FROM ins";

/* Every other scan job live for these connections becomes the sweep's too:
 * the ones their syncs queued for new digests, push scans, and scans an
 * older sweep had tagged. Ours were tagged when inserted and are not
 * written twice. */
static const char TAG_SCANS_SQL[] =
    "UPDATE jobs SET sweep_id = $2::bigint WHERE kind = 'scan' AND state IN ('queued', 'running') "
    "   AND (payload->>'connection_id')::bigint = ANY($1::bigint[]) "
    "   AND run_at <= now() + interval '30 seconds' AND sweep_id IS DISTINCT FROM $2::bigint";

/* The scans waited for, once: kept as the sweep's record, and their number
 * is the total that progress counts against. */
static const char SAVE_SCANNING_SQL[] =
    "UPDATE sweeps s SET phase = 'scanning', failed_ids = $2::bigint[], "
    "       scans_queued = scans_queued + $3::bigint, scan_jobs = w.ids, "
    "       scans_waited = cardinality(w.ids) "
    "  FROM (SELECT coalesce(array_agg(id ORDER BY id), '{}') AS ids FROM jobs "
    "         WHERE sweep_id = $1::bigint AND kind = 'scan' AND state IN ('queued', 'running') "
    "           AND run_at <= now() + interval '30 seconds') w "
    " WHERE s.id = $1::bigint AND s.phase = 'syncing' RETURNING s.scans_waited";

/* Whoever ran a sync (here or a server), its final state decides. */
static const char FAILED_SQL[] =
    "SELECT DISTINCT (payload->>'connection_id')::bigint FROM jobs "
    " WHERE id = ANY($1::bigint[]) AND state <> 'done' ORDER BY 1";

static int ok_connections(const sweep_row *w, int64_t **ok, int *n, hgf_err *err)
{
    *ok = calloc((size_t)w->n_conns + 1, sizeof **ok);
    *n = 0;
    if (!*ok)
        return hgf_err_set(err, HGF_ENOMEM, "out of memory");
    for (int i = 0; i < w->n_conns; i++) {
        int bad = 0;
        for (int k = 0; k < w->n_failed; k++)
            bad |= w->failed[k] == w->conns[i];
        if (!bad)
            (*ok)[(*n)++] = w->conns[i];
    }
    return 0;
}

static int enqueue_scans(hgf_store *s, const sweep_row *w, const int64_t *ok, int n_ok,
                         long *queued, hgf_err *err)
{
    char rescan[24], active[24], prio[8];
    id_text(w->o.rescan_after_s, rescan, sizeof rescan);
    id_text(w->o.active_within_s, active, sizeof active);
    snprintf(prio, sizeof prio, "%d", HGF_SWEEP_SCAN_PRIORITY);
    const char *more[] = {rescan, active, prio, w->ids};
    PGresult *r = NULL;
    int rc = exec_with_ids(s, ENQUEUE_SCANS_SQL, ok, n_ok, more, 4, &r, err);
    if (rc)
        return rc;
    *queued = strtol(PQgetvalue(r, 0, 0), NULL, 10);
    PQclear(r);
    return 0;
}

static int tag_scans(hgf_store *s, const sweep_row *w, const int64_t *ok, int n_ok, hgf_err *err)
{
    const char *more[] = {w->ids};
    PGresult *r = NULL;
    int rc = exec_with_ids(s, TAG_SCANS_SQL, ok, n_ok, more, 1, &r, err);
    PQclear(r);
    return rc;
}

/* *waited: the scans the scanning phase waits for; 0 when another runner of
 * this step had already moved the phase on. */
static int save_scanning(hgf_store *s, const sweep_row *w, long queued, long *waited,
                         hgf_err *err)
{
    hgf_buf f = HGF_BUF_INIT;
    hgf_jobs_id_array(w->failed, w->n_failed, &f);
    char q[24];
    id_text(queued, q, sizeof q);
    const char *p[] = {w->ids, hgf_buf_str(&f), q};
    PGresult *r = NULL;
    int rc = hgf_store_exec(s, SAVE_SCANNING_SQL, 3, p, &r, err);
    hgf_buf_free(&f);
    *waited = !rc && PQntuples(r) == 1 ? strtol(PQgetvalue(r, 0, 0), NULL, 10) : 0;
    PQclear(r);
    return rc;
}

static int phase_scans(hgf_store *s, sweep_row *w, hgf_err *err)
{
    int rc = row_load(s, w, 1, err);
    free(w->failed);
    w->failed = NULL;
    if (!rc)
        rc = ids_query(s, FAILED_SQL, w->syncs, w->n_syncs, &w->failed, &w->n_failed, err);
    int64_t *ok = NULL;
    int n_ok = 0;
    long queued = 0, waited = 0;
    if (!rc)
        rc = ok_connections(w, &ok, &n_ok, err);
    if (!rc)
        rc = enqueue_scans(s, w, ok, n_ok, &queued, err);
    if (!rc)
        rc = tag_scans(s, w, ok, n_ok, err);
    if (!rc)
        rc = save_scanning(s, w, queued, &waited, err);
    if (!rc)
        hgf_log_info("sweep.scanning", "sweep=%s failed_connections=%d scans_queued=%ld "
                     "scans_waited_for=%ld", w->ids, w->n_failed, queued, waited);
    free(ok);
    return rc;
}

/* ---- phase scanning -> done: the report ------------------------------ */

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

/* Partial when a sync failed, or when the report found a connection whose
 * scans were refused (hgf_report_build's "failed" rows count both). */
static const char *status_of(const sweep_row *w, const json_t *body)
{
    json_int_t bad = json_integer_value(
        json_object_get(json_object_get(body, "totals"), "connections_failed"));
    return w->n_failed || bad > 0 ? "partial" : "complete";
}

static json_t *report_of(const sweep_row *w, json_t *body, const char *finished,
                         const char *status)
{
    json_t *r = json_pack("{s:I, s:s, s:s, s:s, s:I}", "sweep_id", (json_int_t)w->id,
                          "started_at", w->started, "finished_at", finished, "status", status,
                          "scans_queued", (json_int_t)w->scans_queued);
    if (r)
        json_object_update(r, body);
    return r;
}

static int phase_finish(hgf_store *s, sweep_row *w, hgf_err *err)
{
    json_t *body = NULL;
    int rc = row_load(s, w, 1, err);
    if (!rc)
        rc = hgf_report_build(s, w->conns, w->n_conns, w->failed, w->n_failed, w->o.stale_days,
                              &body, err);
    if (rc)
        return rc;
    char finished[32];
    hgf_time_format_iso(time(NULL), finished, sizeof finished);
    const char *status = status_of(w, body);
    json_t *r = report_of(w, body, finished, status);
    json_decref(body);
    char *text = r ? stored_text(r) : NULL;
    json_decref(r);
    const char *p[] = {w->ids, status, text, finished};
    rc = text ? exec_update(s, "UPDATE sweeps SET status = $2, report = $3::jsonb, "
                               "finished_at = $4::timestamptz, phase = 'done' "
                               "WHERE id = $1 AND phase = 'scanning'",
                            4, p, err)
              : hgf_err_set(err, HGF_ENOMEM, "out of memory");
    free(text);
    if (!rc)
        hgf_log_info("sweep.done", "sweep=%s status=%s connections=%d failed_connections=%d "
                     "scans_queued=%ld", w->ids, status, w->n_conns, w->n_failed,
                     w->scans_queued);
    return rc;
}

/* ---- the step ----------------------------------------------------------- */

static json_t *step_result(const sweep_row *w)
{
    return json_pack("{s:I, s:s, s:s}", "sweep_id", (json_int_t)w->id, "phase", w->phase,
                     "status", w->status);
}

/* One phase forward, or *waiting when the phase's jobs are still live. */
static int advance(hgf_store *s, sweep_row *w, int *waiting, hgf_err *err)
{
    int live = 0;
    *waiting = 0;
    if (!strcmp(w->phase, "start"))
        return phase_start(s, w, err);
    int rc = any_live(s, w, &live, err);
    if (rc || live) {
        *waiting = live;
        return rc;
    }
    return !strcmp(w->phase, "syncing") ? phase_scans(s, w, err) : phase_finish(s, w, err);
}

int hgf_sweep_step(hgf_runtime *rt, int64_t id, int *again_s, json_t **result, hgf_err *err)
{
    sweep_row w = {.id = id};
    id_text(id, w.ids, sizeof w.ids);
    *again_s = 0;
    *result = NULL;
    int rc = 0;
    for (int i = 0; !rc && i < MAX_PHASES_PER_STEP; i++) {
        int waiting = 0;
        rc = row_load(rt->store, &w, 0, err);
        if (rc || strcmp(w.status, "running") || !strcmp(w.phase, "done"))
            break;
        rc = advance(rt->store, &w, &waiting, err);
        if (!rc && waiting) {
            *again_s = HGF_SWEEP_STEP_DELAY_S;
            break;
        }
    }
    if (!rc && !*again_s && !strcmp(w.status, "running") && strcmp(w.phase, "done"))
        *again_s = HGF_SWEEP_STEP_DELAY_S; /* phases left for the next step: yield the worker */
    if (!rc)
        *result = step_result(&w);
    row_free(&w);
    return rc;
}

/* ---- reading back ---------------------------------------------------- */

/* The catalog holds the SQL and JSON that the API serves too. */
int hgf_sweep_list(hgf_store *s, int limit, json_t **out, hgf_err *err)
{
    hgf_catalog_query q;
    return hgf_catalog_exec(s, hgf_catalog_sweeps(&q, limit), out, err);
}

int hgf_sweep_get(hgf_store *s, int64_t id, json_t **report, hgf_err *err)
{
    hgf_catalog_query q;
    return hgf_catalog_exec(s, hgf_catalog_sweep_report(&q, id), report, err);
}
