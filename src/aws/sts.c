#include "hgfleet/sts.h"
#include "hgfleet/awsctl.h"
#include "hgfleet/awsjson.h"
#include "hgfleet/secret.h"
#include "hgfleet/sigv4.h"
#include "hgfleet/timeutil.h"

#include <curl/curl.h>
#include <expat.h>
#include <jansson.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define CONTENT_TYPE "application/x-www-form-urlencoded; charset=utf-8"
#define MAX_TEXT (64 * 1024) /* one element's text: session tokens are a few KiB */
#define MAX_REPLY (1024 * 1024)
#define DEPTH 16
#define NAME_LEN 48

/* The actions we know; result->action points at these. */
static const char *const ACTIONS[] = {"AssumeRole", "AssumeRoleWithWebIdentity",
                                      "GetCallerIdentity"};
#define N_ACTIONS (sizeof ACTIONS / sizeof ACTIONS[0])

/* ---- form bodies ------------------------------------------------------- */

static int put_param(hgf_buf *b, const char *name, const char *value, hgf_err *err)
{
    size_t n = strlen(value);
    if (n > INT_MAX / 4)
        return hgf_err_set(err, HGF_EINPUT, "%s: value is too long", name);
    /* curl escapes all but ALPHA / DIGIT / "-._~", as botocore's quote does. */
    char *enc = curl_easy_escape(NULL, value, (int)n);
    if (!enc)
        return hgf_err_set(err, HGF_ENOMEM, "out of memory");
    int rc = hgf_buf_printf(b, "&%s=%s", name, enc);
    hgf_secret_wipe(enc, strlen(enc)); /* may be a web identity token */
    curl_free(enc);
    return rc ? hgf_err_set(err, HGF_ENOMEM, "out of memory") : 0;
}

