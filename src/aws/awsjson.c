#include "hgfleet/awsjson.h"
#include "hgfleet/buf.h"
#include "hgfleet/log.h"
#include "hgfleet/secret.h"
#include "hgfleet/sigv4.h"

#include <curl/curl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct call {
    hgf_aws_cb cb;
    void *arg;
    char op[64];
} call;

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
    } else {
        snprintf(code, sizeof code, "HTTP%ld", status);
    }
    hgf_err_set(err, HGF_EAWS, "%s: %s: %s", op, code, msg ? msg : "(no message)");
    snprintf(err->aws_code, sizeof err->aws_code, "%s", code);
    json_decref(j);
    return HGF_EAWS;
}

static void on_response(const hgf_http_resp *resp, void *arg)
{
    call *c = arg;
    hgf_aws_result r;
    memset(&r, 0, sizeof r);
    hgf_err_clear(&r.err);
    r.status = resp->status;
    r.seconds = resp->total_seconds;
    r.date = hgf_http_resp_header(resp, "date");
    r.request_id = hgf_http_resp_header(resp, "x-amzn-requestid");
    if (!r.request_id)
        r.request_id = "";
    if (resp->transport_error) {
        r.rc = hgf_err_set(&r.err, HGF_EHTTP, "%s: %s", c->op, resp->error);
    } else if (resp->status / 100 != 2) {
        r.rc = hgf_awsjson_parse_error(c->op, resp->status, resp->body, resp->body_len,
                                       hgf_http_resp_header(resp, "x-amzn-errortype"), &r.err);
    } else {
        json_error_t je;
        r.json = json_loadb(resp->body, resp->body_len, 0, &je);
        if (!r.json)
            r.rc = hgf_err_set(&r.err, HGF_EHTTP, "%s: response is not JSON: %s (line %d)",
                               c->op, je.text, je.line);
    }
    c->cb(&r, c->arg);
    json_decref(r.json);
    free(c);
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

int hgf_awsjson_call(const hgf_aws_target *t, const char *target_prefix, const char *op,
                     const char *body, hgf_aws_cb cb, void *arg, hgf_err *err)
{
    char host[256], path[512], amzdate[17], target[160];
    int rc = split_endpoint(t->endpoint, host, sizeof host, path, sizeof path, err);
    if (rc)
        return rc;
    hgf_sigv4_amz_date(time(NULL) + t->clock_offset, amzdate);
    snprintf(target, sizeof target, "%s.%s", target_prefix, op);
    hgf_sigv4_header hs[5] = {{"content-type", "application/x-amz-json-1.1"},
                              {"host", host},
                              {"x-amz-date", amzdate},
                              {"x-amz-target", target},
                              {"x-amz-security-token", t->creds->session_token}};
    size_t nh = t->creds->session_token ? 5 : 4;
    hgf_sigv4_request req = {"POST", path, NULL, hs, nh, body, strlen(body)};
    hgf_sigv4_creds sc = {t->creds->access_key_id, t->creds->secret_access_key,
                          t->creds->session_token};
    hgf_sigv4_scope scope = {t->region, t->service, time(NULL) + t->clock_offset};
    hgf_buf authz = HGF_BUF_INIT, lines = HGF_BUF_INIT;
    rc = hgf_sigv4_authorization(&req, &sc, &scope, &authz, err);
    call *c = rc ? NULL : calloc(1, sizeof *c);
    if (!rc && !c)
        rc = hgf_err_set(err, HGF_ENOMEM, "out of memory");
    if (!rc) {
        c->cb = cb;
        c->arg = arg;
        snprintf(c->op, sizeof c->op, "%s", op);
        char h_ct[64], h_date[40], h_target[200], h_auth[1024];
        snprintf(h_ct, sizeof h_ct, "Content-Type: %s", hs[0].value);
        snprintf(h_date, sizeof h_date, "X-Amz-Date: %s", amzdate);
        snprintf(h_target, sizeof h_target, "X-Amz-Target: %s", target);
        snprintf(h_auth, sizeof h_auth, "Authorization: %s", hgf_buf_str(&authz));
        hgf_buf_printf(&lines, "X-Amz-Security-Token: %s",
                       t->creds->session_token ? t->creds->session_token : "");
        const char *headers[] = {h_ct, h_date, h_target, h_auth, "Accept: application/json",
                                 "Expect:", t->creds->session_token ? lines.data : NULL, NULL};
        hgf_http_req hr = {.method = "POST", .url = t->endpoint, .headers = headers,
                           .body = body, .body_len = strlen(body), .limit_key = t->limit_key};
        rc = hgf_http_send(t->http, &hr, on_response, c, err);
        hgf_secret_wipe(h_auth, sizeof h_auth);
        if (rc)
            free(c);
    }
    hgf_buf_free(&authz);
    hgf_secret_wipe_buf(&lines);
    return rc;
}
