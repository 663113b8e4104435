/* Manifests and blobs over the registry v2 API, through one request engine
 * (a "session" per logical request) that answers 401 challenges:
 *
 *   send (preset Authorization, or a bearer token cached for the repository)
 *     401 Basic  -> once, with the caller's username/password
 *     401 Bearer -> a cached token for (realm, service, scope, user), or
 *                   GET realm?service=&scope= -> retry with the new token
 *   anything else is the answer.
 *
 * A session never sends more than MAX_REQUESTS to the registry, fetches at
 * most one token, and wipes every credential it copied when it ends. */
#include "hgfleet/registry.h"
#include "hgfleet/buf.h"
#include "hgfleet/secret.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

enum { MAX_REQUESTS = 4 };

#define MANIFEST_MAX ((size_t)4 << 20)
#define TOKEN_RESP_MAX ((size_t)256 << 10)

typedef struct sess sess;

struct sess {
    hgf_http *http;
    char *url, *origin, *repository, *limit_key;
    char *preset, *username, *password;
    hgf_registry_tokens *tokens;
    const char *method, *accept;
    int follow;
    size_t max_body;
    char *sent;                   /* Authorization value of the request in flight */
    hgf_registry_scheme sent_scheme;
    int sent_cached;              /* sent is "Bearer <token from the cache>" */
    int requests, basic_tried, token_fetched;
    hgf_registry_challenge ch;
    long token_status;            /* the token endpoint's status when it failed */
    /* the operation */
    int blob, head;
    char reference[160];
    char what[400];
    hgf_registry_cb cb;
    void *arg;
};

/* ---- session lifetime ------------------------------------------------- */

static char *dup_or_null(const char *s)
{
    return s ? strdup(s) : NULL;
}

static void wipe_free(char *s)
{
    if (s)
        hgf_secret_wipe(s, strlen(s));
    free(s);
}

static void sess_free(sess *s)
{
    free(s->url);
    free(s->origin);
    free(s->repository);
    free(s->limit_key);
    wipe_free(s->preset);
    free(s->username);
    wipe_free(s->password);
    wipe_free(s->sent);
    free(s);
}

/* scheme://host[:port] of a base URL, without any path prefix. */
static char *origin_of(const char *base)
{
    const char *host = strstr(base, "://");
    host = host ? host + 3 : base;
    size_t n = strcspn(host, "/?#");
    hgf_buf b = HGF_BUF_INIT;
    hgf_buf_printf(&b, "%.*s", (int)(host - base + (long)n), base);
    for (char *p = b.data; p && *p; p++)
        if (*p >= 'A' && *p <= 'Z')
            *p = (char)(*p - 'A' + 'a');
    return hgf_buf_detach(&b);
}

static char *url_for(const hgf_registry_req *req, const char *kind)
{
    size_t plen = strlen(req->proxy_endpoint);
    while (plen && req->proxy_endpoint[plen - 1] == '/')
        plen--;
    hgf_buf url = HGF_BUF_INIT;
    hgf_buf_printf(&url, "%.*s/v2/%s/%s/%s", (int)plen, req->proxy_endpoint, req->repository,
                   kind, req->reference);
    return hgf_buf_detach(&url);
}

static sess *sess_new(const hgf_registry_req *req, const char *kind)
{
    sess *s = calloc(1, sizeof *s);
    if (!s)
        return NULL;
    const hgf_registry_auth *a = req->auth;
    const char *preset = a && a->authorization ? a->authorization : req->authorization;
    s->http = req->http;
    s->tokens = req->tokens;
    s->url = url_for(req, kind);
    s->origin = origin_of(req->proxy_endpoint);
    s->repository = strdup(req->repository);
    s->limit_key = dup_or_null(req->limit_key);
    s->preset = dup_or_null(preset);
    s->username = a ? dup_or_null(a->username) : NULL;
    s->password = dup_or_null(a && a->username ? (a->password ? a->password : "") : NULL);
    snprintf(s->reference, sizeof s->reference, "%s", req->reference);
    if (!s->url || !s->origin || !s->repository || (req->limit_key && !s->limit_key) ||
        (preset && !s->preset) || (a && a->username && (!s->username || !s->password))) {
        sess_free(s);
        return NULL;
    }
    return s;
}

