#include "regv2.h"

#include <ctype.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include "token.h"

/* Presigned S3 URLs live for minutes, not hours. */
#define BLOB_URL_TTL_S 900
#define MAX_NAME 256
#define MAX_REF 160
#define N_PASSWORD_FIELDS 8

struct hgf_sim_regv2 {
    hgf_sim_fleet *fleet;
    hgf_sim_iam *iam;
    hgf_sim_faults *faults;
    char *base_url;  /* NULL: from the Host header */
    unsigned char key[HGF_SIM_TOKEN_KEY_LEN];
};

enum kind { RP_PING, RP_MANIFEST, RP_BLOB, RP_OTHER };

typedef struct regpath {
    char account[13];
    char region[64];
    enum kind kind;
    char name[MAX_NAME + 1];
    char ref[MAX_REF + 1];
} regpath;

int hgf_sim_regv2_create(hgf_sim_fleet *fleet, hgf_sim_iam *iam, hgf_sim_faults *faults,
                         const char *base_url, hgf_sim_regv2 **out, hgf_err *err)
{
    hgf_sim_regv2 *r = calloc(1, sizeof *r);
    if (!r)
        return hgf_err_set(err, HGF_ENOMEM, "registry: out of memory");
    r->fleet = fleet;
    r->iam = iam;
    r->faults = faults;
    r->base_url = base_url ? strdup(base_url) : NULL;
    /* A fresh key per process: passwords from another instance are foreign. */
    if ((base_url && !r->base_url) || RAND_bytes(r->key, sizeof r->key) != 1) {
        free(r->base_url);
        free(r);
        return hgf_err_set(err, HGF_EFAIL, "registry: cannot create the token key");
    }
    *out = r;
    return 0;
}

void hgf_sim_regv2_free(hgf_sim_regv2 *r)
{
    if (!r)
        return;
    OPENSSL_cleanse(r->key, sizeof r->key);
    free(r->base_url);
    free(r);
}

/* ---- URLs -------------------------------------------------------------- */

static int put_base(const hgf_sim_regv2 *r, const hgf_sim_req *req, hgf_buf *out)
{
    if (r->base_url)
        return hgf_buf_puts(out, r->base_url);
    const char *host = hgf_sim_req_header(req, "host");
    return hgf_buf_printf(out, "http://%.200s", host ? host : "127.0.0.1");
}

int hgf_sim_regv2_endpoint(hgf_sim_regv2 *r, const hgf_sim_req *req, const char *account,
                           const char *region, hgf_buf *out)
{
    int rc = put_base(r, req, out);
    return rc ? rc : hgf_buf_printf(out, HGF_SIM_REGISTRY_PREFIX "%s/%s", account, region);
}

static int hexval(char c)
{
    return isdigit((unsigned char)c) ? c - '0'
           : isxdigit((unsigned char)c) ? tolower((unsigned char)c) - 'a' + 10
                                        : -1;
}

/* Percent-decodes n bytes of s into out (size cap); -1 when too long. */
static int decode_part(const char *s, size_t n, char *out, size_t cap)
{
    size_t w = 0;
    for (size_t i = 0; i < n; i++) {
        if (w + 1 >= cap)
            return -1;
        if (s[i] == '%' && i + 2 < n && hexval(s[i + 1]) >= 0 && hexval(s[i + 2]) >= 0) {
            out[w++] = (char)(hexval(s[i + 1]) * 16 + hexval(s[i + 2]));
            i += 2;
        } else {
            out[w++] = s[i];
        }
    }
    out[w] = '\0';
    return 0;
}

static const char *last_of(const char *s, const char *needle)
{
    const char *found = NULL;
    for (const char *p = strstr(s, needle); p; p = strstr(p + 1, needle))
        found = p;
    return found;
}

