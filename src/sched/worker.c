#include "hgfleet/worker.h"
#include "hgfleet/jobs.h"
#include "hgfleet/log.h"
#include "hgfleet/metrics.h"
#include "hgfleet/scan.h"
#include "hgfleet/sweep.h"
#include "hgfleet/sync.h"
#include "hgfleet/timeutil.h"

#include <ev.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define POLL_S 1.5
#define REQUEUE_EVERY_MS 1000
#define DRAIN_TICK_S 0.25
/* Push scans a pool that works any job claims beyond its free workers, to
 * wait here for one: two seconds of push events at the 500/s the design
 * targets. Claiming them is cheap (a row each, leases renewed in one
 * statement); leaving them queued makes every push wait for a worker to
 * free, and the queue grows without bound once a burst outruns the scans.
 * It also bounds the scans held back by their registry's bound. */
#define CLAIM_AHEAD 1024
/* A pool with idle workers and nothing to claim says so on WANT_CHANNEL (at
 * most every WANT_EVERY_MS); a pool holding claimed jobs beyond what its
 * workers start next hands half of the rest back, then claims nothing ahead
 * for HANDBACK_COOL_MS so that the asker, not itself, takes them. */
#define WANT_CHANNEL "hgfleet_want"
#define WANT_EVERY_MS 1000
#define HANDBACK_COOL_MS 1000
#define REG_BUCKETS 64
/* A run that failed on the database is retried at once, then after 1, 2, 4
 * ... s: this many doublings at most (then the ordinary backoff, which is
 * longer by then anyway). */
#define DB_RETRY_DOUBLINGS 8

/* ---- executors ------------------------------------------------------- */

static json_t *sync_result(const hgf_sync_stats *st)
{
    json_t *o = json_pack("{s:I, s:s, s:i, s:i, s:i, s:i, s:i, s:i, s:i, s:f}", "connection_id",
                          (json_int_t)st->connection_id, "registry", st->registry, "repositories",
                          st->repositories, "images", st->images, "pages", st->pages, "api_calls",
                          st->api_calls, "images_filtered", st->images_filtered, "throttles",
                          st->throttles, "retries", st->retries, "seconds", st->seconds);
    if (st->applied)
        json_object_set(o, "applied", st->applied);
    if (st->diagnosis)
        json_object_set(o, "diagnosis", st->diagnosis);
    return o;
}

static void on_sync_done(int rc, const hgf_err *err, const hgf_sync_stats *st, void *arg)
{
    json_t *result = sync_result(st);
    hgf_worker_job_done(arg, rc ? err : NULL, rc ? hgf_worker_error_is_permanent(err) : 0, result);
    json_decref(result);
}

static int exec_sync(hgf_runtime *rt, const hgf_job *job, hgf_worker_job *wj, void **run,
                     hgf_err *err)
{
    hgf_sync *s = NULL;
    int rc = hgf_sync_start_job(rt, job->payload, job->id, on_sync_done, wj, &s, err);
    *run = s;
    return rc;
}

static void cancel_sync(void *run)
{
    hgf_sync_cancel(run);
}

static void free_sync(void *run)
{
    hgf_sync_free(run);
}

static void on_scan_done(const char *status, const hgf_err *err, int retry, json_t *result,
                         void *arg)
{
    /* A skipped scan (image gone) is a success of the job: no retry storm. */
    int failed = !strcmp(status, "failed");
    hgf_worker_job_done(arg, failed ? err : NULL, failed && !retry, result);
}

static int exec_scan(hgf_runtime *rt, const hgf_job *job, hgf_worker_job *wj, void **run,
                     hgf_err *err)
{
    hgf_scan *s = NULL;
    int rc = hgf_scan_start(rt, job->id, job->attempts, job->payload, on_scan_done, wj, &s, err);
    *run = s;
    return rc;
}

static void cancel_scan(void *run)
{
    hgf_scan_cancel(run);
}

static void free_scan(void *run)
{
    hgf_scan_free(run);
}

static int scan_external(const void *run)
{
    return hgf_scan_in_scanner(run);
}

/* One step of a sweep, run here and now (the step only issues short
 * statements); the job comes back in a second while the sweep waits. It
 * has ended by the time this returns, so there is nothing to cancel. */
static int exec_sweep(hgf_runtime *rt, const hgf_job *job, hgf_worker_job *wj, void **run,
                      hgf_err *err)
{
    *run = NULL;
    json_t *sid = json_object_get(job->payload, "sweep_id");
    if (!json_is_integer(sid))
        return hgf_err_set(err, HGF_EINPUT, "job %lld: payload has no integer sweep_id",
                           (long long)job->id);
    int again_s = 0;
    json_t *result = NULL;
    int rc = hgf_sweep_step(rt, json_integer_value(sid), &again_s, &result, err);
    if (rc) {
        /* A sweep whose job will not run again must not stay "running". */
        if (hgf_worker_error_is_permanent(err) || job->attempts >= job->max_attempts)
            hgf_sweep_mark_failed(rt->store, json_integer_value(sid));
        return rc;
    }
    if (again_s > 0)
        hgf_worker_job_continue(wj, again_s, result);
    else
        hgf_worker_job_done(wj, NULL, 0, result);
    json_decref(result);
    return 0;
}

