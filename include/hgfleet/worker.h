/* The worker pool: claims jobs from the queue and runs them concurrently on
 * the loop (asynchronous jobs, not a thread each).
 *
 * Executors: a constant table in worker.c maps a job kind to the function
 * that starts it; a pool only claims kinds that have one, so a build without
 * a scanner never takes scan jobs from replicas that have it. To add a kind,
 * add a row there.
 *
 * A pool claims when told (NOTIFY on HGF_JOBS_CHANNEL), when a slot frees,
 * and every 1.5 s as a fallback; it renews the leases of its jobs every third
 * of HGFLEET_LEASE_SECONDS and re-queues expired leases of any replica.
 * Claiming is decoupled from running: a pool that works any job (a server,
 * not a drain) also claims push-priority scans beyond its free workers, up
 * to a fixed bound, so a burst of push events is leased as it arrives
 * instead of waiting in the queue for workers. Claimed jobs start by
 * priority, then in claim order, as workers free.
 * Outcomes that cannot be recorded because the database is down are kept and
 * recorded once it is back. A failed run is retried (in a pool with retry
 * set) after hgf_jobs_backoff_seconds, except one that failed on the
 * database (HGF_EDB: a connection lost in a restart): it is queued to run
 * again as soon as its outcome is recorded, then after 1, 2, 4 ... s should
 * the database fail it again, never later than the ordinary backoff.
 *
 * Per-registry bound: at most HGFLEET_SCANS_PER_REGISTRY scans of one
 * registry (a scan payload's connection_id) run in a pool at once. A scan
 * over its registry's bound stays claimed but not started: it takes no
 * worker, the next job of another registry starts instead, and it starts
 * first (by priority and claim order) when its registry's slot frees. Such
 * held-back scans do not count against the free workers a claim asks for.
 *
 * Sharing a burst: a server pool whose workers are idle with nothing to
 * claim (and no held-back scan) asks the other pools, at most once a
 * second, over NOTIFY; a pool holding more claimed-but-unstarted jobs than
 * it has workers hands half of that surplus back to the queue (no attempt
 * counted, first claim time kept), then claims nothing ahead for a second,
 * so the idle pool takes it. A lone server never hands anything back.
 *
 * Cancelling: jobs running when hgf_worker_pool_release re-queues them, or
 * when the pool is freed, are cancelled through their executor (no
 * callback reaches the pool any more) and freed with the pool.
 *
 * hgf_worker_drain_while is what `--wait` commands use: it works the queue
 * beside any running servers for as long as the caller's watch says the
 * work (a batch of syncs, a sweep's phases) goes on, whether this process
 * or another replica runs its jobs.
 *
 * A job made of short steps ends each step with hgf_worker_job_continue:
 * it goes back in the queue (same id, same dedup key, no attempt counted)
 * instead of holding a worker while it waits for other jobs. */
#ifndef HGF_WORKER_H
#define HGF_WORKER_H

#include <jansson.h>
#include <stdint.h>

#include "hgfleet/err.h"
#include "hgfleet/jobs.h"
#include "hgfleet/runtime.h"

/* Called as each job this process ran ends: err is NULL on success; result is
 * the job's result object (borrowed). */
typedef void (*hgf_worker_done_cb)(int64_t job_id, const char *kind, const hgf_err *err,
                                   json_t *result, void *arg);

/* A job being run; the executor holds it until it calls hgf_worker_job_done. */
typedef struct hgf_worker_job hgf_worker_job;

/* Starts `job` (borrowed until the job is done). Returns 0 when the job
 * will end through hgf_worker_job_done, or an error (err set) when it ended
 * at once. *run is the executor's running job for cancel and release (NULL
 * when the job has ended by the time start returns). Start functions run
 * outside loop callbacks, so they may use hgf_store_exec for their set-up. */
typedef int (*hgf_worker_exec_fn)(hgf_runtime *rt, const hgf_job *job, hgf_worker_job *wj,
                                  void **run, hgf_err *err);

typedef struct hgf_worker_executor {
    const char *kind;
    hgf_worker_exec_fn start;
    /* Stops a run: it never calls hgf_worker_job_done, and what it has in
     * flight finds it stopped. NULL when runs end inside start. */
    void (*cancel)(void *run);
    /* Frees a cancelled run, once nothing it had in flight can end any more
     * (the pool is freed after hgf_runtime_close). */
    void (*release)(void *run);
    /* 1 while the run waits for work done outside this process's HTTP
     * client and store (a scanner), which a quiet process does not show.
     * NULL when a run never does. */
    int (*external)(const void *run);
} hgf_worker_executor;

