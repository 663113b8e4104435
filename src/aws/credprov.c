/* The credential manager: validation of auth specs, and the shared cache of
 * credentials and ECR authorization tokens with single-flight refresh. The
 * providers themselves are in credchain.c (host) and sts.c (assume role). */
#include "hgfleet/credprov.h"
#include "hgfleet/awsjson.h"
#include "hgfleet/ecr.h"
#include "hgfleet/endpoint.h"
#include "hgfleet/log.h"
#include "hgfleet/secret.h"
#include "hgfleet/sts.h"

#include <ev.h>
#include <jansson.h>
#include <openssl/evp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DEFAULT_DURATION 3600
#define CHAIN_MAX_DURATION 3600 /* STS caps role chaining at 1 h */
#define REFRESH_MARGIN 300.0    /* refresh 5 min before Expiration ... */
#define REFRESH_FRACTION 0.2    /* ... or at 80% of a shorter lifetime */
#define JITTER_FRACTION 0.1
#define STS_MAX_RETRIES 4       /* with no awsctl (tests): 5 attempts in all */
#define BACKOFF_MIN 1.0
#define BACKOFF_MAX 30.0

/* ---- validation -------------------------------------------------------- */

static const char *const PARTITIONS[] = {"aws",       "aws-cn",    "aws-us-gov", "aws-iso",
                                         "aws-iso-b", "aws-iso-e", "aws-iso-f",  "aws-eusc"};

static int set(const char *v)
{
    return v && *v;
}

static int word_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_';
}

/* Length of the prefix of s made of \w and `extra`. */
static size_t span_of(const char *s, const char *extra)
{
    size_t i = 0;
    while (s[i] && (word_char(s[i]) || strchr(extra, s[i])))
        i++;
    return i;
}

/* A value for an error message: printable ASCII only, cut at ~100 bytes. */
static void quote(char *out, size_t n, const char *v)
{
    size_t j = 0;
    for (size_t i = 0; v[i] && j + 4 < n; i++) {
        if (i == 100) {
            memcpy(out + j, "...", 3);
            j += 3;
            break;
        }
        out[j++] = (v[i] >= ' ' && v[i] < 0x7f) ? v[i] : '?';
    }
    out[j] = '\0';
}

static int known_partition(const char *p, size_t n)
{
    for (size_t i = 0; i < sizeof PARTITIONS / sizeof PARTITIONS[0]; i++)
        if (strlen(PARTITIONS[i]) == n && !strncmp(PARTITIONS[i], p, n))
            return 1;
    return 0;
}

static const char *role_path_problem(const char *p)
{
    const char *slash = strrchr(p, '/');
    const char *name = slash ? slash + 1 : p;
    size_t nlen = strlen(name);
    if (nlen < 1 || nlen > 64 || span_of(name, "+=,.@-") != nlen)
        return "the role name must be 1 to 64 characters of [\\w+=,.@-]";
    size_t plen = (size_t)(name - p);
    if (plen > 512 || strstr(p, "//") || span_of(p, "+=,.@-/") < plen)
        return "the role path must be /-separated names of [\\w+=,.@-]";
    return NULL;
}

static const char *role_arn_problem(const char *arn)
{
    size_t len = strlen(arn);
    if (len < 20 || len > 2048)
        return "an ARN has 20 to 2048 characters";
    if (strncmp(arn, "arn:", 4))
        return "it must start with arn:";
    const char *p = arn + 4;
    size_t n = strcspn(p, ":");
    if (!known_partition(p, n))
        return "unknown partition";
    p += n;
    if (strncmp(p, ":iam::", 6))
        return "the service must be iam, with no region";
    p += 6;
    if (strspn(p, "0123456789") != 12 || p[12] != ':')
        return "the account must be 12 digits";
    p += 13;
    if (strncmp(p, "role/", 5))
        return "the resource must be role/<name>";
    return role_path_problem(p + 5);
}

static int check_role_arn(const char *flag, const char *arn, hgf_err *err)
{
    const char *why = role_arn_problem(arn);
    if (!why)
        return 0;
    char q[128];
    quote(q, sizeof q, arn);
    return hgf_err_set(err, HGF_EINPUT,
                       "%s: expected arn:aws:iam::<12-digit account>:role/<name>, got \"%s\" (%s)",
                       flag, q, why);
}

static int check_chars(const char *flag, const char *v, size_t min, size_t max, const char *extra,
                       const char *what, hgf_err *err)
{
    size_t n = strlen(v);
    if (n >= min && n <= max && span_of(v, extra) == n)
        return 0;
    char q[128];
    quote(q, sizeof q, v);
    return hgf_err_set(err, HGF_EINPUT, "%s: expected %zu to %zu characters of %s, got \"%s\"",
                       flag, min, max, what, q);
}

/* STS in one partition cannot assume a role of another: the registry's
 * partition (from its URL) decides, as it does for `connection import`. */
static int check_role_partition(const char *flag, const char *arn, const char *partition,
                                hgf_err *err)
{
    const char *p = arn + 4; /* role_arn_problem has checked "arn:" */
    size_t n = strcspn(p, ":");
    if (!set(partition) || (strlen(partition) == n && !strncmp(p, partition, n)))
        return 0;
    return hgf_err_set(err, HGF_EINPUT,
                       "%s: partition %.*s does not match the registry's partition %s", flag,
                       (int)(n < 16 ? n : 16), p, partition);
}