/* One row per kind this build can run. */
static const hgf_worker_executor EXECUTORS[] = {
    {"sync", exec_sync, cancel_sync, free_sync, NULL},
    {"scan", exec_scan, cancel_scan, free_scan, scan_external},
    {"sweep", exec_sweep, NULL, NULL, NULL},
};
#define N_EXECUTORS ((int)(sizeof EXECUTORS / sizeof EXECUTORS[0]))

const hgf_worker_executor *hgf_worker_executor_find(const char *kind)
{
    for (int i = 0; i < N_EXECUTORS; i++)
        if (!strcmp(EXECUTORS[i].kind, kind))
            return &EXECUTORS[i];
    return NULL;
}

/* botocore's throttling and transient codes, plus expired credentials, which
 * a later run refreshes. */
static const char *const RETRYABLE_AWS[] = {
    "Throttling", "ThrottlingException", "ThrottledException", "RequestThrottledException",
    "TooManyRequestsException", "RequestLimitExceeded", "SlowDown", "PriorRequestNotComplete",
    "RequestTimeout", "RequestTimeoutException", "InternalError", "InternalFailure",
    "InternalServerError", "ServerException", "ServiceUnavailable", "ServiceUnavailableException",
    "ExpiredToken", "ExpiredTokenException", "IDPCommunicationError",
};

int hgf_worker_error_is_permanent(const hgf_err *err)
{
    switch (err->code) {
    case HGF_EINPUT:
    case HGF_ENOTFOUND:
    case HGF_EEXIST:
        return 1;
    case HGF_EAWS:
        if (!err->aws_code[0]) /* a 5xx without an error body */
            return 0;
        for (size_t i = 0; i < sizeof RETRYABLE_AWS / sizeof *RETRYABLE_AWS; i++)
            if (!strcmp(err->aws_code, RETRYABLE_AWS[i]))
                return 0;
        return 1;
    default:
        return 0;
    }
}

/* ---- the pool -------------------------------------------------------- */

/* CANCELLED: released at shutdown and stopped; its executor's run is freed
 * with the pool. */
enum phase { PH_READY, PH_RUNNING, PH_RECORDING, PH_UNRECORDED, PH_CANCELLED, N_PHASES };

struct hgf_worker_job {
    hgf_worker_pool *pool;
    hgf_worker_job *prev, *next;
    hgf_worker_job *ready_next; /* while ready: the next to start */
    hgf_job job;
    enum phase phase;
    int64_t registry;      /* a scan's connection (its registry's bound), else 0 */
    void *run;             /* the executor's running job, while it may be cancelled */
    int ended;             /* the executor reported its end (heard or not) */
    int64_t started_ms;
    char *error, *result;  /* the outcome, kept until it is recorded */
    int retry_after;
    int continue_in;       /* >= 0: not ended, queued again that many seconds on */
};

/* Scans of one registry held here: running, and ready to start. */
typedef struct reg_slot {
    struct reg_slot *next;
    int64_t id;
    int running, ready;
} reg_slot;

struct hgf_worker_pool {
    hgf_runtime *rt;
    struct ev_loop *loop;   /* rt->loop, kept for after hgf_runtime_close */
    hgf_worker_opts o;
    int64_t *ids;
    const char *kinds[N_EXECUTORS];
    hgf_worker_job *head;
    hgf_worker_job *ready_head, *ready_tail; /* highest priority first, then oldest */
    int count[N_PHASES];
    reg_slot *regs[REG_BUCKETS];
    int per_registry;       /* HGFLEET_SCANS_PER_REGISTRY */
    int ready_dirty;        /* a ready job may have become startable */
    int claiming, claim_limit, claim_any, want_claim, stopping, listening, wanting;
    int releasing;          /* hgf_worker_pool_release's statement is in flight */
    long recorded;          /* outcomes recorded so far (drain watches it) */
    int64_t last_requeue_ms, last_want_ms, cool_until_ms;
    char last_claim_error[sizeof(((hgf_err *)0)->msg)];
    ev_timer poll, heartbeat;
};

/* ---- per-registry bounds ---------------------------------------------- */

static reg_slot **reg_link(hgf_worker_pool *p, int64_t id)
{
    reg_slot **at = &p->regs[(uint64_t)id % REG_BUCKETS];
    while (*at && (*at)->id != id)
        at = &(*at)->next;
    return at;
}

static const reg_slot *reg_find(const hgf_worker_pool *p, int64_t id)
{
    return *reg_link((hgf_worker_pool *)p, id);
}

/* Counts a scan in or out of a phase; only ready and running count. A
 * registry is forgotten when nothing of it is held. */
