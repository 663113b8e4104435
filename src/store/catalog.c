#include "catalog_internal.h"
#include "hgfleet/conn.h"
#include "hgfleet/endpoint.h"
#include "hgfleet/jobs.h"

#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ISO HGF_CATALOG_ISO

/* ---- filling a query ------------------------------------------------- */

void hgf_catalog_reset(hgf_catalog_query *q, const char *sql, hgf_catalog_to_json to_json)
{
    memset(q, 0, sizeof *q);
    snprintf(q->sql, sizeof q->sql, "%s", sql);
    q->to_json = to_json;
}

int hgf_catalog_set(hgf_catalog_query *q, int i, const char *value)
{
    if (i < 0 || i >= HGF_CATALOG_PARAMS || (value && strlen(value) >= HGF_CATALOG_PARAM_MAX))
        return hgf_err_set(NULL, HGF_EINPUT, "catalog parameter %d out of bounds", i);
    q->is_null[i] = value == NULL;
    snprintf(q->param[i], sizeof q->param[i], "%s", value ? value : "");
    if (q->nparams < i + 1)
        q->nparams = i + 1;
    return 0;
}

int hgf_catalog_set_int(hgf_catalog_query *q, int i, int64_t value)
{
    char text[24];
    snprintf(text, sizeof text, "%lld", (long long)value);
    return hgf_catalog_set(q, i, text);
}

/* ---- reading results ------------------------------------------------- */

static int unreadable(const hgf_catalog_query *q, const json_error_t *je, hgf_err *err)
{
    return hgf_err_set(err, HGF_EDB, "unreadable JSON from the database (%.80s...): %s", q->sql,
                       je->text);
}

int hgf_catalog_read_array(const PGresult *res, const hgf_catalog_query *q, json_t **out,
                           hgf_err *err)
{
    json_error_t je;
    if (PQntuples(res) != 1 || PQgetisnull(res, 0, 0))
        return hgf_err_set(err, HGF_EDB, "expected one JSON array from the database, got %d rows",
                           PQntuples(res));
    *out = json_loads(PQgetvalue(res, 0, 0), 0, &je);
    if (json_is_array(*out))
        return 0;
    json_decref(*out);
    *out = NULL;
    return unreadable(q, &je, err);
}

int hgf_catalog_read_object(const PGresult *res, const hgf_catalog_query *q, const char *what,
                            json_t **out, hgf_err *err)
{
    json_error_t je;
    if (PQntuples(res) == 0)
        return hgf_err_set(err, HGF_ENOTFOUND, "%s %lld does not exist", what, (long long)q->id);
    *out = json_loads(PQgetvalue(res, 0, 0), 0, &je);
    if (json_is_object(*out))
        return 0;
    json_decref(*out);
    *out = NULL;
    return unreadable(q, &je, err);
}

/* ---- connections ----------------------------------------------------- */

/* The same row parser and JSON as every other reader of connections, so the
 * API shows exactly what `connection show --json` does, and no secret. */
static int conn_rows(const PGresult *res, json_t *a, hgf_err *err)
{
    for (int i = 0; i < PQntuples(res); i++) {
        hgf_connection c;
        int rc = hgf_conn_from_row(res, i, &c, err);
        if (!rc && json_array_append_new(a, hgf_conn_to_json(&c)))
            rc = hgf_err_set(err, HGF_ENOMEM, "out of memory");
        hgf_conn_free(&c);
        if (rc)
            return rc;
    }
    return 0;
}

static int read_connections(const PGresult *res, const hgf_catalog_query *q, json_t **out,
                            hgf_err *err)
{
    json_t *a = json_array();
    int rc = a ? conn_rows(res, a, err) : hgf_err_set(err, HGF_ENOMEM, "out of memory");
    if (rc)
        json_decref(a);
    else
        *out = a;
    return rc;
}

