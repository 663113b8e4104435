#include "auth.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/rand.h>

#include "hgfleet/sigv4.h"
#include "strmap.h"

/* Expired sessions still answer ExpiredToken (not "invalid") for a day. */
#define SESSION_GRACE_S 86400
#define MIN_SWEEP 1024

typedef struct sim_key {
    char *secret;
    char account[13];  /* "" = any account */
} sim_key;

typedef struct session_entry {
    hgf_sim_caller who;
    char secret[48];
    char token[200];
} session_entry;

struct hgf_sim_auth {
    pthread_rwlock_t lock;
    hgf_sim_iam *iam;
    char home[13];
    hgf_sim_map *keys;      /* AKID -> sim_key */
    hgf_sim_map *sessions;  /* AKID -> session_entry */
    size_t sweep_at;
};

/* What a key lookup found; wiped after every check. */
typedef struct found {
    hgf_sim_caller who;
    char secret[260];
    char token[200];
    int session;
} found;

static void free_key(void *v)
{
    sim_key *k = v;
    OPENSSL_cleanse(k->secret, strlen(k->secret));
    free(k->secret);
    free(k);
}

static void free_session(void *v)
{
    OPENSSL_cleanse(v, sizeof(session_entry));
    free(v);
}

int hgf_sim_auth_create(hgf_sim_iam *iam, const char *home_account, hgf_sim_auth **out)
{
    hgf_sim_auth *a = calloc(1, sizeof *a);
    if (!a)
        return HGF_ENOMEM;
    a->keys = hgf_sim_map_create();
    a->sessions = hgf_sim_map_create();
    if (!a->keys || !a->sessions) {
        hgf_sim_map_free(a->keys, NULL);
        hgf_sim_map_free(a->sessions, NULL);
        free(a);
        return HGF_ENOMEM;
    }
    a->iam = iam;
    a->sweep_at = MIN_SWEEP;
    snprintf(a->home, sizeof a->home, "%s", home_account);
    pthread_rwlock_init(&a->lock, NULL);
    *out = a;
    return 0;
}

void hgf_sim_auth_free(hgf_sim_auth *auth)
{
    if (!auth)
        return;
    hgf_sim_map_free(auth->keys, free_key);
    hgf_sim_map_free(auth->sessions, free_session);
    pthread_rwlock_destroy(&auth->lock);
    free(auth);
}

/* ---- --key ------------------------------------------------------------- */

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
static int parse_spec(const char *spec, char akid[129], sim_key *k, hgf_err *err)
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
    memcpy(akid, spec, (size_t)(c1 - spec));
    akid[c1 - spec] = '\0';
    snprintf(k->account, sizeof k->account, "%s", strcmp(c2 + 1, "*") == 0 ? "" : c2 + 1);
    k->secret = strndup(c1 + 1, (size_t)(c2 - c1 - 1));
    return k->secret ? 0 : hgf_err_set(err, HGF_ENOMEM, "--key: out of memory");
}

int hgf_sim_auth_add_key(hgf_sim_auth *auth, const char *spec, hgf_err *err)
{
    char akid[129];
    sim_key *k = calloc(1, sizeof *k);
    if (!k)
        return hgf_err_set(err, HGF_ENOMEM, "--key: out of memory");
    int rc = parse_spec(spec, akid, k, err);
    if (!rc) {
        pthread_rwlock_wrlock(&auth->lock);
        rc = hgf_sim_map_put(auth->keys, akid, k);
        pthread_rwlock_unlock(&auth->lock);
        if (rc == HGF_EEXIST)
            hgf_err_set(err, HGF_EINPUT, "--key %s: this access key id is given twice", akid);
        else if (rc)
            hgf_err_set(err, rc, "--key: out of memory");
    }
    if (rc && k->secret)
        free_key(k);
    else if (rc)
        free(k);
    return rc;
}

size_t hgf_sim_auth_count(hgf_sim_auth *auth)
{
    pthread_rwlock_rdlock(&auth->lock);
    size_t n = hgf_sim_map_count(auth->keys);
    pthread_rwlock_unlock(&auth->lock);
    return n;
}

/* ---- sessions ---------------------------------------------------------- */

/* Base32 keeps access key ids in AWS's alphabet; base64url keeps secrets
 * and tokens header-safe. */
static int random_text(char *out, size_t n_chars, const char *alphabet, size_t alpha_len)
{
    unsigned char raw[160];
    if (n_chars > sizeof raw || RAND_bytes(raw, (int)n_chars) != 1)
        return HGF_EFAIL;
    for (size_t i = 0; i < n_chars; i++)
        out[i] = alphabet[raw[i] % alpha_len];
    out[n_chars] = '\0';
    OPENSSL_cleanse(raw, sizeof raw);
    return 0;
}