static void reg_count(hgf_worker_job *wj, enum phase ph, int delta)
{
    hgf_worker_pool *p = wj->pool;
    if (!wj->registry || (ph != PH_READY && ph != PH_RUNNING))
        return;
    reg_slot **at = reg_link(p, wj->registry);
    if (!*at && delta > 0 && (*at = calloc(1, sizeof **at)))
        (*at)->id = wj->registry;
    reg_slot *r = *at;
    if (!r) /* out of memory: the scan goes unbounded rather than stuck */
        return;
    *(ph == PH_READY ? &r->ready : &r->running) += delta;
    if (r->ready <= 0 && r->running <= 0) {
        *at = r->next;
        free(r);
    }
}

static int may_start(const hgf_worker_pool *p, const hgf_worker_job *wj)
{
    const reg_slot *r = wj->registry ? reg_find(p, wj->registry) : NULL;
    return !r || r->running < p->per_registry;
}

/* Ready scans that must wait for their registry: they hold no worker. */
static int blocked_ready(const hgf_worker_pool *p)
{
    int n = 0;
    for (int b = 0; b < REG_BUCKETS; b++)
        for (const reg_slot *r = p->regs[b]; r; r = r->next) {
            int room = p->per_registry - r->running;
            n += r->ready > room ? r->ready - (room > 0 ? room : 0) : 0;
        }
    return n;
}

static void free_regs(hgf_worker_pool *p)
{
    for (int b = 0; b < REG_BUCKETS; b++)
        while (p->regs[b]) {
            reg_slot *r = p->regs[b];
            p->regs[b] = r->next;
            free(r);
        }
}

/* ---- jobs and phases ---------------------------------------------------- */

static void set_phase(hgf_worker_job *wj, enum phase ph)
{
    hgf_worker_pool *p = wj->pool;
    if (wj->phase == PH_RUNNING)
        p->ready_dirty = 1; /* a worker, maybe a registry's slot, is free */
    reg_count(wj, wj->phase, -1);
    p->count[wj->phase]--;
    wj->phase = ph;
    p->count[ph]++;
    reg_count(wj, ph, 1);
}

static void link_job(hgf_worker_pool *p, hgf_worker_job *wj)
{
    wj->next = p->head;
    if (p->head)
        p->head->prev = wj;
    p->head = wj;
    p->count[wj->phase]++;
    reg_count(wj, wj->phase, 1);
}

/* Ready jobs start by priority, then in claim order: a push scan claimed
 * ahead starts before sweep work claimed later, and never after it. */
static void ready_push(hgf_worker_pool *p, hgf_worker_job *wj)
{
    hgf_worker_job **at = &p->ready_head;
    if (p->ready_tail && p->ready_tail->job.priority >= wj->job.priority)
        at = &p->ready_tail->ready_next;
    else
        while (*at && (*at)->job.priority >= wj->job.priority)
            at = &(*at)->ready_next;
    wj->ready_next = *at;
    *at = wj;
    if (!wj->ready_next)
        p->ready_tail = wj;
    p->ready_dirty = 1;
}

static void ready_unlink(hgf_worker_pool *p, hgf_worker_job *wj)
{
    hgf_worker_job **at = &p->ready_head, *before = NULL;
    while (*at && *at != wj) {
        before = *at;
        at = &(*at)->ready_next;
    }
    if (!*at)
        return;
    *at = wj->ready_next;
    if (p->ready_tail == wj)
        p->ready_tail = before;
    wj->ready_next = NULL;
}

/* Stops a running job for good: its executor's run never calls back, and
 * is freed with the job. */
static void cancel_job(hgf_worker_job *wj)
{
    const hgf_worker_executor *x = hgf_worker_executor_find(wj->job.kind);
    if (x && x->cancel && wj->run)
        x->cancel(wj->run);
    set_phase(wj, PH_CANCELLED);
}

/* A cancelled run is freed here, when the pool is: after hgf_runtime_close,
 * so nothing it had in flight can still call it. */
static void free_job(hgf_worker_job *wj)
{
    hgf_worker_pool *p = wj->pool;
    const hgf_worker_executor *x = hgf_worker_executor_find(wj->job.kind);
    if (wj->phase == PH_CANCELLED && x && x->release && wj->run)
        x->release(wj->run);
    if (wj->phase == PH_READY)
        ready_unlink(p, wj);
    if (wj->prev)
        wj->prev->next = wj->next;
    else
        p->head = wj->next;
    if (wj->next)
        wj->next->prev = wj->prev;
    reg_count(wj, wj->phase, -1);
    p->count[wj->phase]--;
    json_decref(wj->job.payload);
    free(wj->error);
    free(wj->result);
    free(wj);
}

static hgf_worker_job *first_in(hgf_worker_pool *p, enum phase ph)
{
    for (hgf_worker_job *wj = p->head; wj; wj = wj->next)
        if (wj->phase == ph)
            return wj;
    return NULL;
}

