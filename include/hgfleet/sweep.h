/* Org-wide sweeps: sync every live connection (with posture collection),
 * scan every present digest that was never scanned ok (or whose last ok scan
 * is older than the rescan window and that was pushed within the active
 * window), evaluate posture, and keep the report in sweeps.report.
 *
 * A sweep is one durable `sweep` job (dedup key "sweep": one sweep at a
 * time) whose every run is a short step, hgf_sweep_step: it advances the
 * phase kept in the sweeps row (start -> syncing -> scanning -> done) and
 * asks to run again a second later while the syncs or scans it queued are
 * still live. Every job a sweep waits for carries its id (jobs.sweep_id,
 * sql/011), so that check, done every second, is an index probe that costs
 * the same at a million scans as at ten. All its state is in the database,
 * so a replica killed in the middle of a sweep loses nothing: the job's
 * lease expires and another replica takes the next step. `hgfleet sweep --wait` works the same job
 * and its syncs and scans in its own process (hgf_sweep_wait), beside any
 * servers, so it completes with or without them.
 *
 * Ownership: reports, step results and lists are new JSON references the
 * caller decrefs. */
#ifndef HGF_SWEEP_H
#define HGF_SWEEP_H

#include <jansson.h>
#include <stdint.h>

#include "hgfleet/config.h"
#include "hgfleet/err.h"
#include "hgfleet/runtime.h"

/* Stored reports above this size keep only their totals, with a note. */
#define HGF_SWEEP_MAX_STORED_REPORT ((size_t)16 << 20)
#define HGF_SWEEP_DEFAULT_RESCAN_S HGF_CONFIG_DEFAULT_RESCAN_S
#define HGF_SWEEP_DEFAULT_ACTIVE_S ((int64_t)90 * 86400)
/* Priority of sweep scans: below push-event scans (10). */
#define HGF_SWEEP_SCAN_PRIORITY 0
/* Priority of the syncs a sweep queues. */
#define HGF_SWEEP_SYNC_PRIORITY 5
/* The sweep job's own steps are short and must not queue behind thousands
 * of scans. */
#define HGF_SWEEP_JOB_PRIORITY 20
/* How long a step waits before looking again at the jobs it waits for. */
#define HGF_SWEEP_STEP_DELAY_S 1

typedef struct hgf_sweep_opts {
    const char *requested_by;   /* "cli", "schedule", "demo"... */
    int64_t rescan_after_s;     /* rescan digests whose last ok scan is older */
    int64_t active_within_s;    /* ...and that were pushed within this window */
    int stale_days;             /* tagged_image_older_than_<N>d */
    int progress;               /* hgf_sweep_run: progress lines on stderr, at most one a second */
} hgf_sweep_opts;

/* Queues a sweep with these options, or finds the one already queued or
 * running (*created = 0; its own options stand). */
int hgf_sweep_enqueue(hgf_store *s, const hgf_sweep_opts *o, int64_t *sweep_id, int64_t *job_id,
                      int *created, hgf_err *err);

/* The scheduler's asynchronous form, for a due time (epoch seconds) of
 * HGFLEET_SWEEP_SCHEDULE: only the first replica to fire a due time queues
 * (or joins) a sweep. The result has one row (sweep_id, job_id, created
 * 't'/'f'), or none when another replica handled that due time. */
int hgf_sweep_enqueue_due(hgf_store *s, const hgf_sweep_opts *o, int64_t due, hgf_store_cb cb,
                          void *arg);

/* One step of sweep `id`, the `sweep` job's executor; uses hgf_store_exec,
 * so call it outside loop callbacks. *again_s > 0: the sweep waits for its
 * jobs, run the step again that many seconds from now; 0: the sweep is over.
 * *result (may be left NULL) is the job's result: {sweep_id, phase, status}. */
int hgf_sweep_step(hgf_runtime *rt, int64_t id, int *again_s, json_t **result, hgf_err *err);

/* Marks a running sweep failed (its job will not run again). Best effort. */
void hgf_sweep_mark_failed(hgf_store *s, int64_t id);

/* Works sweep `id` (driven by job `job_id`) and the syncs and scans it
 * queues in this process until it ends; other replicas may take part. On
 * success *report is the stored report ("status" complete or partial); a
 * sweep that failed is HGF_EFAIL. progress: lines on stderr. */
int hgf_sweep_wait(hgf_runtime *rt, int64_t id, int64_t job_id, int progress, json_t **report,
                   hgf_err *err);

/* hgf_sweep_enqueue then hgf_sweep_wait: a whole sweep from this process
 * (joining the running one if there is one). *sweep_id is set on success. */
int hgf_sweep_run(hgf_runtime *rt, const hgf_sweep_opts *o, int64_t *sweep_id, json_t **report,
                  hgf_err *err);

/* Newest first: [{id, requested_by, started_at, finished_at, status, totals}]. */
int hgf_sweep_list(hgf_store *s, int limit, json_t **out, hgf_err *err);
/* One sweep's stored report; HGF_ENOTFOUND naming the id, or HGF_EFAIL when
 * it has none yet (still running). */
int hgf_sweep_get(hgf_store *s, int64_t id, json_t **report, hgf_err *err);

#endif
