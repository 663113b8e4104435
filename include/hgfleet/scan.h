/* The scan job: one digest of one registry, pulled through the registry v2
 * API with the ECR authorization token and handed to the configured scanner.
 *
 * A manifest that is gone (404, MANIFEST_UNKNOWN, ImageNotFoundException)
 * marks the image deleted and ends the scan `skipped`, without retries: a
 * lifecycle policy raced the scan. Denied pulls store the guide's diagnosis
 * on the connection. Reports larger than HGF_SCAN_MAX_REPORT are stored as
 * their summary only.
 *
 * Ownership: the payload is borrowed until the callback has run. */
#ifndef HGF_SCAN_H
#define HGF_SCAN_H

#include <jansson.h>
#include <stdint.h>

#include "hgfleet/err.h"
#include "hgfleet/runtime.h"

#define HGF_SCAN_MAX_REPORT (4u << 20)

/* status: "ok", "skipped" or "failed"; retry: worth trying again later. */
typedef void (*hgf_scan_done_cb)(const char *status, const hgf_err *err, int retry,
                                 json_t *result, void *arg);

/* Starts scan job `job_id` from its payload {connection_id, image_id,
 * repository, digest, tag?}. Asynchronous from the first statement, so it may
 * be called from loop callbacks; cb runs later, never from inside this call.
 * A job that already stored an ok scan (its replica died before marking it
 * done) ends ok at once, without scanning again. */
int hgf_scan_start(hgf_runtime *rt, int64_t job_id, json_t *payload, hgf_scan_done_cb cb,
                   void *arg, hgf_err *err);

#endif
