/* The default credential chain: environment, web identity (IRSA),
 * container (ECS / EKS Pod Identity), IMDSv2. The manager in credprov.c
 * caches what it returns. */
#include "hgfleet/credprov.h"
#include "hgfleet/endpoint.h"
#include "hgfleet/secret.h"
#include "hgfleet/sts.h"
#include "hgfleet/timeutil.h"

#include <arpa/inet.h>
#include <curl/curl.h>
#include <errno.h>
#include <ev.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define CONTAINER_BASE "http://169.254.170.2"
#define IMDS_DEFAULT "http://169.254.169.254"
#define IMDS_CREDS_PATH "/latest/meta-data/iam/security-credentials/"
#define IMDS_TIMEOUT_MS 1000
#define CONTAINER_TIMEOUT_MS 2000
#define MAX_TOKEN_FILE (64 * 1024)
#define MAX_REPLY (64 * 1024)

typedef struct chain {
    struct ev_loop *loop;
    hgf_http *http;
    hgf_creds_cb cb;
    void *arg;
    char tried[512]; /* providers that were not configured, "; "-separated */
    char label[900]; /* what errors are prefixed with */
    char base[256];  /* IMDS base URL */
    char imds_token[256];
    char role[128];
    hgf_creds creds;
} chain;

static int set(const char *v)
{
    return v && *v;
}

static void chain_free(chain *c)
{
    hgf_secret_wipe(c->imds_token, sizeof c->imds_token);
    hgf_creds_clear(&c->creds);
    free(c);
}

static void tried_add(chain *c, const char *what)
{
    size_t n = strlen(c->tried);
    snprintf(c->tried + n, sizeof c->tried - n, "%s%s", n ? "; " : "", what);
}

/* Prefixes err's message, keeping its code and AWS code. */
static int wrap(hgf_err *err, int rc, const char *prefix)
{
    if (!err)
        return rc;
    char msg[sizeof err->msg];
    snprintf(msg, sizeof msg, "%s", err->msg);
    char code[sizeof err->aws_code];
    snprintf(code, sizeof code, "%s", err->aws_code);
    hgf_err_set(err, rc, "%s: %s", prefix, msg);
    snprintf(err->aws_code, sizeof err->aws_code, "%s", code);
    return rc;
}

static void fail(chain *c, int rc, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void fail(chain *c, int rc, const char *fmt, ...)
{
    hgf_err e;
    hgf_err_clear(&e);
    char detail[sizeof e.msg];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(detail, sizeof detail, fmt, ap);
    va_end(ap);
    hgf_err_set(&e, rc, "%s: %s", c->label, detail);
    c->cb(rc, &e, NULL, c->arg);
    chain_free(c);
}

static void succeed(chain *c)
{
    c->cb(0, NULL, &c->creds, c->arg);
    chain_free(c);
}

/* Reads a token file whole, without its trailing whitespace (a newline left
 * by an editor or `echo`). */
static int read_token_file(const char *var, const char *path, hgf_buf *out, hgf_err *err)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return hgf_err_set(err, HGF_EINPUT, "%s: cannot read %s: %s", var, path, strerror(errno));
    char chunk[4096];
    size_t n;
    int rc = 0;
    while (!rc && (n = fread(chunk, 1, sizeof chunk, f)) > 0) {
        if (out->len + n > MAX_TOKEN_FILE)
            rc = hgf_err_set(err, HGF_EINPUT, "%s: %s is larger than %d bytes", var, path,
                             MAX_TOKEN_FILE);
        else if (hgf_buf_append(out, chunk, n))
            rc = hgf_err_set(err, HGF_ENOMEM, "out of memory");
    }
    if (!rc && ferror(f))
        rc = hgf_err_set(err, HGF_EINPUT, "%s: cannot read %s: %s", var, path, strerror(errno));
    fclose(f);
    hgf_secret_wipe(chunk, sizeof chunk);
    while (!rc && out->len && strchr(" \t\r\n", out->data[out->len - 1]))
        out->data[--out->len] = '\0';
    if (!rc && out->len == 0)
        rc = hgf_err_set(err, HGF_EINPUT, "%s: %s is empty", var, path);
    return rc;
}