/* Ids of the jobs in phases [from, to]; caller frees. */
static int64_t *collect_ids(const hgf_worker_pool *p, enum phase from, enum phase to, int *n)
{
    int total = 0;
    for (int i = 0; i < N_PHASES; i++)
        total += p->count[i];
    int64_t *ids = malloc(sizeof *ids * (size_t)(total + 1));
    *n = 0;
    for (hgf_worker_job *wj = p->head; ids && wj; wj = wj->next)
        if (wj->phase >= from && wj->phase <= to)
            ids[(*n)++] = wj->job.id;
    return ids;
}

/* ---- recording outcomes ---------------------------------------------- */

static void recorded(PGresult *res, const hgf_err *err, void *arg)
{
    hgf_worker_job *wj = arg;
    hgf_worker_pool *p = wj->pool;
    hgf_err e;
    if (err) { /* the connection went away: record it once it is back */
        PQclear(res);
        set_phase(wj, PH_UNRECORDED);
        return;
    }
    if (hgf_store_check(res, &e))
        hgf_log_error("job.record_failed", "job=%lld kind=%s %s", (long long)wj->job.id,
                      wj->job.kind, e.msg);
    else if (PQntuples(res) == 0)
        hgf_log_warn("job.lease_lost", "job=%lld kind=%s: no longer leased here (another "
                     "replica took it over, or the outcome was recorded before a reconnect)",
                     (long long)wj->job.id, wj->job.kind);
    PQclear(res);
    p->recorded++;
    p->want_claim = !p->stopping;
    free_job(wj);
}

static void record(hgf_worker_job *wj)
{
    hgf_worker_pool *p = wj->pool;
    set_phase(wj, PH_RECORDING);
    int rc = wj->continue_in >= 0
                 ? hgf_jobs_continue(p->rt->store, wj->job.id, p->rt->owner, wj->job.attempts,
                                     wj->continue_in, wj->result, recorded, wj)
                 : hgf_jobs_finish(p->rt->store, wj->job.id, p->rt->owner, wj->job.attempts,
                                   wj->error, wj->retry_after, wj->result, recorded, wj);
    if (rc)
        set_phase(wj, PH_UNRECORDED);
}

static const char *outcome_of(const hgf_worker_job *wj, const hgf_err *err)
{
    if (!err)
        return "done";
    if (wj->retry_after >= 0 && wj->job.attempts < wj->job.max_attempts)
        return "retry";
    return "failed";
}

static void count_outcome(hgf_worker_job *wj, const char *outcome, const hgf_err *err)
{
    hgf_worker_pool *p = wj->pool;
    double secs = (double)(hgf_time_now_ms() - wj->started_ms) / 1000.0;
    char labels[96];
    snprintf(labels, sizeof labels, "kind=\"%s\",outcome=\"%s\"", wj->job.kind, outcome);
    hgf_metrics_inc(p->rt->metrics, "hgfleet_jobs_run_total", labels, 1);
    snprintf(labels, sizeof labels, "kind=\"%s\"", wj->job.kind);
    hgf_metrics_observe(p->rt->metrics, "hgfleet_job_duration_seconds", labels, secs);
    if (!err)
        hgf_log_info("job.done", "job=%lld kind=%s attempt=%d seconds=%.3f", (long long)wj->job.id,
                     wj->job.kind, wj->job.attempts, secs);
    else
        hgf_log_warn(!strcmp(outcome, "retry") ? "job.retry" : "job.failed",
                     "job=%lld kind=%s attempt=%d/%d retry_in=%ds error=%s", (long long)wj->job.id,
                     wj->job.kind, wj->job.attempts, wj->job.max_attempts,
                     !strcmp(outcome, "retry") ? wj->retry_after : -1, err->msg);
}

/* 1 when an end must not be recorded: the job was cancelled (a step
 * already under way when it was finishes unheard), or it ended before. */
static int end_refused(hgf_worker_job *wj)
{
    int refused = wj->phase != PH_RUNNING;
    if (refused && wj->phase != PH_CANCELLED)
        hgf_log_error("job.done_twice", "job=%lld kind=%s ended twice", (long long)wj->job.id,
                      wj->job.kind);
    wj->ended = 1;
    return refused;
}

/* The delay before a failed run's retry. The ordinary backoff (10 s, then
 * doubling) spares a registry that fails or throttles. A run that failed on
 * the database (most often its connection lost in a restart or failover)
 * owes the registry nothing, and its outcome is recorded only once the
 * database answers again: its first retry may start right then, later ones
 * back off from 1 s, doubling, never later than the ordinary backoff. */
static int retry_delay(const hgf_worker_job *wj, const hgf_err *err)
{
    int attempts = wj->job.attempts;
    int ordinary = hgf_jobs_backoff_seconds(attempts);
    if (err->code != HGF_EDB || attempts >= DB_RETRY_DOUBLINGS + 2)
        return ordinary;
    int d = attempts <= 1 ? 0 : 1 << (attempts - 2);
    return d < ordinary ? d : ordinary;
}