int hgf_sts_form_body(const char *action, const char *const *params, hgf_buf *out, hgf_err *err)
{
    if (!action || !*action ||
        strspn(action, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz") != strlen(action))
        return hgf_err_set(err, HGF_EINPUT, "STS: action must be a word like AssumeRole");
    if (hgf_buf_printf(out, "Action=%s&Version=%s", action, HGF_STS_VERSION))
        return hgf_err_set(err, HGF_ENOMEM, "out of memory");
    for (size_t i = 0; params && params[i]; i += 2) {
        if (!params[i + 1])
            continue;
        int rc = put_param(out, params[i], params[i + 1], err);
        if (rc)
            return rc;
    }
    return 0;
}

/* ---- XML replies ------------------------------------------------------- */

typedef struct px {
    XML_Parser p;
    int depth;
    char names[DEPTH][NAME_LEN];
    char root[NAME_LEN];
    hgf_buf text;
    int overflow, entity;
    char *akid, *secret, *token;
    char expiration[48];
    char arn[256], account[13], user_id[160];
    char code[64], message[512], request_id[80];
} px;

static void text_reset(px *x)
{
    if (x->text.data)
        hgf_secret_wipe(x->text.data, x->text.len);
    hgf_buf_reset(&x->text);
}

/* The namespace-aware parser reports "uri|Local"; only the local name counts. */
static const char *local_name(const XML_Char *name)
{
    const char *bar = strrchr(name, '|');
    return bar ? bar + 1 : name;
}

static void on_start(void *ud, const XML_Char *name, const XML_Char **attrs)
{
    px *x = ud;
    if (x->depth == 0)
        snprintf(x->root, sizeof x->root, "%s", local_name(name));
    if (x->depth < DEPTH)
        snprintf(x->names[x->depth], NAME_LEN, "%s", local_name(name));
    x->depth++;
    text_reset(x);
}

static void on_text(void *ud, const XML_Char *s, int len)
{
    px *x = ud;
    if (x->text.len + (size_t)len > MAX_TEXT || hgf_buf_append(&x->text, s, (size_t)len)) {
        x->overflow = 1;
        XML_StopParser(x->p, XML_FALSE);
    }
}

/* Entity declarations have no place in an STS reply; refusing them rules
 * out entity-expansion bombs whatever expat's own limits are. */
static void on_entity(void *ud, const XML_Char *name, int is_param, const XML_Char *value,
                      int value_len, const XML_Char *base, const XML_Char *system_id,
                      const XML_Char *public_id, const XML_Char *notation)
{
    px *x = ud;
    x->entity = 1;
    XML_StopParser(x->p, XML_FALSE);
}

static void copy_trimmed(char *dst, size_t n, const char *v)
{
    v += strspn(v, " \t\r\n");
    size_t len = strlen(v);
    while (len && strchr(" \t\r\n", v[len - 1]))
        len--;
    snprintf(dst, n, "%.*s", (int)(len < n ? len : n - 1), v);
}

static void set_secret(char **slot, const char *v)
{
    if (*slot) {
        hgf_secret_wipe(*slot, strlen(*slot));
        free(*slot);
    }
    size_t len = strlen(v) + 1;
    *slot = malloc(len);
    if (*slot)
        copy_trimmed(*slot, len, v);
}

static void take_field(px *x, const char *name, const char *parent, const char *v)
{
    if (!strcmp(parent, "Credentials")) {
        if (!strcmp(name, "AccessKeyId"))
            set_secret(&x->akid, v);
        else if (!strcmp(name, "SecretAccessKey"))
            set_secret(&x->secret, v);
        else if (!strcmp(name, "SessionToken"))
            set_secret(&x->token, v);
        else if (!strcmp(name, "Expiration"))
            copy_trimmed(x->expiration, sizeof x->expiration, v);
    } else if (!strcmp(parent, "AssumedRoleUser") || !strcmp(parent, "GetCallerIdentityResult")) {
        if (!strcmp(name, "Arn"))
            copy_trimmed(x->arn, sizeof x->arn, v);
        else if (!strcmp(name, "AssumedRoleId") || !strcmp(name, "UserId"))
            copy_trimmed(x->user_id, sizeof x->user_id, v);
        else if (!strcmp(name, "Account"))
            copy_trimmed(x->account, sizeof x->account, v);
    } else if (!strcmp(parent, "Error")) {
        if (!strcmp(name, "Code"))
            copy_trimmed(x->code, sizeof x->code, v);
        else if (!strcmp(name, "Message"))
            copy_trimmed(x->message, sizeof x->message, v);
    }
    if (!strcmp(name, "RequestId"))
        copy_trimmed(x->request_id, sizeof x->request_id, v);
}

static void on_end(void *ud, const XML_Char *name)
{
    px *x = ud;
    const char *parent = x->depth >= 2 && x->depth - 2 < DEPTH ? x->names[x->depth - 2] : "";
    take_field(x, local_name(name), parent, hgf_buf_str(&x->text));
    x->depth--;
    text_reset(x);
}

static void px_free(px *x)
{
    set_secret(&x->akid, "");
    set_secret(&x->secret, "");
    set_secret(&x->token, "");
    free(x->akid);
    free(x->secret);
    free(x->token);
    hgf_secret_wipe_buf(&x->text);
}

static int px_run(px *x, const char *xml, size_t len, hgf_err *err)
{
    if (len > INT_MAX)
        return hgf_err_set(err, HGF_EHTTP, "reply is too large");
    x->p = XML_ParserCreateNS(NULL, '|');
    if (!x->p)
        return hgf_err_set(err, HGF_ENOMEM, "out of memory");
    XML_SetUserData(x->p, x);
    XML_SetElementHandler(x->p, on_start, on_end);
    XML_SetCharacterDataHandler(x->p, on_text);
    XML_SetEntityDeclHandler(x->p, on_entity);
    enum XML_Status st = XML_Parse(x->p, xml ? xml : "", (int)len, XML_TRUE);
    int rc = 0;
    if (x->entity)
        rc = hgf_err_set(err, HGF_EHTTP, "reply declares XML entities");
    else if (x->overflow)
        rc = hgf_err_set(err, HGF_EHTTP, "reply has an element longer than %d bytes", MAX_TEXT);
    else if (st != XML_STATUS_OK)
        rc = hgf_err_set(err, HGF_EHTTP, "reply is not valid XML: %s (line %lu)",
                         XML_ErrorString(XML_GetErrorCode(x->p)),
                         (unsigned long)XML_GetCurrentLineNumber(x->p));
    XML_ParserFree(x->p);
    x->p = NULL;
    return rc;
}

static const char *action_of_root(const char *root)
{
    for (size_t i = 0; i < N_ACTIONS; i++) {
        size_t n = strlen(ACTIONS[i]);
        if (!strncmp(root, ACTIONS[i], n) && !strcmp(root + n, "Response"))
            return ACTIONS[i];
    }
    return NULL;
}

static int take_creds(const char *action, px *x, hgf_sts_result *out, hgf_err *err)
{
    const char *missing = !x->akid || !*x->akid       ? "AccessKeyId"
                          : !x->secret || !*x->secret ? "SecretAccessKey"
                          : !x->token || !*x->token   ? "SessionToken"
                          : !x->expiration[0]         ? "Expiration"
                                                      : NULL;
    if (missing)
        return hgf_err_set(err, HGF_EHTTP, "%s: reply has no Credentials/%s", action, missing);
    time_t exp = hgf_time_parse_iso(x->expiration);
    if (exp <= 0)
        return hgf_err_set(err, HGF_EHTTP,
                           "%s: Credentials/Expiration \"%.40s\" is not an ISO 8601 time", action,
                           x->expiration);
    const char *source = strcmp(action, "AssumeRole") ? "web_identity" : "assume_role";
    return hgf_creds_set(&out->creds, x->akid, x->secret, x->token, exp, source, err);
}

static int interpret(const char *action, px *x, hgf_sts_result *out, hgf_err *err)
{
    snprintf(out->request_id, sizeof out->request_id, "%s", x->request_id);
    if (!strcmp(x->root, "ErrorResponse") || x->code[0]) {
        const char *code = x->code[0] ? x->code : "UnknownError";
        hgf_err_set(err, HGF_EAWS, "%s: %s: %s", action, code,
                    x->message[0] ? x->message : "(no message)");
        snprintf(err->aws_code, sizeof err->aws_code, "%s", code);
        return HGF_EAWS;
    }
    const char *got = action_of_root(x->root);
    if (!got || strcmp(got, action))
        return hgf_err_set(err, HGF_EHTTP, "%s: unexpected reply element <%.40s>", action, x->root);
    snprintf(out->arn, sizeof out->arn, "%s", x->arn);
    snprintf(out->user_id, sizeof out->user_id, "%s", x->user_id);
    snprintf(out->account, sizeof out->account, "%s", x->account);
    if (strcmp(action, "GetCallerIdentity"))
        return take_creds(action, x, out, err);
    if (!x->arn[0] || !x->account[0])
        return hgf_err_set(err, HGF_EHTTP, "%s: reply has no %s", action,
                           x->arn[0] ? "Account" : "Arn");
    return 0;
}

/* action NULL: take it from the root element. */
static int parse_as(const char *action, const char *xml, size_t len, hgf_sts_result *out,
                    hgf_err *err)
{
    px x;
    memset(&x, 0, sizeof x);
    int rc = px_run(&x, xml, len, err);
    if (!action)
        action = action_of_root(x.root) ? action_of_root(x.root) : "STS";
    out->action = action;
    if (rc) {
        char why[sizeof err->msg];
        snprintf(why, sizeof why, "%s", err->msg);
        hgf_err_set(err, rc, "%s: %s", action, why);
    } else {
        rc = interpret(action, &x, out, err);
    }
    px_free(&x);
    return rc;
}

int hgf_sts_parse_response(const char *xml, size_t len, hgf_sts_result *out, hgf_err *err)
{
    memset(out, 0, sizeof *out);
    hgf_err_clear(&out->err);
    hgf_err local;
    hgf_err *e = err ? err : &local;
    hgf_err_clear(e);
    out->rc = parse_as(NULL, xml, len, out, e);
    if (out->rc)
        hgf_creds_clear(&out->creds);
    out->err = *e;
    return out->rc;
}

/* ---- non-XML replies --------------------------------------------------- */

static void append_status(hgf_err *err, long status)
{
    size_t n = strlen(err->msg);
    snprintf(err->msg + n, sizeof err->msg - n, " (HTTP %ld)", status);
}

/* Some endpoints (proxies, the JSON protocol) answer errors in JSON. */
static int json_error(const char *action, long status, const char *body, size_t len, hgf_err *err)
{
    json_t *j = json_loadb(body, len, 0, NULL);
    json_t *e = json_object_get(j, "Error");
    const char *code = json_string_value(json_object_get(e, "Code"));
    int rc = HGF_EHTTP;
    if (json_string_value(json_object_get(j, "__type"))) {
        rc = hgf_awsjson_parse_error(action, status, body, len, NULL, err);
    } else if (code && *code) {
        const char *msg = json_string_value(json_object_get(e, "Message"));
        rc = hgf_err_set(err, HGF_EAWS, "%s: %.63s: %s", action, code, msg ? msg : "(no message)");
        snprintf(err->aws_code, sizeof err->aws_code, "%s", code);
    }
    json_decref(j);
    if (rc == HGF_EAWS)
        append_status(err, status);
    return rc;
}

static int looks_like_xml(const char *body, size_t len)
{
    size_t i = 0;
    while (i < len && strchr(" \t\r\n", body[i]))
        i++;
    return i < len && body[i] == '<';
}

static int interpret_http(const char *action, const char *endpoint, const hgf_http_resp *resp,
                          hgf_sts_result *r)
{
    const char *ctype = hgf_http_resp_header(resp, "content-type");
    if (resp->transport_error) {
        return hgf_err_set(&r->err, HGF_EHTTP, "%s: %s (%s)%s", action, resp->error, endpoint,
                           hgf_http_tls_suffix(resp->transport_error));
    }
    if (resp->body_truncated)
        return hgf_err_set(&r->err, HGF_EHTTP, "%s: HTTP %ld reply is larger than %d bytes", action,
                           resp->status, MAX_REPLY);
    int ok = resp->status / 100 == 2;
    if (looks_like_xml(resp->body, resp->body_len)) {
        int rc = parse_as(action, resp->body, resp->body_len, r, &r->err);
        if (rc == HGF_EHTTP)
            append_status(&r->err, resp->status);
        else if (rc == 0 && !ok)
            rc = hgf_err_set(&r->err, HGF_EHTTP, "%s: HTTP %ld with a success reply", action,
                             resp->status);
        return rc;
    }
    int rc = ok ? HGF_EHTTP : json_error(action, resp->status, resp->body, resp->body_len, &r->err);
    if (rc == HGF_EHTTP)
        /* The body itself is never quoted: a 2xx one may hold credentials. */
        hgf_err_set(&r->err, HGF_EHTTP, "%s: HTTP %ld reply is not STS XML (Content-Type %.60s)",
                    action, resp->status, ctype ? ctype : "none");
    return rc;
}

/* ---- calls ------------------------------------------------------------- */

typedef struct call {
    hgf_sts_cb cb;
    void *arg;
    const char *action;
    hgf_metrics *metrics;
    char endpoint[256];
} call;

static void count(hgf_metrics *m, const char *action, int rc)
{
    if (!m)
        return;
    char labels[96];
    snprintf(labels, sizeof labels, "action=\"%s\",outcome=\"%s\"", action, rc ? "error" : "ok");
    hgf_metrics_inc(m, "hgfleet_sts_calls_total", labels, 1);
}

static void on_response(const hgf_http_resp *resp, void *arg)
{
    call *c = arg;
    hgf_sts_result r;
    memset(&r, 0, sizeof r);
    hgf_err_clear(&r.err);
    r.action = c->action;
    r.status = resp->status;
    r.transport_error = resp->transport_error;
    r.date = hgf_http_resp_header(resp, "date");
    r.rc = interpret_http(c->action, c->endpoint, resp, &r);
    if (r.rc)
        hgf_creds_clear(&r.creds);
    const char *rid = hgf_http_resp_header(resp, "x-amzn-requestid");
    if (!r.request_id[0] && rid)
        snprintf(r.request_id, sizeof r.request_id, "%s", rid);
    count(c->metrics, c->action, r.rc);
    c->cb(&r, c->arg);
    hgf_creds_clear(&r.creds);
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
        rc = hgf_err_set(err, HGF_EINPUT, "STS endpoint \"%.200s\" is not a valid URL", endpoint);
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

static int sign(const hgf_sts_target *t, const hgf_creds *creds, const hgf_buf *body,
                char amzdate[17], hgf_buf *authz, hgf_err *err)
{
    char host[256], path[512];
    int rc = split_endpoint(t->endpoint, host, sizeof host, path, sizeof path, err);
    if (rc)
        return rc;
    time_t when = time(NULL) + t->clock_offset;
    hgf_sigv4_amz_date(when, amzdate);
    hgf_sigv4_header hs[4] = {{"content-type", CONTENT_TYPE},
                              {"host", host},
                              {"x-amz-date", amzdate},
                              {"x-amz-security-token", creds->session_token}};
    hgf_sigv4_request req = {"POST",     path,     NULL, hs, creds->session_token ? 4 : 3,
                             body->data, body->len};
    hgf_sigv4_creds sc = {creds->access_key_id, creds->secret_access_key, creds->session_token};
    hgf_sigv4_scope scope = {t->region, "sts", when};
    return hgf_sigv4_authorization(&req, &sc, &scope, authz, err);
}

static int check_target(const hgf_sts_target *t, const char *action, const hgf_creds *creds,
                        int signed_call, hgf_err *err)
{
    if (!t || !t->http || !t->endpoint || !*t->endpoint)
        return hgf_err_set(err, HGF_EINPUT, "%s: an HTTP client and an endpoint are required",
                           action);
    if (strlen(t->endpoint) >= sizeof((call *)0)->endpoint)
        return hgf_err_set(err, HGF_EINPUT, "%s: endpoint URL is too long", action);
    if (signed_call && (!t->region || !*t->region))
        return hgf_err_set(err, HGF_EINPUT, "%s: a signing region is required", action);
    if (signed_call && (!creds || !creds->access_key_id || !creds->secret_access_key))
        return hgf_err_set(err, HGF_EINPUT, "%s: credentials are required", action);
    return 0;
}

/* creds NULL: unsigned. */
static int send_call(const hgf_sts_target *t, const hgf_creds *creds, const char *action,
                     const hgf_buf *body, hgf_sts_cb cb, void *arg, hgf_err *err)
{
    char amzdate[17], h_date[40], h_auth[1024];
    hgf_buf authz = HGF_BUF_INIT, tok = HGF_BUF_INIT;
    int rc = creds ? sign(t, creds, body, amzdate, &authz, err) : 0;
    if (!rc && creds && creds->session_token &&
        hgf_buf_printf(&tok, "X-Amz-Security-Token: %s", creds->session_token))
        rc = hgf_err_set(err, HGF_ENOMEM, "out of memory");
    call *c = rc ? NULL : calloc(1, sizeof *c);
    if (!rc && !c)
        rc = hgf_err_set(err, HGF_ENOMEM, "out of memory");
    if (!rc) {
        *c = (call){cb, arg, action, t->metrics, ""};
        snprintf(c->endpoint, sizeof c->endpoint, "%s", t->endpoint);
        snprintf(h_date, sizeof h_date, "X-Amz-Date: %s", creds ? amzdate : "");
        snprintf(h_auth, sizeof h_auth, "Authorization: %s", hgf_buf_str(&authz));
        const char *signed_h[] = {"Content-Type: " CONTENT_TYPE,
                                  "Accept: text/xml",
                                  "Expect:",
                                  h_date,
                                  h_auth,
                                  tok.data,
                                  NULL};
        const char *plain_h[] = {"Content-Type: " CONTENT_TYPE, "Accept: text/xml",
                                 "Expect:", NULL};
        hgf_http_req hr = {.method = "POST",
                           .url = t->endpoint,
                           .headers = creds ? signed_h : plain_h,
                           .body = body->data,
                           .body_len = body->len,
                           .max_body = MAX_REPLY};
        rc = hgf_http_send(t->http, &hr, on_response, c, err);
        hgf_secret_wipe(h_auth, sizeof h_auth);
        if (rc)
            free(c);
    }
    hgf_buf_free(&authz);
    hgf_secret_wipe_buf(&tok);
    return rc;
}

static int need(const char *action, const char *field, const char *v, hgf_err *err)
{
    if (v && *v)
        return 0;
    return hgf_err_set(err, HGF_EINPUT, "%s: %s is required", action, field);
}

int hgf_sts_assume_role(const hgf_sts_target *t, const hgf_creds *source, const char *role_arn,
                        const char *session_name, const char *external_id, int duration_seconds,
                        hgf_sts_cb cb, void *arg, hgf_err *err)
{
    const char *action = ACTIONS[0];
    int rc = check_target(t, action, source, 1, err);
    if (!rc)
        rc = need(action, "RoleArn", role_arn, err);
    if (!rc)
        rc = need(action, "RoleSessionName", session_name, err);
    if (rc)
        return rc;
    char dur[16];
    snprintf(dur, sizeof dur, "%d", duration_seconds);
    const char *params[] = {"RoleArn",
                            role_arn,
                            "RoleSessionName",
                            session_name,
                            "ExternalId",
                            external_id && *external_id ? external_id : NULL,
                            "DurationSeconds",
                            duration_seconds > 0 ? dur : NULL,
                            NULL};
    hgf_buf body = HGF_BUF_INIT;
    rc = hgf_sts_form_body(action, params, &body, err);
    if (!rc)
        rc = send_call(t, source, action, &body, cb, arg, err);
    hgf_buf_free(&body);
    return rc;
}

int hgf_sts_assume_role_with_web_identity(const hgf_sts_target *t, const char *role_arn,
                                          const char *session_name, const char *token,
                                          int duration_seconds, hgf_sts_cb cb, void *arg,
                                          hgf_err *err)
{
    const char *action = ACTIONS[1];
    int rc = check_target(t, action, NULL, 0, err);
    if (!rc)
        rc = need(action, "RoleArn", role_arn, err);
    if (!rc)
        rc = need(action, "RoleSessionName", session_name, err);
    if (!rc)
        rc = need(action, "WebIdentityToken", token, err);
    if (rc)
        return rc;
    char dur[16];
    snprintf(dur, sizeof dur, "%d", duration_seconds);
    const char *params[] = {"RoleArn",
                            role_arn,
                            "RoleSessionName",
                            session_name,
                            "WebIdentityToken",
                            token,
                            "DurationSeconds",
                            duration_seconds > 0 ? dur : NULL,
                            NULL};
    hgf_buf body = HGF_BUF_INIT;
    rc = hgf_sts_form_body(action, params, &body, err);
    if (!rc)
        rc = send_call(t, NULL, action, &body, cb, arg, err);
    hgf_secret_wipe_buf(&body);
    return rc;
}

int hgf_sts_get_caller_identity(const hgf_sts_target *t, const hgf_creds *creds, hgf_sts_cb cb,
                                void *arg, hgf_err *err)
{
    const char *action = ACTIONS[2];
    int rc = check_target(t, action, creds, 1, err);
    if (rc)
        return rc;
    hgf_buf body = HGF_BUF_INIT;
    rc = hgf_sts_form_body(action, NULL, &body, err);
    if (!rc)
        rc = send_call(t, creds, action, &body, cb, arg, err);
    hgf_buf_free(&body);
    return rc;
}