static int parse_target(const char *rest, regpath *p)
{
    const char *m = last_of(rest, "/manifests/"), *b = last_of(rest, "/blobs/");
    const char *at = m && (!b || m > b) ? m : b;
    if (!at || at == rest) {
        p->kind = RP_OTHER;
        return 0;
    }
    p->kind = at == m ? RP_MANIFEST : RP_BLOB;
    const char *ref = at + (at == m ? strlen("/manifests/") : strlen("/blobs/"));
    if (decode_part(rest, (size_t)(at - rest), p->name, sizeof p->name) ||
        decode_part(ref, strlen(ref), p->ref, sizeof p->ref) || !p->ref[0])
        p->kind = RP_OTHER;
    return 0;
}

/* "/_registry/<account>/<region>/v2/<rest>"; -1 when it is not that shape. */
static int parse_path(const char *path, regpath *p)
{
    memset(p, 0, sizeof *p);
    const char *s = path + strlen(HGF_SIM_REGISTRY_PREFIX);
    if (strspn(s, "0123456789") != 12 || s[12] != '/')
        return -1;
    memcpy(p->account, s, 12);
    s += 13;
    size_t n = strspn(s, "abcdefghijklmnopqrstuvwxyz0123456789-");
    if (n == 0 || n >= sizeof p->region || strncmp(s + n, "/v2", 3) != 0)
        return -1;
    memcpy(p->region, s, n);
    s += n + 3;
    if (*s == '\0' || strcmp(s, "/") == 0) {
        p->kind = RP_PING;
        return 0;
    }
    return *s == '/' ? parse_target(s + 1, p) : -1;
}

const char *hgf_sim_regv2_op(const hgf_sim_req *req)
{
    regpath p;
    int head = strcmp(req->method, "HEAD") == 0;
    if (parse_path(req->path, &p) != 0)
        return "registry:(unknown)";
    switch (p.kind) {
    case RP_PING:
        return "registry:Ping";
    case RP_MANIFEST:
        return head ? "registry:HeadManifest" : "registry:GetManifest";
    case RP_BLOB:
        return head ? "registry:HeadBlob" : "registry:GetBlob";
    default:
        return "registry:(unknown)";
    }
}

/* ---- responses --------------------------------------------------------- */

void hgf_sim_regv2_error(hgf_sim_resp *resp, int status, const char *code, const char *message)
{
    json_t *doc = json_pack("{s:[{s:s, s:s}]}", "errors", "code", code, "message", message);
    snprintf(resp->error_code, sizeof resp->error_code, "%s", code);
    resp->quiet = 1;
    if (hgf_sim_resp_json(resp, status, "application/json; charset=utf-8", doc) != 0) {
        hgf_buf_reset(&resp->body);
        resp->status = 500;
    }
}

static void unauthorized(const hgf_sim_regv2 *r, const hgf_sim_req *req, const regpath *p,
                         const char *message, hgf_sim_resp *resp)
{
    hgf_buf realm = HGF_BUF_INIT, value = HGF_BUF_INIT;
    hgf_sim_regv2_error(resp, 401, "UNAUTHORIZED", message);
    if (hgf_sim_regv2_endpoint((hgf_sim_regv2 *)r, req, p->account, p->region, &realm) == 0 &&
        hgf_buf_printf(&value, "Basic realm=\"%s\",service=\"ecr.amazonaws.com\"",
                       hgf_buf_str(&realm)) == 0)
        hgf_sim_resp_header_add(resp, "WWW-Authenticate", hgf_buf_str(&value));
    hgf_buf_free(&realm);
    hgf_buf_free(&value);
}

/* ---- passwords --------------------------------------------------------- */

static int base64_into(const unsigned char *data, size_t len, hgf_buf *out)
{
    int rc = hgf_buf_reserve(out, 4 * ((len + 2) / 3));
    if (rc)
        return rc;
    int n = EVP_EncodeBlock((unsigned char *)out->data + out->len, data, (int)len);
    out->len += (size_t)n;
    out->data[out->len] = '\0';
    return 0;
}