/* ---- sending ---------------------------------------------------------- */

static void on_reply(const hgf_http_resp *resp, void *arg);

static int set_auth(sess *s, char *value, hgf_registry_scheme scheme, int cached)
{
    wipe_free(s->sent);
    s->sent = value;
    s->sent_scheme = scheme;
    s->sent_cached = cached;
    return value ? 0 : HGF_ENOMEM;
}

static char *header_value(const char *prefix, const char *v)
{
    hgf_buf b = HGF_BUF_INIT;
    hgf_buf_printf(&b, "%s%s", prefix, v);
    return hgf_buf_detach(&b);
}

static char *basic_value(const sess *s)
{
    hgf_buf plain = HGF_BUF_INIT, out = HGF_BUF_INIT;
    hgf_buf_printf(&plain, "%s:%s", s->username, s->password);
    hgf_buf_puts(&out, "Basic ");
    hgf_base64_encode(plain.data, plain.len, &out);
    hgf_secret_wipe_buf(&plain);
    return hgf_buf_detach(&out);
}

static int send_registry(sess *s, hgf_err *err)
{
    hgf_buf accept = HGF_BUF_INIT, auth = HGF_BUF_INIT;
    const char *headers[3] = {NULL, NULL, NULL};
    int n = 0;
    if (s->accept && hgf_buf_printf(&accept, "Accept: %s", s->accept) == 0)
        headers[n++] = accept.data;
    if (s->sent && hgf_buf_printf(&auth, "Authorization: %s", s->sent) == 0)
        headers[n++] = auth.data;
    hgf_http_req hr = {.method = s->method, .url = s->url, .headers = headers,
                       .limit_key = s->limit_key, .max_body = s->max_body,
                       .follow_redirects = s->follow};
    int rc = hgf_http_send(s->http, &hr, on_reply, s, err);
    if (!rc)
        s->requests++;
    hgf_buf_free(&accept);
    hgf_secret_wipe_buf(&auth);
    return rc;
}

/* ---- results ---------------------------------------------------------- */

static void registry_error(const sess *s, const hgf_http_resp *resp, hgf_registry_result *r)
{
    json_t *j = resp->body_len ? json_loadb(resp->body, resp->body_len, 0, NULL) : NULL;
    json_t *e0 = json_array_get(json_object_get(j, "errors"), 0);
    const char *code = json_string_value(json_object_get(e0, "code"));
    const char *msg = json_string_value(json_object_get(e0, "message"));
    if (!code)
        code = resp->status == 404 ? (s->blob ? "BLOB_UNKNOWN" : "MANIFEST_UNKNOWN")
               : resp->status == 401 ? "UNAUTHORIZED"
               : resp->status == 403 ? "DENIED" : "HTTP";
    int rc = resp->status == 404 ? HGF_ENOTFOUND : (resp->status == 401 || resp->status == 403)
                                                       ? HGF_EAWS
                                                       : HGF_EHTTP;
    r->rc = hgf_err_set(&r->err, rc, "%s: HTTP %ld %s%s%.300s", s->what, resp->status, code,
                        msg ? ": " : "", msg ? msg : "");
    snprintf(r->err.aws_code, sizeof r->err.aws_code, "%s", code);
    json_decref(j);
}

