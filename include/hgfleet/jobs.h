/* The job queue in PostgreSQL: enqueue with a dedup key, claim with
 * FOR UPDATE SKIP LOCKED under a lease, renew the lease, finish (done, retry
 * with backoff, or failed), and re-queue expired leases. Every insert into
 * jobs NOTIFYs HGF_JOBS_CHANNEL (a trigger in sql/003) with the kinds queued.
 *
 * Retries: a retryable failure re-queues the job with
 * run_at = now() + min(2^attempts * 5 s, 10 min), where attempts counts the
 * runs so far including the failed one (so 10 s, 20 s, 40 s...), until
 * max_attempts; then, or for a permanent failure, the job is `failed` with
 * the reason in last_error.
 *
 * Ownership: claim callbacks receive a malloc'd array of hgf_job the callee
 * frees with hgf_jobs_free (payloads are jansson references it owns).
 * hgf_jobs_list returns a new JSON reference the caller decrefs. */
#ifndef HGF_JOBS_H
#define HGF_JOBS_H

#include <jansson.h>
#include <stdint.h>

#include "hgfleet/buf.h"
#include "hgfleet/err.h"
#include "hgfleet/store.h"

#define HGF_JOBS_CHANNEL "hgfleet_jobs"
/* The priority of scans queued by push events (hgf_apply_push, sql/004). */
#define HGF_JOBS_PUSH_PRIORITY 10

typedef struct hgf_job {
    int64_t id;
    char kind[16];
    json_t *payload;
    int priority;
    int attempts, max_attempts;
} hgf_job;

/* Inserts a queued job unless one with the same dedup key is queued or
 * running; either way *job_id is the live job's id and *created says which. */
int hgf_jobs_enqueue(hgf_store *s, const char *kind, const char *payload_json, int priority,
                     const char *dedup_key, int64_t *job_id, int *created, hgf_err *err);

/* A batch: the jobs one `--wait` waits for, claimed and counted through
 * their batch id (sql/015) rather than listed. hgf_jobs_new_batch returns a
 * new batch id. hgf_jobs_enqueue_batch is hgf_jobs_enqueue that also puts
 * the job in the batch: a new job, or a live one that is in no batch yet.
 * *in_batch (may be NULL) is 0 when the live job stays in another batch:
 * the caller names it by id to claim and count it. batch 0: none. */
int hgf_jobs_new_batch(hgf_store *s, int64_t *batch, hgf_err *err);
int hgf_jobs_enqueue_batch(hgf_store *s, const char *kind, const char *payload_json, int priority,
                           const char *dedup_key, int64_t batch, int64_t *job_id, int *created,
                           int *in_batch, hgf_err *err);

typedef struct hgf_jobs_claim_opts {
    const char *owner;
    int lease_seconds;
    const char *const *kinds;  /* claim only these kinds (those this process can run) */
    int n_kinds;
    const int64_t *ids;        /* and only among these (but see below), or NULL for any */
    int n_ids;
    int limit;                 /* jobs of any priority */
    int ahead;                 /* and up to this many more of at least ahead_min_priority
                                * (without ids only: a drain claims no push scans ahead) */
    int ahead_min_priority;
    int64_t batch;             /* with ids: also this batch's queued jobs; 0 for none */
} hgf_jobs_claim_opts;

/* err is NULL on success; then jobs[0..n) are the claimed jobs (highest
 * priority first), leased to the owner, attempts already counted. */
typedef void (*hgf_jobs_claim_cb)(hgf_job *jobs, int n, const hgf_err *err, void *arg);

/* Asynchronous claim. Returns HGF_EDB at once (no callback) when the store
 * is down. A `sweep` job among ids stands for its sweep's work too: while
 * the sweep runs, the claim also takes the queued jobs its current phase
 * waits for (those tagged with its sweep_id, of the phase's kind), found
 * through the tag rather than listed, so `sweep --wait` passes only the
 * sweep's job however many jobs the sweep has. A batch (`sync --wait`)
 * brings in its queued jobs the same way, through its batch id, within the
 * same limit. */
int hgf_jobs_claim(hgf_store *s, const hgf_jobs_claim_opts *o, hgf_jobs_claim_cb cb, void *arg);
void hgf_jobs_free(hgf_job *jobs, int n);

/* Puts jobs whose lease expired back in the queue (or fails them when they
 * have used every attempt), and NOTIFYs when it did. Asynchronous; cb may be
 * NULL. Here as in every statement that moves a scan job out of a run, the
 * scan's open row follows the job (a trigger, sql/015): queued again, to be
 * taken up by the next run, or failed. */
int hgf_jobs_requeue_expired(hgf_store *s, hgf_store_cb cb, void *arg);

/* Records a job's outcome. error == NULL: done. Otherwise, with
 * retry_after_s >= 0 and attempts left, the job is queued again to run that
 * many seconds from now (hgf_jobs_backoff_seconds); else it is failed. The
 * run is named by its owner and its attempt (hgf_job.attempts as claimed):
 * a run whose lease expired cannot overwrite the outcome of the run that
 * took the job over, on another replica or in this same process. The
 * result row holds the new state ('done', 'queued' or 'failed'), or no row
 * when the lease was lost. cb may be NULL. */
int hgf_jobs_finish(hgf_store *s, int64_t id, const char *owner, int attempt, const char *error,
                    int retry_after_s, const char *result_json, hgf_store_cb cb, void *arg);

/* Puts a running job that made progress back in the queue to run again
 * delay_s seconds from now, without counting the run as an attempt: a job
 * made of short steps (a sweep) re-queues itself this way instead of
 * holding a worker while it waits. result_json (may be NULL) replaces the
 * job's result. The run is named as for hgf_jobs_finish. The result row
 * holds 'queued', or no row when the lease was lost. cb may be NULL. */
int hgf_jobs_continue(hgf_store *s, int64_t id, const char *owner, int attempt, int delay_s,
                      const char *result_json, hgf_store_cb cb, void *arg);

/* Renews the leases of these jobs (those still running here). Asynchronous. */
int hgf_jobs_heartbeat(hgf_store *s, const char *owner, int lease_seconds, const int64_t *ids,
                       int n_ids);

/* Puts these running jobs back in the queue at once (lease cleared, the
 * attempt not counted), e.g. on shutdown. Asynchronous; cb may be NULL. */
int hgf_jobs_release(hgf_store *s, const char *owner, const int64_t *ids, int n_ids,
                     hgf_store_cb cb, void *arg);

/* *live: 1 while a job of the batch, or of `ids`, is still queued or
 * running, else 0. */
int hgf_jobs_batch_live(hgf_store *s, int64_t batch, const int64_t *ids, int n_ids, int *live,
                        hgf_err *err);

/* The queue, newest first: a JSON array of objects with id, kind, state,
 * priority, attempts, max_attempts, run_at, lease_owner, lease_expires_at,
 * dedup_key, last_error, created_at, finished_at (ISO 8601 UTC or null) and
 * payload. state and kind may be NULL (any). */
int hgf_jobs_list(hgf_store *s, const char *state, const char *kind, int limit, json_t **out,
                  hgf_err *err);

/* 1 if name is a job state (queued, running, done, failed) / kind (sync,
 * scan, sweep). */
int hgf_jobs_valid_state(const char *name);
int hgf_jobs_valid_kind(const char *name);

/* The retry delay in seconds after a failed run: min(2^attempts * 5, 600). */
int hgf_jobs_backoff_seconds(int attempts);

/* Formats ids as a PostgreSQL bigint[] literal. */
void hgf_jobs_id_array(const int64_t *ids, int n, hgf_buf *out);

#endif
