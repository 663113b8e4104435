#include "hgfleet/sync.h"
#include "hgfleet/buf.h"
#include "hgfleet/conn.h"
#include "hgfleet/conntest.h"
#include "hgfleet/diagnose.h"
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

/* One paged listing in flight: the repository list (index -1) or one
 * repository's images. Each request takes fresh credentials from the shared
 * cache, so a long sync rides through any number of refreshes. */
typedef struct call {
    sync_job *j;
    int index;
    char *next;          /* nextToken of the page to fetch, or NULL */
    int expired_retry;   /* set after the one forced refresh */
    hgf_creds creds;     /* this request's credentials (the target borrows them) */
} call;

struct sync_job {
    hgf_runtime *rt;
    int64_t conn_id;
    hgf_connection conn;
    hgf_auth_spec spec;
    char *secret;
    char endpoint[256];
    char rate_key[64];   /* "<account>/<region>/ecr/": adaptive limits per account, region, API */
    repo *repos;
    int n_repos, cap_repos;
    call list;           /* DescribeRepositories */
    call *tasks;         /* DescribeImages, one per repository */
    int next_repo, active;
    hgf_buf images;      /* comma-separated compact JSON objects */
    int failed;
    char fail_step[48];
    long fail_status;
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
    for (int i = 0; j->tasks && i < j->n_repos; i++) {
        free(j->tasks[i].next);
        hgf_creds_clear(&j->tasks[i].creds);
    }
    free(j->tasks);
    free(j->list.next);
    hgf_creds_clear(&j->list.creds);
    hgf_buf_free(&j->images);
    if (j->secret) {
        hgf_secret_wipe(j->secret, strlen(j->secret));
        free(j->secret);
    }
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

static void record_status(sync_job *j, int ok, const char *diagnosis)
{
    char id[24];
    snprintf(id, sizeof id, "%lld", (long long)j->conn_id);
    const char *p[] = {id, ok ? NULL : j->err.msg, diagnosis};
    hgf_store_query(j->rt->store,
                    "UPDATE connections SET last_sync_at = now(), last_sync_status = CASE WHEN "
                    "$2::text IS NULL THEN 'ok' ELSE 'failed' END, last_error = $2, "
                    "last_diagnosis = $3::jsonb WHERE id = $1",
                    3, p, record_status_done, NULL);
}

static char *diagnose(sync_job *j)
{
    hgf_diag_ctx dc = {.step = j->fail_step[0] ? j->fail_step : "Sync",
                       .auth_mode = j->conn.auth_mode, .registry_account = j->conn.reg.account_id,
                       .region = j->conn.reg.region, .role_arn = j->conn.role_arn,
                       .role_chain = j->conn.via_role_arn != NULL,
                       .has_external_id = j->conn.external_id != NULL,
                       .clock_offset = HGF_DIAG_NO_OFFSET, .http_status = j->fail_status};
    hgf_diagnosis d;
    hgf_diag_classify(&j->err, &dc, &d);
    return hgf_diag_to_text(&d, "sync");
}

static void fail(sync_job *j)
{
    char *diag = diagnose(j);
    record_status(j, 0, diag);
    free(diag);
    finish(j, j->err.code ? j->err.code : HGF_EFAIL, NULL);
}

static void set_failure(sync_job *j, const char *step, const hgf_err *err, long status)
{
    if (j->failed)
        return;
    j->failed = 1;
    j->err = *err;
    j->fail_status = status;
    snprintf(j->fail_step, sizeof j->fail_step, "%s", step);
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
    char *diag = NULL;
    if (j->st.repositories == 0) {
        hgf_diag_ctx dc = {.step = "DescribeRepositories", .registry_account = j->conn.reg.account_id,
                           .region = j->conn.reg.region, .clock_offset = HGF_DIAG_NO_OFFSET};
        hgf_diagnosis d;
        hgf_diag_zero_repositories(&dc, &d);
        diag = hgf_diag_to_text(&d, "sync");
    }
    record_status(j, 1, diag);
    free(diag);
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
static void call_send(call *c);

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

/* Returns 1 when another page was requested. */
static int next_page(call *c, json_t *page)
{
    const char *next = hgf_ecr_next_token(page);
    free(c->next);
    c->next = next ? strdup(next) : NULL;
    if (!c->next)
        return 0;
    call_send(c);
    return 1;
}

static void on_images_page(call *c, const hgf_aws_result *res)
{
    sync_job *j = c->j;
    if (res->rc && !strcmp(res->err.aws_code, "RepositoryNotFoundException")) {
        /* Deleted between the listing and now: it is gone, not an error. */
        j->repos[c->index].gone = 1;
    } else if (res->rc) {
        set_failure(j, "DescribeImages", &res->err, res->status);
    } else if (!j->failed) {
        j->st.pages++;
        size_t i;
        json_t *item;
        json_array_foreach(json_object_get(res->json, "imageDetails"), i, item) add_image(j, item);
        if (next_page(c, res->json))
            return;
    }
    repo_finished(j);
}

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

static void on_repos_page(call *c, const hgf_aws_result *res)
{
    sync_job *j = c->j;
    if (res->rc) {
        set_failure(j, "DescribeRepositories", &res->err, res->status);
        fail(j);
        return;
    }
    j->st.pages++;
    size_t i;
    json_t *item;
    json_array_foreach(json_object_get(res->json, "repositories"), i, item) if (add_repo(j, item))
    {
        j->failed = 1;
        fail(j);
        return;
    }
    if (next_page(c, res->json))
        return;
    j->st.repositories = j->n_repos;
    j->tasks = calloc(j->n_repos ? (size_t)j->n_repos : 1, sizeof *j->tasks);
    if (j->n_repos == 0) {
        apply(j);
        return;
    }
    start_repos(j);
}

static void on_result(const hgf_aws_result *res, void *arg)
{
    call *c = arg;
    c->j->st.throttles += res->throttled;
    c->j->st.retries += res->attempts > 1 ? res->attempts - 1 : 0;
    if (res->rc && !c->expired_retry && !strcmp(res->err.aws_code, "ExpiredTokenException")) {
        /* One forced refresh (shared with every job using the same role) and
         * one retry; a second expiry is reported. */
        c->expired_retry = 1;
        /* By key: if another job already replaced these credentials, no new refresh. */
        hgf_credmgr_invalidate_key(c->j->rt->creds, &c->j->spec, c->creds.access_key_id);
        hgf_awsctl_count_retry(c->j->rt->awsctl, "ecr",
                               c->index < 0 ? "DescribeRepositories" : "DescribeImages", "expired");
        call_send(c);
        return;
    }
    c->expired_retry = 0;
    if (c->index < 0)
        on_repos_page(c, res);
    else
        on_images_page(c, res);
}

static void call_failed(call *c, const char *step, const hgf_err *err)
{
    sync_job *j = c->j;
    set_failure(j, step, err, 0);
    if (c->index < 0)
        fail(j);
    else
        repo_finished(j);
}

/* A credential failure names the STS step that failed inside the cache, so
 * the diagnosis can tell a refused AssumeRole from a missing ECR permission. */
static const char *cred_step(const hgf_err *err)
{
    if (!strncmp(err->msg, "AssumeRoleWithWebIdentity", 25))
        return "AssumeRoleWithWebIdentity";
    if (!strncmp(err->msg, "AssumeRole", 10))
        return "AssumeRole";
    return "credentials";
}

static void on_call_creds(int rc, const hgf_err *err, const hgf_creds *creds, void *arg)
{
    call *c = arg;
    sync_job *j = c->j;
    hgf_err e;
    if (!rc)
        rc = hgf_creds_copy(&c->creds, creds, &e);
    else
        e = *err;
    if (rc) {
        call_failed(c, cred_step(&e), &e);
        return;
    }
    hgf_aws_target t = {.http = j->rt->http, .creds = &c->creds, .endpoint = j->endpoint,
                        .region = j->conn.reg.region, .service = "ecr",
                        .limit_key = j->conn.reg.host, .ctl = j->rt->awsctl,
                        .rate_key = j->rate_key};
    j->st.api_calls++;
    if (c->index < 0)
        rc = hgf_ecr_describe_repositories(&t, j->conn.reg.account_id, c->next, on_result, c, &e);
    else
        rc = hgf_ecr_describe_images(&t, j->conn.reg.account_id, j->repos[c->index].name,
                                     c->next, on_result, c, &e);
    if (rc)
        call_failed(c, c->index < 0 ? "DescribeRepositories" : "DescribeImages", &e);
}

static void call_send(call *c)
{
    hgf_err e;
    if (hgf_credmgr_get(c->j->rt->creds, &c->j->spec, on_call_creds, c, &e))
        call_failed(c, "credentials", &e);
}

static void start_repos(sync_job *j)
{
    int limit = j->rt->cfg->per_registry_inflight;
    while (!j->failed && j->active < limit && j->next_repo < j->n_repos) {
        call *c = &j->tasks[j->next_repo];
        c->j = j;
        c->index = j->next_repo++;
        j->active++;
        call_send(c);
    }
}

/* ---- start ---------------------------------------------------------- */

static int prepare(sync_job *j)
{
    int rc = hgf_conn_get(j->rt->store, j->conn_id, &j->conn, &j->err);
    if (rc)
        return rc;
    snprintf(j->st.registry, sizeof j->st.registry, "%s", j->conn.reg.host);
    snprintf(j->rate_key, sizeof j->rate_key, "%s/%s/ecr/", j->conn.reg.account_id,
             j->conn.reg.region);
    rc = hgf_conntest_auth_spec(j->rt, &j->conn, &j->spec, &j->secret, &j->err);
    if (!rc)
        rc = hgf_endpoint_service_url("ECR", &j->conn.reg, j->endpoint, sizeof j->endpoint,
                                      &j->err);
    return rc;
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
    if (rc) {
        hgf_err_set(err, rc, "%s", j->err.msg);
        if (j->conn.id) {
            char *diag = diagnose(j);
            record_status(j, 0, diag);
            free(diag);
        }
        job_free(j);
        return rc;
    }
    j->list.j = j;
    j->list.index = -1;
    call_send(&j->list);
    return 0;
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