/* {AccessKeyId, SecretAccessKey, Token, Expiration[, Code]}: the container
 * and IMDS replies. Values are never quoted in errors. */
static int parse_creds_json(const char *body, size_t len, const char *source, hgf_creds *out,
                            hgf_err *err)
{
    json_error_t je;
    json_t *j = json_loadb(body, len, 0, &je);
    if (!json_is_object(j)) {
        json_decref(j);
        return hgf_err_set(err, HGF_EFAIL, "reply is not a JSON object");
    }
    const char *code = json_string_value(json_object_get(j, "Code"));
    const char *akid = json_string_value(json_object_get(j, "AccessKeyId"));
    const char *secret = json_string_value(json_object_get(j, "SecretAccessKey"));
    const char *token = json_string_value(json_object_get(j, "Token"));
    const char *exp = json_string_value(json_object_get(j, "Expiration"));
    time_t when = exp ? hgf_time_parse_iso(exp) : 0;
    int rc = 0;
    if (code && strcmp(code, "Success"))
        rc = hgf_err_set(err, HGF_EFAIL, "reply Code is %.60s: %.300s", code,
                         json_string_value(json_object_get(j, "Message"))
                             ? json_string_value(json_object_get(j, "Message"))
                             : "(no message)");
    else if (!set(akid) || !set(secret))
        rc = hgf_err_set(err, HGF_EFAIL, "reply has no %s",
                         set(akid) ? "SecretAccessKey" : "AccessKeyId");
    else if (exp && when <= 0)
        rc = hgf_err_set(err, HGF_EFAIL, "reply Expiration \"%.40s\" is not an ISO 8601 time", exp);
    else
        rc = hgf_creds_set(out, akid, secret, token, when, source, err);
    json_decref(j);
    return rc;
}

static int http_failed(chain *c, const hgf_http_resp *r, const char *what)
{
    if (r->transport_error) {
        fail(c, HGF_EHTTP, "%s: %s", what, r->error);
        return 1;
    }
    if (r->status != 200) {
        fail(c, HGF_EFAIL, "%s: HTTP %ld", what, r->status);
        return 1;
    }
    if (r->body_truncated) {
        fail(c, HGF_EFAIL, "%s: reply is larger than %d bytes", what, MAX_REPLY);
        return 1;
    }
    return 0;
}

/* ---- environment ------------------------------------------------------- */

static void env_done(int revents, void *arg)
{
    succeed(arg);
}

static int env_start(chain *c, const hgf_credprov_opts *o, hgf_err *err)
{
    if (!set(getenv("AWS_ACCESS_KEY_ID")) && !set(getenv("AWS_SECRET_ACCESS_KEY"))) {
        tried_add(c, "AWS_ACCESS_KEY_ID not set");
        return HGF_ENOTFOUND;
    }
    int rc = hgf_creds_from_env(&c->creds, err);
    if (rc)
        return wrap(err, rc == HGF_ENOTFOUND ? HGF_EINPUT : rc, "environment credentials");
    /* The callback must not run inside the call. */
    ev_once(c->loop, -1, 0, 0., env_done, c);
    return 0;
}

/* ---- web identity ------------------------------------------------------ */

static void on_web_identity(const hgf_sts_result *r, void *arg)
{
    chain *c = arg;
    if (r->rc) {
        hgf_err e = r->err;
        wrap(&e, r->rc, c->label);
        c->cb(r->rc, &e, NULL, c->arg);
        chain_free(c);
        return;
    }
    c->cb(0, NULL, &r->creds, c->arg);
    chain_free(c);
}