int hgf_sim_regv2_authorization_token(hgf_sim_regv2 *r, const hgf_sim_caller *caller,
                                      time_t expires, hgf_buf *out)
{
    hgf_buf payload = HGF_BUF_INIT, basic = HGF_BUF_INIT;
    int rc = hgf_buf_printf(&payload, "p1|%d|%s|%s|%lld|%s|%s|%s", caller->kind, caller->account,
                            caller->region, (long long)expires, caller->arn, caller->role_arn,
                            caller->user_id);
    if (!rc)
        rc = hgf_buf_puts(&basic, "AWS:");
    if (!rc)
        rc = hgf_sim_token_encode(r->key, hgf_buf_str(&payload), &basic);
    if (!rc)
        rc = base64_into((const unsigned char *)basic.data, basic.len, out);
    hgf_buf_free(&payload);
    hgf_buf_free(&basic);
    return rc;
}

/* Splits payload in place into exactly n '|'-separated fields. */
static int split(char *payload, char **fields, size_t n)
{
    size_t i = 0;
    for (char *s = payload; s && i < n; i++)
        fields[i] = strsep(&s, "|");
    return i == n && !strchr(fields[n - 1], '|') ? 0 : -1;
}

static int caller_from(char *payload, hgf_sim_caller *c, time_t *expires)
{
    char *f[N_PASSWORD_FIELDS];
    if (split(payload, f, N_PASSWORD_FIELDS) != 0 || strcmp(f[0], "p1") != 0)
        return -1;
    memset(c, 0, sizeof *c);
    c->kind = atoi(f[1]);
    snprintf(c->account, sizeof c->account, "%s", f[2]);
    snprintf(c->region, sizeof c->region, "%s", f[3]);
    *expires = (time_t)strtoll(f[4], NULL, 10);
    snprintf(c->arn, sizeof c->arn, "%s", f[5]);
    snprintf(c->role_arn, sizeof c->role_arn, "%s", f[6]);
    snprintf(c->user_id, sizeof c->user_id, "%s", f[7]);
    return 0;
}

/* The Basic credentials' password, decoded and verified, as a caller. */
static int open_basic(const hgf_sim_regv2 *r, const char *header, hgf_sim_caller *c,
                      time_t *expires)
{
    unsigned char raw[4096];
    hgf_buf payload = HGF_BUF_INIT;
    if (!header || strncasecmp(header, "Basic ", 6) != 0)
        return -1;
    const char *b64 = header + 6;
    size_t len = strlen(b64);
    if (len == 0 || len % 4 || len / 4 * 3 >= sizeof raw)
        return -1;
    int n = EVP_DecodeBlock(raw, (const unsigned char *)b64, (int)len);
    n -= (b64[len - 1] == '=') + (len > 1 && b64[len - 2] == '=');
    if (n < 5 || memcmp(raw, "AWS:", 4) != 0)
        return -1;
    raw[n] = '\0';
    int rc = hgf_sim_token_decode(r->key, (const char *)raw + 4, &payload);
    if (!rc)
        rc = caller_from(payload.data, c, expires);
    OPENSSL_cleanse(raw, sizeof raw);
    hgf_buf_free(&payload);
    return rc ? -1 : 0;
}

/* 0 with *c set; otherwise resp holds the 401. */
static int authenticate(const hgf_sim_regv2 *r, const hgf_sim_req *req, const regpath *p,
                        time_t now, hgf_sim_caller *c, hgf_sim_resp *resp, hgf_err *why)
{
    time_t expires = 0;
    if (open_basic(r, hgf_sim_req_header(req, "authorization"), c, &expires) != 0) {
        memset(c, 0, sizeof *c);
        unauthorized(r, req, p, "Not Authorized", resp);
        return hgf_err_set(why, HGF_EINPUT, "no valid ECR authorization token");
    }
    if (expires <= now) {
        unauthorized(r, req, p, "Your authorization token has expired. Reauthenticate and try "
                                "again.",
                     resp);
        return hgf_err_set(why, HGF_EINPUT, "the authorization token expired");
    }
    if (strcmp(c->region, p->region) != 0) {
        unauthorized(r, req, p, "Not Authorized", resp);
        return hgf_err_set(why, HGF_EINPUT, "the token was issued for region %s", c->region);
    }
    return 0;
}

