#include "hgfleet/conntest.h"
#include "hgfleet/ecr.h"
#include "hgfleet/registry.h"
#include "hgfleet/secret.h"
#include "hgfleet/sts.h"
#include "hgfleet/timeutil.h"

#include <curl/curl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct ct {
    hgf_runtime *rt;
    const hgf_connection *c;
    hgf_auth_spec src_spec;
    char *secret;
    hgf_creds cur;
    char sts_endpoint[256], ecr_endpoint[256];
    char caller_arn[256], caller_account[13];
    long clock_offset;
    int hop;           /* 0: --via-role-arn, 1: --role-arn */
    char *token;       /* the ECR Basic token */
    char proxy[512];
    json_t *repos;     /* names from DescribeRepositories */
    size_t repo_index;
    char repo[256], digest[80];
    json_t *steps;
    int64_t step_start;
    hgf_diagnosis diag;
    hgf_conntest_cb cb;
    void *arg;
} ct;

static void add_step(ct *t, const char *name, const char *status, const char *detail)
{
    double secs = (double)(hgf_time_now_ms() - t->step_start) / 1000.0;
    json_array_append_new(t->steps, json_pack("{s:s, s:s, s:f, s:s}", "name", name, "status",
                                              status, "seconds", secs, "detail", detail));
    t->step_start = hgf_time_now_ms();
}

static void observe_date(ct *t, const char *date)
{
    time_t server = date ? curl_getdate(date, NULL) : -1;
    if (server > 0)
        t->clock_offset = (long)(server - time(NULL));
}

static void finish(ct *t, int healthy)
{
    json_t *j = json_pack("{s:I, s:s, s:s, s:b, s:o}", "connection_id", (json_int_t)t->c->id,
                          "registry", t->c->reg.host, "auth_mode", t->c->auth_mode, "healthy",
                          healthy, "steps", t->steps);
    json_object_set_new(j, "diagnosis", healthy ? json_null() : hgf_diag_to_json(&t->diag));
    if (t->clock_offset != HGF_DIAG_NO_OFFSET)
        json_object_set_new(j, "clock_offset_seconds", json_integer(t->clock_offset));
    hgf_conntest_report r = {healthy, healthy ? NULL : &t->diag, j};
    t->cb(&r, t->arg);
    json_decref(j);
    json_decref(t->repos);
    free(t->token);
    if (t->secret) {
        hgf_secret_wipe(t->secret, strlen(t->secret));
        free(t->secret);
    }
    hgf_creds_clear(&t->cur);
    free(t);
}

static void fail(ct *t, const char *step, const hgf_err *err, long status)
{
    hgf_diag_ctx dc = {.step = step, .auth_mode = t->c->auth_mode,
                       .caller_arn = t->caller_arn[0] ? t->caller_arn : NULL,
                       .caller_account = t->caller_account,
                       .registry_account = t->c->reg.account_id, .region = t->c->reg.region,
                       .role_arn = t->hop == 0 && t->c->via_role_arn ? t->c->via_role_arn
                                                                      : t->c->role_arn,
                       .role_chain = t->c->via_role_arn != NULL,
                       .has_external_id = t->c->external_id != NULL,
                       .clock_offset = t->clock_offset, .http_status = status};
    hgf_diag_classify(err, &dc, &t->diag);
    add_step(t, step, "failed", err->msg);
    finish(t, 0);
}

static void fail_now(ct *t, const char *step, int rc, const hgf_err *err)
{
    (void)rc;
    fail(t, step, err, 0);
}

/* ---- manifest HEAD --------------------------------------------------- */

static void on_manifest(const hgf_registry_result *r, void *arg)
{
    ct *t = arg;
    if (r->rc) {
        fail(t, "ManifestHead", &r->err, r->status);
        return;
    }
    char d[700];
    snprintf(d, sizeof d, "%s@%s: %s", t->repo, r->digest, r->media_type);
    add_step(t, "ManifestHead", "ok", d);
    finish(t, 1);
}

