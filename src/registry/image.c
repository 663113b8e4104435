/* Image config: reference -> [index -> platform manifest] -> config blob,
 * built on hgf_registry_manifest and hgf_registry_blob, which verify every
 * body against its digest; here each descriptor's size is checked too. */
#include "hgfleet/registry.h"
#include "hgfleet/buf.h"
#include "hgfleet/secret.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CONFIG_MAX_DEFAULT ((size_t)4 << 20)

enum { MAX_INDEX_HOPS = 2 };

typedef struct img {
    hgf_http *http;
    char *base, *repository, *limit_key;
    char *preset, *username, *password;
    hgf_registry_auth auth;       /* points at the copies above */
    hgf_registry_tokens *tokens;
    int own_tokens;
    size_t max_config;
    int hops;
    long long want_size;          /* the descriptor's size for the fetch in flight, or -1 */
    hgf_registry_image out;
    hgf_buf manifest;
    hgf_registry_image_cb cb;
    void *arg;
} img;

static void wipe_free(char *s)
{
    if (s)
        hgf_secret_wipe(s, strlen(s));
    free(s);
}

static void img_free(img *im)
{
    free(im->base);
    free(im->repository);
    free(im->limit_key);
    wipe_free(im->preset);
    free(im->username);
    wipe_free(im->password);
    if (im->own_tokens)
        hgf_registry_tokens_free(im->tokens);
    hgf_buf_free(&im->manifest);
    free(im);
}

static char *dup_or_null(const char *s)
{
    return s ? strdup(s) : NULL;
}

static img *img_new(const hgf_registry_req *req)
{
    img *im = calloc(1, sizeof *im);
    if (!im)
        return NULL;
    const hgf_registry_auth *a = req->auth;
    const char *preset = a && a->authorization ? a->authorization : req->authorization;
    im->http = req->http;
    im->base = strdup(req->proxy_endpoint);
    im->repository = strdup(req->repository);
    im->limit_key = dup_or_null(req->limit_key);
    im->preset = dup_or_null(preset);
    im->username = a ? dup_or_null(a->username) : NULL;
    im->password = a && a->username ? strdup(a->password ? a->password : "") : NULL;
    im->tokens = req->tokens;
    if (!im->tokens) {
        im->tokens = hgf_registry_tokens_new();
        im->own_tokens = 1;
    }
    im->max_config = req->max_body ? req->max_body : CONFIG_MAX_DEFAULT;
    hgf_err_clear(&im->out.err);
    if (!im->base || !im->repository || (req->limit_key && !im->limit_key) ||
        (preset && !im->preset) || (a && a->username && (!im->username || !im->password)) ||
        !im->tokens) {
        img_free(im);
        return NULL;
    }
    im->auth = (hgf_registry_auth){im->preset, im->username, im->password};
    return im;
}

static hgf_registry_req req_of(const img *im, const char *reference)
{
    return (hgf_registry_req){.http = im->http, .proxy_endpoint = im->base, .auth = &im->auth,
                              .tokens = im->tokens, .repository = im->repository,
                              .reference = reference, .limit_key = im->limit_key,
                              .max_body = im->max_config};
}

static void deliver(img *im)
{
    im->out.manifest = im->manifest.data;
    im->out.manifest_len = im->manifest.len;
    im->cb(&im->out, im->arg);
    img_free(im);
}

static void fail_with(img *im, const hgf_registry_result *r)
{
    im->out.rc = r->rc;
    im->out.err = r->err;
    im->out.status = r->status;
    deliver(im);
}

static void fail_msg(img *im, int rc, const char *msg)
{
    im->out.rc = hgf_err_set(&im->out.err, rc, "%s", msg);
    deliver(im);
}

/* Once Basic credentials worked, send them at once on the next steps rather
 * than collecting a 401 each time. */
static void remember_basic(img *im, const hgf_registry_result *r)
{
    if (r->auth_used != HGF_REGISTRY_BASIC || !im->username || im->preset)
        return;
    hgf_buf plain = HGF_BUF_INIT, out = HGF_BUF_INIT;
    hgf_buf_printf(&plain, "%s:%s", im->username, im->password);
    hgf_buf_puts(&out, "Basic ");
    hgf_base64_encode(plain.data, plain.len, &out);
    hgf_secret_wipe_buf(&plain);
    im->preset = hgf_buf_detach(&out);
    im->auth.authorization = im->preset;
}

/* ---- manifest kinds --------------------------------------------------- */

enum kind { KIND_UNKNOWN, KIND_INDEX, KIND_MANIFEST, KIND_SCHEMA1 };