void hgf_worker_job_done(hgf_worker_job *wj, const hgf_err *err, int permanent, json_t *result)
{
    hgf_worker_pool *p = wj->pool;
    if (end_refused(wj))
        return;
    wj->retry_after = err && !permanent && p->o.retry ? retry_delay(wj, err) : -1;
    wj->error = err ? strdup(err->msg[0] ? err->msg : "failed") : NULL;
    wj->result = result ? json_dumps(result, JSON_COMPACT) : NULL;
    count_outcome(wj, outcome_of(wj, err), err);
    if (p->o.done)
        p->o.done(wj->job.id, wj->job.kind, err, result, p->o.arg);
    record(wj);
}

void hgf_worker_job_continue(hgf_worker_job *wj, int delay_s, json_t *result)
{
    if (end_refused(wj))
        return;
    wj->continue_in = delay_s < 0 ? 0 : delay_s;
    wj->result = result ? json_dumps(result, JSON_COMPACT) : NULL;
    char labels[96];
    snprintf(labels, sizeof labels, "kind=\"%s\",outcome=\"continue\"", wj->job.kind);
    hgf_metrics_inc(wj->pool->rt->metrics, "hgfleet_jobs_run_total", labels, 1);
    hgf_log_debug("job.continue", "job=%lld kind=%s again_in=%ds", (long long)wj->job.id,
                  wj->job.kind, wj->continue_in);
    record(wj);
}

/* ---- starting -------------------------------------------------------- */

/* A start function may run the loop, and a shutdown there may cancel the
 * job before its run exists: it is cancelled as soon as it does. */
static void keep_run(hgf_worker_job *wj, const hgf_worker_executor *x, void *run)
{
    wj->run = run;
    if (wj->phase == PH_CANCELLED && run && x->cancel)
        x->cancel(run);
}

static void start_job(hgf_worker_pool *p, hgf_worker_job *wj)
{
    ready_unlink(p, wj);
    set_phase(wj, PH_RUNNING);
    wj->started_ms = hgf_time_now_ms();
    hgf_err e;
    hgf_err_clear(&e);
    void *run = NULL;
    const hgf_worker_executor *x = hgf_worker_executor_find(wj->job.kind);
    int rc = x ? x->start(p->rt, &wj->job, wj, &run, &e)
               : hgf_err_set(&e, HGF_EINPUT, "job kind %s has no executor here", wj->job.kind);
    if (rc)
        hgf_worker_job_done(wj, &e, hgf_worker_error_is_permanent(&e), NULL);
    else if (!wj->ended) /* once ended inside start, run is gone */
        keep_run(wj, x, run);
}

/* The first ready job that may start now, by priority and claim order: a
 * scan whose registry is at its bound is passed over, so it holds no worker
 * while another registry's job can run. */
static hgf_worker_job *next_startable(const hgf_worker_pool *p)
{
    for (hgf_worker_job *wj = p->ready_head; wj; wj = wj->ready_next)
        if (may_start(p, wj))
            return wj;
    return NULL;
}

/* Start functions may run the loop (hgf_store_exec), which can free any job
 * but a running one, so the queue is read afresh after each start. The walk
 * only runs when something changed since one found nothing to start. */
static void start_ready(hgf_worker_pool *p)
{
    while (!p->stopping && p->ready_dirty && p->count[PH_RUNNING] < p->o.concurrency) {
        hgf_worker_job *wj = next_startable(p);
        if (!wj) {
            p->ready_dirty = 0;
            return;
        }
        start_job(p, wj);
    }
}

static void retry_unrecorded(hgf_worker_pool *p)
{
    int budget = p->count[PH_UNRECORDED];
    hgf_worker_job *wj;
    while (budget-- > 0 && hgf_store_is_up(p->rt->store) && (wj = first_in(p, PH_UNRECORDED)))
        record(wj);
}

/* ---- claiming -------------------------------------------------------- */

/* Jobs claimed but not started while stopping go straight back; if the
 * store is down, their leases expire instead. */
static void give_back_ready(hgf_worker_pool *p)
{
    int n;
    int64_t *ids = collect_ids(p, PH_READY, PH_READY, &n);
    if (ids && n && hgf_store_is_up(p->rt->store))
        hgf_jobs_release(p->rt->store, p->rt->owner, ids, n, NULL, NULL);
    free(ids);
    hgf_worker_job *wj;
    while ((wj = first_in(p, PH_READY)))
        free_job(wj);
}

static void ignore_result(PGresult *res, const hgf_err *err, void *arg)
{
    PQclear(res);
}

/* Idle workers and nothing to claim: asks the pools holding jobs ahead to
 * hand some back. A pool holding scans its registries' bounds hold back is
 * not idle for want of work, and does not ask. */
static void ask_for_work(hgf_worker_pool *p)
{
    int64_t now = hgf_time_now_ms();
    if (p->o.ids || p->stopping || !p->wanting || blocked_ready(p) > 0 ||
        now - p->last_want_ms < WANT_EVERY_MS)
        return;
    p->last_want_ms = now;
    const char *params[] = {WANT_CHANNEL, p->rt->owner};
    hgf_store_query(p->rt->store, "SELECT pg_notify($1, $2)", 2, params, ignore_result, NULL);
}

