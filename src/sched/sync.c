#include "hgfleet/sync.h"
#include "hgfleet/buf.h"
#include "hgfleet/conn.h"
#include "hgfleet/ecr.h"
#include "hgfleet/log.h"
#include "hgfleet/secret.h"
#include "hgfleet/timeutil.h"

#include <fnmatch.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct repo {
    char *name, *arn, *mut, *enc;
    int sop, gone;
    double created;
} repo;

typedef struct sync_job sync_job;

typedef struct repo_task {
    sync_job *job;
    int index;
} repo_task;

struct sync_job {
    hgf_runtime *rt;
    int64_t conn_id;
    hgf_connection conn;
    hgf_creds creds;
    hgf_aws_target target;
    char endpoint[256];
    repo *repos;
    int n_repos, cap_repos;
    repo_task *tasks;
    int next_repo, active;
    hgf_buf images;        /* comma-separated compact JSON objects */
    int failed;
    hgf_err err;
    hgf_sync_stats st;
    int64_t started_ms;
    hgf_sync_cb cb;
    void *arg;
};

static void job_free(sync_job *j)
{
    for (int i = 0; i < j->n_repos; i++) {
        free(j->repos[i].name);
        free(j->repos[i].arn);
        free(j->repos[i].mut);
        free(j->repos[i].enc);
    }
    free(j->repos);
    free(j->tasks);
    hgf_buf_free(&j->images);
    hgf_creds_clear(&j->creds);
    hgf_conn_free(&j->conn);
    free(j);
}

static void finish(sync_job *j, int rc, json_t *applied)
{
    j->st.seconds = (double)(hgf_time_now_ms() - j->started_ms) / 1000.0;
    j->st.applied = applied;
    if (rc)
        hgf_log_warn("sync.failed", "connection=%lld registry=%s error=%s",
                     (long long)j->conn_id, j->st.registry, j->err.msg);
    else
        hgf_log_info("sync.done", "connection=%lld registry=%s repositories=%d images=%d "
                     "pages=%d seconds=%.3f", (long long)j->conn_id, j->st.registry,
                     j->st.repositories, j->st.images, j->st.pages, j->st.seconds);
    j->cb(rc, rc ? &j->err : NULL, &j->st, j->arg);
    job_free(j);
}

static void record_status_done(PGresult *res, const hgf_err *err, void *arg)
{
    PQclear(res);
}

static void record_status(sync_job *j, int ok)
{
    char id[24];
    snprintf(id, sizeof id, "%lld", (long long)j->conn_id);
    const char *p[] = {id, ok ? NULL : j->err.msg};
    const char *sql = ok ? "UPDATE connections SET last_sync_at = now(), last_sync_status = 'ok', "
                           "last_error = NULL WHERE id = $1"
                         : "UPDATE connections SET last_sync_at = now(), last_sync_status = "
                           "'failed', last_error = $2 WHERE id = $1";
    hgf_store_query(j->rt->store, sql, ok ? 1 : 2, p, record_status_done, NULL);
}

static void fail(sync_job *j)
{
    record_status(j, 0);
    finish(j, j->err.code ? j->err.code : HGF_EFAIL, NULL);
}

/* ---- writing the result ---------------------------------------------- */

static void on_applied(PGresult *res, const hgf_err *err, void *arg)
{
    sync_job *j = arg;
    int rc = err ? hgf_err_set(&j->err, err->code, "%s", err->msg) : hgf_store_check(res, &j->err);
    if (rc) {
        PQclear(res);
        fail(j);
        return;
    }
    json_t *applied = json_loads(PQgetvalue(res, 0, 0), 0, NULL);
    PQclear(res);
    hgf_store_add_rows_written(j->rt->store,
                               (long)json_integer_value(json_object_get(applied, "rows_written")));
    record_status(j, 1);
    finish(j, 0, applied);
    json_decref(applied);
}

static void put_repo_json(hgf_buf *b, const repo *r)
{
    json_t *o = json_pack("{s:s, s:s?, s:s?, s:b, s:s?, s:f}", "n", r->name, "a", r->arn, "m",
                          r->mut, "s", r->sop, "e", r->enc, "c", r->created);
    char *t = json_dumps(o, JSON_COMPACT);
    hgf_buf_puts(b, t);
    free(t);
    json_decref(o);
}

static void apply(sync_job *j)
{
    hgf_buf repos = HGF_BUF_INIT, images = HGF_BUF_INIT;
    hgf_buf_putc(&repos, '[');
    int first = 1;
    for (int i = 0; i < j->n_repos; i++) {
        if (j->repos[i].gone)
            continue;
        if (!first)
            hgf_buf_putc(&repos, ',');
        first = 0;
        put_repo_json(&repos, &j->repos[i]);
    }
    hgf_buf_putc(&repos, ']');
    hgf_buf_printf(&images, "[%s]", hgf_buf_str(&j->images));
    hgf_buf_free(&j->images);
    char id[24];
    snprintf(id, sizeof id, "%lld", (long long)j->conn_id);
    const char *p[] = {id, repos.data, images.data};
    int rc = hgf_store_query(j->rt->store,
                             "SELECT hgf_apply_sync($1, $2::jsonb, $3::jsonb, 'sync')::text", 3, p,
                             on_applied, j);
    hgf_buf_free(&repos);
    hgf_buf_free(&images);
    if (rc) {
        hgf_err_set(&j->err, rc, "database unavailable while saving the catalog");
        fail(j);
    }
}