/* ---- manifests and blobs ----------------------------------------------- */

static int permitted(const hgf_sim_regv2 *r, const hgf_sim_caller *c, const regpath *p,
                     const char *action, hgf_sim_resp *resp)
{
    hgf_buf arn = HGF_BUF_INIT;
    if (hgf_sim_fleet_repo_arn(p->account, p->region, p->name, &arn) != 0) {
        hgf_sim_regv2_error(resp, 500, "UNKNOWN", "out of memory");
        return 0;
    }
    hgf_sim_access a = {.action = action, .resource = hgf_buf_str(&arn), .account = p->account,
                        .repository = p->name, .pull = 1};
    enum hgf_sim_verdict v = hgf_sim_iam_authorize(r->iam, c, &a);
    if (v != HGF_SIM_ALLOW) {
        char msg[1024];
        hgf_sim_iam_denial(c, &a, v, msg, sizeof msg);
        hgf_sim_regv2_error(resp, 403, "DENIED", msg);
    }
    hgf_buf_free(&arn);
    return v == HGF_SIM_ALLOW;
}

static int add_digest_headers(hgf_sim_resp *resp, const char *digest)
{
    int rc = hgf_sim_resp_header_add(resp, "Docker-Content-Digest", digest);
    return rc ? rc : hgf_sim_resp_header_add(resp, "Docker-Distribution-API-Version",
                                             "registry/2.0");
}

/* With the fleet locked. */
static void serve_manifest(const hgf_sim_regv2 *r, hgf_sim_registry *reg, hgf_sim_repo *repo,
                           const regpath *p, hgf_sim_resp *resp)
{
    hgf_sim_image *img = strncmp(p->ref, "sha256:", 7) == 0
                             ? hgf_sim_fleet_image_by_digest(repo, p->ref)
                             : hgf_sim_fleet_image_by_tag(repo, p->ref);
    /* The lifecycle race: the image was listed, and is gone when pulled. */
    if (img && hgf_sim_fleet_manifest_trap(r->fleet, repo, img))
        img = NULL;
    if (!img) {
        hgf_sim_regv2_error(resp, 404, "MANIFEST_UNKNOWN", "Requested image not found");
        return;
    }
    hgf_sim_image_info info;
    hgf_sim_fleet_image_info(repo, img, &info);
    hgf_buf_reset(&resp->body);
    if (hgf_sim_fleet_manifest(r->fleet, reg, repo, img, &resp->body) != 0 ||
        add_digest_headers(resp, info.digest) != 0) {
        hgf_sim_regv2_error(resp, 500, "UNKNOWN", "out of memory");
        return;
    }
    resp->status = 200;
    resp->content_type = info.manifest_media_type;
}

static int blob_url(const hgf_sim_regv2 *r, const hgf_sim_req *req, const regpath *p,
                    uint32_t gen, time_t now, hgf_buf *out)
{
    hgf_buf payload = HGF_BUF_INIT;
    int rc = hgf_buf_printf(&payload, "b1|%s|%s|%" PRIu32 "|%lld|%s", p->account, p->region, gen,
                            (long long)(now + BLOB_URL_TTL_S), p->name);
    if (!rc)
        rc = put_base(r, req, out);
    if (!rc)
        rc = hgf_buf_puts(out, HGF_SIM_BLOB_PREFIX);
    size_t start = out->len;
    if (!rc)
        rc = hgf_sim_token_encode(r->key, hgf_buf_str(&payload), out);
    /* base64url, so the token is one path segment. */
    for (size_t i = start; !rc && i < out->len; i++)
        out->data[i] = out->data[i] == '+' ? '-' : out->data[i] == '/' ? '_' : out->data[i];
    hgf_buf_free(&payload);
    return rc;
}