static int mint(session_entry *s)
{
    static const char b32[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    static const char b64[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    memcpy(s->who.access_key_id, "ASIA", 4);
    if (random_text(s->who.access_key_id + 4, 16, b32, 32) ||
        random_text(s->secret, 40, b64, 64))
        return HGF_EFAIL;
    memcpy(s->token, "IQoJb3JpZ2luX2VjE", 17);
    return random_text(s->token + 17, 150, b64, 64);
}

static int forget_expired(void *ctx, void *value)
{
    const time_t *cutoff = ctx;
    return ((session_entry *)value)->who.expires < *cutoff;
}

static void maybe_sweep(hgf_sim_auth *auth, time_t now)
{
    if (hgf_sim_map_count(auth->sessions) < auth->sweep_at)
        return;
    time_t cutoff = now - SESSION_GRACE_S;
    hgf_sim_map_sweep(auth->sessions, forget_expired, &cutoff, free_session);
    size_t n = hgf_sim_map_count(auth->sessions);
    auth->sweep_at = n * 2 > MIN_SWEEP ? n * 2 : MIN_SWEEP;
}

int hgf_sim_auth_issue(hgf_sim_auth *auth, const hgf_sim_caller *who, time_t now,
                       hgf_sim_session *out)
{
    session_entry *s = calloc(1, sizeof *s);
    if (!s)
        return HGF_ENOMEM;
    s->who = *who;
    s->who.kind = HGF_SIM_CALLER_SESSION;
    int rc = HGF_EEXIST;
    /* A clash among 2^80 ids is next to impossible; retry anyway. */
    for (int tries = 0; rc == HGF_EEXIST && tries < 4; tries++) {
        rc = mint(s);
        if (rc)
            break;
        pthread_rwlock_wrlock(&auth->lock);
        maybe_sweep(auth, now);
        rc = hgf_sim_map_put(auth->sessions, s->who.access_key_id, s);
        pthread_rwlock_unlock(&auth->lock);
    }
    if (rc) {
        free_session(s);
        return rc;
    }
    memcpy(out->access_key_id, s->who.access_key_id, 20);
    out->access_key_id[20] = '\0';
    snprintf(out->secret_access_key, sizeof out->secret_access_key, "%s", s->secret);
    snprintf(out->session_token, sizeof out->session_token, "%s", s->token);
    out->expires = s->who.expires;
    return 0;
}

/* ---- lookup ------------------------------------------------------------ */

static void key_identity(const hgf_sim_auth *auth, const char *akid, const sim_key *k,
                         hgf_sim_caller *who)
{
    who->kind = HGF_SIM_CALLER_KEY;
    snprintf(who->access_key_id, sizeof who->access_key_id, "%s", akid);
    snprintf(who->account, sizeof who->account, "%s", k->account);
    snprintf(who->arn, sizeof who->arn, "arn:aws:iam::%s:user/ecrsim",
             k->account[0] ? k->account : auth->home);
    snprintf(who->user_id, sizeof who->user_id, "AIDA%.120s", akid);
}

/* 0 when akid is known; f is filled, secrets included. */
static int lookup(hgf_sim_auth *auth, const char *akid, found *f)
{
    pthread_rwlock_rdlock(&auth->lock);
    const sim_key *k = hgf_sim_map_get(auth->keys, akid);
    const session_entry *s = k ? NULL : hgf_sim_map_get(auth->sessions, akid);
    if (k) {
        key_identity(auth, akid, k, &f->who);
        snprintf(f->secret, sizeof f->secret, "%s", k->secret);
    } else if (s) {
        f->who = s->who;
        f->session = 1;
        snprintf(f->secret, sizeof f->secret, "%s", s->secret);
        snprintf(f->token, sizeof f->token, "%s", s->token);
    }
    pthread_rwlock_unlock(&auth->lock);
    if (k || s)
        return 0;
    return hgf_sim_iam_find_user(auth->iam, akid, &f->who, f->secret, sizeof f->secret);
}

/* ---- verification ------------------------------------------------------ */

enum failure { F_MISSING, F_INCOMPLETE, F_UNRECOGNIZED, F_SIGNATURE, F_EXPIRED, N_FAILURES };

typedef struct profile {
    const char *service;
    int max_skew;
    const char *codes[N_FAILURES];
    const char *missing_msg;
} profile;

static const profile PROFILES[] = {
    {"ecr", HGF_SIM_MAX_SKEW,
     {"MissingAuthenticationTokenException", "IncompleteSignatureException",
      "UnrecognizedClientException", "InvalidSignatureException", "ExpiredTokenException"},
     "Missing Authentication Token"},
    {"sts", HGF_SIM_STS_MAX_SKEW,
     {"MissingAuthenticationToken", "IncompleteSignature", "InvalidClientTokenId",
      "SignatureDoesNotMatch", "ExpiredToken"},
     "Request is missing Authentication Token"},
    {"organizations", HGF_SIM_MAX_SKEW,
     {"MissingAuthenticationTokenException", "IncompleteSignatureException",
      "UnrecognizedClientException", "InvalidSignatureException", "ExpiredTokenException"},
     "Missing Authentication Token"},
};

static const profile *profile_of(const char *service)
{
    for (size_t i = 0; i < sizeof PROFILES / sizeof PROFILES[0]; i++)
        if (strcmp(PROFILES[i].service, service) == 0)
            return &PROFILES[i];
    return &PROFILES[0];
}

static void amz(time_t t, char out[17])
{
    hgf_sigv4_amz_date(t, out);
}

/* The services' own wording, which SDKs match to detect clock skew. */
static int check_clock(const profile *p, time_t signed_at, const char *raw, time_t now,
                       hgf_err *err)
{
    char bound[17], server[17];
    int minutes = p->max_skew / 60;
    amz(now, server);
    if (signed_at < now - p->max_skew) {
        amz(now - p->max_skew, bound);
        return hgf_sim_awserr(err, p->codes[F_SIGNATURE],
                              "Signature expired: %s is now earlier than %s (%s - %d min.)", raw,
                              bound, server, minutes);
    }
    if (signed_at > now + p->max_skew) {
        amz(now + p->max_skew, bound);
        return hgf_sim_awserr(err, p->codes[F_SIGNATURE],
                              "Signature not yet current: %s is still later than %s (%s + %d "
                              "min.)",
                              raw, bound, server, minutes);
    }
    return 0;
}

static int check_scope(const profile *p, const hgf_sim_req *req, const hgf_sigv4_auth *parsed,
                       time_t now, hgf_err *err)
{
    if (strcmp(parsed->service, p->service) != 0)
        return hgf_sim_awserr(err, p->codes[F_SIGNATURE],
                              "Credential should be scoped to correct service: '%s'. ",
                              p->service);
    const char *date = hgf_sim_req_header(req, "x-amz-date");
    if (!date)
        return hgf_sim_awserr(err, p->codes[F_INCOMPLETE],
                              "Authorization header requires existence of either a 'X-Amz-Date' "
                              "or a 'Date' header.");
    time_t t = hgf_sigv4_parse_amz_date(date);
    if (t == (time_t)-1)
        return hgf_sim_awserr(err, p->codes[F_INCOMPLETE],
                              "Date must be in ISO-8601 'basic format'. Got '%.32s'. See "
                              "http://en.wikipedia.org/wiki/ISO_8601",
                              date);
    return check_clock(p, t, date, now, err);
}

static int verify_with(const profile *p, const char *secret, const hgf_sim_req *req,
                       const hgf_sigv4_auth *parsed, hgf_err *err, hgf_err *why)
{
    hgf_sigv4_request sreq = {
        .method = req->method, .path = req->path, .query = req->query,
        .headers = req->headers, .n_headers = req->n_headers,
        .body = req->body, .body_len = req->body_len,
    };
    hgf_err verr;
    hgf_err_clear(&verr);
    if (hgf_sigv4_verify(&sreq, parsed, secret, &verr) == 0)
        return 0;
    if (why)
        *why = verr;
    return hgf_sim_awserr(err, p->codes[F_SIGNATURE],
                          "The request signature we calculated does not match the signature you "
                          "provided. Check your AWS Secret Access Key and signing method. Consult "
                          "the service documentation for details.");
}

static int same_token(const char *want, const char *given)
{
    size_t n = strlen(want);
    return given && strlen(given) == n && CRYPTO_memcmp(want, given, n) == 0;
}

/* Session keys need their own token; any other key refuses one. */
static int check_token(const profile *p, const found *f, const char *given, time_t now,
                       hgf_err *err)
{
    if (f->session ? !same_token(f->token, given) : given != NULL)
        return hgf_sim_awserr(err, p->codes[F_UNRECOGNIZED],
                              "The security token included in the request is invalid.");
    if (f->session && f->who.expires <= now)
        return hgf_sim_awserr(err, p->codes[F_EXPIRED],
                              "The security token included in the request is expired");
    return 0;
}

int hgf_sim_auth_check(hgf_sim_auth *auth, const hgf_sim_req *req, const char *service,
                       time_t now, hgf_sim_caller *caller, hgf_err *err, hgf_err *why)
{
    const profile *p = profile_of(service);
    hgf_err_clear(why);
    memset(caller, 0, sizeof *caller);
    const char *header = hgf_sim_req_header(req, "authorization");
    if (!header)
        return hgf_sim_awserr(err, p->codes[F_MISSING], "%s", p->missing_msg);
    hgf_sigv4_auth parsed;
    hgf_err perr;
    hgf_err_clear(&perr);
    if (hgf_sigv4_parse_authorization(header, &parsed, &perr) != 0)
        return hgf_sim_awserr(err, p->codes[F_INCOMPLETE], "%s", perr.msg);
    found f;
    memset(&f, 0, sizeof f);
    int rc = lookup(auth, parsed.access_key_id, &f);
    if (rc)
        rc = hgf_sim_awserr(err, p->codes[F_UNRECOGNIZED],
                            "The security token included in the request is invalid.");
    if (!rc)
        rc = check_token(p, &f, hgf_sim_req_header(req, "x-amz-security-token"), now, err);
    if (!rc)
        rc = check_scope(p, req, &parsed, now, err);
    if (!rc)
        rc = verify_with(p, f.secret, req, &parsed, err, why);
    if (!rc) {
        *caller = f.who;
        snprintf(caller->region, sizeof caller->region, "%s", parsed.region);
    }
    OPENSSL_cleanse(&f, sizeof f);
    return rc;
}