static enum kind kind_of_type(const char *mt, size_t n)
{
    static const struct {
        const char *type;
        enum kind kind;
    } TYPES[] = {
        {"application/vnd.oci.image.index.v1+json", KIND_INDEX},
        {"application/vnd.docker.distribution.manifest.list.v2+json", KIND_INDEX},
        {"application/vnd.oci.image.manifest.v1+json", KIND_MANIFEST},
        {"application/vnd.docker.distribution.manifest.v2+json", KIND_MANIFEST},
        {"application/vnd.docker.distribution.manifest.v1+json", KIND_SCHEMA1},
        {"application/vnd.docker.distribution.manifest.v1+prettyjws", KIND_SCHEMA1},
    };
    for (size_t i = 0; i < sizeof TYPES / sizeof TYPES[0]; i++)
        if (strlen(TYPES[i].type) == n && !strncmp(mt, TYPES[i].type, n))
            return TYPES[i].kind;
    return KIND_UNKNOWN;
}

/* The verified body's own mediaType wins over the Content-Type header; an
 * OCI manifest may carry neither, and then its shape decides. */
static enum kind kind_of(const json_t *j, const char *content_type, const char **mt, size_t *mtlen)
{
    const char *body_mt = json_string_value(json_object_get(j, "mediaType"));
    *mt = body_mt ? body_mt : content_type;
    *mtlen = body_mt ? strlen(body_mt) : strcspn(content_type, "; ");
    enum kind k = kind_of_type(*mt, *mtlen);
    if (k != KIND_UNKNOWN)
        return k;
    if (json_is_array(json_object_get(j, "manifests")))
        return KIND_INDEX;
    if (json_is_object(json_object_get(j, "config")))
        return KIND_MANIFEST;
    return KIND_UNKNOWN;
}

/* ---- steps ------------------------------------------------------------ */

static void on_manifest(const hgf_registry_result *r, void *arg);
static void on_config(const hgf_registry_result *r, void *arg);

static void fetch(img *im, const char *reference, long long size, int blob)
{
    hgf_registry_req req = req_of(im, reference);
    hgf_err e;
    hgf_err_clear(&e);
    im->want_size = size;
    int rc = blob ? hgf_registry_blob(&req, on_config, im, &e)
                  : hgf_registry_manifest(&req, on_manifest, im, &e);
    if (rc) {
        im->out.rc = rc;
        im->out.err = e;
        deliver(im);
    }
}

static int size_ok(img *im, const char *what, size_t got)
{
    if (im->want_size < 0 || (unsigned long long)im->want_size == got)
        return 1;
    im->out.rc = hgf_err_set(&im->out.err, HGF_EHTTP, "%s is %zu bytes but its descriptor says %lld",
                             what, got, im->want_size);
    deliver(im);
    return 0;
}

/* A descriptor's digest and size; msg names the bad field. */
static int descriptor(const json_t *d, const char **digest, long long *size, const char **msg)
{
    *digest = json_string_value(json_object_get(d, "digest"));
    json_t *sz = json_object_get(d, "size");
    if (!hgf_registry_is_digest(*digest)) {
        *msg = "digest is missing or not a sha256 digest";
        return -1;
    }
    if (!json_is_integer(sz) || json_integer_value(sz) < 0) {
        *msg = "size is missing or negative";
        return -1;
    }
    *size = (long long)json_integer_value(sz);
    return 0;
}

static int is_wanted(const json_t *platform)
{
    const char *os = json_string_value(json_object_get(platform, "os"));
    const char *arch = json_string_value(json_object_get(platform, "architecture"));
    return os && arch && !strcmp(os, "linux") && !strcmp(arch, "amd64");
}

/* linux/amd64, else the first entry for a real platform (build attestations
 * are listed as unknown/unknown). */
static const json_t *pick_entry(const json_t *manifests)
{
    const json_t *first = NULL, *e;
    size_t i;
    json_array_foreach(manifests, i, e)
    {
        const json_t *p = json_object_get(e, "platform");
        if (is_wanted(p))
            return e;
        const char *os = json_string_value(json_object_get(p, "os"));
        if (!first && !(os && !strcmp(os, "unknown")))
            first = e;
    }
    return first ? first : json_array_get(manifests, 0);
}

static void set_platform(img *im, const json_t *entry)
{
    const json_t *p = json_object_get(entry, "platform");
    const char *os = json_string_value(json_object_get(p, "os"));
    const char *arch = json_string_value(json_object_get(p, "architecture"));
    const char *variant = json_string_value(json_object_get(p, "variant"));
    snprintf(im->out.platform, sizeof im->out.platform, "%.20s/%.20s%s%.20s", os ? os : "?",
             arch ? arch : "?", variant ? "/" : "", variant ? variant : "");
}