static int web_identity_send(chain *c, const hgf_credprov_opts *o, const char *role,
                             const char *token, hgf_err *err)
{
    char url[512], region[32], session[72];
    int rc = hgf_credprov_sts_endpoint(o->region, url, sizeof url, region, err);
    if (rc)
        return rc;
    const char *name = getenv("AWS_ROLE_SESSION_NAME");
    if (set(name))
        snprintf(session, sizeof session, "%s", name);
    else
        snprintf(session, sizeof session, "hgfleet-%lld", (long long)hgf_time_now_ms());
    hgf_sts_target t = {.http = c->http,
                        .endpoint = url,
                        .region = region,
                        .clock_offset = o->clock_offset,
                        .metrics = o->metrics};
    rc =
        hgf_sts_assume_role_with_web_identity(&t, role, session, token, 0, on_web_identity, c, err);
    if (!rc && o->sts_calls)
        (*o->sts_calls)++;
    return rc;
}

static int web_identity_start(chain *c, const hgf_credprov_opts *o, hgf_err *err)
{
    const char *role = getenv("AWS_ROLE_ARN");
    const char *file = getenv("AWS_WEB_IDENTITY_TOKEN_FILE");
    if (!set(role) || !set(file)) {
        tried_add(c, set(role)   ? "AWS_ROLE_ARN set but AWS_WEB_IDENTITY_TOKEN_FILE not (IRSA)"
                     : set(file) ? "AWS_WEB_IDENTITY_TOKEN_FILE set but AWS_ROLE_ARN not (IRSA)"
                                 : "AWS_ROLE_ARN/AWS_WEB_IDENTITY_TOKEN_FILE (IRSA) not set");
        return HGF_ENOTFOUND;
    }
    snprintf(c->label, sizeof c->label, "web identity (AWS_ROLE_ARN=%.300s)", role);
    /* Re-read every time: the kubelet rotates the projected token. */
    hgf_buf tok = HGF_BUF_INIT;
    int rc = read_token_file("AWS_WEB_IDENTITY_TOKEN_FILE", file, &tok, err);
    if (!rc)
        rc = web_identity_send(c, o, role, tok.data, err);
    hgf_secret_wipe_buf(&tok);
    return rc ? wrap(err, rc, c->label) : 0;
}

/* ---- container --------------------------------------------------------- */

static int allowed_plain_host(const char *host)
{
    char h[64];
    size_t n = strlen(host);
    if (n >= 2 && host[0] == '[' && host[n - 1] == ']')
        snprintf(h, sizeof h, "%.*s", (int)(n - 2), host + 1);
    else
        snprintf(h, sizeof h, "%s", host);
    if (!strcasecmp(h, "localhost"))
        return 1;
    unsigned char a[16], b[16];
    if (inet_pton(AF_INET, h, a) == 1)
        return a[0] == 127 || !strcmp(h, "169.254.170.2") || !strcmp(h, "169.254.170.23");
    if (inet_pton(AF_INET6, h, a) != 1)
        return 0;
    inet_pton(AF_INET6, "::1", b);
    if (!memcmp(a, b, 16))
        return 1;
    inet_pton(AF_INET6, "fd00:ec2::23", b);
    return !memcmp(a, b, 16);
}

static int check_full_uri(const char *var, const char *url, hgf_err *err)
{
    CURLU *u = curl_url();
    char *scheme = NULL, *host = NULL;
    int rc = 0;
    if (!u || curl_url_set(u, CURLUPART_URL, url, 0) ||
        curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) || curl_url_get(u, CURLUPART_HOST, &host, 0))
        rc = hgf_err_set(err, HGF_EINPUT, "%s: \"%.200s\" is not a valid URL", var, url);
    else if (strcasecmp(scheme, "https") && strcasecmp(scheme, "http"))
        rc = hgf_err_set(err, HGF_EINPUT, "%s: expected an http or https URL, got \"%.200s\"", var,
                         url);
    else if (!strcasecmp(scheme, "http") && !allowed_plain_host(host))
        rc = hgf_err_set(err, HGF_EINPUT,
                         "%s: plain http is only allowed to loopback, 169.254.170.2, "
                         "169.254.170.23 or fd00:ec2::23, got \"%.200s\" (use https)",
                         var, url);
    curl_free(scheme);
    curl_free(host);
    curl_url_cleanup(u);
    return rc;
}

