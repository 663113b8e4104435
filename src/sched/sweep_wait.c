/* `sweep --wait`: the sweep job and the syncs and scans it queues, worked
 * in this process by a worker pool limited to the sweep's job, whose claims
 * bring in the jobs of the sweep's current phase (hgf_jobs_claim), with
 * progress read from the database (so it counts the work of every replica,
 * not only this process's). */
#include "hgfleet/sweep.h"
#include "hgfleet/jobs.h"
#include "hgfleet/log.h"
#include "hgfleet/timeutil.h"
#include "hgfleet/worker.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The pool asks after every outcome; the database is asked at most this often. */
#define WATCH_EVERY_MS 200
#define PROGRESS_EVERY_MS 1000

typedef struct waiter {
    hgf_runtime *rt;
    int64_t job_id;
    char ids[24];
    int show;
    char status[16];
    int job_live;
    int64_t last_watch_ms, last_progress_ms;
    char syncs[160];          /* the progress line's sync part... */
    char throttles[24];
    int syncs_final;          /* ...final once the scans began: not asked again */
    char last_line[320];
} waiter;

static const char HEAD_SQL[] =
    "SELECT s.status, EXISTS (SELECT 1 FROM jobs j WHERE j.id = s.job_id "
    "                           AND j.state IN ('queued', 'running')) "
    "  FROM sweeps s WHERE s.id = $1";

/* At most a few thousand syncs: cheap, and final once the phase is past
 * syncing, when it is no longer asked. */
static const char SYNC_PROGRESS_SQL[] =
    "SELECT s.phase IN ('scanning', 'done'), cardinality(s.connection_ids), y.done, y.failed, "
    "       y.images, y.throttles "
    "  FROM sweeps s, "
    "  LATERAL (SELECT count(*) FILTER (WHERE state IN ('done', 'failed')) AS done, "
    "                  count(*) FILTER (WHERE state = 'failed') AS failed, "
    "                  coalesce(sum((result->>'images')::bigint), 0) AS images, "
    "                  coalesce(sum((result->>'throttles')::bigint), 0) AS throttles "
    "             FROM jobs WHERE id = ANY(s.sync_jobs)) y "
    " WHERE s.id = $1";

/* Asked every second through up to a million scans: it reads only the
 * partial indexes of live and failed tagged jobs, and the total stored when
 * the scanning phase began, never scan_jobs. */
static const char SCAN_PROGRESS_SQL[] =
    "SELECT s.scans_waited, greatest(s.scans_waited - l.n, 0), f.n "
    "  FROM sweeps s, "
    "  LATERAL (SELECT count(*) AS n FROM jobs j WHERE j.sweep_id = s.id AND j.kind = 'scan' "
    "              AND j.state IN ('queued', 'running')) l, "
    "  LATERAL (SELECT count(*) AS n FROM jobs j WHERE j.sweep_id = s.id AND j.kind = 'scan' "
    "              AND j.state = 'failed') f "
    " WHERE s.id = $1";

/* ---- progress ----------------------------------------------------------- */

/* The one row a progress statement returns for this sweep, or NULL (progress
 * is best effort). The caller PQclears it. */
static PGresult *progress_row(waiter *w, const char *sql)
{
    const char *p[] = {w->ids};
    PGresult *r = NULL;
    hgf_err e;
    if (hgf_store_exec(w->rt->store, sql, 1, p, &r, &e) || PQntuples(r) != 1) {
        PQclear(r);
        return NULL;
    }
    return r;
}

/* w->syncs and w->throttles; kept once the syncs are all over. */
static int sync_progress(waiter *w)
{
    if (w->syncs_final)
        return 0;
    PGresult *r = progress_row(w, SYNC_PROGRESS_SQL);
    if (!r)
        return -1;
#define V(c) PQgetvalue(r, 0, c)
    snprintf(w->syncs, sizeof w->syncs, "connections %s/%s (%s failed), images %s", V(2), V(1),
             V(3), V(4));
    snprintf(w->throttles, sizeof w->throttles, "%s", V(5));
#undef V
    w->syncs_final = PQgetvalue(r, 0, 0)[0] == 't';
    PQclear(r);
    return 0;
}

static int scan_progress(waiter *w, char *out, size_t n)
{
    PGresult *r = progress_row(w, SCAN_PROGRESS_SQL);
    if (!r)
        return -1;
    snprintf(out, n, "scans %s/%s (%s failed)", PQgetvalue(r, 0, 1), PQgetvalue(r, 0, 0),
             PQgetvalue(r, 0, 2));
    PQclear(r);
    return 0;
}

/* A line when the numbers changed, at most one a second unless forced.
 * Progress is best effort: the watch reports real failures. */