static int check_role_options(const hgf_auth_spec *s, hgf_err *err)
{
    int rc = 0;
    if (set(s->role_arn))
        rc = check_role_arn("--role-arn", s->role_arn, err);
    if (!rc && set(s->role_arn))
        rc = check_role_partition("--role-arn", s->role_arn, s->partition, err);
    if (!rc && s->via_role_arn)
        rc = check_role_arn("--via-role-arn", s->via_role_arn, err);
    if (!rc && s->via_role_arn)
        rc = check_role_partition("--via-role-arn", s->via_role_arn, s->partition, err);
    if (!rc && s->external_id)
        rc =
            check_chars("--external-id", s->external_id, 2, 1224, "+=,.@:/-", "[\\w+=,.@:/-]", err);
    if (!rc && s->session_name)
        rc = check_chars("--session-name", s->session_name, 2, 64, "+=,.@-", "[\\w+=,.@-]", err);
    if (rc)
        return rc;
    int d = s->duration_seconds;
    if (d && (d < 900 || d > 43200))
        return hgf_err_set(err, HGF_EINPUT, "--duration: expected 900 to 43200 seconds, got %d", d);
    if (d > CHAIN_MAX_DURATION && s->via_role_arn)
        return hgf_err_set(err, HGF_EINPUT,
                           "--duration: STS caps role chains (--via-role-arn) at 1 hour: expected "
                           "at most 3600 seconds, got %d",
                           d);
    return 0;
}

static int check_keys(const hgf_auth_spec *s, hgf_err *err)
{
    if (!set(s->access_key_id) && !set(s->secret_access_key))
        return 0;
    if (!set(s->secret_access_key))
        return hgf_err_set(err, HGF_EINPUT,
                           "--secret-access-key-file: required with --access-key-id");
    if (!set(s->access_key_id))
        return hgf_err_set(err, HGF_EINPUT,
                           "--access-key-id: required with --secret-access-key-file");
    return hgf_creds_validate_access_key_id(s->access_key_id, "--access-key-id", err);
}

/* Options that only make sense with --role-arn. */
static int check_needs_role(const hgf_auth_spec *s, hgf_err *err)
{
    const char *flag = s->via_role_arn       ? "--via-role-arn"
                       : s->external_id      ? "--external-id"
                       : s->session_name     ? "--session-name"
                       : s->duration_seconds ? "--duration"
                                             : NULL;
    return flag ? hgf_err_set(err, HGF_EINPUT, "%s: requires --role-arn", flag) : 0;
}

static int check_mode(const hgf_auth_spec *s, hgf_err *err)
{
    const char *m = s->mode ? s->mode : "";
    if (!strcmp(m, "assume_role"))
        return set(s->role_arn)
                   ? 0
                   : hgf_err_set(err, HGF_EINPUT, "--role-arn: required to assume a role");
    if (set(s->role_arn))
        return hgf_err_set(err, HGF_EINPUT,
                           "--role-arn: only used in assume_role mode (mode is %.20s)", m);
    int rc = check_needs_role(s, err);
    if (rc)
        return rc;
    if (!strcmp(m, "static"))
        return set(s->access_key_id)
                   ? 0
                   : hgf_err_set(err, HGF_EINPUT, "--access-key-id: required for static keys");
    if (!strcmp(m, "host"))
        return set(s->access_key_id) || set(s->secret_access_key)
                   ? hgf_err_set(err, HGF_EINPUT,
                                 "--access-key-id: host mode uses the host's own "
                                 "credentials, not keys")
                   : 0;
    char q[64];
    quote(q, sizeof q, m);
    return hgf_err_set(err, HGF_EINPUT,
                       "auth mode: expected static, host or assume_role, got \"%s\"", q);
}

int hgf_credprov_validate(const hgf_auth_spec *spec, hgf_err *err)
{
    if (!spec)
        return hgf_err_set(err, HGF_EINPUT, "auth spec: required");
    int rc = check_mode(spec, err);
    if (!rc)
        rc = check_keys(spec, err);
    if (!rc)
        rc = check_role_options(spec, err);
    if (!rc && set(spec->region) && !hgf_endpoint_region_valid(spec->region)) {
        char q[64];
        quote(q, sizeof q, spec->region);
        rc = hgf_err_set(err, HGF_EINPUT, "region: \"%s\" is not an AWS region name", q);
    }
    if (!rc && set(spec->partition) && !known_partition(spec->partition, strlen(spec->partition)))
        rc =
            hgf_err_set(err, HGF_EINPUT, "partition: unknown partition \"%.30s\"", spec->partition);
    return rc;
}

/* ---- the cache --------------------------------------------------------- */

enum kind { K_CREDS, K_ECR };

typedef struct waiter {
    struct waiter *next;
    hgf_creds_cb cb;
    hgf_ecr_token_cb ecb;
    void *arg;
} waiter;

typedef struct entry entry;

/* One fetch in flight. While it waits on HTTP (io) only its own callback may
 * free it: hgf_credmgr_free orphans it (m = NULL) instead. */
