#include "hgfleet/worker.h"
#include "hgfleet/jobs.h"
#include "hgfleet/log.h"
#include "hgfleet/sync.h"

#include <ev.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct pool {
    hgf_runtime *rt;
    int running;
    hgf_worker_done_cb done;
    void *arg;
} pool;

typedef struct running_job {
    pool *p;
    int64_t id;
    char kind[16];
} running_job;

static json_t *sync_result(const hgf_sync_stats *st)
{
    json_t *o = json_pack("{s:I, s:s, s:i, s:i, s:i, s:i, s:i, s:f}", "connection_id",
                          (json_int_t)st->connection_id, "registry", st->registry, "repositories",
                          st->repositories, "images", st->images, "pages", st->pages, "api_calls",
                          st->api_calls, "images_filtered", st->images_filtered, "seconds",
                          st->seconds);
    if (st->applied)
        json_object_set(o, "applied", st->applied);
    return o;
}

static void job_ended(running_job *rj, const hgf_err *err, json_t *result)
{
    pool *p = rj->p;
    char *text = result ? json_dumps(result, JSON_COMPACT) : NULL;
    hgf_jobs_finish(p->rt->store, rj->id, p->rt->owner, err ? err->msg : NULL, text, NULL, NULL);
    free(text);
    if (p->done)
        p->done(rj->id, rj->kind, err, result, p->arg);
    p->running--;
    free(rj);
}

static void on_sync_done(int rc, const hgf_err *err, const hgf_sync_stats *st, void *arg)
{
    json_t *result = sync_result(st);
    job_ended(arg, rc ? err : NULL, result);
    json_decref(result);
}

static void dispatch(pool *p, const hgf_job *job)
{
    running_job *rj = calloc(1, sizeof *rj);
    rj->p = p;
    rj->id = job->id;
    snprintf(rj->kind, sizeof rj->kind, "%s", job->kind);
    p->running++;
    hgf_err e;
    hgf_err_clear(&e);
    json_t *cid = json_object_get(job->payload, "connection_id");
    if (strcmp(job->kind, "sync")) {
        hgf_err_set(&e, HGF_EFAIL, "job kind %s is not run by this command", job->kind);
    } else if (!json_is_integer(cid)) {
        hgf_err_set(&e, HGF_EINPUT, "job %lld: payload has no integer connection_id",
                    (long long)job->id);
    } else if (hgf_sync_start(p->rt, json_integer_value(cid), on_sync_done, rj, &e) == 0) {
        return;
    }
    job_ended(rj, &e, NULL);
}

static void on_tick(struct ev_loop *loop, ev_timer *w, int revents)
{
}

static void on_heartbeat(struct ev_loop *loop, ev_timer *w, int revents)
{
    hgf_runtime *rt = w->data;
    hgf_jobs_heartbeat(rt->store, rt->owner, rt->cfg->lease_seconds);
}

static int claim_more(pool *p, const int64_t *ids, int n_ids, int concurrency, hgf_err *err)
{
    if (p->running >= concurrency)
        return 0;
    hgf_job *jobs;
    int n;
    int rc = hgf_jobs_claim(p->rt->store, p->rt->owner, p->rt->cfg->lease_seconds, NULL, ids,
                            n_ids, concurrency - p->running, &jobs, &n, err);
    if (rc)
        return rc;
    for (int i = 0; i < n; i++)
        dispatch(p, &jobs[i]);
    hgf_jobs_free(jobs, n);
    return 0;
}

int hgf_worker_drain(hgf_runtime *rt, const int64_t *ids, int n_ids, int concurrency,
                     hgf_worker_done_cb done, void *arg, hgf_err *err)
{
    pool p = {rt, 0, done, arg};
    ev_timer tick, hb;
    /* The tick bounds how long we sleep while another replica holds our jobs. */
    ev_timer_init(&tick, on_tick, 0.2, 0.2);
    ev_timer_init(&hb, on_heartbeat, rt->cfg->lease_seconds / 3.0, rt->cfg->lease_seconds / 3.0);
    hb.data = rt;
    ev_timer_start(rt->loop, &tick);
    ev_timer_start(rt->loop, &hb);
    int rc = 0;
    for (;;) {
        rc = claim_more(&p, ids, n_ids, concurrency, err);
        int live = 0;
        if (!rc)
            rc = hgf_jobs_count_live(rt->store, ids, n_ids, &live, err);
        if (rc || (live == 0 && p.running == 0))
            break;
        ev_run(rt->loop, EVRUN_ONCE);
    }
    /* On a database failure, let running jobs end so nothing is freed under them. */
    while (p.running > 0)
        ev_run(rt->loop, EVRUN_ONCE);
    ev_timer_stop(rt->loop, &tick);
    ev_timer_stop(rt->loop, &hb);
    return rc;
}
