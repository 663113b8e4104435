#include "hgfleet/registry.h"
#include "hgfleet/buf.h"

#include <ctype.h>
#include <jansson.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct call {
    hgf_registry_cb cb;
    void *arg;
    int head;
    char reference[160];
    char what[400];
} call;

int hgf_registry_is_digest(const char *ref)
{
    if (strncmp(ref, "sha256:", 7) || strlen(ref) != 71)
        return 0;
    for (const char *p = ref + 7; *p; p++)
        if (!isxdigit((unsigned char)*p) || isupper((unsigned char)*p))
            return 0;
    return 1;
}

/* Distribution spec: path components [a-z0-9]+(([._]|__|[-]*)[a-z0-9]+)*,
 * joined by '/'. A loose check is enough to keep the URL well-formed. */
static int valid_repository(const char *r)
{
    size_t n = strlen(r);
    if (n == 0 || n > 256 || r[0] == '/' || r[n - 1] == '/' || strstr(r, "//"))
        return 0;
    for (const char *p = r; *p; p++)
        if (!islower((unsigned char)*p) && !isdigit((unsigned char)*p) && !strchr("._-/", *p))
            return 0;
    return 1;
}

static int valid_tag(const char *t)
{
    size_t n = strlen(t);
    if (n == 0 || n > 128 || !(isalnum((unsigned char)t[0]) || t[0] == '_'))
        return 0;
    for (const char *p = t; *p; p++)
        if (!isalnum((unsigned char)*p) && !strchr("._-", *p))
            return 0;
    return 1;
}

static void sha256_digest(const char *body, size_t len, char out[80])
{
    unsigned char md[32];
    unsigned int mdlen = 0;
    EVP_Digest(body, len, md, &mdlen, EVP_sha256(), NULL);
    hgf_buf b = HGF_BUF_INIT;
    hgf_buf_puts(&b, "sha256:");
    hgf_buf_put_hex(&b, md, mdlen);
    snprintf(out, 80, "%s", hgf_buf_str(&b));
    hgf_buf_free(&b);
}

static void registry_error(const call *c, const hgf_http_resp *resp, hgf_registry_result *r)
{
    json_t *j = resp->body_len ? json_loadb(resp->body, resp->body_len, 0, NULL) : NULL;
    json_t *e0 = json_array_get(json_object_get(j, "errors"), 0);
    const char *code = json_string_value(json_object_get(e0, "code"));
    const char *msg = json_string_value(json_object_get(e0, "message"));
    if (!code)
        code = resp->status == 404 ? "MANIFEST_UNKNOWN"
               : resp->status == 401 ? "UNAUTHORIZED"
               : resp->status == 403 ? "DENIED" : "HTTP";
    int rc = resp->status == 404 ? HGF_ENOTFOUND : (resp->status == 401 || resp->status == 403)
                                                       ? HGF_EAWS
                                                       : HGF_EHTTP;
    r->rc = hgf_err_set(&r->err, rc, "%s: HTTP %ld %s%s%s", c->what, resp->status, code,
                        msg ? ": " : "", msg ? msg : "");
    snprintf(r->err.aws_code, sizeof r->err.aws_code, "%s", code);
    json_decref(j);
}

static void verify_body(const call *c, hgf_registry_result *r)
{
    char actual[80];
    sha256_digest(r->body, r->body_len, actual);
    if (r->digest[0] && strcmp(actual, r->digest))
        r->rc = hgf_err_set(&r->err, HGF_EHTTP, "%s: body digest %s does not match "
                            "Docker-Content-Digest %s", c->what, actual, r->digest);
    else if (hgf_registry_is_digest(c->reference) && strcmp(actual, c->reference))
        r->rc = hgf_err_set(&r->err, HGF_EHTTP, "%s: body digest %s does not match the "
                            "requested digest", c->what, actual);
    else if (!r->digest[0])
        snprintf(r->digest, sizeof r->digest, "%s", actual);
}

static void on_response(const hgf_http_resp *resp, void *arg)
{
    call *c = arg;
    hgf_registry_result r;
    memset(&r, 0, sizeof r);
    hgf_err_clear(&r.err);
    r.status = resp->status;
    r.www_authenticate = hgf_http_resp_header(resp, "www-authenticate");
    const char *dcd = hgf_http_resp_header(resp, "docker-content-digest");
    const char *ct = hgf_http_resp_header(resp, "content-type");
    const char *cl = hgf_http_resp_header(resp, "content-length");
    snprintf(r.digest, sizeof r.digest, "%s", dcd ? dcd : "");
    snprintf(r.media_type, sizeof r.media_type, "%s", ct ? ct : "");
    r.content_length = cl ? atoll(cl) : -1;
    if (resp->transport_error) {
        r.rc = hgf_err_set(&r.err, HGF_EHTTP, "%s: %s", c->what, resp->error);
    } else if (resp->status / 100 != 2) {
        registry_error(c, resp, &r);
    } else if (!c->head) {
        r.body = resp->body;
        r.body_len = resp->body_len;
        verify_body(c, &r);
    } else if (hgf_registry_is_digest(c->reference) && r.digest[0] &&
               strcmp(r.digest, c->reference)) {
        r.rc = hgf_err_set(&r.err, HGF_EHTTP, "%s: registry answered digest %s", c->what,
                           r.digest);
    }
    c->cb(&r, c->arg);
    free(c);
}

int hgf_registry_manifest(const hgf_registry_req *req, hgf_registry_cb cb, void *arg, hgf_err *err)
{
    if (!valid_repository(req->repository))
        return hgf_err_set(err, HGF_EINPUT, "repository \"%.128s\" is not a valid repository name",
                           req->repository);
    if (!hgf_registry_is_digest(req->reference) && !valid_tag(req->reference))
        return hgf_err_set(err, HGF_EINPUT, "reference \"%.140s\" is neither a tag nor a "
                           "sha256 digest", req->reference);
    call *c = calloc(1, sizeof *c);
    if (!c)
        return hgf_err_set(err, HGF_ENOMEM, "out of memory");
    c->cb = cb;
    c->arg = arg;
    c->head = req->head;
    snprintf(c->reference, sizeof c->reference, "%s", req->reference);
    snprintf(c->what, sizeof c->what, "%s manifest %s:%s", req->head ? "HEAD" : "GET",
             req->repository, req->reference);
    hgf_buf url = HGF_BUF_INIT, auth = HGF_BUF_INIT;
    size_t plen = strlen(req->proxy_endpoint);
    while (plen && req->proxy_endpoint[plen - 1] == '/')
        plen--;
    hgf_buf_printf(&url, "%.*s/v2/%s/manifests/%s", (int)plen, req->proxy_endpoint,
                   req->repository, req->reference);
    if (req->authorization)
        hgf_buf_printf(&auth, "Authorization: %s", req->authorization);
    const char *headers[] = {"Accept: " HGF_REGISTRY_ACCEPT, auth.data, NULL};
    hgf_http_req hr = {.method = req->head ? "HEAD" : "GET", .url = url.data, .headers = headers,
                       .limit_key = req->limit_key, .max_body = 4 << 20};
    int rc = hgf_http_send(req->http, &hr, on_response, c, err);
    if (rc)
        free(c);
    hgf_buf_free(&url);
    if (auth.data)
        memset(auth.data, 0, auth.len);
    hgf_buf_free(&auth);
    return rc;
}