/* With the fleet locked. HEAD answers directly; GET redirects to S3. */
static void serve_blob(const hgf_sim_regv2 *r, const hgf_sim_req *req, hgf_sim_registry *reg,
                       hgf_sim_repo *repo, const regpath *p, time_t now, hgf_sim_resp *resp)
{
    hgf_sim_image *img = hgf_sim_fleet_image_by_config(r->fleet, reg, repo, p->ref);
    hgf_buf url = HGF_BUF_INIT;
    int rc = 0;
    if (!img) {
        hgf_sim_regv2_error(resp, 404, "BLOB_UNKNOWN", "Requested blob not found");
        return;
    }
    hgf_buf_reset(&resp->body);
    if (strcmp(req->method, "HEAD") == 0) {
        rc = hgf_sim_fleet_config_blob(r->fleet, reg, repo, img, &resp->body);
        resp->status = 200;
        resp->content_type = "application/octet-stream";
        if (!rc)
            rc = add_digest_headers(resp, p->ref);
    } else {
        rc = blob_url(r, req, p, img->gen, now, &url);
        if (!rc)
            rc = hgf_sim_resp_header_add(resp, "Location", hgf_buf_str(&url));
        resp->status = 307;
        resp->content_type = "text/plain";
    }
    if (rc)
        hgf_sim_regv2_error(resp, 500, "UNKNOWN", "out of memory");
    hgf_buf_free(&url);
}

static void serve_target(const hgf_sim_regv2 *r, const hgf_sim_req *req, const regpath *p,
                         time_t now, hgf_sim_resp *resp)
{
    hgf_sim_fleet_lock(r->fleet);
    hgf_sim_registry *reg = hgf_sim_fleet_registry_find(r->fleet, p->account, p->region);
    hgf_sim_repo *repo = hgf_sim_fleet_repo_open(r->fleet, reg, p->name);
    if (!repo) {
        char msg[512];
        snprintf(msg, sizeof msg,
                 "The repository with name '%.256s' does not exist in the registry with id '%s'",
                 p->name, p->account);
        hgf_sim_regv2_error(resp, 404, "NAME_UNKNOWN", msg);
    } else if (p->kind == RP_MANIFEST) {
        serve_manifest(r, reg, repo, p, resp);
    } else {
        serve_blob(r, req, reg, repo, p, now, resp);
    }
    hgf_sim_fleet_unlock(r->fleet);
}

static int throttled(const hgf_sim_regv2 *r, const hgf_sim_caller *c, const regpath *p,
                     hgf_sim_resp *resp)
{
    /* Registry pulls count against the API quotas that govern them. */
    const char *op = p->kind == RP_MANIFEST ? "BatchGetImage" : "GetDownloadUrlForLayer";
    if (hgf_sim_faults_admit(r->faults, p->account, p->region, op))
        return 0;
    hgf_sim_regv2_error(resp, 429, "TOOMANYREQUESTS", "Rate exceeded");
    return 1;
}

void hgf_sim_regv2_handle(hgf_sim_regv2 *r, const hgf_sim_req *req, time_t now,
                          hgf_sim_resp *resp, hgf_sim_caller *caller, hgf_err *why)
{
    regpath p;
    hgf_err_clear(why);
    memset(caller, 0, sizeof *caller);
    if (parse_path(req->path, &p) != 0 || p.kind == RP_OTHER) {
        hgf_sim_regv2_error(resp, 404, "NAME_UNKNOWN", "The requested path is not a registry "
                                                       "v2 endpoint");
        return;
    }
    if (strcmp(req->method, "GET") != 0 && strcmp(req->method, "HEAD") != 0) {
        hgf_sim_regv2_error(resp, 405, "UNSUPPORTED", "The operation is unsupported.");
        return;
    }
    if (authenticate(r, req, &p, now, caller, resp, why) != 0)
        return;
    if (p.kind == RP_PING) {
        hgf_sim_resp_text(resp, 200, "application/json; charset=utf-8", "{}");
        hgf_sim_resp_header_add(resp, "Docker-Distribution-API-Version", "registry/2.0");
        return;
    }
    const char *action =
        p.kind == RP_MANIFEST ? "ecr:BatchGetImage" : "ecr:GetDownloadUrlForLayer";
    if (throttled(r, caller, &p, resp) || !permitted(r, caller, &p, action, resp))
        return;
    serve_target(r, req, &p, now, resp);
}