static void verify_manifest(const sess *s, hgf_registry_result *r)
{
    char actual[80];
    hgf_registry_sha256(r->body, r->body_len, actual);
    if (r->digest[0] && strcmp(actual, r->digest))
        r->rc = hgf_err_set(&r->err, HGF_EHTTP, "%s: body digest %s does not match "
                            "Docker-Content-Digest %s", s->what, actual, r->digest);
    else if (hgf_registry_is_digest(s->reference) && strcmp(actual, s->reference))
        r->rc = hgf_err_set(&r->err, HGF_EHTTP, "%s: body digest %s does not match the "
                            "requested digest", s->what, actual);
    else if (!r->digest[0])
        snprintf(r->digest, sizeof r->digest, "%s", actual);
}

static void verify_blob(const sess *s, const hgf_http_resp *resp, hgf_registry_result *r)
{
    char actual[80];
    if (resp->body_truncated) {
        r->rc = hgf_err_set(&r->err, HGF_EHTTP, "%s: larger than the cap of %zu bytes", s->what,
                            s->max_body);
        return;
    }
    hgf_registry_sha256(r->body, r->body_len, actual);
    if (strcmp(actual, s->reference))
        r->rc = hgf_err_set(&r->err, HGF_EHTTP, "%s: body digest %s does not match the "
                            "requested digest", s->what, actual);
    snprintf(r->digest, sizeof r->digest, "%.79s", s->reference);
}

static void check_head(const sess *s, hgf_registry_result *r)
{
    if (hgf_registry_is_digest(s->reference) && r->digest[0] && strcmp(r->digest, s->reference))
        r->rc = hgf_err_set(&r->err, HGF_EHTTP, "%s: registry answered digest %s", s->what,
                            r->digest);
}

static void fill_ok(const sess *s, const hgf_http_resp *resp, hgf_registry_result *r)
{
    if (s->head) {
        check_head(s, r);
        return;
    }
    r->body = resp->body;
    r->body_len = resp->body_len;
    if (s->blob)
        verify_blob(s, resp, r);
    else if (resp->body_truncated)
        r->rc = hgf_err_set(&r->err, HGF_EHTTP, "%s: manifest larger than %zu bytes", s->what,
                            s->max_body);
    else
        verify_manifest(s, r);
}

static void fill_from_resp(const sess *s, const hgf_http_resp *resp, hgf_registry_result *r)
{
    r->status = resp->status;
    r->www_authenticate = hgf_http_resp_header(resp, "www-authenticate");
    const char *dcd = s->blob ? NULL : hgf_http_resp_header(resp, "docker-content-digest");
    const char *ct = hgf_http_resp_header(resp, "content-type");
    const char *cl = hgf_http_resp_header(resp, "content-length");
    snprintf(r->digest, sizeof r->digest, "%s", dcd ? dcd : "");
    snprintf(r->media_type, sizeof r->media_type, "%s", ct ? ct : "");
    r->content_length = cl ? atoll(cl) : -1;
    if (resp->transport_error)
        r->rc = hgf_err_set(&r->err, HGF_EHTTP, "%s: %s%s", s->what, resp->error,
                            hgf_http_tls_suffix(resp->transport_error));
    else if (resp->status / 100 != 2)
        registry_error(s, resp, r);
    else
        fill_ok(s, resp, r);
}

/* Ends the session: resp is the registry's last answer, or NULL when the
 * auth flow failed before one (why says how). */
static void finish(sess *s, const hgf_http_resp *resp, const hgf_err *why)
{
    hgf_registry_result r;
    memset(&r, 0, sizeof r);
    hgf_err_clear(&r.err);
    r.content_length = -1;
    r.auth_used = s->sent_scheme;
    if (resp) {
        fill_from_resp(s, resp, &r);
    } else {
        r.status = s->token_status;
        r.rc = why->code;
        r.err = *why;
    }
    if (resp && why && why->code && r.rc) {
        size_t len = strlen(r.err.msg);
        snprintf(r.err.msg + len, sizeof r.err.msg - len, " (%s)", why->msg);
    }
    s->cb(&r, s->arg);
    sess_free(s);
}

/* ---- the bearer token endpoint ---------------------------------------- */