static int put_url(char *out, size_t n, const char *var, const char *a, const char *b, hgf_err *err)
{
    int len = snprintf(out, n, "%s%s", a, b);
    if (len < 0 || (size_t)len >= n)
        return hgf_err_set(err, HGF_EINPUT, "%s: URL is longer than %zu bytes", var, n - 1);
    for (const char *p = out; *p; p++)
        if ((unsigned char)*p <= ' ' || *p == 0x7f)
            return hgf_err_set(err, HGF_EINPUT, "%s: the URL contains a space or control character",
                               var);
    return 0;
}

int hgf_credprov_container_url(char *out, size_t n, const char **var, hgf_err *err)
{
    const char *rel = getenv("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI");
    const char *full = getenv("AWS_CONTAINER_CREDENTIALS_FULL_URI");
    const char *dummy;
    var = var ? var : &dummy;
    if (set(rel)) {
        *var = "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI";
        if (rel[0] != '/')
            return hgf_err_set(err, HGF_EINPUT,
                               "%s: expected a path starting with '/', got \"%.200s\"", *var, rel);
        return put_url(out, n, *var, CONTAINER_BASE, rel, err);
    }
    if (!set(full)) {
        *var = NULL;
        return hgf_err_set(err, HGF_ENOTFOUND, "no container credentials URI");
    }
    *var = "AWS_CONTAINER_CREDENTIALS_FULL_URI";
    int rc = put_url(out, n, *var, full, "", err);
    return rc ? rc : check_full_uri(*var, out, err);
}

/* The token file takes precedence: EKS Pod Identity rotates it. */
static int container_token(hgf_buf *out, hgf_err *err)
{
    const char *file = getenv("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE");
    const char *var = "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE";
    int rc = 0;
    if (set(file)) {
        rc = read_token_file(var, file, out, err);
    } else {
        var = "AWS_CONTAINER_AUTHORIZATION_TOKEN";
        const char *tok = getenv(var);
        if (set(tok) && hgf_buf_puts(out, tok))
            rc = hgf_err_set(err, HGF_ENOMEM, "out of memory");
    }
    if (!rc && out->len && strpbrk(out->data, "\r\n"))
        rc = hgf_err_set(err, HGF_EINPUT,
                         "%s: the token contains a CR or LF, which would split the "
                         "Authorization header",
                         var);
    return rc;
}

static void on_container(const hgf_http_resp *r, void *arg)
{
    chain *c = arg;
    if (http_failed(c, r, "GET"))
        return;
    hgf_err e;
    int rc = parse_creds_json(r->body, r->body_len, "container", &c->creds, &e);
    if (rc)
        fail(c, rc, "%s", e.msg);
    else
        succeed(c);
}

static int container_start(chain *c, const hgf_credprov_opts *o, hgf_err *err)
{
    char url[1024];
    const char *var;
    int rc = hgf_credprov_container_url(url, sizeof url, &var, err);
    if (rc == HGF_ENOTFOUND) {
        tried_add(c, "no container credentials URI");
        return rc;
    }
    if (rc)
        return wrap(err, rc, "container credentials");
    snprintf(c->label, sizeof c->label, "container credentials (%s=%.600s)", var, url);
    hgf_buf tok = HGF_BUF_INIT, auth = HGF_BUF_INIT;
    rc = container_token(&tok, err);
    if (!rc && tok.len && hgf_buf_printf(&auth, "Authorization: %s", tok.data))
        rc = hgf_err_set(err, HGF_ENOMEM, "out of memory");
    if (!rc) {
        const char *headers[] = {"Accept: application/json", auth.data, NULL};
        hgf_http_req req = {.method = "GET",
                            .url = url,
                            .headers = headers,
                            .timeout_ms = CONTAINER_TIMEOUT_MS,
                            .max_body = MAX_REPLY};
        rc = hgf_http_send(c->http, &req, on_container, c, err);
    }
    hgf_secret_wipe_buf(&tok);
    hgf_secret_wipe_buf(&auth);
    return rc ? wrap(err, rc, "container credentials") : 0;
}

