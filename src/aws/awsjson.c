#include "hgfleet/awsjson.h"
#include "hgfleet/buf.h"
#include "hgfleet/log.h"
#include "hgfleet/secret.h"
#include "hgfleet/sigv4.h"

#include <curl/curl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* One logical call: what every attempt needs to sign and send again. */
typedef struct call {
    hgf_aws_cb cb;
    void *arg;
    hgf_http *http;
    const hgf_creds *creds;
    hgf_awsctl *ctl;
    hgf_awsctl_call *drv;
    long clock_offset;
    char op[64], target[160], host[256], path[512], region[64], service[64];
    char *endpoint, *limit_key, *body;
    struct timespec started;
} call;

static void call_free(call *c)
{
    hgf_awsctl_call_free(c->drv);
    free(c->endpoint);
    free(c->limit_key);
    free(c->body);
    free(c);
}

static double since(const struct timespec *t0)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)(t.tv_sec - t0->tv_sec) + (double)(t.tv_nsec - t0->tv_nsec) / 1e9;
}

int hgf_awsjson_parse_error(const char *op, long status, const char *body, size_t len,
                            const char *type_header, hgf_err *err)
{
    json_t *j = len ? json_loadb(body, len, 0, NULL) : NULL;
    const char *type = j ? json_string_value(json_object_get(j, "__type")) : NULL;
    if (!type || !*type)
        type = type_header;
    const char *msg = j ? json_string_value(json_object_get(j, "message")) : NULL;
    if (!msg && j)
        msg = json_string_value(json_object_get(j, "Message"));
    char code[64] = "";
    if (type && *type) {
        const char *hash = strrchr(type, '#');
        const char *start = hash ? hash + 1 : type;
        size_t n = strcspn(start, ":");
        snprintf(code, sizeof code, "%.*s", (int)(n < 63 ? n : 63), start);
    }
    /* Callers classify errors by code: an empty one ("#", ":x") must not pass as none. */
    if (!code[0])
        snprintf(code, sizeof code, "HTTP%ld", status);
    hgf_err_set(err, HGF_EAWS, "%s: %s: %s", op, code, msg ? msg : "(no message)");
    snprintf(err->aws_code, sizeof err->aws_code, "%s", code);
    json_decref(j);
    return HGF_EAWS;
}

static void deliver(call *c, hgf_aws_result *r)
{
    r->seconds = since(&c->started);
    r->attempts = hgf_awsctl_call_attempts(c->drv);
    r->throttled = hgf_awsctl_call_throttled(c->drv);
    if (r->rc && r->attempts > 1) {
        size_t n = strlen(r->err.msg);
        snprintf(r->err.msg + n, sizeof r->err.msg - n, " (after %d attempts)", r->attempts);
    }
    c->cb(r, c->arg);
    json_decref(r->json);
    call_free(c);
}

static void read_response(const call *c, const hgf_http_resp *resp, hgf_aws_result *r)
{
    memset(r, 0, sizeof *r);
    hgf_err_clear(&r->err);
    r->status = resp->status;
    r->date = hgf_http_resp_header(resp, "date");
    r->request_id = hgf_http_resp_header(resp, "x-amzn-requestid");
    if (!r->request_id)
        r->request_id = "";
    if (resp->transport_error) {
        /* Which endpoint, and what to do about a certificate: as STS says it (sts.c). */
        r->rc = hgf_err_set(&r->err, HGF_EHTTP, "%s: %s (%s)%s", c->op, resp->error,
                            c->endpoint ? c->endpoint : "no endpoint",
                            hgf_http_tls_suffix(resp->transport_error));
    } else if (resp->status / 100 != 2) {
        r->rc = hgf_awsjson_parse_error(c->op, resp->status, resp->body, resp->body_len,
                                        hgf_http_resp_header(resp, "x-amzn-errortype"), &r->err);
    } else {
        json_error_t je;
        r->json = json_loadb(resp->body, resp->body_len, 0, &je);
        if (!r->json)
            r->rc = hgf_err_set(&r->err, HGF_EHTTP, "%s: response is not JSON: %s (line %d)",
                                c->op, je.text, je.line);
    }
}

static void on_response(const hgf_http_resp *resp, void *arg)
{
    call *c = arg;
    hgf_aws_result r;
    read_response(c, resp, &r);
    hgf_awsctl_outcome o = {.status = resp->status, .transport_error = resp->transport_error,
                            .aws_code = r.err.aws_code, .message = r.err.msg, .date = r.date};
    if (hgf_awsctl_call_outcome(c->drv, &o))
        return;  /* a retry is scheduled; r holds no json (only a 2xx is final) */
    deliver(c, &r);
}

/* The Host header we sign must be byte-identical to the one curl sends. */
static int split_endpoint(const char *endpoint, char *host, size_t hn, char *path, size_t pn,
                          hgf_err *err)
{
    CURLU *u = curl_url();
    char *h = NULL, *port = NULL, *p = NULL;
    int rc = 0;
    if (!u || curl_url_set(u, CURLUPART_URL, endpoint, 0) ||
        curl_url_get(u, CURLUPART_HOST, &h, 0)) {
        rc = hgf_err_set(err, HGF_EINPUT, "endpoint \"%s\" is not a valid URL", endpoint);
    } else {
        curl_url_get(u, CURLUPART_PORT, &port, CURLU_NO_DEFAULT_PORT);
        curl_url_get(u, CURLUPART_PATH, &p, 0);
        if (port)
            snprintf(host, hn, "%s:%s", h, port);
        else
            snprintf(host, hn, "%s", h);
        snprintf(path, pn, "%s", p && *p ? p : "/");
    }
    curl_free(h);
    curl_free(port);
    curl_free(p);
    curl_url_cleanup(u);
    return rc;
}