typedef struct op {
    struct op *next;
    hgf_credmgr *m;
    entry *e;
    int io;
    char src_akid[136]; /* the source credentials' key id, for invalidation */
    hgf_creds src;      /* the credentials the call is signed with */
    int sts_retries;    /* AssumeRole attempts retried after throttling or 5xx */
    int waiting;        /* the retry timer runs */
    ev_timer retry;
} op;

struct entry {
    entry *next;
    hgf_credmgr *m;
    enum kind kind;
    char *key;
    hgf_auth_spec spec; /* owned copy */
    char *registry_id, *endpoint;
    int have, ever;
    hgf_creds creds; /* K_CREDS */
    char *token;     /* K_ECR: a secret */
    char proxy[256];
    double expires;    /* 0 = never */
    double refresh_at; /* 0 = never */
    double retry_after;
    op *op;
    int fail_rc;
    hgf_err fail_err;
    waiter *wh, **wt;
    ev_timer deliver; /* callbacks always run from the loop */
};

struct hgf_credmgr {
    struct ev_loop *loop;
    hgf_http *http;
    hgf_metrics *metrics;
    hgf_awsctl *ctl;   /* the process's skew, retries and rates; or NULL */
    entry *entries;
    op *ops;
    hgf_credmgr_stats stats;
    unsigned int seed;
    int busy, dying;
};

typedef struct value {
    const hgf_creds *creds;
    const char *token, *proxy;
    double expires;
} value;

static void start_fetch(entry *e);

/* What the process learned of the clock skew from AWS's Date headers: STS
 * and the credential providers sign with it too. */
static long clock_offset(const hgf_credmgr *m)
{
    return m->ctl ? hgf_awsctl_offset(m->ctl) : 0;
}
static void schedule_deliver(entry *e);
static int get_creds(hgf_credmgr *m, const hgf_auth_spec *spec, hgf_creds_cb cb, void *arg,
                     hgf_err *err);

static double now(void)
{
    return ev_time();
}

static const char *mode_label(const entry *e)
{
    return e->kind == K_ECR ? "ecr_token" : e->spec.mode;
}

static const char **spec_fields(hgf_auth_spec *s, size_t i)
{
    const char **f[] = {&s->mode,         &s->access_key_id, &s->secret_access_key,
                        &s->role_arn,     &s->external_id,   &s->session_name,
                        &s->via_role_arn, &s->region,        &s->partition};
    return i < sizeof f / sizeof f[0] ? f[i] : NULL;
}

static void spec_free(hgf_auth_spec *s)
{
    for (size_t i = 0; spec_fields(s, i); i++) {
        char *v = (char *)*spec_fields(s, i);
        if (v) {
            hgf_secret_wipe(v, strlen(v));
            free(v);
        }
        *spec_fields(s, i) = NULL;
    }
}

static int spec_dup(hgf_auth_spec *dst, const hgf_auth_spec *src)
{
    hgf_auth_spec from = *src;
    *dst = *src;
    for (size_t i = 0; spec_fields(dst, i); i++)
        *spec_fields(dst, i) = NULL;
    int rc = 0;
    for (size_t i = 0; spec_fields(dst, i); i++) {
        const char *v = *spec_fields(&from, i);
        if (v && !(*spec_fields(dst, i) = strdup(v)))
            rc = HGF_ENOMEM;
    }
    if (rc)
        spec_free(dst);
    return rc;
}

static void sha256_hex(const char *s, char out[65])
{
    unsigned char md[32];
    unsigned int n = 0;
    out[0] = '\0';
    if (!EVP_Digest(s, strlen(s), md, &n, EVP_sha256(), NULL))
        return;
    for (unsigned int i = 0; i < n && i < 32; i++)
        snprintf(out + 2 * i, 3, "%02x", md[i]);
}

#define NZ(s) ((s) ? (s) : "")

/* The secret enters the key only as its SHA-256. The region does not: STS
 * credentials are valid in every region of the partition, so 500 connections
 * in four regions that assume one role share one refresh, not four. */
static int spec_key(const hgf_auth_spec *s, hgf_buf *key)
{
    char hash[65] = "";
    if (set(s->secret_access_key))
        sha256_hex(s->secret_access_key, hash);
    return hgf_buf_printf(key, "%s\x1f%s\x1f%s\x1f%s\x1f%d\x1f%s\x1f%s\x1f%s\x1f%s",
                          NZ(s->mode), NZ(s->role_arn), NZ(s->external_id), NZ(s->session_name),
                          s->duration_seconds, NZ(s->via_role_arn), NZ(s->access_key_id), hash,
                          NZ(s->partition));
}

static entry *find_entry(hgf_credmgr *m, const char *key)
{
    for (entry *e = m->entries; e; e = e->next)
        if (!strcmp(e->key, key))
            return e;
    return NULL;
}

static void deliver_cb(struct ev_loop *loop, ev_timer *w, int revents);

static entry *entry_new(hgf_credmgr *m, enum kind kind, const char *key, const hgf_auth_spec *spec,
                        const char *registry_id, const char *endpoint)
{
    entry *e = calloc(1, sizeof *e);
    if (!e)
        return NULL;
    e->m = m;
    e->kind = kind;
    e->wt = &e->wh;
    e->key = strdup(key);
    e->registry_id = registry_id ? strdup(registry_id) : NULL;
    e->endpoint = endpoint ? strdup(endpoint) : NULL;
    int bad = !e->key || (registry_id && !e->registry_id) || (endpoint && !e->endpoint);
    if (bad || spec_dup(&e->spec, spec)) {
        free(e->key);
        free(e->registry_id);
        free(e->endpoint);
        free(e);
        return NULL;
    }
    ev_timer_init(&e->deliver, deliver_cb, 0., 0.);
    e->deliver.data = e;
    e->next = m->entries;
    m->entries = e;
    return e;
}