static void adopt(hgf_worker_pool *p, hgf_job *job)
{
    hgf_worker_job *wj = calloc(1, sizeof *wj);
    if (!wj) /* its lease expires and another replica runs it */
        return;
    wj->pool = p;
    wj->job = *job;
    job->payload = NULL;
    wj->phase = PH_READY;
    wj->continue_in = -1;
    if (!strcmp(wj->job.kind, "scan") && hgf_scan_connection(wj->job.payload, &wj->registry))
        wj->registry = 0; /* no registry: it fails at start, unbounded */
    link_job(p, wj);
    ready_push(p, wj);
}

static void claimed(hgf_job *jobs, int n, const hgf_err *err, void *arg)
{
    hgf_worker_pool *p = arg;
    p->claiming = 0;
    if (err) {
        if (strcmp(err->msg, p->last_claim_error))
            hgf_log_warn("worker.claim_failed", "%s", err->msg);
        snprintf(p->last_claim_error, sizeof p->last_claim_error, "%s", err->msg);
        return; /* the poll timer tries again */
    }
    p->last_claim_error[0] = '\0';
    for (int i = 0; i < n; i++)
        adopt(p, &jobs[i]);
    hgf_jobs_free(jobs, n);
    if (p->stopping)
        give_back_ready(p);
    else if (n == p->claim_limit) /* a full batch: more may be waiting */
        p->want_claim = 1;
    else if (n < p->claim_any)
        ask_for_work(p);
}

/* Free workers take any job; a scan its registry's bound holds back takes
 * no worker, so it does not count against them. Beyond them, a pool that
 * works any job (not a drain's own ids) holds up to CLAIM_AHEAD push scans
 * until one frees, unless it just handed jobs back. */
static void claim_limits(const hgf_worker_pool *p, int *limit, int *ahead)
{
    int ready = p->count[PH_READY], running = p->count[PH_RUNNING];
    int room = p->o.concurrency + CLAIM_AHEAD - ready - running;
    int free_slots = p->o.concurrency - running - (ready - blocked_ready(p));
    *limit = free_slots < room ? free_slots : room;
    if (*limit < 0)
        *limit = 0;
    int cooling = hgf_time_now_ms() < p->cool_until_ms;
    *ahead = p->o.ids || cooling ? 0 : room - *limit;
    if (*ahead < 0)
        *ahead = 0;
}

static void claim(hgf_worker_pool *p)
{
    if (p->stopping || !p->want_claim || p->claiming || !hgf_store_is_up(p->rt->store))
        return;
    int limit, ahead;
    claim_limits(p, &limit, &ahead);
    if (limit + ahead <= 0)
        return;
    p->want_claim = 0;
    int64_t now = hgf_time_now_ms();
    if (now - p->last_requeue_ms >= REQUEUE_EVERY_MS) {
        p->last_requeue_ms = now;
        hgf_jobs_requeue_expired(p->rt->store, NULL, NULL);
    }
    hgf_jobs_claim_opts o = {.owner = p->rt->owner, .lease_seconds = p->rt->cfg->lease_seconds,
                             .kinds = p->kinds, .n_kinds = N_EXECUTORS, .ids = p->ids,
                             .n_ids = p->o.n_ids, .batch = p->o.batch, .limit = limit,
                             .ahead = ahead,
                             .ahead_min_priority = HGF_JOBS_PUSH_PRIORITY};
    p->claim_limit = limit + ahead;
    p->claim_any = limit;
    if (hgf_jobs_claim(p->rt->store, &o, claimed, p) == 0)
        p->claiming = 1;
}

static void on_notify(const char *channel, const char *payload, void *arg)
{
    hgf_worker_pool *p = arg;
    if (!*payload) {
        p->want_claim = 1;
        return;
    }
    for (int i = 0; i < N_EXECUTORS; i++)
        if (strstr(payload, p->kinds[i]))
            p->want_claim = 1;
}

/* ---- handing jobs back -------------------------------------------------- */

/* The last n ready jobs (lowest priority, claimed last), still linked;
 * caller frees the array. */
static hgf_worker_job **take_ready_tail(hgf_worker_pool *p, int n)
{
    hgf_worker_job **out = malloc(sizeof *out * (size_t)n);
    hgf_worker_job *wj = p->ready_head;
    for (int skip = p->count[PH_READY] - n; out && wj && skip > 0; skip--)
        wj = wj->ready_next;
    for (int i = 0; out && i < n && wj; i++, wj = wj->ready_next)
        out[i] = wj;
    return out;
}

/* Another pool is idle: half of what this one holds beyond one more job per
 * worker goes back to the queue (no attempt counted), and for a while this
 * pool claims nothing ahead, so the idle one takes it. */