static void print_progress(waiter *w, int force)
{
    int64_t now = hgf_time_now_ms();
    if (!w->show || (!force && now - w->last_progress_ms < PROGRESS_EVERY_MS))
        return;
    w->last_progress_ms = now;
    char scans[96];
    if (sync_progress(w) || scan_progress(w, scans, sizeof scans))
        return;
    char line[320];
    snprintf(line, sizeof line, "sweep: %s, %s, throttles %s\n", w->syncs, scans, w->throttles);
    if (strcmp(line, w->last_line))
        fputs(line, stderr);
    snprintf(w->last_line, sizeof w->last_line, "%s", line);
}

/* ---- the watch ---------------------------------------------------------- */

static int read_head(waiter *w, hgf_err *err)
{
    const char *p[] = {w->ids};
    PGresult *r = NULL;
    int rc = hgf_store_exec(w->rt->store, HEAD_SQL, 1, p, &r, err);
    if (rc)
        return rc;
    if (PQntuples(r) != 1) {
        PQclear(r);
        return hgf_err_set(err, HGF_ENOTFOUND, "sweep %s does not exist", w->ids);
    }
    snprintf(w->status, sizeof w->status, "%s", PQgetvalue(r, 0, 0));
    w->job_live = PQgetvalue(r, 0, 1)[0] == 't';
    PQclear(r);
    return 0;
}

static int watch(hgf_worker_pool *p, void *arg, hgf_err *err)
{
    waiter *w = arg;
    int64_t now = hgf_time_now_ms();
    if (now - w->last_watch_ms < WATCH_EVERY_MS)
        return 1;
    w->last_watch_ms = now;
    int rc = read_head(w, err);
    if (rc)
        return rc;
    print_progress(w, 0);
    if (strcmp(w->status, "running"))
        return hgf_worker_pool_busy(p) > 0; /* over: let our last outcomes be recorded */
    return w->job_live || hgf_worker_pool_busy(p) > 0;
}

/* ---- waiting ------------------------------------------------------------ */

/* The job ended (failed for good) while the sweep still says running. */
static int job_ended(waiter *w, hgf_err *err)
{
    char jid[24];
    snprintf(jid, sizeof jid, "%lld", (long long)w->job_id);
    const char *p[] = {jid};
    PGresult *r = NULL;
    hgf_err e;
    int rc = hgf_store_exec(w->rt->store, "SELECT state, coalesce(last_error, '') FROM jobs "
                                          "WHERE id = $1", 1, p, &r, &e);
    hgf_sweep_mark_failed(w->rt->store, strtoll(w->ids, NULL, 10));
    if (rc)
        return hgf_err_set(err, HGF_EFAIL, "sweep %s failed: its job %s ended early", w->ids, jid);
    rc = hgf_err_set(err, HGF_EFAIL, "sweep %s failed: its job %s is %s: %s", w->ids, jid,
                     PQntuples(r) ? PQgetvalue(r, 0, 0) : "gone",
                     PQntuples(r) ? PQgetvalue(r, 0, 1) : "");
    PQclear(r);
    return rc;
}

int hgf_sweep_wait(hgf_runtime *rt, int64_t id, int64_t job_id, int progress, json_t **report,
                   hgf_err *err)
{
    waiter w = {.rt = rt, .job_id = job_id, .show = progress};
    snprintf(w.ids, sizeof w.ids, "%lld", (long long)id);
    /* Failures are final here, so the sweep sees them now rather than
     * after a server's retry backoff. The sweep's job alone: the claims add
     * its phase's jobs. */
    hgf_worker_opts o = {.concurrency = rt->cfg->workers, .retry = 0, .ids = &job_id, .n_ids = 1};
    int rc = hgf_worker_drain_while(rt, &o, watch, &w, err);
    if (rc)
        return rc;
    print_progress(&w, 1);
    if (!strcmp(w.status, "running"))
        return job_ended(&w, err);
    if (!strcmp(w.status, "failed"))
        return hgf_err_set(err, HGF_EFAIL, "sweep %s failed (its job %lld gave up; see the "
                           "job's last_error in `hgfleet jobs list`)", w.ids, (long long)job_id);
    return hgf_sweep_get(rt->store, id, report, err);
}

int hgf_sweep_run(hgf_runtime *rt, const hgf_sweep_opts *o, int64_t *sweep_id, json_t **report,
                  hgf_err *err)
{
    int64_t job = 0;
    int created = 0;
    int rc = hgf_sweep_enqueue(rt->store, o, sweep_id, &job, &created, err);
    if (rc)
        return rc;
    hgf_log_info("sweep.queued", "sweep=%lld job=%lld created=%d by=%s", (long long)*sweep_id,
                 (long long)job, created, o->requested_by);
    if (!created && o->progress)
        fprintf(stderr, "sweep: sweep %lld is already running; waiting for it\n",
                (long long)*sweep_id);
    return hgf_sweep_wait(rt, *sweep_id, job, o->progress, report, err);
}