/* ---- IMDSv2 ------------------------------------------------------------ */

static int imds_send(chain *c, const char *method, const char *path, hgf_http_cb next, hgf_err *err)
{
    char url[512], h_tok[300];
    snprintf(url, sizeof url, "%s%s", c->base, path);
    if (c->imds_token[0])
        snprintf(h_tok, sizeof h_tok, "X-aws-ec2-metadata-token: %s", c->imds_token);
    else
        snprintf(h_tok, sizeof h_tok, "X-aws-ec2-metadata-token-ttl-seconds: 21600");
    const char *headers[] = {h_tok, NULL};
    hgf_http_req req = {.method = method,
                        .url = url,
                        .headers = headers,
                        .timeout_ms = IMDS_TIMEOUT_MS,
                        .max_body = MAX_REPLY};
    int rc = hgf_http_send(c->http, &req, next, c, err);
    hgf_secret_wipe(h_tok, sizeof h_tok);
    return rc;
}

static void imds_next(chain *c, const char *method, const char *path, hgf_http_cb next)
{
    hgf_err e;
    int rc = imds_send(c, method, path, next, &e);
    if (rc)
        fail(c, rc, "%s", e.msg);
}

static void on_imds_creds(const hgf_http_resp *r, void *arg)
{
    chain *c = arg;
    if (http_failed(c, r, "GET " IMDS_CREDS_PATH "<role>"))
        return;
    hgf_err e;
    int rc = parse_creds_json(r->body, r->body_len, "imds", &c->creds, &e);
    if (rc)
        fail(c, rc, "role %s: %s", c->role, e.msg);
    else
        succeed(c);
}

static int valid_role_name(const char *s, size_t n)
{
    if (n == 0 || n > 64)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= 'A' && s[i] <= 'Z') ||
              (s[i] >= '0' && s[i] <= '9') || strchr("_+=,.@-", s[i])))
            return 0;
    return 1;
}

static void on_imds_role(const hgf_http_resp *r, void *arg)
{
    chain *c = arg;
    if (r->status == 404) {
        fail(c, HGF_EFAIL,
             "no IAM role is attached to the instance (GET " IMDS_CREDS_PATH " answered 404)");
        return;
    }
    if (http_failed(c, r, "GET " IMDS_CREDS_PATH))
        return;
    const char *s = r->body + strspn(r->body, " \t\r\n");
    size_t n = strcspn(s, " \t\r\n");
    if (!valid_role_name(s, n)) {
        fail(c, HGF_EFAIL, "GET " IMDS_CREDS_PATH " did not name a role");
        return;
    }
    snprintf(c->role, sizeof c->role, "%.*s", (int)n, s);
    char path[256];
    snprintf(path, sizeof path, IMDS_CREDS_PATH "%s", c->role);
    imds_next(c, "GET", path, on_imds_creds);
}

static void on_imds_token(const hgf_http_resp *r, void *arg)
{
    chain *c = arg;
    if (http_failed(c, r, "PUT /latest/api/token"))
        return;
    size_t n = r->body_len;
    while (n && strchr(" \t\r\n", r->body[n - 1]))
        n--;
    int ok = n > 0 && n < sizeof c->imds_token;
    for (size_t i = 0; ok && i < n; i++)
        ok = (unsigned char)r->body[i] > ' ' && (unsigned char)r->body[i] < 0x7f;
    if (!ok) {
        fail(c, HGF_EFAIL, "PUT /latest/api/token did not return a token");
        return;
    }
    memcpy(c->imds_token, r->body, n);
    c->imds_token[n] = '\0';
    imds_next(c, "GET", IMDS_CREDS_PATH, on_imds_role);
}