static int put_query(hgf_buf *b, const char *name, const char *v, size_t n)
{
    static const char HEX[] = "0123456789ABCDEF";
    int rc = hgf_buf_printf(b, "%c%s=", strchr(b->data, '?') ? '&' : '?', name);
    for (size_t i = 0; !rc && i < n; i++) {
        unsigned char c = (unsigned char)v[i];
        if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
            strchr("-._~", c))
            rc = hgf_buf_putc(b, (char)c);
        else
            rc = hgf_buf_printf(b, "%%%c%c", HEX[c >> 4], HEX[c & 15]);
    }
    return rc;
}

/* realm?service=..&scope=..&scope=.. (one scope parameter per scope). */
static char *token_url(const hgf_registry_challenge *ch)
{
    hgf_buf b = HGF_BUF_INIT;
    hgf_buf_puts(&b, ch->realm);
    if (ch->service[0])
        put_query(&b, "service", ch->service, strlen(ch->service));
    for (const char *p = ch->scope; *p;) {
        size_t n = strcspn(p, " ");
        if (n)
            put_query(&b, "scope", p, n);
        p += n + (p[n] == ' ');
    }
    return hgf_buf_detach(&b);
}

static int realm_allowed(const sess *s, hgf_err *err)
{
    const char *r = s->ch.realm;
    if (!strncasecmp(r, "https://", 8))
        return 0;
    /* Credentials go in clear over http: only when the registry itself is
     * plain http (a local test registry), never as a downgrade from https. */
    if (!strncasecmp(r, "http://", 7) && !strncmp(s->origin, "http://", 7))
        return 0;
    return hgf_err_set(err, HGF_EHTTP, "%s: the Bearer realm \"%.200s\" is not an https URL",
                       s->what, r);
}

static hgf_registry_token_key key_of(const sess *s)
{
    return (hgf_registry_token_key){.realm = s->ch.realm, .service = s->ch.service,
                                    .scope = s->ch.scope, .username = s->username,
                                    .origin = s->origin, .repository = s->repository};
}

static int valid_token(const char *t)
{
    size_t n = t ? strlen(t) : 0;
    if (n == 0 || n > 16384)
        return 0;
    for (; *t; t++)
        if (*t <= ' ' || *t >= 0x7f)
            return 0;
    return 1;
}

static void token_failed(sess *s, const hgf_http_resp *resp)
{
    hgf_err e;
    hgf_err_clear(&e);
    char where[300];
    snprintf(where, sizeof where, "%.*s", (int)strcspn(s->ch.realm, "?"), s->ch.realm);
    s->token_status = resp->status;
    if (resp->transport_error) {
        hgf_err_set(&e, HGF_EHTTP, "%s: token endpoint %s: %s%s", s->what, where, resp->error,
                    hgf_http_tls_suffix(resp->transport_error));
    } else {
        json_t *j = json_loadb(resp->body, resp->body_len, 0, NULL);
        const char *code = json_string_value(
            json_object_get(json_array_get(json_object_get(j, "errors"), 0), "code"));
        if (!code)
            code = resp->status == 401 ? "UNAUTHORIZED" : resp->status == 403 ? "DENIED" : "HTTP";
        int rc = (resp->status == 401 || resp->status == 403) ? HGF_EAWS : HGF_EHTTP;
        hgf_err_set(&e, rc, "%s: token endpoint %s: HTTP %ld %s", s->what, where, resp->status,
                    code);
        snprintf(e.aws_code, sizeof e.aws_code, "%s", code);
        json_decref(j);
    }
    finish(s, NULL, &e);
}

static void use_token(sess *s, const char *token, long expires_in)
{
    hgf_err e;
    hgf_err_clear(&e);
    hgf_registry_token_key k = key_of(s);
    int rc = s->tokens ? hgf_registry_tokens_put(s->tokens, &k, token, expires_in, &e) : 0;
    if (!rc)
        rc = set_auth(s, header_value("Bearer ", token), HGF_REGISTRY_BEARER, 0);
    if (!rc)
        rc = send_registry(s, &e);
    if (rc) {
        if (!e.code)
            hgf_err_set(&e, rc, "out of memory");
        finish(s, NULL, &e);
    }
}

