#include "hostcreds.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/rand.h>

#include "hgfleet/timeutil.h"
#include "token.h"

#define HOST_SESSION_S 21600
#define MAX_TOKEN_TTL_S 21600
#define CREDS_PATH "/latest/meta-data/iam/security-credentials/"
#define TOKEN_PATH "/latest/api/token"

/* The session a host endpoint currently hands out. */
typedef struct cached {
    char role_arn[HGF_SIM_ARN_MAX];
    hgf_sim_session s;
    time_t issued;
} cached;

struct hgf_sim_hostcreds {
    pthread_mutex_t lock;
    hgf_sim_sts *sts;
    hgf_sim_iam *iam;
    unsigned char key[HGF_SIM_TOKEN_KEY_LEN];
    cached current[2];  /* by enum hgf_sim_host */
};

int hgf_sim_hostcreds_create(hgf_sim_sts *sts, hgf_sim_iam *iam, hgf_sim_hostcreds **out,
                             hgf_err *err)
{
    hgf_sim_hostcreds *h = calloc(1, sizeof *h);
    if (!h)
        return hgf_err_set(err, HGF_ENOMEM, "host credentials: out of memory");
    if (RAND_bytes(h->key, sizeof h->key) != 1) {
        free(h);
        return hgf_err_set(err, HGF_EFAIL, "host credentials: no randomness for the token key");
    }
    h->sts = sts;
    h->iam = iam;
    pthread_mutex_init(&h->lock, NULL);
    *out = h;
    return 0;
}

void hgf_sim_hostcreds_free(hgf_sim_hostcreds *h)
{
    if (!h)
        return;
    pthread_mutex_destroy(&h->lock);
    OPENSSL_cleanse(h, sizeof *h);
    free(h);
}

/* ---- sessions ---------------------------------------------------------- */

static int still_fresh(const cached *c, const char *role_arn, time_t now)
{
    return c->s.access_key_id[0] && strcmp(c->role_arn, role_arn) == 0 &&
           (c->s.expires - now) * 2 > c->s.expires - c->issued;
}

/* The current session of `which`, renewed when half of it is gone. */
static int session_for(hgf_sim_hostcreds *h, enum hgf_sim_host which, const char *role_arn,
                       time_t now, cached *out)
{
    static const char *const names[] = {"i-0e5c2a1b3d4f60789", "ecrsim-task"};
    int rc = 0;
    pthread_mutex_lock(&h->lock);
    cached *c = &h->current[which];
    if (!still_fresh(c, role_arn, now)) {
        OPENSSL_cleanse(c, sizeof *c);
        rc = hgf_sim_sts_issue(h->sts, role_arn, names[which], HOST_SESSION_S, now, &c->s);
        snprintf(c->role_arn, sizeof c->role_arn, "%s", rc ? "" : role_arn);
        c->issued = now;
    }
    if (!rc)
        *out = *c;
    pthread_mutex_unlock(&h->lock);
    return rc;
}

static void plain(hgf_sim_resp *resp, int status, const char *text, const char *outcome)
{
    if (hgf_sim_resp_text(resp, status, "text/plain", text) != 0)
        resp->status = 500;
    if (outcome) {
        snprintf(resp->error_code, sizeof resp->error_code, "%s", outcome);
        resp->quiet = 1;
    }
}

/* The credentials document, then the copy of the secrets is wiped. */
static void send_creds(hgf_sim_resp *resp, cached *c, int imds)
{
    char expires[32], updated[32];
    hgf_time_format_iso(c->s.expires, expires, sizeof expires);
    hgf_time_format_iso(c->issued, updated, sizeof updated);
    json_t *doc = imds ? json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:s}", "Code", "Success",
                                   "LastUpdated", updated, "Type", "AWS-HMAC", "AccessKeyId",
                                   c->s.access_key_id, "SecretAccessKey",
                                   c->s.secret_access_key, "Token", c->s.session_token,
                                   "Expiration", expires)
                       : json_pack("{s:s, s:s, s:s, s:s, s:s}", "AccessKeyId",
                                   c->s.access_key_id, "SecretAccessKey",
                                   c->s.secret_access_key, "Token", c->s.session_token,
                                   "Expiration", expires, "RoleArn", c->role_arn);
    OPENSSL_cleanse(c, sizeof *c);
    if (hgf_sim_resp_json(resp, 200, "application/json", doc) != 0)
        plain(resp, 500, "Internal Server Error", "InternalError");
}

/* ---- IMDSv2 ------------------------------------------------------------ */

const char *hgf_sim_hostcreds_imds_op(const hgf_sim_req *req)
{
    if (strcmp(req->path, TOKEN_PATH) == 0)
        return "imds:GetToken";
    if (strcmp(req->path, CREDS_PATH) == 0)
        return "imds:GetRoleName";
    if (strncmp(req->path, CREDS_PATH, strlen(CREDS_PATH)) == 0)
        return "imds:GetCredentials";
    return "imds:(other)";
}