static void hand_back(hgf_worker_pool *p)
{
    int64_t now = hgf_time_now_ms();
    int surplus = p->count[PH_READY] - p->o.concurrency;
    if (p->o.ids || p->stopping || surplus <= 0 || now < p->cool_until_ms ||
        !hgf_store_is_up(p->rt->store))
        return;
    int n = (surplus + 1) / 2;
    hgf_worker_job **back = take_ready_tail(p, n);
    int64_t *ids = malloc(sizeof *ids * (size_t)n);
    if (back && ids) {
        for (int i = 0; i < n; i++)
            ids[i] = back[i]->job.id;
        if (hgf_jobs_release(p->rt->store, p->rt->owner, ids, n, NULL, NULL) == 0) {
            for (int i = 0; i < n; i++)
                free_job(back[i]);
            p->cool_until_ms = now + HANDBACK_COOL_MS;
            hgf_log_info("worker.handed_back", "jobs=%d kept=%d", n, p->count[PH_READY]);
        }
    }
    free(back);
    free(ids);
}

static void on_want(const char *channel, const char *payload, void *arg)
{
    hgf_worker_pool *p = arg;
    if (strcmp(payload, p->rt->owner)) /* not our own call */
        hand_back(p);
}

static void on_poll(struct ev_loop *loop, ev_timer *w, int revents)
{
    hgf_worker_pool *p = w->data;
    p->want_claim = !p->stopping;
}

static void on_heartbeat(struct ev_loop *loop, ev_timer *w, int revents)
{
    hgf_worker_pool *p = w->data;
    int n;
    int64_t *ids = collect_ids(p, PH_READY, PH_UNRECORDED, &n);
    if (ids && n && hgf_store_is_up(p->rt->store))
        hgf_jobs_heartbeat(p->rt->store, p->rt->owner, p->rt->cfg->lease_seconds, ids, n);
    free(ids);
}

/* ---- the pool's life ------------------------------------------------- */

static void describe_metrics(hgf_metrics *m)
{
    hgf_metrics_describe(m, "hgfleet_jobs_run_total", HGF_METRIC_COUNTER,
                         "Jobs run by this process, by kind and outcome (done, retry, failed).");
    hgf_metrics_describe(m, "hgfleet_job_duration_seconds", HGF_METRIC_HISTOGRAM,
                         "How long jobs ran here, by kind.");
}

static void listen_all(hgf_worker_pool *p)
{
    hgf_store *s = p->rt->store;
    p->listening = hgf_store_listen(s, HGF_JOBS_CHANNEL, on_notify, p) == 0;
    /* Drains hold only their own jobs: they neither ask nor hand back. */
    p->wanting = !p->o.ids && hgf_store_listen(s, WANT_CHANNEL, on_want, p) == 0;
}

hgf_worker_pool *hgf_worker_pool_new(hgf_runtime *rt, const hgf_worker_opts *o, hgf_err *err)
{
    hgf_worker_pool *p = calloc(1, sizeof *p);
    if (!p || (o->ids && !(p->ids = malloc(sizeof *p->ids * (size_t)(o->n_ids + 1))))) {
        free(p);
        hgf_err_set(err, HGF_ENOMEM, "out of memory");
        return NULL;
    }
    p->rt = rt;
    p->loop = rt->loop;
    p->o = *o;
    if (p->o.concurrency < 1)
        p->o.concurrency = 1;
    p->per_registry = rt->cfg->scans_per_registry > 0 ? rt->cfg->scans_per_registry : 1;
    if (o->ids)
        memcpy(p->ids, o->ids, sizeof *p->ids * (size_t)o->n_ids);
    p->o.ids = p->ids;
    for (int i = 0; i < N_EXECUTORS; i++)
        p->kinds[i] = EXECUTORS[i].kind;
    p->want_claim = 1;
    describe_metrics(rt->metrics);
    listen_all(p);
    ev_timer_init(&p->poll, on_poll, POLL_S, POLL_S);
    double hb = rt->cfg->lease_seconds / 3.0;
    ev_timer_init(&p->heartbeat, on_heartbeat, hb, hb);
    p->poll.data = p->heartbeat.data = p;
    ev_timer_start(p->loop, &p->poll);
    ev_timer_start(p->loop, &p->heartbeat);
    return p;
}

void hgf_worker_pool_pump(hgf_worker_pool *p)
{
    start_ready(p);
    if (p->count[PH_UNRECORDED])
        retry_unrecorded(p);
    claim(p);
}

void hgf_worker_pool_stop(hgf_worker_pool *p)
{
    if (p->stopping)
        return;
    p->stopping = 1;
    p->want_claim = 0;
    ev_timer_stop(p->loop, &p->poll);
    give_back_ready(p);
}

int hgf_worker_pool_busy(const hgf_worker_pool *p)
{
    return p->claiming + p->releasing + p->count[PH_READY] + p->count[PH_RUNNING] +
           p->count[PH_RECORDING] + p->count[PH_UNRECORDED];
}