/* ---- DescribeImages per repository ----------------------------------- */

static void start_repos(sync_job *j);

static void add_image(sync_job *j, json_t *item)
{
    hgf_ecr_image im;
    hgf_err e;
    if (hgf_ecr_parse_image(item, &im, &e)) {
        hgf_log_warn("sync.bad_item", "registry=%s %s", j->st.registry, e.msg);
        return;
    }
    json_t *kept = json_array();
    if (!hgf_sync_filter_tags(im.tags, j->conn.tag_include, j->conn.n_include,
                              j->conn.tag_exclude, j->conn.n_exclude, kept)) {
        j->st.images_filtered++;
        json_decref(kept);
        return;
    }
    json_t *o = json_pack("{s:s, s:s, s:o, s:s?, s:s?, s:I, s:f}", "r",
                          json_string_value(json_object_get(item, "repositoryName")), "d",
                          im.digest, "t", kept, "m", im.media_type, "a", im.artifact_media_type,
                          "s", (json_int_t)im.size_bytes, "p", im.pushed_at);
    char *t = o ? json_dumps(o, JSON_COMPACT) : NULL;
    if (t) {
        if (j->images.len)
            hgf_buf_putc(&j->images, ',');
        hgf_buf_puts(&j->images, t);
        j->st.images++;
    }
    free(t);
    json_decref(o);
}

static void on_images(const hgf_aws_result *res, void *arg);

static int request_images(repo_task *t, const char *token)
{
    sync_job *j = t->job;
    j->st.api_calls++;
    return hgf_ecr_describe_images(&j->target, j->conn.reg.account_id, j->repos[t->index].name,
                                   token, on_images, t, &j->err);
}

static void repo_finished(sync_job *j)
{
    j->active--;
    if (!j->failed)
        start_repos(j);
    if (j->active == 0 && (j->failed || j->next_repo >= j->n_repos)) {
        if (j->failed)
            fail(j);
        else
            apply(j);
    }
}

static void on_images(const hgf_aws_result *res, void *arg)
{
    repo_task *t = arg;
    sync_job *j = t->job;
    if (res->rc && !strcmp(res->err.aws_code, "RepositoryNotFoundException")) {
        /* Deleted between the listing and now: it is gone, not an error. */
        j->repos[t->index].gone = 1;
        repo_finished(j);
        return;
    }
    if (res->rc || j->failed) {
        if (res->rc && !j->failed) {
            j->err = res->err;
            j->failed = 1;
        }
        repo_finished(j);
        return;
    }
    j->st.pages++;
    json_t *items = json_object_get(res->json, "imageDetails");
    size_t i;
    json_t *item;
    json_array_foreach(items, i, item) add_image(j, item);
    const char *next = hgf_ecr_next_token(res->json);
    if (next && request_images(t, next) == 0)
        return;
    if (next) /* could not send the next page */
        j->failed = 1;
    repo_finished(j);
}

static void start_repos(sync_job *j)
{
    int limit = j->rt->cfg->per_registry_inflight;
    while (!j->failed && j->active < limit && j->next_repo < j->n_repos) {
        repo_task *t = &j->tasks[j->next_repo];
        t->job = j;
        t->index = j->next_repo++;
        j->active++;
        if (request_images(t, NULL)) {
            j->failed = 1;
            j->active--;
        }
    }
}

/* ---- DescribeRepositories ------------------------------------------- */

static int add_repo(sync_job *j, json_t *item)
{
    hgf_ecr_repo r;
    if (hgf_ecr_parse_repo(item, &r, &j->err))
        return -1;
    if (j->n_repos == j->cap_repos) {
        int cap = j->cap_repos ? j->cap_repos * 2 : 64;
        repo *p = realloc(j->repos, (size_t)cap * sizeof *p);
        if (!p)
            return hgf_err_set(&j->err, HGF_ENOMEM, "out of memory");
        j->repos = p;
        j->cap_repos = cap;
    }
    repo *d = &j->repos[j->n_repos++];
    memset(d, 0, sizeof *d);
    d->name = strdup(r.name);
    d->arn = r.arn ? strdup(r.arn) : NULL;
    d->mut = r.tag_mutability ? strdup(r.tag_mutability) : NULL;
    d->enc = r.encryption ? strdup(r.encryption) : NULL;
    d->sop = r.scan_on_push;
    d->created = r.created_at;
    return 0;
}