static void put_token(hgf_sim_hostcreds *h, const hgf_sim_req *req, time_t now,
                      hgf_sim_resp *resp)
{
    const char *ttl = hgf_sim_req_header(req, "x-aws-ec2-metadata-token-ttl-seconds");
    char *end = NULL, payload[64];
    long secs = ttl ? strtol(ttl, &end, 10) : 0;
    if (!ttl || !*ttl || *end || secs < 1 || secs > MAX_TOKEN_TTL_S) {
        plain(resp, 400, "Bad Request", "BadRequest");
        return;
    }
    snprintf(payload, sizeof payload, "imds|%lld", (long long)(now + secs));
    hgf_buf_reset(&resp->body);
    if (hgf_sim_token_encode(h->key, payload, &resp->body) != 0 ||
        hgf_sim_resp_header_add(resp, "X-aws-ec2-metadata-token-ttl-seconds", ttl) != 0) {
        plain(resp, 500, "Internal Server Error", "InternalError");
        return;
    }
    resp->status = 200;
    resp->content_type = "text/plain";
}

static int token_valid(const hgf_sim_hostcreds *h, const hgf_sim_req *req, time_t now)
{
    const char *token = hgf_sim_req_header(req, "x-aws-ec2-metadata-token");
    hgf_buf payload = HGF_BUF_INIT;
    int ok = token && hgf_sim_token_decode(h->key, token, &payload) == 0 &&
             strncmp(hgf_buf_str(&payload), "imds|", 5) == 0 &&
             strtoll(hgf_buf_str(&payload) + 5, NULL, 10) > (long long)now;
    hgf_buf_free(&payload);
    return ok;
}

static void serve_credentials(hgf_sim_hostcreds *h, const char *name, time_t now,
                              hgf_sim_resp *resp)
{
    char role_arn[HGF_SIM_ARN_MAX];
    cached c;
    if (hgf_sim_iam_host_role(h->iam, HGF_SIM_HOST_INSTANCE, role_arn) != 0) {
        plain(resp, 404, "Not Found", "NotFound");
        return;
    }
    const char *role_name = strrchr(role_arn, '/') + 1;
    if (!*name) {
        plain(resp, 200, role_name, NULL);
        return;
    }
    if (strcmp(name, role_name) != 0) {
        plain(resp, 404, "Not Found", "NotFound");
        return;
    }
    if (session_for(h, HGF_SIM_HOST_INSTANCE, role_arn, now, &c) != 0) {
        plain(resp, 500, "Internal Server Error", "InternalError");
        return;
    }
    send_creds(resp, &c, 1);
}

void hgf_sim_hostcreds_imds(hgf_sim_hostcreds *h, const hgf_sim_req *req, time_t now,
                            hgf_sim_resp *resp)
{
    int get = strcmp(req->method, "GET") == 0;
    if (strcmp(req->path, TOKEN_PATH) == 0) {
        if (strcmp(req->method, "PUT") == 0)
            put_token(h, req, now, resp);
        else
            plain(resp, 405, "Method Not Allowed", "MethodNotAllowed");
        return;
    }
    /* IMDSv2 only, as hardened instances run: no token, no answer. */
    if (!token_valid(h, req, now)) {
        plain(resp, 401, "Unauthorized", "Unauthorized");
        return;
    }
    if (!get || strncmp(req->path, CREDS_PATH, strlen(CREDS_PATH)) != 0) {
        plain(resp, get ? 404 : 405, get ? "Not Found" : "Method Not Allowed",
              get ? "NotFound" : "MethodNotAllowed");
        return;
    }
    serve_credentials(h, req->path + strlen(CREDS_PATH), now, resp);
}

/* ---- container endpoint ------------------------------------------------ */

static void container_error(hgf_sim_resp *resp, int status, const char *code,
                            const char *message)
{
    if (hgf_sim_resp_json(resp, status, "application/json",
                          json_pack("{s:s, s:s}", "code", code, "message", message)) != 0)
        resp->status = 500;
    snprintf(resp->error_code, sizeof resp->error_code, "%s", code);
    resp->quiet = 1;
}

/* 0 with the container role in role_arn, or the error is set. */
static int container_allowed(hgf_sim_hostcreds *h, const hgf_sim_req *req, hgf_sim_resp *resp,
                             char role_arn[HGF_SIM_ARN_MAX])
{
    const char *given = hgf_sim_req_header(req, "authorization");
    if (strcmp(req->method, "GET") != 0)
        container_error(resp, 405, "MethodNotAllowed", "use GET");
    else if (hgf_sim_iam_host_role(h->iam, HGF_SIM_HOST_CONTAINER, role_arn) != 0)
        container_error(resp, 404, "NotFound", "no container_role in the scenario");
    else if (!given || !*given)
        container_error(resp, 401, "Unauthorized",
                        "the Authorization header with the container token is missing");
    else if (!hgf_sim_iam_container_token_ok(h->iam, given))
        container_error(resp, 403, "Forbidden", "the container token is not valid");
    else
        return 0;
    return -1;
}

void hgf_sim_hostcreds_container(hgf_sim_hostcreds *h, const hgf_sim_req *req, time_t now,
                                 hgf_sim_resp *resp)
{
    char role_arn[HGF_SIM_ARN_MAX];
    cached c;
    if (container_allowed(h, req, resp, role_arn) != 0)
        return;
    if (session_for(h, HGF_SIM_HOST_CONTAINER, role_arn, now, &c) != 0)
        container_error(resp, 500, "InternalError", "cannot issue credentials");
    else
        send_creds(resp, &c, 0);
}