static void on_token(const hgf_http_resp *resp, void *arg)
{
    sess *s = arg;
    if (resp->transport_error || resp->status != 200) {
        token_failed(s, resp);
        return;
    }
    json_t *j = json_loadb(resp->body, resp->body_len, 0, NULL);
    const char *tok = json_string_value(json_object_get(j, "token"));
    if (!tok)
        tok = json_string_value(json_object_get(j, "access_token"));
    json_t *exp = json_object_get(j, "expires_in");
    if (!valid_token(tok)) {
        hgf_err e;
        hgf_err_clear(&e);
        s->token_status = resp->status;
        hgf_err_set(&e, HGF_EHTTP, "%s: the token endpoint's answer has no usable \"token\" or "
                    "\"access_token\"", s->what);
        finish(s, NULL, &e);
    } else {
        use_token(s, tok, json_is_integer(exp) ? (long)json_integer_value(exp) : 0);
    }
    json_decref(j);
}

static int fetch_token(sess *s, hgf_err *why)
{
    int rc = realm_allowed(s, why);
    if (rc)
        return rc;
    char *url = token_url(&s->ch);
    char *basic = s->username ? basic_value(s) : NULL;
    hgf_buf auth = HGF_BUF_INIT;
    if (basic)
        hgf_buf_printf(&auth, "Authorization: %s", basic);
    const char *headers[] = {"Accept: application/json", auth.data, NULL};
    hgf_http_req hr = {.method = "GET", .url = url, .headers = headers,
                       .limit_key = s->limit_key, .max_body = TOKEN_RESP_MAX};
    rc = url && (basic || !s->username) ? hgf_http_send(s->http, &hr, on_token, s, why)
                                        : hgf_err_set(why, HGF_ENOMEM, "out of memory");
    s->token_fetched = 1;
    free(url);
    wipe_free(basic);
    hgf_secret_wipe_buf(&auth);
    return rc;
}

/* ---- the 401 flow ----------------------------------------------------- */

static int retry_basic(sess *s, hgf_err *why)
{
    if (!s->username || s->basic_tried)
        return HGF_EFAIL;
    s->basic_tried = 1;
    int rc = set_auth(s, basic_value(s), HGF_REGISTRY_BASIC, 0);
    return rc ? rc : send_registry(s, why);
}

static int retry_bearer(sess *s, hgf_err *why)
{
    if (s->token_fetched)
        return HGF_EFAIL;
    if (!s->ch.scope[0])
        snprintf(s->ch.scope, sizeof s->ch.scope, "repository:%s:pull", s->repository);
    hgf_registry_token_key k = key_of(s);
    const char *cached = s->tokens ? hgf_registry_tokens_get(s->tokens, &k) : NULL;
    if (cached && !(s->sent_cached && !strcmp(s->sent + 7, cached))) {
        int rc = set_auth(s, header_value("Bearer ", cached), HGF_REGISTRY_BEARER, 1);
        return rc ? rc : send_registry(s, why);
    }
    return fetch_token(s, why);
}

/* 0 when a retry (or a token request) is under way. */
static int after_401(sess *s, const hgf_http_resp *resp, hgf_err *why)
{
    if (s->requests >= MAX_REQUESTS)
        return HGF_EFAIL;
    if (s->sent_cached && s->tokens)
        hgf_registry_tokens_drop(s->tokens, s->sent + 7);
    const char *header = hgf_http_resp_header(resp, "www-authenticate");
    if (!header)
        return HGF_EFAIL;  /* nothing to answer: the 401 is the result */
    int rc = hgf_registry_parse_challenge(header, &s->ch, why);
    if (rc)
        return rc;
    return s->ch.scheme == HGF_REGISTRY_BASIC ? retry_basic(s, why) : retry_bearer(s, why);
}