static int read_connection(const PGresult *res, const hgf_catalog_query *q, json_t **out,
                           hgf_err *err)
{
    if (PQntuples(res) == 0)
        return hgf_err_set(err, HGF_ENOTFOUND, "no connection with id %lld", (long long)q->id);
    json_t *a = NULL;
    int rc = read_connections(res, q, &a, err);
    if (!rc)
        *out = json_incref(json_array_get(a, 0));
    json_decref(a);
    return rc;
}

static void conn_query(hgf_catalog_query *q, const char *where, hgf_catalog_to_json to_json)
{
    char sql[HGF_CATALOG_SQL_MAX];
    snprintf(sql, sizeof sql, "SELECT %s FROM connections WHERE removed_at IS NULL%s ORDER BY id",
             HGF_CONN_COLUMNS, where);
    hgf_catalog_reset(q, sql, to_json);
}

const hgf_catalog_query *hgf_catalog_connections(hgf_catalog_query *q)
{
    conn_query(q, "", read_connections);
    return q;
}

const hgf_catalog_query *hgf_catalog_connection(hgf_catalog_query *q, int64_t id)
{
    conn_query(q, " AND id = $1", read_connection);
    q->id = id;
    hgf_catalog_set_int(q, 0, id);
    return q;
}

/* ---- images ---------------------------------------------------------- */

/* Keyset pages ($4..$6: the last row of the previous page) keep memory flat
 * however large the catalog is. */
static const char IMAGES_SQL[] =
    "SELECT coalesce(json_agg(o ORDER BY k1, k2, k3), '[]')::text FROM ("
    "SELECT c.registry AS k1, r.name AS k2, i.digest AS k3, json_build_object("
    " 'registry', c.registry, 'account_id', c.account_id, 'region', c.region,"
    " 'repository', r.name, 'digest', i.digest,"
    " 'tags', coalesce((SELECT json_agg(t.tag ORDER BY t.tag) FROM image_tags t"
    "                   WHERE t.image_id = i.id), '[]'::json),"
    " 'pushed_at', " ISO("i.pushed_at") ","
    " 'last_scanned_at', (SELECT " ISO("max(s.finished_at)") " FROM scans s"
    "                     WHERE s.image_id = i.id AND s.status = 'ok'),"
    " 'size_bytes', i.size_bytes, 'media_type', i.media_type,"
    " 'state', CASE WHEN i.deleted_at IS NULL THEN 'present' ELSE 'deleted' END,"
    " 'scan_status', coalesce((SELECT s.status FROM scans s WHERE s.image_id = i.id"
    "                          AND s.status <> 'running' ORDER BY s.id DESC LIMIT 1),"
    "   CASE WHEN EXISTS (SELECT 1 FROM jobs j WHERE j.kind = 'scan'"
    "        AND j.state IN ('queued', 'running') AND j.dedup_key = 'scan:' || c.registry"
    "        || '/' || r.name || '@' || i.digest) THEN 'queued' ELSE 'none' END)) AS o"
    " FROM images i JOIN repositories r ON r.id = i.repository_id"
    " JOIN connections c ON c.id = r.connection_id"
    " WHERE c.removed_at IS NULL AND ($1::text IS NULL OR"
    "   (c.partition || '/' || c.account_id || '/' || c.region) = $1)"
    " AND ($2::text IS NULL OR r.name = $2)"
    " AND ($3::text IS NULL OR (i.deleted_at IS NULL) = ($3 = 'present'))"
    " AND ($4::text IS NULL OR (c.registry, r.name, i.digest) > ($4, $5, $6))"
    " ORDER BY c.registry, r.name, i.digest LIMIT $7::int) page";

static int bad(hgf_catalog_query *q, const char *prefix, const char *field, hgf_err *err,
               const char *fmt, ...) __attribute__((format(printf, 5, 6)));

static int bad(hgf_catalog_query *q, const char *prefix, const char *field, hgf_err *err,
               const char *fmt, ...)
{
    char why[600];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, sizeof why, fmt, ap);
    va_end(ap);
    q->bad_field = field;
    return hgf_err_set(err, HGF_EINPUT, "%s%s: %s", prefix, field, why);
}