static void on_repos(const hgf_aws_result *res, void *arg)
{
    sync_job *j = arg;
    if (res->rc) {
        j->err = res->err;
        fail(j);
        return;
    }
    j->st.pages++;
    size_t i;
    json_t *item;
    json_array_foreach(json_object_get(res->json, "repositories"), i, item) if (add_repo(j, item))
    {
        fail(j);
        return;
    }
    const char *next = hgf_ecr_next_token(res->json);
    if (next) {
        j->st.api_calls++;
        if (hgf_ecr_describe_repositories(&j->target, j->conn.reg.account_id, next, on_repos, j,
                                          &j->err))
            fail(j);
        return;
    }
    j->st.repositories = j->n_repos;
    j->tasks = calloc(j->n_repos ? (size_t)j->n_repos : 1, sizeof *j->tasks);
    if (j->n_repos == 0) {
        apply(j);
        return;
    }
    start_repos(j);
    if (j->active == 0)
        fail(j);
}

/* ---- start ---------------------------------------------------------- */

static int resolve_creds(sync_job *j)
{
    hgf_connection *c = &j->conn;
    if (!strcmp(c->auth_mode, "static")) {
        if (!j->rt->cfg->has_master_key)
            return hgf_err_set(&j->err, HGF_EINPUT,
                               "HGFLEET_MASTER_KEY is not set: cannot decrypt the secret access "
                               "key of connection %lld", (long long)c->id);
        hgf_buf plain = HGF_BUF_INIT;
        int rc = hgf_secret_open(&j->rt->cfg->master_key, c->secret_sealed ? c->secret_sealed : "",
                                 &plain, &j->err);
        if (!rc)
            rc = hgf_creds_set(&j->creds, c->access_key_id, hgf_buf_str(&plain), NULL, 0,
                               "static", &j->err);
        hgf_secret_wipe_buf(&plain);
        return rc;
    }
    if (!strcmp(c->auth_mode, "host")) {
        int rc = hgf_creds_from_env(&j->creds, &j->err);
        if (rc == HGF_ENOTFOUND)
            hgf_err_set(&j->err, HGF_EFAIL,
                        "no host credentials: AWS_ACCESS_KEY_ID is not set in the environment");
        return rc;
    }
    return hgf_err_set(&j->err, HGF_EFAIL, "auth mode %s is not supported by this build",
                       c->auth_mode);
}

static int prepare(sync_job *j)
{
    int rc = hgf_conn_get(j->rt->store, j->conn_id, &j->conn, &j->err);
    if (rc)
        return rc;
    snprintf(j->st.registry, sizeof j->st.registry, "%s", j->conn.reg.host);
    rc = resolve_creds(j);
    if (rc)
        return rc;
    rc = hgf_endpoint_service_url("ECR", &j->conn.reg, j->endpoint, sizeof j->endpoint, &j->err);
    if (rc)
        return rc;
    j->target = (hgf_aws_target){.http = j->rt->http, .creds = &j->creds, .endpoint = j->endpoint,
                                 .region = j->conn.reg.region, .service = "ecr",
                                 .limit_key = j->conn.reg.host};
    return 0;
}

int hgf_sync_start(hgf_runtime *rt, int64_t connection_id, hgf_sync_cb cb, void *arg, hgf_err *err)
{
    sync_job *j = calloc(1, sizeof *j);
    if (!j)
        return hgf_err_set(err, HGF_ENOMEM, "out of memory");
    j->rt = rt;
    j->conn_id = connection_id;
    j->cb = cb;
    j->arg = arg;
    j->started_ms = hgf_time_now_ms();
    j->st.connection_id = connection_id;
    hgf_err_clear(&j->err);
    int rc = prepare(j);
    if (!rc) {
        j->st.api_calls++;
        rc = hgf_ecr_describe_repositories(&j->target, j->conn.reg.account_id, NULL, on_repos, j,
                                           &j->err);
    }
    if (rc) {
        hgf_err_set(err, rc, "%s", j->err.msg);
        if (j->conn.id)
            record_status(j, 0);
        job_free(j);
    }
    return rc;
}

static int any_match(const char *tag, char *const *globs, int n)
{
    for (int i = 0; i < n; i++)
        if (fnmatch(globs[i], tag, 0) == 0)
            return 1;
    return 0;
}

int hgf_sync_filter_tags(json_t *tags, char *const *include, int n_include,
                         char *const *exclude, int n_exclude, json_t *kept)
{
    if (json_array_size(tags) == 0)
        return n_include == 0;
    size_t i;
    json_t *v;
    json_array_foreach(tags, i, v)
    {
        const char *tag = json_string_value(v);
        if (tag && (n_include == 0 || any_match(tag, include, n_include)) &&
            !any_match(tag, exclude, n_exclude))
            json_array_append(kept, v);
    }
    return json_array_size(kept) > 0;
}
