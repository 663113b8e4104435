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

/* A running scan. It owns itself and frees itself after its callback, until
 * hgf_scan_cancel hands it to the canceller. */
typedef struct hgf_scan hgf_scan;

/* Starts scan job `job_id` from its payload {connection_id, image_id,
 * repository, digest, tag?}. Asynchronous from the first statement, so it may
 * be called from loop callbacks; cb runs later, never from inside this call.
 * attempt is the job's attempt this run holds the lease for: the run opens
 * and stores its scan only while the job is still running under it.
 * A job that already stored an ok scan (its replica died before marking it
 * done) ends ok at once, without scanning again. *out (when out is not
 * NULL) is the running scan, valid until its callback returns or, once
 * cancelled, until hgf_scan_free.
 *
 * The scan does not wait for a per-registry slot: its caller bounds how many
 * scans of one registry run at once (the worker pool, by
 * hgf_scan_connection, at HGFLEET_SCANS_PER_REGISTRY). */
int hgf_scan_start(hgf_runtime *rt, int64_t job_id, int attempt, json_t *payload,
                   hgf_scan_done_cb cb, void *arg, hgf_scan **out, hgf_err *err);

/* Stops a running scan (from the loop, never from its own callback): its
 * callback never runs, its manifest retry timer stops, it sends and writes
 * nothing more, and what it still has in flight (the token fetch, registry
 * requests, the scanner, statements) finds it cancelled when it ends. The
 * caller now owns it and frees it with hgf_scan_free once none of those can
 * end any more: after hgf_runtime_close, which ends them all. */
void hgf_scan_cancel(hgf_scan *s);
void hgf_scan_free(hgf_scan *s);

/* 1 while the scanner works on the image (a process, or a scanner service
 * being polled), when the scan may have nothing of its own in flight for a
 * long time and still be making progress. */
int hgf_scan_in_scanner(const hgf_scan *s);

/* The registry a scan payload belongs to, as its connection id (one live
 * connection per registry): 0, or HGF_EINPUT when the payload has none. */
int hgf_scan_connection(const json_t *payload, int64_t *connection_id);

#endif