static int check_repository(hgf_catalog_query *q, const char *repo, const char *prefix,
                            hgf_err *err)
{
    size_t n = strlen(repo);
    int ok = n > 0 && n <= HGF_CATALOG_REPOSITORY_MAX;
    for (size_t i = 0; ok && i < n; i++)
        ok = isgraph((unsigned char)repo[i]) != 0;
    if (!ok)
        return bad(q, prefix, "repository", err,
                   "expected a name of 1 to %d printable characters", HGF_CATALOG_REPOSITORY_MAX);
    return 0;
}

static int images_filter(hgf_catalog_query *q, const hgf_catalog_images_filter *f,
                         const char *prefix, hgf_err *err)
{
    hgf_registry reg;
    if (f->registry && hgf_endpoint_parse_registry(f->registry, &reg, err))
        return bad(q, prefix, "registry", err, "%s", err->msg);
    if (f->repository && check_repository(q, f->repository, prefix, err))
        return HGF_EINPUT;
    if (f->state && strcmp(f->state, "present") && strcmp(f->state, "deleted"))
        return bad(q, prefix, "state", err, "expected present or deleted, got \"%.64s\"",
                   f->state);
    if (f->limit < 1)
        return bad(q, prefix, "limit", err, "expected at least 1, got %d", f->limit);
    /* One registry is one (partition, account, region), whichever form of
     * its URL (-fips or not) names it. */
    char key[80] = "";
    if (f->registry)
        snprintf(key, sizeof key, "%s/%s/%s", reg.partition, reg.account_id, reg.region);
    hgf_catalog_set(q, 0, f->registry ? key : NULL);
    hgf_catalog_set(q, 1, f->repository);
    hgf_catalog_set(q, 2, f->state);
    return 0;
}

int hgf_catalog_images(hgf_catalog_query *q, const hgf_catalog_images_filter *f,
                       const char *prefix, hgf_err *err)
{
    hgf_catalog_reset(q, IMAGES_SQL, hgf_catalog_read_array);
    int rc = images_filter(q, f, prefix, err);
    for (int i = 3; !rc && i < 6; i++)
        rc = hgf_catalog_set(q, i, NULL);
    return rc ? rc : hgf_catalog_set_int(q, 6, f->limit);
}

int hgf_catalog_images_after(hgf_catalog_query *q, const json_t *last, hgf_err *err)
{
    static const char *const keys[] = {"registry", "repository", "digest"};
    for (int i = 0; i < 3; i++) {
        const char *v = json_string_value(json_object_get(last, keys[i]));
        if (!v || strlen(v) >= HGF_CATALOG_PARAM_MAX)
            return hgf_err_set(err, HGF_EINPUT, "images page: the last row has no usable %s",
                               keys[i]);
        hgf_catalog_set(q, 3 + i, v);
    }
    return 0;
}

/* ---- jobs ------------------------------------------------------------ */

static const char JOBS_SQL[] =
    "SELECT coalesce(json_agg(json_build_object("
    " 'id', id, 'kind', kind, 'state', state, 'priority', priority,"
    " 'attempts', attempts, 'max_attempts', max_attempts,"
    " 'run_at', " ISO("run_at") ", 'lease_owner', lease_owner,"
    " 'lease_expires_at', " ISO("lease_expires_at") ", 'dedup_key', dedup_key,"
    " 'last_error', last_error, 'created_at', " ISO("created_at") ","
    " 'finished_at', " ISO("finished_at") ", 'payload', payload) ORDER BY id DESC), '[]')::text"
    " FROM (SELECT * FROM jobs WHERE ($1::text IS NULL OR state = $1)"
    " AND ($2::text IS NULL OR kind = $2) ORDER BY id DESC LIMIT $3::int) j";