/* Signs with the time of this attempt, so that a retry after a backoff, or
 * after the clock offset was learned, carries a fresh x-amz-date. */
static int send_attempt(call *c, hgf_err *err)
{
    time_t when = c->ctl ? hgf_awsctl_now(c->ctl) : time(NULL) + c->clock_offset;
    char amzdate[17];
    hgf_sigv4_amz_date(when, amzdate);
    const char *token = c->creds->session_token;
    hgf_sigv4_header hs[5] = {{"content-type", "application/x-amz-json-1.1"},
                              {"host", c->host},
                              {"x-amz-date", amzdate},
                              {"x-amz-target", c->target},
                              {"x-amz-security-token", token}};
    size_t blen = strlen(c->body);
    hgf_sigv4_request req = {"POST", c->path, NULL, hs, token ? 5 : 4, c->body, blen};
    hgf_sigv4_creds sc = {c->creds->access_key_id, c->creds->secret_access_key, token};
    hgf_sigv4_scope scope = {c->region, c->service, when};
    hgf_buf authz = HGF_BUF_INIT, tok = HGF_BUF_INIT;
    int rc = hgf_sigv4_authorization(&req, &sc, &scope, &authz, err);
    if (!rc) {
        char h_ct[64], h_date[40], h_target[200], h_auth[1024];
        snprintf(h_ct, sizeof h_ct, "Content-Type: %s", hs[0].value);
        snprintf(h_date, sizeof h_date, "X-Amz-Date: %s", amzdate);
        snprintf(h_target, sizeof h_target, "X-Amz-Target: %s", c->target);
        snprintf(h_auth, sizeof h_auth, "Authorization: %s", hgf_buf_str(&authz));
        hgf_buf_printf(&tok, "X-Amz-Security-Token: %s", token ? token : "");
        const char *headers[] = {h_ct, h_date, h_target, h_auth, "Accept: application/json",
                                 "Expect:", token ? tok.data : NULL, NULL};
        hgf_http_req hr = {.method = "POST", .url = c->endpoint, .headers = headers,
                           .body = c->body, .body_len = blen, .limit_key = c->limit_key};
        rc = hgf_http_send(c->http, &hr, on_response, c, err);
        hgf_secret_wipe(h_auth, sizeof h_auth);
    }
    hgf_buf_free(&authz);
    hgf_secret_wipe_buf(&tok);
    return rc;
}

/* A retry's turn came (from a timer): a failure to send is final. */
static void go(void *arg)
{
    call *c = arg;
    hgf_aws_result r;
    memset(&r, 0, sizeof r);
    hgf_err_clear(&r.err);
    r.request_id = "";
    r.rc = send_attempt(c, &r.err);
    if (r.rc)
        deliver(c, &r);
}

static void cancel(void *arg)
{
    call_free(arg);
}

static int dup_or_null(const char *s, char **out)
{
    *out = s ? strdup(s) : NULL;
    return s && !*out ? HGF_ENOMEM : 0;
}

static call *call_new(const hgf_aws_target *t, const char *target_prefix, const char *op,
                      const char *body, hgf_aws_cb cb, void *arg, hgf_err *err)
{
    call *c = calloc(1, sizeof *c);
    if (!c || dup_or_null(t->endpoint, &c->endpoint) || dup_or_null(t->limit_key, &c->limit_key) ||
        dup_or_null(body, &c->body)) {
        if (c)
            call_free(c);
        hgf_err_set(err, HGF_ENOMEM, "out of memory");
        return NULL;
    }
    c->cb = cb;
    c->arg = arg;
    c->http = t->http;
    c->creds = t->creds;
    c->ctl = t->ctl;
    c->clock_offset = t->clock_offset;
    snprintf(c->op, sizeof c->op, "%s", op);
    snprintf(c->target, sizeof c->target, "%s.%s", target_prefix, op);
    snprintf(c->region, sizeof c->region, "%s", t->region);
    snprintf(c->service, sizeof c->service, "%s", t->service);
    clock_gettime(CLOCK_MONOTONIC, &c->started);
    return c;
}

/* A key ending in '/' is a prefix shared by a target's operations. */
static void rate_key(const hgf_aws_target *t, const char *op, char *out, size_t n)
{
    size_t len = t->rate_key ? strlen(t->rate_key) : 0;
    if (!t->rate_key)
        snprintf(out, n, "%s/%s/%s", t->region, t->service, op);
    else if (len && t->rate_key[len - 1] == '/')
        snprintf(out, n, "%s%s", t->rate_key, op);
    else
        snprintf(out, n, "%s", t->rate_key);
}

int hgf_awsjson_call(const hgf_aws_target *t, const char *target_prefix, const char *op,
                     const char *body, hgf_aws_cb cb, void *arg, hgf_err *err)
{
    call *c = call_new(t, target_prefix, op, body, cb, arg, err);
    if (!c)
        return HGF_ENOMEM;
    int rc = split_endpoint(t->endpoint, c->host, sizeof c->host, c->path, sizeof c->path, err);
    char key[512];
    rate_key(t, op, key, sizeof key);
    if (!rc)
        rc = hgf_awsctl_call_new(t->ctl, t->service, op, key, go, cancel, c, &c->drv, err);
    if (!rc && hgf_awsctl_call_ready(c->drv))
        rc = send_attempt(c, err);
    if (rc)
        call_free(c);
    return rc;
}
