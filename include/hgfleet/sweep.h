/* Org-wide sweeps: sync every live connection, scan every present digest
 * that was never scanned ok (or whose last ok scan is older than the rescan
 * window and that was pushed within the active window), evaluate posture,
 * and keep the report in sweeps.report.
 *
 * hgf_sweep_run works the queue in this process with hgf_worker_drain, so
 * it runs outside loop callbacks (a CLI command), never as a worker job.
 *
 * Ownership: reports and lists are new JSON references the caller decrefs. */
#ifndef HGF_SWEEP_H
#define HGF_SWEEP_H

#include <jansson.h>
#include <stdint.h>

#include "hgfleet/err.h"
#include "hgfleet/runtime.h"

/* Stored reports above this size keep only their totals, with a note. */
#define HGF_SWEEP_MAX_STORED_REPORT ((size_t)16 << 20)
#define HGF_SWEEP_DEFAULT_RESCAN_S ((int64_t)7 * 86400)
#define HGF_SWEEP_DEFAULT_ACTIVE_S ((int64_t)90 * 86400)
/* Priority of sweep scans: below push-event scans (10). */
#define HGF_SWEEP_SCAN_PRIORITY 0

typedef struct hgf_sweep_opts {
    const char *requested_by;   /* "cli", "schedule", ... */
    int64_t rescan_after_s;     /* rescan digests whose last ok scan is older */
    int64_t active_within_s;    /* ...and that were pushed within this window */
    int stale_days;             /* tagged_image_older_than_<N>d */
    int progress;               /* 1: progress lines on stderr, at most one a second */
} hgf_sweep_opts;

/* Runs a whole sweep here. On success *sweep_id is set and *report holds the
 * finished report (its "status" is "complete" or "partial"). */
int hgf_sweep_run(hgf_runtime *rt, const hgf_sweep_opts *o, int64_t *sweep_id, json_t **report,
                  hgf_err *err);

/* Newest first: [{id, requested_by, started_at, finished_at, status, totals}]. */
int hgf_sweep_list(hgf_store *s, int limit, json_t **out, hgf_err *err);
/* One sweep's stored report; HGF_ENOTFOUND naming the id, or HGF_EFAIL when
 * it has none yet (still running). */
int hgf_sweep_get(hgf_store *s, int64_t id, json_t **report, hgf_err *err);

#endif