static void drop_value(entry *e)
{
    hgf_creds_clear(&e->creds);
    if (e->token) {
        hgf_secret_wipe(e->token, strlen(e->token));
        free(e->token);
        e->token = NULL;
    }
    e->have = 0;
}

static void entry_free(entry *e)
{
    while (e->wh) {
        waiter *w = e->wh;
        e->wh = w->next;
        free(w);
    }
    drop_value(e);
    spec_free(&e->spec);
    free(e->key);
    free(e->registry_id);
    free(e->endpoint);
    free(e);
}

static int entry_valid(const entry *e, double t)
{
    return e->have && (e->expires == 0 || t < e->expires);
}

/* ---- ops ------------------------------------------------------------- */

static op *op_new(entry *e)
{
    op *o = calloc(1, sizeof *o);
    if (!o)
        return NULL;
    o->m = e->m;
    o->e = e;
    o->next = e->m->ops;
    e->m->ops = o;
    e->op = o;
    return o;
}

static void op_free(op *o)
{
    if (o->m)
        for (op **p = &o->m->ops; *p; p = &(*p)->next)
            if (*p == o) {
                *p = o->next;
                break;
            }
    hgf_creds_clear(&o->src);
    free(o);
}

static double rand01(hgf_credmgr *m)
{
    return (double)rand_r(&m->seed) / ((double)RAND_MAX + 1.0);
}

static double clampd(double v, double lo, double hi)
{
    return v < lo ? lo : v > hi ? hi : v;
}

static int store(entry *e, const value *v, hgf_err *err)
{
    drop_value(e);
    int rc = 0;
    if (e->kind == K_CREDS) {
        rc = hgf_creds_copy(&e->creds, v->creds, err);
        e->expires = (double)v->creds->expiration;
    } else {
        e->token = strdup(v->token);
        rc = e->token ? 0 : hgf_err_set(err, HGF_ENOMEM, "out of memory");
        snprintf(e->proxy, sizeof e->proxy, "%s", NZ(v->proxy));
        e->expires = v->expires;
    }
    if (rc)
        return rc;
    /* AWS states expiry on its own clock; ours may be minutes off. */
    if (e->expires)
        e->expires -= (double)clock_offset(e->m);
    double t = now(), life = e->expires - t;
    e->have = e->ever = 1;
    e->fail_rc = 0;
    e->retry_after = 0;
    if (e->expires == 0)
        e->refresh_at = 0;
    else if (e->kind == K_ECR)
        e->refresh_at = t + life / 2;
    else {
        double margin = life > 0
                            ? (life * REFRESH_FRACTION < REFRESH_MARGIN ? life * REFRESH_FRACTION
                                                                        : REFRESH_MARGIN)
                            : 0;
        e->refresh_at = e->expires - margin - margin * JITTER_FRACTION * rand01(e->m);
    }
    return 0;
}

static void record_failure(entry *e, int rc, const hgf_err *err)
{
    hgf_credmgr *m = e->m;
    double t = now();
    int valid = entry_valid(e, t);
    double remaining = valid && e->expires ? e->expires - t : 0;
    double backoff = clampd(remaining * 0.1, BACKOFF_MIN, BACKOFF_MAX);
    e->fail_rc = rc;
    e->fail_err = *err;
    e->retry_after = t + backoff;
    if (e->ever)
        m->stats.failed_refreshes++;
    hgf_log_warn("credentials.refresh_failed",
                 "mode=%s role=%s keeping_cached=%s retry_in=%.1fs error=\"%s\"", mode_label(e),
                 e->spec.role_arn ? e->spec.role_arn : "-", valid ? "yes" : "no", backoff,
                 err->msg);
}

static void count_refresh(entry *e, int rc)
{
    if (!e->m->metrics)
        return;
    char labels[96];
    snprintf(labels, sizeof labels, "mode=\"%s\",outcome=\"%s\"", mode_label(e),
             rc ? "error" : "ok");
    hgf_metrics_inc(e->m->metrics, "hgfleet_credential_refreshes_total", labels, 1);
}

/* Ends a fetch: stores its value or its error and wakes the waiters. */
static void finish(op *o, int rc, const hgf_err *err, const value *v)
{
    hgf_credmgr *m = o->m;
    entry *e = o->e;
    op_free(o);
    if (!m)
        return; /* orphaned by hgf_credmgr_free */
    e->op = NULL;
    hgf_err local;
    hgf_err_clear(&local);
    if (!rc && v)
        rc = store(e, v, &local);
    else if (!rc)
        rc = hgf_err_set(&local, HGF_EFAIL, "credentials: fetch ended without a value");
    else if (err && err->code)
        local = *err;
    else
        hgf_err_set(&local, rc, "credentials (%s): fetch failed", mode_label(e));
    if (rc) {
        local.code = rc;
        record_failure(e, rc, &local);
    }
    count_refresh(e, rc);
    schedule_deliver(e);
}