static void on_reply(const hgf_http_resp *resp, void *arg)
{
    sess *s = arg;
    hgf_err why;
    hgf_err_clear(&why);
    if (resp->status == 401 && !resp->transport_error && after_401(s, resp, &why) == 0)
        return;
    finish(s, resp, &why);
}

static int start(sess *s, hgf_registry_cb cb, void *arg, hgf_err *err)
{
    s->cb = cb;
    s->arg = arg;
    if (!s->preset && s->tokens) {
        hgf_registry_token_key k = {.username = s->username, .origin = s->origin,
                                    .repository = s->repository};
        const char *t = hgf_registry_tokens_for_repo(s->tokens, &k);
        if (t && set_auth(s, header_value("Bearer ", t), HGF_REGISTRY_BEARER, 1)) {
            sess_free(s);
            return hgf_err_set(err, HGF_ENOMEM, "out of memory");
        }
    } else if (s->preset && set_auth(s, strdup(s->preset), HGF_REGISTRY_NONE, 0)) {
        sess_free(s);
        return hgf_err_set(err, HGF_ENOMEM, "out of memory");
    }
    int rc = send_registry(s, err);
    if (rc)
        sess_free(s);
    return rc;
}

/* ---- public ----------------------------------------------------------- */

static int check_req(const hgf_registry_req *req, hgf_err *err)
{
    if (!req->http || !req->proxy_endpoint || !*req->proxy_endpoint)
        return hgf_err_set(err, HGF_EINPUT, "proxy_endpoint: missing");
    if (!hgf_registry_valid_repository(req->repository))
        return hgf_err_set(err, HGF_EINPUT, "repository \"%.128s\" is not a valid repository name",
                           req->repository ? req->repository : "");
    if (!req->reference)
        return hgf_err_set(err, HGF_EINPUT, "reference: missing");
    return 0;
}

int hgf_registry_manifest(const hgf_registry_req *req, hgf_registry_cb cb, void *arg, hgf_err *err)
{
    int rc = check_req(req, err);
    if (rc)
        return rc;
    if (!hgf_registry_is_digest(req->reference) && !hgf_registry_valid_tag(req->reference))
        return hgf_err_set(err, HGF_EINPUT, "reference \"%.140s\" is neither a tag nor a "
                           "sha256 digest", req->reference);
    sess *s = sess_new(req, "manifests");
    if (!s)
        return hgf_err_set(err, HGF_ENOMEM, "out of memory");
    s->head = req->head;
    s->method = req->head ? "HEAD" : "GET";
    s->accept = HGF_REGISTRY_ACCEPT;
    s->max_body = MANIFEST_MAX;
    snprintf(s->what, sizeof s->what, "%s manifest %s:%s", s->method, req->repository,
             req->reference);
    return start(s, cb, arg, err);
}

int hgf_registry_blob(const hgf_registry_req *req, hgf_registry_cb cb, void *arg, hgf_err *err)
{
    int rc = check_req(req, err);
    if (rc)
        return rc;
    if (!hgf_registry_is_digest(req->reference))
        return hgf_err_set(err, HGF_EINPUT, "reference \"%.140s\" is not a sha256 digest",
                           req->reference);
    if (req->head)
        return hgf_err_set(err, HGF_EINPUT, "head: blobs are only fetched with GET");
    sess *s = sess_new(req, "blobs");
    if (!s)
        return hgf_err_set(err, HGF_ENOMEM, "out of memory");
    s->blob = 1;
    s->method = "GET";
    s->follow = 1;
    s->max_body = req->max_body ? req->max_body : HGF_REGISTRY_BLOB_MAX_DEFAULT;
    snprintf(s->what, sizeof s->what, "GET blob %s@%s", req->repository, req->reference);
    return start(s, cb, arg, err);
}
