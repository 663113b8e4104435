/* The sync job: one registry's catalog from ECR into the store.
 *
 * DescribeRepositories (every page), then DescribeImages per repository
 * (every page, a bounded number of repositories at once), tag filters
 * applied, then one hgf_apply_sync call that writes only the differences
 * and queues a scan for every new digest. Nothing is written when any call
 * fails, so an AWS error leaves the stored catalog as it was.
 *
 * The listing's fingerprint (SHA-256 of every stored field, sorted, so the
 * order ECR answers in does not matter) is stored with each apply
 * (sql/009). A listing whose fingerprint is still the stored one (no one
 * wrote that connection's catalog since: triggers forget the fingerprint)
 * is not sent: one small statement returns the last apply's counts with
 * "unchanged": true and nothing new.
 *
 * With posture (hgf_sync_opts.posture, a job payload's "posture": true),
 * each repository also gets GetLifecyclePolicy and GetRepositoryPolicy, at
 * the same time as its DescribeImages and under the same limits; then
 * hgf_apply_posture stores the policies that changed. Those two calls never
 * fail the sync: AccessDenied is stored as 'denied' (the report says "not
 * evaluated: missing ecr:<Action>"), a missing policy as 'none', and any
 * other error leaves what was stored before. They cost two calls per
 * repository, so only sweeps ask for them. */
#ifndef HGF_SYNC_H
#define HGF_SYNC_H

#include <jansson.h>
#include <stdint.h>

#include "hgfleet/buf.h"
#include "hgfleet/err.h"
#include "hgfleet/runtime.h"

typedef struct hgf_sync_stats {
    int64_t connection_id;
    char registry[128];
    int repositories, images, pages, api_calls, images_filtered, throttles, retries;
    int posture_denied;   /* policy calls refused (AccessDenied) */
    int posture_errors;   /* policy calls that failed otherwise: nothing stored for them */
    double seconds;
    json_t *applied;   /* hgf_apply_sync's counts (or, unchanged, the last apply's with
                          "unchanged": true); borrowed during the callback */
    json_t *diagnosis; /* a failed sync's diagnosis (as stored on the connection), or
                          NULL; borrowed during the callback */
} hgf_sync_stats;

/* rc is 0 or the failure (err set). Called once, from the loop, unless
 * hgf_sync_start itself returns an error (then never). */
typedef void (*hgf_sync_cb)(int rc, const hgf_err *err, const hgf_sync_stats *st, void *arg);

typedef struct hgf_sync_opts {
    int posture;   /* also fetch and store each repository's policies */
} hgf_sync_opts;

/* A running sync. It owns itself and frees itself after its callback, until
 * hgf_sync_cancel hands it to the canceller. */
typedef struct hgf_sync hgf_sync;

/* A catalog-only sync (no posture). */
int hgf_sync_start(hgf_runtime *rt, int64_t connection_id, hgf_sync_cb cb, void *arg,
                   hgf_err *err);
/* opts NULL: as hgf_sync_start. *out (when out is not NULL) is the running
 * sync, valid until its callback returns or, once cancelled, until
 * hgf_sync_free. */
int hgf_sync_start_opts(hgf_runtime *rt, int64_t connection_id, const hgf_sync_opts *opts,
                        hgf_sync_cb cb, void *arg, hgf_sync **out, hgf_err *err);

/* Stops a running sync (from the loop, never from its own callback): its
 * callback never runs, it sends nothing more, writes nothing more, and what
 * it still has in flight (HTTP requests, credential fetches, statements)
 * finds it cancelled when it ends. The caller now owns it and frees it with
 * hgf_sync_free once none of those can end any more: after
 * hgf_runtime_close, which ends them all. */
void hgf_sync_cancel(hgf_sync *s);
void hgf_sync_free(hgf_sync *s);

/* Reads a sync job's payload {"connection_id": N, "posture"?: bool}.
 * HGF_EINPUT naming the field (job_id in the message) when it is wrong. */
int hgf_sync_payload(const json_t *payload, int64_t job_id, int64_t *connection_id,
                     hgf_sync_opts *opts, hgf_err *err);

/* Starts the sync a job's payload asks for: hgf_sync_payload, then
 * hgf_sync_start_opts (out as there). What a worker's sync executor calls. */
int hgf_sync_start_job(hgf_runtime *rt, const json_t *payload, int64_t job_id, hgf_sync_cb cb,
                       void *arg, hgf_sync **out, hgf_err *err);

/* Queues a new connection's first sync (the guide's "Save" step), which
 * collects posture too, so that a sweep started meanwhile, which joins the
 * job rather than doubling it, still finds posture. *job_id: the job. */
int hgf_sync_queue_first(hgf_store *s, int64_t connection_id, int64_t *job_id, hgf_err *err);

/* Tag filter semantics: a tag is kept when it matches an include glob (or
 * there are none) and no exclude glob. A tagged image with no tag kept is
 * dropped; an untagged image is kept only when there are no include globs.
 * Returns 1 to keep; kept tags are appended to `kept` (a JSON array). */
int hgf_sync_filter_tags(json_t *tags, char *const *include, int n_include,
                         char *const *exclude, int n_exclude, json_t *kept);

/* The listing goes to hgf_apply_listing as PostgreSQL array literals, one per
 * image field and two for the tags (sql/014). This appends s to b as the
 * next element of such a literal: "{" first when b is empty (the caller
 * appends the closing "}"), then "," before every later element; NULL for s
 * NULL, otherwise s double-quoted with its quotes and backslashes escaped,
 * which array_in reads back unchanged. 0, or HGF_ENOMEM (b then holds part
 * of the element). */
int hgf_sync_append_elem(hgf_buf *b, const char *s);

#endif
