/* The worker pool: claims jobs from the queue and runs them concurrently on
 * the loop (asynchronous jobs, not a thread each).
 *
 * hgf_worker_drain is what `--wait` commands use: it works the queue beside
 * any running servers until every job in `ids` is finished, by this process
 * or by another replica. */
#ifndef HGF_WORKER_H
#define HGF_WORKER_H

#include <jansson.h>
#include <stdint.h>

#include "hgfleet/err.h"
#include "hgfleet/runtime.h"

/* Called as each job this process ran ends: err is NULL on success; result is
 * the job's result object (borrowed). */
typedef void (*hgf_worker_done_cb)(int64_t job_id, const char *kind, const hgf_err *err,
                                   json_t *result, void *arg);

int hgf_worker_drain(hgf_runtime *rt, const int64_t *ids, int n_ids, int concurrency,
                     hgf_worker_done_cb done, void *arg, hgf_err *err);

#endif