static void step_manifest(ct *t)
{
    hgf_buf auth = HGF_BUF_INIT;
    hgf_buf_printf(&auth, "Basic %s", t->token);
    hgf_registry_req req = {.http = t->rt->http, .proxy_endpoint = t->proxy,
                            .authorization = auth.data, .repository = t->repo,
                            .reference = t->digest, .limit_key = t->c->reg.host, .head = 1};
    hgf_err err;
    int rc = hgf_registry_manifest(&req, on_manifest, t, &err);
    hgf_secret_wipe_buf(&auth);
    if (rc)
        fail_now(t, "ManifestHead", rc, &err);
}

/* ---- DescribeImages on one repository -------------------------------- */

static hgf_aws_target ecr_target(ct *t)
{
    return (hgf_aws_target){.http = t->rt->http, .creds = &t->cur, .endpoint = t->ecr_endpoint,
                            .region = t->c->reg.region, .service = "ecr",
                            .limit_key = t->c->reg.host, .clock_offset = 0};
    /* No retry controller here: a diagnosis must see the first failure as it
     * is (a skew error corrected behind its back would hide clock drift). */
}

static void step_images(ct *t);

static void on_images(const hgf_aws_result *r, void *arg)
{
    ct *t = arg;
    if (r->rc) {
        observe_date(t, r->date);
        fail(t, "DescribeImages", &r->err, r->status);
        return;
    }
    json_t *first = json_array_get(json_object_get(r->json, "imageDetails"), 0);
    const char *digest = json_string_value(json_object_get(first, "imageDigest"));
    if (!digest) {
        t->repo_index++;
        step_images(t); /* empty repository: try the next one */
        return;
    }
    snprintf(t->digest, sizeof t->digest, "%s", digest);
    char d[400];
    snprintf(d, sizeof d, "%s: first image %.19s", t->repo, t->digest);
    add_step(t, "DescribeImages", "ok", d);
    step_manifest(t);
}

static void step_images(ct *t)
{
    const char *name = json_string_value(json_array_get(t->repos, t->repo_index));
    if (!name || t->repo_index >= 5) {
        add_step(t, "DescribeImages", "ok", "no images in the first repositories; "
                                            "manifest HEAD skipped");
        json_array_append_new(t->steps, json_pack("{s:s, s:s, s:f, s:s}", "name", "ManifestHead",
                                                  "status", "skipped", "seconds", 0.0, "detail",
                                                  "no image to HEAD"));
        finish(t, 1);
        return;
    }
    snprintf(t->repo, sizeof t->repo, "%s", name);
    hgf_aws_target at = ecr_target(t);
    json_t *b = json_pack("{s:s, s:s, s:i}", "registryId", t->c->reg.account_id,
                          "repositoryName", name, "maxResults", 5);
    char *body = json_dumps(b, JSON_COMPACT);
    json_decref(b);
    hgf_err err;
    int rc = hgf_awsjson_call(&at, HGF_ECR_TARGET_PREFIX, "DescribeImages", body, on_images, t, &err);
    free(body);
    if (rc)
        fail_now(t, "DescribeImages", rc, &err);
}

/* ---- DescribeRepositories ------------------------------------------- */

static void on_repos(const hgf_aws_result *r, void *arg)
{
    ct *t = arg;
    observe_date(t, r->date);
    if (r->rc) {
        fail(t, "DescribeRepositories", &r->err, r->status);
        return;
    }
    t->repos = json_array();
    size_t i;
    json_t *item;
    json_array_foreach(json_object_get(r->json, "repositories"), i, item)
        json_array_append(t->repos, json_object_get(item, "repositoryName"));
    size_t n = json_array_size(t->repos);
    if (n == 0) {
        hgf_diag_ctx dc = {.step = "DescribeRepositories", .registry_account = t->c->reg.account_id,
                           .region = t->c->reg.region, .clock_offset = t->clock_offset};
        hgf_diag_zero_repositories(&dc, &t->diag);
        add_step(t, "DescribeRepositories", "failed", "0 repositories");
        finish(t, 0);
        return;
    }
    char d[64];
    snprintf(d, sizeof d, "%zu repositor%s%s", n, n == 1 ? "y" : "ies",
             hgf_ecr_next_token(r->json) ? " (first page)" : "");
    add_step(t, "DescribeRepositories", "ok", d);
    step_images(t);
}

