#include "auth.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

#include "hgfleet/sigv4.h"

typedef struct sim_key {
    char akid[129];
    char *secret;
    char account[13];  /* "" = any account */
} sim_key;

struct hgf_sim_auth {
    pthread_rwlock_t lock;
    sim_key *keys;
    size_t n, cap;
};

int hgf_sim_auth_create(hgf_sim_auth **out)
{
    *out = calloc(1, sizeof **out);
    if (!*out)
        return HGF_ENOMEM;
    pthread_rwlock_init(&(*out)->lock, NULL);
    return 0;
}

void hgf_sim_auth_free(hgf_sim_auth *auth)
{
    if (!auth)
        return;
    for (size_t i = 0; i < auth->n; i++) {
        OPENSSL_cleanse(auth->keys[i].secret, strlen(auth->keys[i].secret));
        free(auth->keys[i].secret);
    }
    free(auth->keys);
    pthread_rwlock_destroy(&auth->lock);
    free(auth);
}

static sim_key *find_key(hgf_sim_auth *auth, const char *akid)
{
    for (size_t i = 0; i < auth->n; i++)
        if (strcmp(auth->keys[i].akid, akid) == 0)
            return &auth->keys[i];
    return NULL;
}

static int valid_akid(const char *s, size_t n)
{
    static const char ok[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    if (n == 0 || n > 128)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (!strchr(ok, s[i]))
            return 0;
    return 1;
}

static int valid_account(const char *s)
{
    return strcmp(s, "*") == 0 || (strlen(s) == 12 && strspn(s, "0123456789") == 12);
}

/* Splits at the first and the last ':' so that the secret in the middle is
 * never echoed, whatever it contains. */
static int parse_spec(const char *spec, sim_key *k, hgf_err *err)
{
    const char *c1 = strchr(spec, ':'), *c2 = strrchr(spec, ':');
    if (!c1 || c1 == c2)
        return hgf_err_set(err, HGF_EINPUT, "--key: expected AKID:SECRET:ACCOUNT");
    if (!valid_akid(spec, (size_t)(c1 - spec)))
        return hgf_err_set(err, HGF_EINPUT,
                           "--key: the access key id must be 1..128 letters and digits");
    if (c2 == c1 + 1)
        return hgf_err_set(err, HGF_EINPUT, "--key %.*s: the secret is empty",
                           (int)(c1 - spec), spec);
    if (!valid_account(c2 + 1))
        return hgf_err_set(err, HGF_EINPUT,
                           "--key %.*s: the account must be 12 digits or '*', got '%.40s'",
                           (int)(c1 - spec), spec, c2 + 1);
    memcpy(k->akid, spec, (size_t)(c1 - spec));
    k->akid[c1 - spec] = '\0';
    snprintf(k->account, sizeof k->account, "%s", strcmp(c2 + 1, "*") == 0 ? "" : c2 + 1);
    k->secret = strndup(c1 + 1, (size_t)(c2 - c1 - 1));
    return k->secret ? 0 : hgf_err_set(err, HGF_ENOMEM, "--key: out of memory");
}

static int append_key(hgf_sim_auth *auth, const sim_key *k, hgf_err *err)
{
    if (find_key(auth, k->akid))
        return hgf_err_set(err, HGF_EINPUT, "--key %s: this access key id is given twice",
                           k->akid);
    if (auth->n == auth->cap) {
        size_t cap = auth->cap ? auth->cap * 2 : 4;
        sim_key *keys = realloc(auth->keys, cap * sizeof *keys);
        if (!keys)
            return hgf_err_set(err, HGF_ENOMEM, "--key: out of memory");
        auth->keys = keys;
        auth->cap = cap;
    }
    auth->keys[auth->n++] = *k;
    return 0;
}

int hgf_sim_auth_add_key(hgf_sim_auth *auth, const char *spec, hgf_err *err)
{
    sim_key k;
    memset(&k, 0, sizeof k);
    int rc = parse_spec(spec, &k, err);
    if (!rc) {
        pthread_rwlock_wrlock(&auth->lock);
        rc = append_key(auth, &k, err);
        pthread_rwlock_unlock(&auth->lock);
    }
    if (rc && k.secret) {
        OPENSSL_cleanse(k.secret, strlen(k.secret));
        free(k.secret);
    }
    return rc;
}

size_t hgf_sim_auth_count(hgf_sim_auth *auth)
{
    pthread_rwlock_rdlock(&auth->lock);
    size_t n = auth->n;
    pthread_rwlock_unlock(&auth->lock);
    return n;
}

/* ---- verification ------------------------------------------------------ */

static void amz(time_t t, char out[17])
{
    hgf_sigv4_amz_date(t, out);
}

/* ECR's own wording, which SDKs match to detect clock skew. */
static int check_clock(time_t signed_at, const char *raw, time_t now, hgf_err *err)
{
    char bound[17], server[17];
    amz(now, server);
    if (signed_at < now - HGF_SIM_MAX_SKEW) {
        amz(now - HGF_SIM_MAX_SKEW, bound);
        return hgf_sim_awserr(err, "InvalidSignatureException",
                              "Signature expired: %s is now earlier than %s (%s - 5 min.)", raw,
                              bound, server);
    }
    if (signed_at > now + HGF_SIM_MAX_SKEW) {
        amz(now + HGF_SIM_MAX_SKEW, bound);
        return hgf_sim_awserr(err, "InvalidSignatureException",
                              "Signature not yet current: %s is still later than %s (%s + 5 min.)",
                              raw, bound, server);
    }
    return 0;
}

static int check_scope(const hgf_sim_req *req, const hgf_sigv4_auth *parsed, const char *service,
                       time_t now, hgf_err *err)
{
    if (strcmp(parsed->service, service) != 0)
        return hgf_sim_awserr(err, "InvalidSignatureException",
                              "Credential should be scoped to correct service: '%s'. ", service);
    const char *date = hgf_sim_req_header(req, "x-amz-date");
    if (!date)
        return hgf_sim_awserr(err, "IncompleteSignatureException",
                              "Authorization header requires existence of either a 'X-Amz-Date' "
                              "or a 'Date' header.");
    time_t t = hgf_sigv4_parse_amz_date(date);
    if (t == (time_t)-1)
        return hgf_sim_awserr(err, "IncompleteSignatureException",
                              "Date must be in ISO-8601 'basic format'. Got '%.32s'. See "
                              "http://en.wikipedia.org/wiki/ISO_8601",
                              date);
    return check_clock(t, date, now, err);
}

static int verify_with(const sim_key *key, const hgf_sim_req *req, const hgf_sigv4_auth *parsed,
                       hgf_err *err, hgf_err *why)
{
    hgf_sigv4_request sreq = {
        .method = req->method, .path = req->path, .query = req->query,
        .headers = req->headers, .n_headers = req->n_headers,
        .body = req->body, .body_len = req->body_len,
    };
    hgf_err verr;
    hgf_err_clear(&verr);
    if (hgf_sigv4_verify(&sreq, parsed, key->secret, &verr) == 0)
        return 0;
    if (why)
        *why = verr;
    return hgf_sim_awserr(err, "InvalidSignatureException",
                          "The request signature we calculated does not match the signature you "
                          "provided. Check your AWS Secret Access Key and signing method. Consult "
                          "the service documentation for details.");
}

static int unrecognized(hgf_err *err)
{
    return hgf_sim_awserr(err, "UnrecognizedClientException",
                          "The security token included in the request is invalid.");
}

int hgf_sim_auth_check(hgf_sim_auth *auth, const hgf_sim_req *req, const char *service,
                       time_t now, hgf_sim_caller *caller, hgf_err *err, hgf_err *why)
{
    hgf_err_clear(why);
    memset(caller, 0, sizeof *caller);
    const char *header = hgf_sim_req_header(req, "authorization");
    if (!header)
        return hgf_sim_awserr(err, "MissingAuthenticationTokenException",
                              "Missing Authentication Token");
    hgf_sigv4_auth parsed;
    hgf_err perr;
    hgf_err_clear(&perr);
    if (hgf_sigv4_parse_authorization(header, &parsed, &perr) != 0)
        return hgf_sim_awserr(err, "IncompleteSignatureException", "%s", perr.msg);
    pthread_rwlock_rdlock(&auth->lock);
    const sim_key *key = find_key(auth, parsed.access_key_id);
    int rc;
    /* Static keys carry no session, so any session token is foreign. */
    if (!key || hgf_sim_req_header(req, "x-amz-security-token"))
        rc = unrecognized(err);
    else
        rc = check_scope(req, &parsed, service, now, err);
    if (!rc)
        rc = verify_with(key, req, &parsed, err, why);
    if (!rc) {
        snprintf(caller->access_key_id, sizeof caller->access_key_id, "%s", key->akid);
        snprintf(caller->account, sizeof caller->account, "%s", key->account);
        snprintf(caller->region, sizeof caller->region, "%s", parsed.region);
    }
    pthread_rwlock_unlock(&auth->lock);
    return rc;
}