int hgf_catalog_jobs(hgf_catalog_query *q, const char *state, const char *kind, int limit,
                     const char *prefix, hgf_err *err)
{
    hgf_catalog_reset(q, JOBS_SQL, hgf_catalog_read_array);
    if (state && !hgf_jobs_valid_state(state))
        return bad(q, prefix, "state", err,
                   "expected queued, running, done or failed, got \"%.64s\"", state);
    if (kind && !hgf_jobs_valid_kind(kind))
        return bad(q, prefix, "kind", err, "expected sync, scan or sweep, got \"%.64s\"", kind);
    if (limit < 1)
        return bad(q, prefix, "limit", err, "expected at least 1, got %d", limit);
    hgf_catalog_set(q, 0, state);
    hgf_catalog_set(q, 1, kind);
    return hgf_catalog_set_int(q, 2, limit);
}

/* ---- running --------------------------------------------------------- */

static void param_list(const hgf_catalog_query *q, const char *p[HGF_CATALOG_PARAMS])
{
    for (int i = 0; i < q->nparams; i++)
        p[i] = q->is_null[i] ? NULL : q->param[i];
}

int hgf_catalog_exec(hgf_store *s, const hgf_catalog_query *q, json_t **out, hgf_err *err)
{
    const char *p[HGF_CATALOG_PARAMS];
    param_list(q, p);
    PGresult *res = NULL;
    *out = NULL;
    int rc = hgf_store_exec(s, q->sql, q->nparams, p, &res, err);
    if (!rc)
        rc = q->to_json(res, q, out, err);
    PQclear(res);
    return rc;
}

typedef struct pending {
    hgf_catalog_query q;
    hgf_catalog_cb cb;
    void *arg;
} pending;

static void on_result(PGresult *res, const hgf_err *store_err, void *arg)
{
    pending *p = arg;
    hgf_err e;
    hgf_err_clear(&e);
    json_t *out = NULL;
    int rc = store_err ? (store_err->code ? store_err->code : HGF_EDB) : hgf_store_check(res, &e);
    if (store_err)
        e = *store_err;
    if (!rc)
        rc = p->q.to_json(res, &p->q, &out, &e);
    PQclear(res);
    p->cb(rc ? NULL : out, rc ? &e : NULL, p->arg);
    free(p);
}

int hgf_catalog_send(hgf_store *s, const hgf_catalog_query *q, hgf_catalog_cb cb, void *arg)
{
    pending *p = malloc(sizeof *p);
    if (!p)
        return HGF_ENOMEM;
    p->q = *q;
    p->cb = cb;
    p->arg = arg;
    const char *params[HGF_CATALOG_PARAMS];
    param_list(&p->q, params);
    int rc = hgf_store_query(s, p->q.sql, p->q.nparams, params, on_result, p);
    if (rc)
        free(p);
    return rc;
}

/* ---- parsing input --------------------------------------------------- */

static int parse_positive(const char *text, long long max, long long *out)
{
    if (!text || !isdigit((unsigned char)*text))
        return -1;
    char *end;
    errno = 0;
    long long n = strtoll(text, &end, 10);
    if (*end || errno || n < 1 || n > max)
        return -1;
    *out = n;
    return 0;
}

int hgf_catalog_parse_limit(const char *text, const char *field, int def, int max, int *out,
                            hgf_err *err)
{
    long long n = def;
    if (text && parse_positive(text, max, &n))
        return hgf_err_set(err, HGF_EINPUT, "%s: expected a whole number from 1 to %d, got "
                           "\"%.64s\"", field, max, text);
    *out = (int)n;
    return 0;
}

int hgf_catalog_parse_id(const char *text, const char *field, int64_t *out, hgf_err *err)
{
    long long n;
    if (parse_positive(text, INT64_MAX, &n))
        return hgf_err_set(err, HGF_EINPUT, "%s: expected a positive whole number, got "
                           "\"%.64s\"", field, text ? text : "");
    *out = n;
    return 0;
}