static void step_repos(ct *t)
{
    hgf_aws_target at = ecr_target(t);
    hgf_err err;
    int rc = hgf_ecr_describe_repositories(&at, t->c->reg.account_id, NULL, on_repos, t, &err);
    if (rc)
        fail_now(t, "DescribeRepositories", rc, &err);
}

/* ---- GetAuthorizationToken ------------------------------------------ */

static void on_token(const hgf_aws_result *r, void *arg)
{
    ct *t = arg;
    observe_date(t, r->date);
    if (r->rc) {
        fail(t, "GetAuthorizationToken", &r->err, r->status);
        return;
    }
    json_t *ad = json_array_get(json_object_get(r->json, "authorizationData"), 0);
    const char *tok = json_string_value(json_object_get(ad, "authorizationToken"));
    const char *proxy = json_string_value(json_object_get(ad, "proxyEndpoint"));
    if (!tok || !proxy) {
        hgf_err e;
        hgf_err_set(&e, HGF_EHTTP, "GetAuthorizationToken: reply without authorizationData");
        fail(t, "GetAuthorizationToken", &e, r->status);
        return;
    }
    t->token = strdup(tok);
    snprintf(t->proxy, sizeof t->proxy, "%s", proxy);
    char d[600];
    snprintf(d, sizeof d, "proxyEndpoint %s", proxy);
    add_step(t, "GetAuthorizationToken", "ok", d);
    step_repos(t);
}

static void step_token(ct *t)
{
    hgf_aws_target at = ecr_target(t);
    char body[64];
    snprintf(body, sizeof body, "{\"registryIds\":[\"%s\"]}", t->c->reg.account_id);
    hgf_err err;
    int rc = hgf_awsjson_call(&at, HGF_ECR_TARGET_PREFIX, "GetAuthorizationToken", body, on_token,
                              t, &err);
    if (rc)
        fail_now(t, "GetAuthorizationToken", rc, &err);
}

/* ---- STS: who am I, then each hop ----------------------------------- */

static hgf_sts_target sts_target(ct *t)
{
    return (hgf_sts_target){.http = t->rt->http, .endpoint = t->sts_endpoint,
                            .region = t->c->reg.region, .metrics = t->rt->metrics};
}

static void step_assume(ct *t);

static void on_assumed(const hgf_sts_result *r, void *arg)
{
    ct *t = arg;
    observe_date(t, r->date);
    if (r->rc) {
        fail(t, "AssumeRole", &r->err, r->status);
        return;
    }
    hgf_err err;
    hgf_creds_copy(&t->cur, &r->creds, &err);
    snprintf(t->caller_arn, sizeof t->caller_arn, "%s", r->arn);
    const char *acct = strstr(r->arn, "::");
    if (acct)
        snprintf(t->caller_account, sizeof t->caller_account, "%.12s", acct + 2);
    add_step(t, "AssumeRole", "ok", r->arn);
    t->hop++;
    step_assume(t);
}

static void step_assume(ct *t)
{
    const hgf_connection *c = t->c;
    if (!c->role_arn || t->hop > 1) {
        step_token(t);
        return;
    }
    if (t->hop == 0 && !c->via_role_arn)
        t->hop = 1;
    const char *role = t->hop == 0 ? c->via_role_arn : c->role_arn;
    char session[64];
    snprintf(session, sizeof session, "hgfleet-%s", c->reg.account_id);
    int duration = c->duration_seconds;
    if (c->via_role_arn && (duration == 0 || duration > 3600))
        duration = 3600; /* STS caps chained sessions at one hour */
    hgf_sts_target st = sts_target(t);
    hgf_err err;
    int rc = hgf_sts_assume_role(&st, &t->cur, role, c->session_name ? c->session_name : session,
                                 t->hop == 1 ? c->external_id : NULL, duration, on_assumed, t,
                                 &err);
    if (rc)
        fail_now(t, "AssumeRole", rc, &err);
}