static int any_external(const hgf_worker_pool *p)
{
    for (const hgf_worker_job *wj = p->head; wj; wj = wj->next) {
        const hgf_worker_executor *x = hgf_worker_executor_find(wj->job.kind);
        if (wj->phase == PH_RUNNING && wj->run && x && x->external && x->external(wj->run))
            return 1;
    }
    return 0;
}

int hgf_worker_pool_asleep(const hgf_worker_pool *p)
{
    if (!p->count[PH_RUNNING] || p->count[PH_RECORDING] || p->claiming || p->releasing)
        return 0;
    hgf_http_stats st;
    hgf_http_get_stats(p->rt->http, &st);
    if (st.in_flight || st.queued || hgf_store_pending(p->rt->store))
        return 0;
    return !any_external(p);
}

typedef struct release_ctx {
    hgf_worker_pool *pool;
    void (*done)(void *);
    void *arg;
} release_ctx;

static void released(PGresult *res, const hgf_err *err, void *arg)
{
    release_ctx c = *(release_ctx *)arg;
    free(arg);
    hgf_err e;
    if (err)
        hgf_log_warn("worker.release_failed", "%s", err->msg);
    else if (hgf_store_check(res, &e))
        hgf_log_warn("worker.release_failed", "%s", e.msg);
    else
        hgf_log_info("worker.released", "jobs=%s", PQntuples(res) ? PQgetvalue(res, 0, 0) : "0");
    PQclear(res);
    c.pool->releasing = 0;
    c.done(c.arg);
}

/* The running jobs were released: whatever they do now is lost, so they
 * stop at once rather than run on into a closing process. */
static void cancel_running(hgf_worker_pool *p)
{
    hgf_worker_job *wj;
    while ((wj = first_in(p, PH_RUNNING)))
        cancel_job(wj);
}

int hgf_worker_pool_release(hgf_worker_pool *p, void (*done)(void *), void *arg)
{
    int n;
    int64_t *ids = collect_ids(p, PH_READY, PH_RUNNING, &n);
    release_ctx *c = malloc(sizeof *c);
    int rc = -1;
    if (ids && c && n && hgf_store_is_up(p->rt->store)) {
        *c = (release_ctx){p, done, arg};
        rc = hgf_jobs_release(p->rt->store, p->rt->owner, ids, n, released, c);
    }
    if (rc)
        free(c);
    else
        p->releasing = 1;
    free(ids);
    cancel_running(p);
    return rc;
}

void hgf_worker_pool_free(hgf_worker_pool *p)
{
    if (!p)
        return;
    ev_timer_stop(p->loop, &p->poll);
    ev_timer_stop(p->loop, &p->heartbeat);
    if (p->listening && p->rt->store)
        hgf_store_unlisten(p->rt->store, HGF_JOBS_CHANNEL, on_notify, p);
    if (p->wanting && p->rt->store)
        hgf_store_unlisten(p->rt->store, WANT_CHANNEL, on_want, p);
    cancel_running(p);
    while (p->head)
        free_job(p->head);
    free_regs(p);
    free(p->ids);
    free(p);
}

/* ---- --wait ---------------------------------------------------------- */

static void on_drain_tick(struct ev_loop *loop, ev_timer *w, int revents)
{
    *(int *)w->data = 1;
}

/* Runs the pool until watch says the work is over: watch runs after every
 * recorded outcome and every tick, outside loop callbacks. */
static int drain_loop(hgf_worker_pool *p, hgf_worker_watch_fn watch, void *arg, hgf_err *err)
{
    hgf_runtime *rt = p->rt;
    int check = 1;
    long seen = 0;
    ev_timer tick;
    ev_timer_init(&tick, on_drain_tick, DRAIN_TICK_S, DRAIN_TICK_S);
    tick.data = &check;
    ev_timer_start(rt->loop, &tick);
    int rc = 0;
    for (;;) {
        hgf_worker_pool_pump(p);
        if (check) {
            check = 0;
            rc = watch(p, arg, err);
            if (rc <= 0)
                break;
            rc = 0;
        }
        ev_run(rt->loop, EVRUN_ONCE);
        if (p->recorded != seen) {
            seen = p->recorded;
            check = 1;
        }
    }
    ev_timer_stop(rt->loop, &tick);
    return rc;
}

int hgf_worker_drain_while(hgf_runtime *rt, const hgf_worker_opts *o, hgf_worker_watch_fn watch,
                           void *arg, hgf_err *err)
{
    hgf_worker_pool *p = hgf_worker_pool_new(rt, o, err);
    if (!p)
        return err ? err->code : HGF_ENOMEM;
    int rc = drain_loop(p, watch, arg, err);
    hgf_worker_pool_stop(p);
    /* On a database failure, let running jobs end and their outcomes reach
     * the store (or fail to), so no callback finds the pool freed. */
    while (p->count[PH_RUNNING] > 0 || p->count[PH_RECORDING] > 0 || p->claiming)
        ev_run(rt->loop, EVRUN_ONCE);
    hgf_worker_pool_free(p);
    return rc;
}