static void follow_index(img *im, const hgf_registry_result *r, const json_t *j)
{
    const json_t *entry = pick_entry(json_object_get(j, "manifests"));
    const char *digest, *msg = "has no manifests";
    long long size = 0;
    if (++im->hops > MAX_INDEX_HOPS || !entry || descriptor(entry, &digest, &size, &msg)) {
        char m[300];
        snprintf(m, sizeof m, "index %s: %s", r->digest,
                 im->hops > MAX_INDEX_HOPS ? "indexes nested too deep" : msg);
        fail_msg(im, HGF_EHTTP, m);
        return;
    }
    if (!im->out.index_digest[0])
        snprintf(im->out.index_digest, sizeof im->out.index_digest, "%s", r->digest);
    set_platform(im, entry);
    char next[80];
    snprintf(next, sizeof next, "%s", digest);
    fetch(im, next, size, 0);
}

static void follow_manifest(img *im, const hgf_registry_result *r, const json_t *j,
                            const char *mt, size_t mtlen)
{
    const char *digest, *msg;
    long long size = 0;
    char m[300];
    if (descriptor(json_object_get(j, "config"), &digest, &size, &msg)) {
        snprintf(m, sizeof m, "manifest %s: config %s", r->digest, msg);
        fail_msg(im, HGF_EHTTP, m);
        return;
    }
    snprintf(im->out.manifest_digest, sizeof im->out.manifest_digest, "%s", r->digest);
    snprintf(im->out.media_type, sizeof im->out.media_type, "%.*s", (int)mtlen, mt);
    snprintf(im->out.config_digest, sizeof im->out.config_digest, "%s", digest);
    if ((unsigned long long)size > im->max_config) {
        snprintf(m, sizeof m, "config %s is %lld bytes, more than the cap of %zu", digest, size,
                 im->max_config);
        fail_msg(im, HGF_EHTTP, m);
        return;
    }
    if (hgf_buf_append(&im->manifest, r->body, r->body_len)) {
        fail_msg(im, HGF_ENOMEM, "out of memory");
        return;
    }
    fetch(im, im->out.config_digest, size, 1);
}

static void on_manifest(const hgf_registry_result *r, void *arg)
{
    img *im = arg;
    if (r->rc) {
        fail_with(im, r);
        return;
    }
    remember_basic(im, r);
    if (!im->out.reference_fetched) {
        im->out.reference_fetched = 1;
        snprintf(im->out.reference_media_type, sizeof im->out.reference_media_type, "%s",
                 r->media_type);
    }
    if (!size_ok(im, r->digest, r->body_len))
        return;
    json_t *j = json_loadb(r->body, r->body_len, 0, NULL);
    const char *mt;
    size_t mtlen;
    enum kind k = json_is_object(j) ? kind_of(j, r->media_type, &mt, &mtlen) : KIND_UNKNOWN;
    if (k == KIND_INDEX) {
        follow_index(im, r, j);
    } else if (k == KIND_MANIFEST) {
        follow_manifest(im, r, j, mt, mtlen);
    } else {
        char m[300];
        snprintf(m, sizeof m, "manifest %s: %s", r->digest,
                 k == KIND_SCHEMA1 ? "a schema 1 manifest has no config blob"
                                   : "not an image manifest or index");
        fail_msg(im, HGF_EHTTP, m);
    }
    json_decref(j);
}

static void on_config(const hgf_registry_result *r, void *arg)
{
    img *im = arg;
    if (r->rc) {
        fail_with(im, r);
        return;
    }
    if (!size_ok(im, r->digest, r->body_len))
        return;
    json_t *j = json_loadb(r->body, r->body_len, 0, NULL);
    if (!json_is_object(j)) {
        char m[200];
        snprintf(m, sizeof m, "config %s: not a JSON object", r->digest);
        json_decref(j);
        fail_msg(im, HGF_EHTTP, m);
        return;
    }
    im->out.status = r->status;
    im->out.config = j;
    im->out.config_body = r->body;
    im->out.config_len = r->body_len;
    deliver(im);
    json_decref(j);
}

int hgf_registry_image_config(const hgf_registry_req *req, hgf_registry_image_cb cb, void *arg,
                              hgf_err *err)
{
    if (!req->http || !req->proxy_endpoint || !*req->proxy_endpoint)
        return hgf_err_set(err, HGF_EINPUT, "proxy_endpoint: missing");
    if (!hgf_registry_valid_repository(req->repository))
        return hgf_err_set(err, HGF_EINPUT, "repository \"%.128s\" is not a valid repository name",
                           req->repository ? req->repository : "");
    if (!req->reference ||
        (!hgf_registry_is_digest(req->reference) && !hgf_registry_valid_tag(req->reference)))
        return hgf_err_set(err, HGF_EINPUT, "reference \"%.140s\" is neither a tag nor a "
                           "sha256 digest", req->reference ? req->reference : "");
    img *im = img_new(req);
    if (!im)
        return hgf_err_set(err, HGF_ENOMEM, "out of memory");
    im->cb = cb;
    im->arg = arg;
    im->want_size = -1;
    hgf_registry_req first = req_of(im, req->reference);
    int rc = hgf_registry_manifest(&first, on_manifest, im, err);
    if (rc)
        img_free(im);
    return rc;
}