static int imds_base(chain *c, hgf_err *err)
{
    const char *var = "AWS_EC2_METADATA_SERVICE_ENDPOINT";
    const char *v = getenv(var);
    if (!set(v))
        v = IMDS_DEFAULT;
    else if (strncmp(v, "http://", 7) && strncmp(v, "https://", 8))
        return hgf_err_set(err, HGF_EINPUT,
                           "%s: expected an http:// or https:// URL, got \"%.200s\"", var, v);
    int rc = put_url(c->base, sizeof c->base, var, v, "", err);
    size_t n = strlen(c->base);
    while (!rc && n && c->base[n - 1] == '/')
        c->base[--n] = '\0';
    return rc;
}

static int imds_start(chain *c, const hgf_credprov_opts *o, hgf_err *err)
{
    const char *off = getenv("AWS_EC2_METADATA_DISABLED");
    if (off && !strcasecmp(off, "true")) {
        tried_add(c, "IMDS disabled (AWS_EC2_METADATA_DISABLED=true)");
        return HGF_ENOTFOUND;
    }
    int rc = imds_base(c, err);
    /* IMDS is the last resort: its errors carry everything that was tried. */
    snprintf(c->label, sizeof c->label, "no host credentials: %s; IMDSv2 at %s", c->tried,
             rc ? "(bad endpoint)" : c->base);
    if (!rc)
        rc = imds_send(c, "PUT", "/latest/api/token", on_imds_token, err);
    return rc ? wrap(err, rc, c->label) : 0;
}

/* ---- the chain --------------------------------------------------------- */

typedef int (*provider_fn)(chain *c, const hgf_credprov_opts *o, hgf_err *err);

static const provider_fn PROVIDERS[] = {env_start, web_identity_start, container_start, imds_start};

int hgf_credprov_host_fetch(const hgf_credprov_opts *o, hgf_creds_cb cb, void *arg, hgf_err *err)
{
    if (!o || !o->loop || !o->http || !cb)
        return hgf_err_set(err, HGF_EINPUT,
                           "credentials: a loop, an HTTP client and a callback "
                           "are required");
    chain *c = calloc(1, sizeof *c);
    if (!c)
        return hgf_err_set(err, HGF_ENOMEM, "out of memory");
    *c = (chain){.loop = o->loop, .http = o->http, .cb = cb, .arg = arg};
    int rc = HGF_ENOTFOUND;
    for (size_t i = 0; rc == HGF_ENOTFOUND && i < sizeof PROVIDERS / sizeof PROVIDERS[0]; i++)
        rc = PROVIDERS[i](c, o, err);
    if (rc == HGF_ENOTFOUND)
        hgf_err_set(err, HGF_ENOTFOUND, "no host credentials: %s", c->tried);
    if (rc)
        chain_free(c);
    return rc;
}

int hgf_credprov_sts_endpoint(const char *region, char *url, size_t n, char region_out[32],
                              hgf_err *err)
{
    const char *r = region;
    if (!set(r))
        r = getenv("AWS_REGION");
    if (!set(r))
        r = getenv("AWS_DEFAULT_REGION");
    if (!set(r))
        r = "us-east-1";
    hgf_registry reg;
    /* Only the region matters for STS; the account is a placeholder. */
    int rc = hgf_endpoint_registry_from_parts("000000000000", r, 0, &reg, err);
    if (rc)
        return rc;
    rc = hgf_endpoint_service_url("STS", &reg, url, n, err);
    if (!rc)
        snprintf(region_out, 32, "%s", reg.region);
    return rc;
}