static void finish_creds(op *o, int rc, const hgf_err *err, const hgf_creds *c)
{
    value v = {.creds = c};
    finish(o, rc, err, rc ? NULL : &v);
}

/* ---- fetching -------------------------------------------------------- */

static void default_session(const char *role_arn, char *out, size_t n)
{
    /* arn:<partition>:iam::<account>:role/... (validated) */
    const char *acct = strstr(role_arn, ":iam::");
    snprintf(out, n, "hgfleet-%.12s", acct ? acct + 6 : "session");
}

/* Where an assume_role entry's source credentials come from: the first hop
 * of a chain, else the static keys, else the host. */
static hgf_auth_spec source_spec(const hgf_auth_spec *s)
{
    hgf_auth_spec src = {.region = s->region, .partition = s->partition};
    if (s->via_role_arn) {
        src.mode = "assume_role";
        src.role_arn = s->via_role_arn;
        src.session_name = s->session_name;
        src.access_key_id = s->access_key_id;
        src.secret_access_key = s->secret_access_key;
    } else if (set(s->access_key_id)) {
        src.mode = "static";
        src.access_key_id = s->access_key_id;
        src.secret_access_key = s->secret_access_key;
    } else {
        src.mode = "host";
    }
    return src;
}

static int expired_token_code(const char *code)
{
    return !strcmp(code, "ExpiredToken") || !strcmp(code, "ExpiredTokenException") ||
           !strcmp(code, "InvalidClientTokenId") || !strcmp(code, "UnrecognizedClientException");
}

static void send_assume(op *o);

static void on_retry_timer(struct ev_loop *loop, ev_timer *w, int revents)
{
    op *o = w->data;
    o->waiting = 0;
    send_assume(o);
}

/* AWS_MAX_ATTEMPTS counts STS's attempts too, as it does for the SDKs'
 * clients; a manager without the process's awsctl keeps the legacy 5. */
static int sts_max_retries(const hgf_credmgr *m)
{
    return m->ctl ? hgf_awsctl_get_config(m->ctl)->max_attempts - 1 : STS_MAX_RETRIES;
}

/* Throttling, 5xx and dropped connections are retried here with the SDKs'
 * backoff, so one busy STS moment does not fail every job waiting for the
 * shared refresh. The transport error is classified like any AWS call's:
 * a refused certificate (a configuration error) fails at once. */
static int retry_assume(op *o, const hgf_sts_result *r)
{
    int cls = hgf_awsctl_classify(r->status, r->transport_error, r->err.aws_code, r->err.msg);
    if (!o->m || o->sts_retries >= sts_max_retries(o->m) ||
        (cls != HGF_AWS_RETRY_THROTTLE && cls != HGF_AWS_RETRY_TRANSIENT))
        return 0;
    double delay = hgf_awsctl_backoff(o->sts_retries++, rand01(o->m));
    hgf_log_debug("credentials.sts_retry", "role=%s attempt=%d delay=%.3f %s",
                  o->e->spec.role_arn, o->sts_retries, delay, r->err.msg);
    ev_timer_init(&o->retry, on_retry_timer, delay, 0.);
    o->retry.data = o;
    o->waiting = 1;
    o->io = 0;
    ev_timer_start(o->m->loop, &o->retry);
    return 1;
}

static void on_assumed(const hgf_sts_result *r, void *arg)
{
    op *o = arg;
    if (r->rc && retry_assume(o, r))
        return;
    if (r->rc && o->m && expired_token_code(r->err.aws_code)) {
        hgf_auth_spec src = source_spec(&o->e->spec);
        hgf_credmgr_invalidate_key(o->m, &src, o->src_akid);
    }
    finish_creds(o, r->rc, &r->err, &r->creds);
}

/* Sends AssumeRole signed with o->src. */
static void send_assume(op *o)
{
    entry *e = o->e;
    hgf_credmgr *m = o->m;
    hgf_err er;
    hgf_err_clear(&er);
    char url[512], region[32], session[72];
    int rc = hgf_credprov_sts_endpoint(e->spec.region, url, sizeof url, region, &er);
    if (set(e->spec.session_name))
        snprintf(session, sizeof session, "%s", e->spec.session_name);
    else
        default_session(e->spec.role_arn, session, sizeof session);
    int duration = e->spec.duration_seconds ? e->spec.duration_seconds : DEFAULT_DURATION;
    if (e->spec.via_role_arn && duration > CHAIN_MAX_DURATION)
        duration = CHAIN_MAX_DURATION;
    hgf_sts_target t = {.http = m->http,
                        .endpoint = url,
                        .region = region,
                        .clock_offset = clock_offset(m),
                        .metrics = m->metrics};
    if (!rc)
        rc = hgf_sts_assume_role(&t, &o->src, e->spec.role_arn, session, e->spec.external_id,
                                 duration, on_assumed, o, &er);
    if (rc) {
        finish_creds(o, rc, &er, NULL);
        return;
    }
    o->io = 1;
    m->stats.sts_calls++;
}