/* The executor for a kind, or NULL when this build cannot run it. */
const hgf_worker_executor *hgf_worker_executor_find(const char *kind);

/* Ends a job exactly once, from the loop. err NULL = success. permanent: do
 * not retry (a payload that cannot be parsed, an input error). result is
 * borrowed (may be NULL). wj is freed: do not use it afterwards. */
void hgf_worker_job_done(hgf_worker_job *wj, const hgf_err *err, int permanent, json_t *result);

/* Ends this run of a job without ending the job: it is queued again to run
 * delay_s seconds from now, on any replica (a step of a sweep). result is
 * borrowed (may be NULL). wj is freed: do not use it afterwards. */
void hgf_worker_job_continue(hgf_worker_job *wj, int delay_s, json_t *result);

/* Whether a failure is worth retrying later: database, transport and AWS
 * throttling or server errors are; input errors, missing objects and other
 * AWS errors (access denied, bad signature...) are permanent. */
int hgf_worker_error_is_permanent(const hgf_err *err);

typedef struct hgf_worker_pool hgf_worker_pool;

typedef struct hgf_worker_opts {
    int concurrency;           /* jobs run at once */
    int retry;                 /* 1: retryable failures re-queue with backoff; 0: all final */
    const int64_t *ids;        /* only these jobs (copied), or NULL for any */
    int n_ids;
    int64_t batch;             /* with ids (even none): and this batch's jobs (jobs.h) */
    hgf_worker_done_cb done;   /* may be NULL */
    void *arg;
} hgf_worker_opts;

/* Starts claiming on rt's loop. The pool borrows rt and must be freed after
 * hgf_runtime_close (its jobs' store and HTTP callbacks fire while the
 * runtime closes), or once nothing runs in it (hgf_worker_pool_busy 0). */
hgf_worker_pool *hgf_worker_pool_new(hgf_runtime *rt, const hgf_worker_opts *o, hgf_err *err);
/* Starts claimed jobs, sends claims and retries unrecorded outcomes. Call it
 * after every ev_run(EVRUN_ONCE), never from inside a loop callback. */
void hgf_worker_pool_pump(hgf_worker_pool *p);
/* Stops claiming; jobs claimed but not started yet are released at once. */
void hgf_worker_pool_stop(hgf_worker_pool *p);
/* Jobs claimed, running here, or ended but not yet recorded, plus a claim or
 * a release in flight. */
int hgf_worker_pool_busy(const hgf_worker_pool *p);
/* 1 when jobs run here and none of them has anything under way: no HTTP
 * request of this process is queued or in flight, no statement is pending,
 * no outcome is being recorded and no scanner works for them. Each of them
 * then sleeps in a retry backoff (or waits for a rate-limit token), against
 * an endpoint that failed it; a shutdown need not wait for that (serve
 * re-queues them at once). The state can be momentary between two steps of
 * a job, so a caller asks again before acting on it. */
int hgf_worker_pool_asleep(const hgf_worker_pool *p);
/* Re-queues every job still running here (shutdown after the grace period)
 * and cancels them: none records an outcome or writes anything more.
 * done(arg) runs when the re-queue is recorded or failed; returns nonzero
 * (and never calls done) when there was nothing to release or the store is
 * down. */
int hgf_worker_pool_release(hgf_worker_pool *p, void (*done)(void *), void *arg);
/* Cancels what still runs (see hgf_worker_pool_new for when), frees every
 * job and the pool. */
void hgf_worker_pool_free(hgf_worker_pool *p);

/* Decides whether a drain goes on: 1 yes, 0 the work is over, or a negative
 * HGF_E* with err set. Called after every outcome recorded here and every
 * 0.25 s, outside loop callbacks (so it may use hgf_store_exec). */
typedef int (*hgf_worker_watch_fn)(hgf_worker_pool *p, void *arg, hgf_err *err);

/* Runs a pool with options o here until watch says stop; returns 0 or
 * watch's error. */
int hgf_worker_drain_while(hgf_runtime *rt, const hgf_worker_opts *o, hgf_worker_watch_fn watch,
                           void *arg, hgf_err *err);

#endif