static void on_identity(const hgf_sts_result *r, void *arg)
{
    ct *t = arg;
    observe_date(t, r->date);
    if (r->rc) {
        fail(t, "GetCallerIdentity", &r->err, r->status);
        return;
    }
    snprintf(t->caller_arn, sizeof t->caller_arn, "%s", r->arn);
    snprintf(t->caller_account, sizeof t->caller_account, "%s", r->account);
    char d[400];
    snprintf(d, sizeof d, "%s (clock offset %ld s)", r->arn,
             t->clock_offset == HGF_DIAG_NO_OFFSET ? 0 : t->clock_offset);
    add_step(t, "GetCallerIdentity", "ok", d);
    step_assume(t);
}

static void on_source(int rc, const hgf_err *err, const hgf_creds *creds, void *arg)
{
    ct *t = arg;
    if (rc) {
        fail(t, "credentials", err, 0);
        return;
    }
    hgf_err e;
    hgf_creds_copy(&t->cur, creds, &e);
    char d[128];
    hgf_creds_describe(creds, d, sizeof d);
    add_step(t, "credentials", "ok", d);
    hgf_sts_target st = sts_target(t);
    rc = hgf_sts_get_caller_identity(&st, &t->cur, on_identity, t, &e);
    if (rc)
        fail_now(t, "GetCallerIdentity", rc, &e);
}

int hgf_conntest_auth_spec(const hgf_runtime *rt, const hgf_connection *c, hgf_auth_spec *spec,
                           char **secret, hgf_err *err)
{
    memset(spec, 0, sizeof *spec);
    *secret = NULL;
    spec->mode = c->auth_mode;
    spec->region = c->reg.region;
    spec->partition = c->reg.partition;
    spec->role_arn = c->role_arn;
    spec->external_id = c->external_id;
    spec->session_name = c->session_name;
    spec->duration_seconds = c->duration_seconds;
    spec->via_role_arn = c->via_role_arn;
    if (!c->access_key_id)
        return 0;
    if (!rt->cfg->has_master_key)
        return hgf_err_set(err, HGF_EINPUT, "HGFLEET_MASTER_KEY is not set: cannot decrypt the "
                                            "secret access key of connection %lld",
                           (long long)c->id);
    hgf_buf plain = HGF_BUF_INIT;
    int rc = hgf_secret_open(&rt->cfg->master_key, c->secret_sealed ? c->secret_sealed : "",
                             &plain, err);
    if (rc) {
        hgf_secret_wipe_buf(&plain);
        return rc;
    }
    *secret = hgf_buf_detach(&plain);
    spec->access_key_id = c->access_key_id;
    spec->secret_access_key = *secret;
    return 0;
}

int hgf_conntest_run(hgf_runtime *rt, const hgf_connection *c, hgf_conntest_cb cb, void *arg,
                     hgf_err *err)
{
    ct *t = calloc(1, sizeof *t);
    if (!t)
        return hgf_err_set(err, HGF_ENOMEM, "out of memory");
    t->rt = rt;
    t->c = c;
    t->cb = cb;
    t->arg = arg;
    t->clock_offset = HGF_DIAG_NO_OFFSET;
    t->steps = json_array();
    t->step_start = hgf_time_now_ms();
    hgf_auth_spec full;
    int rc = hgf_conntest_auth_spec(rt, c, &full, &t->secret, err);
    if (!rc)
        rc = hgf_endpoint_service_url("STS", &c->reg, t->sts_endpoint, sizeof t->sts_endpoint, err);
    if (!rc)
        rc = hgf_endpoint_service_url("ECR", &c->reg, t->ecr_endpoint, sizeof t->ecr_endpoint, err);
    if (!rc) {
        /* The first step checks the source alone, so a failure there is not
         * mistaken for a role problem. */
        t->src_spec = full;
        t->src_spec.mode = c->access_key_id ? "static" : "host";
        t->src_spec.role_arn = t->src_spec.via_role_arn = NULL;
        t->src_spec.external_id = t->src_spec.session_name = NULL;
        t->src_spec.duration_seconds = 0;
        rc = hgf_credmgr_get(rt->creds, &t->src_spec, on_source, t, err);
    }
    if (rc) {
        json_decref(t->steps);
        if (t->secret) {
            hgf_secret_wipe(t->secret, strlen(t->secret));
            free(t->secret);
        }
        free(t);
    }
    return rc;
}