static void on_source(int rc, const hgf_err *err, const hgf_creds *creds, void *arg)
{
    op *o = arg;
    entry *e = o->e;
    hgf_err er = *(err ? err : &(hgf_err){0});
    if (!rc)
        rc = hgf_creds_copy(&o->src, creds, &er);
    if (rc) {
        char msg[sizeof er.msg];
        snprintf(msg, sizeof msg, "%s", er.msg);
        hgf_err_set(&er, rc, "source credentials for AssumeRole of %s: %s", e->spec.role_arn, msg);
        snprintf(er.aws_code, sizeof er.aws_code, "%s", err ? err->aws_code : "");
        finish_creds(o, rc, &er, NULL);
        return;
    }
    snprintf(o->src_akid, sizeof o->src_akid, "%s", creds->access_key_id);
    send_assume(o);
}

static void on_host(int rc, const hgf_err *err, const hgf_creds *creds, void *arg)
{
    finish_creds(arg, rc, err, creds);
}

/* ECR GetAuthorizationToken reply: authorizationData[0]. */
static void on_ecr_reply(const hgf_aws_result *res, void *arg)
{
    op *o = arg;
    if (res->rc) {
        if (o->m && expired_token_code(res->err.aws_code))
            hgf_credmgr_invalidate_key(o->m, &o->e->spec, o->src.access_key_id);
        finish(o, res->rc, &res->err, NULL);
        return;
    }
    json_t *d = json_array_get(json_object_get(res->json, "authorizationData"), 0);
    const char *token = json_string_value(json_object_get(d, "authorizationToken"));
    const char *proxy = json_string_value(json_object_get(d, "proxyEndpoint"));
    json_t *exp = json_object_get(d, "expiresAt");
    hgf_err er;
    hgf_err_clear(&er);
    if (!set(token) || !json_is_number(exp)) {
        hgf_err_set(&er, HGF_EFAIL,
                    "GetAuthorizationToken: reply has no authorizationData[0]."
                    "%s",
                    set(token) ? "expiresAt" : "authorizationToken");
        finish(o, er.code, &er, NULL);
        return;
    }
    value v = {.token = token, .proxy = proxy, .expires = json_number_value(exp)};
    finish(o, 0, NULL, &v);
}

static void on_ecr_creds(int rc, const hgf_err *err, const hgf_creds *creds, void *arg)
{
    op *o = arg;
    entry *e = o->e;
    hgf_credmgr *m = o->m;
    hgf_err er;
    hgf_err_clear(&er);
    if (rc) {
        finish(o, rc, err, NULL);
        return;
    }
    rc = hgf_creds_copy(&o->src, creds, &er);
    json_t *body = json_pack("{s:[s]}", "registryIds", e->registry_id);
    char *text = body ? json_dumps(body, JSON_COMPACT) : NULL;
    json_decref(body);
    if (!rc && !text)
        rc = hgf_err_set(&er, HGF_ENOMEM, "out of memory");
    char rate_key[64];
    snprintf(rate_key, sizeof rate_key, "%s/%s/ecr/", e->registry_id, e->spec.region);
    hgf_aws_target t = {.http = m->http,
                        .creds = &o->src,
                        .endpoint = e->endpoint,
                        .region = e->spec.region,
                        .service = "ecr",
                        .ctl = m->ctl,
                        .rate_key = m->ctl ? rate_key : NULL};
    if (!rc)
        rc = hgf_awsjson_call(&t, HGF_ECR_TARGET_PREFIX, "GetAuthorizationToken", text,
                              on_ecr_reply, o, &er);
    free(text);
    if (rc)
        finish(o, rc, &er, NULL);
    else
        o->io = 1;
}

static int begin(op *o, hgf_err *err)
{
    entry *e = o->e;
    hgf_credmgr *m = o->m;
    if (e->kind == K_ECR)
        return get_creds(m, &e->spec, on_ecr_creds, o, err);
    if (!strcmp(e->spec.mode, "static")) {
        hgf_creds c = {0};
        int rc = hgf_creds_set(&c, e->spec.access_key_id, e->spec.secret_access_key, NULL, 0,
                               "static", err);
        finish_creds(o, rc, err, &c);
        hgf_creds_clear(&c);
        return 0;
    }
    if (!strcmp(e->spec.mode, "host")) {
        hgf_credprov_opts po = {.loop = m->loop,
                                .http = m->http,
                                .metrics = m->metrics,
                                .region = e->spec.region,
                                .clock_offset = clock_offset(m),
                                .sts_calls = &m->stats.sts_calls};
        int rc = hgf_credprov_host_fetch(&po, on_host, o, err);
        o->io = !rc;
        return rc;
    }
    hgf_auth_spec src = source_spec(&e->spec);
    return get_creds(m, &src, on_source, o, err);
}

static void start_fetch(entry *e)
{
    hgf_credmgr *m = e->m;
    if (e->ever)
        m->stats.refreshes++;
    hgf_err err;
    hgf_err_clear(&err);
    op *o = op_new(e);
    if (!o) {
        hgf_err_set(&err, HGF_ENOMEM, "out of memory");
        record_failure(e, HGF_ENOMEM, &err);
        schedule_deliver(e);
        return;
    }
    int rc = begin(o, &err);
    if (rc)
        finish(o, rc, &err, NULL);
}

/* ---- delivering ------------------------------------------------------ */