/* ---- the presigned URL ------------------------------------------------- */

static void s3_error(hgf_sim_resp *resp, int status, const char *code, const char *message)
{
    hgf_buf_reset(&resp->body);
    if (hgf_buf_printf(&resp->body,
                       "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>%s</Code>"
                       "<Message>%s</Message></Error>",
                       code, message) != 0)
        hgf_buf_reset(&resp->body);
    resp->status = status;
    resp->content_type = "application/xml";
    resp->quiet = 1;
    snprintf(resp->error_code, sizeof resp->error_code, "%s", code);
}

/* payload "b1|account|region|gen|expires|name" into p and gen. */
static int open_blob_token(const hgf_sim_regv2 *r, const char *token, regpath *p, uint32_t *gen,
                           time_t *expires)
{
    char std[1024];
    hgf_buf payload = HGF_BUF_INIT;
    char *f[6];
    size_t n = strlen(token);
    if (n >= sizeof std)
        return -1;
    for (size_t i = 0; i <= n; i++)
        std[i] = token[i] == '-' ? '+' : token[i] == '_' ? '/' : token[i];
    int rc = hgf_sim_token_decode(r->key, std, &payload);
    if (!rc && (split(payload.data, f, 6) != 0 || strcmp(f[0], "b1") != 0))
        rc = -1;
    if (!rc) {
        memset(p, 0, sizeof *p);
        snprintf(p->account, sizeof p->account, "%s", f[1]);
        snprintf(p->region, sizeof p->region, "%s", f[2]);
        *gen = (uint32_t)strtoul(f[3], NULL, 10);
        *expires = (time_t)strtoll(f[4], NULL, 10);
        snprintf(p->name, sizeof p->name, "%s", f[5]);
    }
    hgf_buf_free(&payload);
    return rc ? -1 : 0;
}

/* 0 with the blob in resp, else the S3 error is set. */
static int fetch_blob(hgf_sim_regv2 *r, const hgf_sim_req *req, time_t now, hgf_sim_resp *resp)
{
    regpath p;
    uint32_t gen;
    time_t expires;
    if (strcmp(req->method, "GET") != 0 && strcmp(req->method, "HEAD") != 0) {
        s3_error(resp, 405, "MethodNotAllowed",
                 "The specified method is not allowed against this resource.");
        return -1;
    }
    if (open_blob_token(r, req->path + strlen(HGF_SIM_BLOB_PREFIX), &p, &gen, &expires) != 0) {
        s3_error(resp, 403, "AccessDenied", "Invalid presigned URL");
        return -1;
    }
    if (expires <= now) {
        s3_error(resp, 403, "AccessDenied", "Request has expired");
        return -1;
    }
    hgf_sim_fleet_lock(r->fleet);
    hgf_sim_registry *reg = hgf_sim_fleet_registry_find(r->fleet, p.account, p.region);
    hgf_sim_repo *repo = hgf_sim_fleet_repo_open(r->fleet, reg, p.name);
    hgf_sim_image *img = repo ? hgf_sim_fleet_image_by_gen(repo, gen) : NULL;
    hgf_buf_reset(&resp->body);
    int rc = img ? hgf_sim_fleet_config_blob(r->fleet, reg, repo, img, &resp->body) : 0;
    hgf_sim_fleet_unlock(r->fleet);
    if (!img || rc) {
        s3_error(resp, img ? 500 : 404, img ? "InternalError" : "NoSuchKey",
                 img ? "out of memory" : "The specified key does not exist.");
        return -1;
    }
    return 0;
}

void hgf_sim_regv2_blob(hgf_sim_regv2 *r, const hgf_sim_req *req, time_t now,
                        hgf_sim_resp *resp)
{
    if (fetch_blob(r, req, now, resp) != 0)
        return;
    resp->status = 200;
    resp->content_type = "application/octet-stream";
}
