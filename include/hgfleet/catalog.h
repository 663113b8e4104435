/* Read-only views of the store, shared by the CLI's --json output and the
 * HTTP API (GET /api/...), so the two cannot drift: a view is one SQL
 * statement plus the code that turns its result into JSON. A builder
 * validates its input and fills a hgf_catalog_query; the query then runs
 * synchronously (hgf_catalog_exec: CLI commands) or on the loop
 * (hgf_catalog_send: HTTP handlers, which must not block).
 *
 *   view          JSON                                              errors
 *   connections   [hgf_conn_to_json ...] of live connections by id
 *   connection    one hgf_conn_to_json object                       HGF_ENOTFOUND
 *   images        [DESIGN.md's image objects] by registry, repository, digest
 *   jobs          hgf_jobs_list's objects, newest first
 *   sweeps        [{id, requested_by, started_at, finished_at, status, totals}]
 *                 newest first
 *   sweep         one such object                                   HGF_ENOTFOUND
 *   sweep_report  the stored report (`sweep show`)                  HGF_ENOTFOUND;
 *                                                                   HGF_EFAIL: none yet
 * Connection objects never hold a secret: not the sealed secret access key,
 * not the external id (only whether one is set).
 *
 * Builders name the bad field in err->msg as `prefix` + name ("--" for the
 * CLI's flags, "" for query parameters) and leave the bare name in
 * q->bad_field.
 *
 * Ownership: a hgf_catalog_query is a plain value holding copies of its
 * parameters; nothing in it needs freeing and it may be copied. Results are
 * new JSON references: hgf_catalog_exec's the caller decrefs, the one handed
 * to a hgf_catalog_cb the callback owns. */
#ifndef HGF_CATALOG_H
#define HGF_CATALOG_H

#include <jansson.h>
#include <libpq-fe.h>
#include <stdint.h>

#include "hgfleet/err.h"
#include "hgfleet/store.h"

#define HGF_CATALOG_PARAMS 8
/* Longer than any registry host, ECR repository name (256) or digest. */
#define HGF_CATALOG_PARAM_MAX 320
#define HGF_CATALOG_SQL_MAX 4096
/* ECR's own bound on repository names. */
#define HGF_CATALOG_REPOSITORY_MAX 256

typedef struct hgf_catalog_query hgf_catalog_query;

/* Turns the statement's result into the view's JSON (*out, new reference). */
typedef int (*hgf_catalog_to_json)(const PGresult *res, const hgf_catalog_query *q, json_t **out,
                                   hgf_err *err);

struct hgf_catalog_query {
    char sql[HGF_CATALOG_SQL_MAX];
    int nparams;
    char param[HGF_CATALOG_PARAMS][HGF_CATALOG_PARAM_MAX];
    unsigned char is_null[HGF_CATALOG_PARAMS];
    int64_t id;                  /* the id a single-object view asks for */
    hgf_catalog_to_json to_json;
    const char *bad_field;       /* after a builder failed: the field, or NULL */
};

typedef struct hgf_catalog_images_filter {
    const char *registry;    /* registry URL or bare host; NULL for all */
    const char *repository;  /* NULL for all */
    const char *state;       /* "present", "deleted" or NULL for both */
    int limit;               /* rows, at least 1 */
} hgf_catalog_images_filter;

/* ---- builders ---- */

/* Those that take no user input cannot fail and return q. */
const hgf_catalog_query *hgf_catalog_connections(hgf_catalog_query *q);
const hgf_catalog_query *hgf_catalog_connection(hgf_catalog_query *q, int64_t id);
const hgf_catalog_query *hgf_catalog_sweeps(hgf_catalog_query *q, int limit);
const hgf_catalog_query *hgf_catalog_sweep(hgf_catalog_query *q, int64_t id);
const hgf_catalog_query *hgf_catalog_sweep_report(hgf_catalog_query *q, int64_t id);

/* The others return 0, or HGF_EINPUT naming the field. */
int hgf_catalog_images(hgf_catalog_query *q, const hgf_catalog_images_filter *f,
                       const char *prefix, hgf_err *err);
/* The next page of an images query: the rows after `last`, an object of the
 * page just read (its registry, repository and digest). */
int hgf_catalog_images_after(hgf_catalog_query *q, const json_t *last, hgf_err *err);
/* state and kind may be NULL (any); checked with hgf_jobs_valid_*. */
int hgf_catalog_jobs(hgf_catalog_query *q, const char *state, const char *kind, int limit,
                     const char *prefix, hgf_err *err);

/* ---- running ---- */

/* Runs the query and runs the loop until it is done. Not from a loop callback. */
int hgf_catalog_exec(hgf_store *s, const hgf_catalog_query *q, json_t **out, hgf_err *err);

/* err is NULL on success, when result is the view's JSON (owned by the
 * callback); otherwise result is NULL and err->code says why (HGF_EDB,
 * HGF_ENOTFOUND, ...). */
typedef void (*hgf_catalog_cb)(json_t *result, const hgf_err *err, void *arg);
/* Sends the query; cb runs from the loop, never from inside this call.
 * HGF_EDB (no callback) when the store is down, HGF_ENOMEM likewise. */
int hgf_catalog_send(hgf_store *s, const hgf_catalog_query *q, hgf_catalog_cb cb, void *arg);

/* ---- parsing input ---- */

/* A row count: NULL means def; otherwise a whole number from 1 to max.
 * HGF_EINPUT naming field. */
int hgf_catalog_parse_limit(const char *text, const char *field, int def, int max, int *out,
                            hgf_err *err);
/* A positive decimal id (no sign, no spaces, fits in int64_t). HGF_EINPUT
 * naming field. */
int hgf_catalog_parse_id(const char *text, const char *field, int64_t *out, hgf_err *err);

#endif