static void schedule_deliver(entry *e)
{
    if (!ev_is_active(&e->deliver)) {
        ev_timer_set(&e->deliver, 0., 0.);
        ev_timer_start(e->m->loop, &e->deliver);
    }
}

static void call_waiter(entry *e, waiter *w, int valid)
{
    hgf_err er = e->fail_err;
    if (!valid && !e->fail_rc)
        hgf_err_set(&er, HGF_EFAIL, "credentials (%s) expired and were not refreshed",
                    mode_label(e));
    int rc = valid ? 0 : e->fail_rc ? e->fail_rc : HGF_EFAIL;
    er.code = rc;
    if (e->kind == K_ECR)
        w->ecb(rc, valid ? NULL : &er, valid ? e->token : NULL, valid ? e->proxy : NULL, w->arg);
    else
        w->cb(rc, valid ? NULL : &er, valid ? &e->creds : NULL, w->arg);
}

static void destroy(hgf_credmgr *m);

static void deliver_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    entry *e = w->data;
    hgf_credmgr *m = e->m;
    if (!entry_valid(e, now()) && !e->op && now() >= e->retry_after)
        start_fetch(e);
    int valid = entry_valid(e, now());
    if (!valid && e->op)
        return; /* the fetch under way delivers */
    waiter *list = e->wh;
    e->wh = NULL;
    e->wt = &e->wh;
    m->busy++;
    while (list) {
        waiter *x = list;
        list = x->next;
        if (!m->dying)
            call_waiter(e, x, valid);
        free(x);
    }
    m->busy--;
    if (m->dying && !m->busy)
        destroy(m);
}

/* Serves fresh values from the cache; a value past its refresh time but
 * still valid is served while one refresh runs in the background. */
static void kick(entry *e)
{
    double t = now();
    int valid = entry_valid(e, t);
    int due = !valid || (e->refresh_at > 0 && t >= e->refresh_at);
    if (valid)
        e->m->stats.cache_hits++;
    if (due && !e->op && t >= e->retry_after)
        start_fetch(e);
    if (entry_valid(e, now()) || !e->op)
        schedule_deliver(e);
}

/* ECR tokens are regional, and one endpoint override can serve every
 * region: the region belongs in this key even though not in the
 * credentials' key. */
static int ecr_key(const hgf_auth_spec *spec, const char *registry_id, const char *endpoint,
                   hgf_buf *key)
{
    int rc = spec_key(spec, key);
    return rc ? rc
              : hgf_buf_printf(key, "\x1e%s\x1f%s\x1f%s", registry_id, endpoint,
                               spec->region ? spec->region : "");
}

static int add_waiter(hgf_credmgr *m, enum kind kind, const hgf_auth_spec *spec,
                      const char *registry_id, const char *endpoint, waiter *w, hgf_err *err)
{
    hgf_buf key = HGF_BUF_INIT;
    int rc = kind == K_ECR ? ecr_key(spec, registry_id, endpoint, &key) : spec_key(spec, &key);
    entry *e = rc ? NULL : find_entry(m, hgf_buf_str(&key));
    if (!rc && !e)
        e = entry_new(m, kind, hgf_buf_str(&key), spec, registry_id, endpoint);
    hgf_buf_free(&key);
    if (!e) {
        free(w);
        return hgf_err_set(err, HGF_ENOMEM, "out of memory");
    }
    *e->wt = w;
    e->wt = &w->next;
    kick(e);
    return 0;
}

static int get_creds(hgf_credmgr *m, const hgf_auth_spec *spec, hgf_creds_cb cb, void *arg,
                     hgf_err *err)
{
    waiter *w = calloc(1, sizeof *w);
    if (!w)
        return hgf_err_set(err, HGF_ENOMEM, "out of memory");
    w->cb = cb;
    w->arg = arg;
    return add_waiter(m, K_CREDS, spec, NULL, NULL, w, err);
}

/* ---- public API ------------------------------------------------------ */

hgf_credmgr *hgf_credmgr_new(struct ev_loop *loop, hgf_http *http, hgf_metrics *metrics,
                             hgf_err *err)
{
    if (!loop || !http) {
        hgf_err_set(err, HGF_EINPUT, "credentials: a loop and an HTTP client are required");
        return NULL;
    }
    hgf_credmgr *m = calloc(1, sizeof *m);
    if (!m) {
        hgf_err_set(err, HGF_ENOMEM, "out of memory");
        return NULL;
    }
    m->loop = loop;
    m->http = http;
    m->metrics = metrics;
    m->seed = (unsigned int)((uintptr_t)m ^ (uintptr_t)(ev_time() * 1e6));
    if (metrics) {
        hgf_metrics_describe(metrics, "hgfleet_credential_refreshes_total", HGF_METRIC_COUNTER,
                             "Credential and ECR token fetches by auth mode and outcome");
        hgf_metrics_describe(metrics, "hgfleet_sts_calls_total", HGF_METRIC_COUNTER,
                             "STS calls by action and outcome");
    }
    return m;
}

static void destroy(hgf_credmgr *m)
{
    while (m->entries) {
        entry *e = m->entries;
        m->entries = e->next;
        entry_free(e);
    }
    while (m->ops) {
        op *o = m->ops;
        m->ops = o->next;
        o->m = NULL;
        op_free(o);
    }
    free(m);
}

