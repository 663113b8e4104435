/* The job queue in PostgreSQL: enqueue with a dedup key, claim with
 * FOR UPDATE SKIP LOCKED under a lease, finish, and re-queue expired leases.
 *
 * Ownership: hgf_jobs_claim returns a malloc'd array of hgf_job the caller
 * frees with hgf_jobs_free (payloads are jansson references it owns). */
#ifndef HGF_JOBS_H
#define HGF_JOBS_H

#include <jansson.h>
#include <stdint.h>

#include "hgfleet/err.h"
#include "hgfleet/store.h"

typedef struct hgf_job {
    int64_t id;
    char kind[16];
    json_t *payload;
    int attempts, max_attempts;
} hgf_job;

/* Inserts a queued job unless one with the same dedup key is queued or
 * running; either way *job_id is the live job's id and *created says which. */
int hgf_jobs_enqueue(hgf_store *s, const char *kind, const char *payload_json, int priority,
                     const char *dedup_key, int64_t *job_id, int *created, hgf_err *err);

/* Claims up to `limit` queued jobs (optionally only of `kind` and only among
 * `ids`), highest priority first, leased to `owner` for lease_seconds.
 * Expired leases are put back in the queue first. */
int hgf_jobs_claim(hgf_store *s, const char *owner, int lease_seconds, const char *kind,
                   const int64_t *ids, int n_ids, int limit, hgf_job **out, int *n, hgf_err *err);
void hgf_jobs_free(hgf_job *jobs, int n);

/* Finishing is asynchronous (it happens inside job callbacks): the store
 * callback may be NULL. error == NULL means success. */
int hgf_jobs_finish(hgf_store *s, int64_t id, const char *owner, const char *error,
                    const char *result_json, hgf_store_cb cb, void *arg);
/* Renews every lease this owner holds. Asynchronous. */
int hgf_jobs_heartbeat(hgf_store *s, const char *owner, int lease_seconds);

/* How many of `ids` are still queued or running. */
int hgf_jobs_count_live(hgf_store *s, const int64_t *ids, int n_ids, int *live, hgf_err *err);

/* Formats ids as a PostgreSQL bigint[] literal. */
void hgf_jobs_id_array(const int64_t *ids, int n, hgf_buf *out);

#endif