void hgf_credmgr_set_awsctl(hgf_credmgr *m, hgf_awsctl *ctl)
{
    m->ctl = ctl;
}

void hgf_credmgr_free(hgf_credmgr *m)
{
    if (!m || m->dying)
        return;
    m->dying = 1;
    for (entry *e = m->entries; e; e = e->next)
        ev_timer_stop(m->loop, &e->deliver);
    /* Ops waiting on HTTP are freed by their own callback. */
    for (op **p = &m->ops; *p;) {
        op *o = *p;
        if (o->waiting) {
            ev_timer_stop(m->loop, &o->retry);
            *p = o->next;
            o->m = NULL;
            op_free(o);
        } else if (o->io) {
            *p = o->next;
            o->m = NULL;
        } else {
            p = &o->next;
        }
    }
    if (!m->busy)
        destroy(m);
}

int hgf_credmgr_get(hgf_credmgr *m, const hgf_auth_spec *spec, hgf_creds_cb cb, void *arg,
                    hgf_err *err)
{
    if (!m || !cb || m->dying)
        return hgf_err_set(err, HGF_EINPUT, "credentials: a manager and a callback are required");
    int rc = hgf_credprov_validate(spec, err);
    return rc ? rc : get_creds(m, spec, cb, arg, err);
}

static int ecr_endpoint(const hgf_auth_spec *spec, const char *registry_id, const char *given,
                        char *out, size_t n, hgf_err *err)
{
    if (!set(spec->region))
        return hgf_err_set(err, HGF_EINPUT, "region: required for ECR authorization tokens");
    if (strlen(NZ(registry_id)) != 12 || strspn(registry_id, "0123456789") != 12)
        return hgf_err_set(err, HGF_EINPUT, "registry_id: expected 12 digits");
    if (set(given)) {
        if (strlen(given) >= n)
            return hgf_err_set(err, HGF_EINPUT, "ecr_endpoint: longer than %zu bytes", n - 1);
        snprintf(out, n, "%s", given);
        return 0;
    }
    hgf_registry reg;
    int rc = hgf_endpoint_registry_from_parts(registry_id, spec->region, 0, &reg, err);
    return rc ? rc : hgf_endpoint_service_url("ECR", &reg, out, n, err);
}

int hgf_credmgr_ecr_token(hgf_credmgr *m, const hgf_auth_spec *spec, const char *registry_id,
                          const char *ecr_endpoint_url, hgf_ecr_token_cb cb, void *arg,
                          hgf_err *err)
{
    if (!m || !cb || m->dying)
        return hgf_err_set(err, HGF_EINPUT, "credentials: a manager and a callback are required");
    char endpoint[512];
    int rc = hgf_credprov_validate(spec, err);
    if (!rc)
        rc = ecr_endpoint(spec, registry_id, ecr_endpoint_url, endpoint, sizeof endpoint, err);
    if (rc)
        return rc;
    waiter *w = calloc(1, sizeof *w);
    if (!w)
        return hgf_err_set(err, HGF_ENOMEM, "out of memory");
    w->ecb = cb;
    w->arg = arg;
    return add_waiter(m, K_ECR, spec, registry_id, endpoint, w, err);
}

static entry *lookup(hgf_credmgr *m, const hgf_auth_spec *spec)
{
    hgf_buf key = HGF_BUF_INIT;
    entry *e = spec && !spec_key(spec, &key) ? find_entry(m, hgf_buf_str(&key)) : NULL;
    hgf_buf_free(&key);
    return e;
}

/* Once dropped, the next get starts the one fetch and later callers wait
 * for it; invalidations that arrive meanwhile find nothing to drop, which
 * keeps a burst of ExpiredToken replies down to one refresh. */
void hgf_credmgr_invalidate(hgf_credmgr *m, const hgf_auth_spec *spec)
{
    entry *e = m ? lookup(m, spec) : NULL;
    if (!e || !e->have)
        return;
    drop_value(e);
    e->retry_after = 0;
}

void hgf_credmgr_invalidate_key(hgf_credmgr *m, const hgf_auth_spec *spec,
                                const char *access_key_id)
{
    entry *e = m ? lookup(m, spec) : NULL;
    if (e && e->have && access_key_id && e->creds.access_key_id &&
        !strcmp(e->creds.access_key_id, access_key_id))
        hgf_credmgr_invalidate(m, spec);
}

void hgf_credmgr_invalidate_ecr_token(hgf_credmgr *m, const hgf_auth_spec *spec,
                                     const char *registry_id, const char *ecr_endpoint_url,
                                     const char *basic_token)
{
    char endpoint[512];
    hgf_buf key = HGF_BUF_INIT;
    hgf_err err;
    entry *e = NULL;
    if (m && basic_token &&
        !ecr_endpoint(spec, registry_id, ecr_endpoint_url, endpoint, sizeof endpoint, &err) &&
        !ecr_key(spec, registry_id, endpoint, &key))
        e = find_entry(m, hgf_buf_str(&key));
    hgf_buf_free(&key);
    if (e && e->have && e->token && !strcmp(e->token, basic_token)) {
        drop_value(e);
        e->retry_after = 0;
    }
}

void hgf_credmgr_get_stats(const hgf_credmgr *m, hgf_credmgr_stats *out)
{
    *out = m->stats;
}
