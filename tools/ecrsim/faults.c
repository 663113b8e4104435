#include "faults.h"

#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hgfleet/timeutil.h"
#include "strmap.h"

#define MAX_QUOTAS 64
#define MAX_LATENCY_MS 60000
#define MAX_OFFSET_S (10LL * 366 * 86400)

typedef struct quota {
    char op[64];
    double rate;
} quota;

typedef struct config {
    double throttle_rate, error_rate, drop_rate;
    unsigned latency_ms;
    quota quotas[MAX_QUOTAS];
    size_t n_quotas;
} config;

typedef struct bucket {
    double tokens;
    double last;  /* monotonic seconds */
} bucket;

struct hgf_sim_faults {
    pthread_mutex_t lock;
    config cfg;
    hgf_sim_map *buckets;  /* "account|region|op" -> bucket */
    unsigned long long seed;
    atomic_ullong seq;
    atomic_ullong injected;
    atomic_llong offset;
};

int hgf_sim_faults_create(unsigned long long seed, hgf_sim_faults **out)
{
    hgf_sim_faults *f = calloc(1, sizeof *f);
    if (!f)
        return HGF_ENOMEM;
    f->buckets = hgf_sim_map_create();
    if (!f->buckets) {
        free(f);
        return HGF_ENOMEM;
    }
    pthread_mutex_init(&f->lock, NULL);
    f->seed = seed;
    atomic_init(&f->seq, 0);
    atomic_init(&f->injected, 0);
    atomic_init(&f->offset, 0);
    *out = f;
    return 0;
}

void hgf_sim_faults_free(hgf_sim_faults *f)
{
    if (!f)
        return;
    hgf_sim_map_free(f->buckets, free);
    pthread_mutex_destroy(&f->lock);
    free(f);
}

/* ---- configuration ----------------------------------------------------- */

static int get_rate(json_t *doc, const char *name, double *out, hgf_err *err)
{
    json_t *v = json_object_get(doc, name);
    if (!v)
        return 0;
    double p = json_is_number(v) ? json_number_value(v) : -1;
    if (p < 0 || p > 1)
        return hgf_err_set(err, HGF_EINPUT, "%s: expected a probability between 0 and 1", name);
    *out = p;
    return 0;
}

static int get_int(json_t *doc, const char *name, long long min, long long max, long long *out,
                   hgf_err *err)
{
    json_t *v = json_object_get(doc, name);
    if (!v)
        return 0;
    if (!json_is_integer(v) || json_integer_value(v) < min || json_integer_value(v) > max)
        return hgf_err_set(err, HGF_EINPUT, "%s: expected an integer in %lld..%lld", name, min,
                           max);
    *out = json_integer_value(v);
    return 0;
}

static int valid_op(const char *op)
{
    size_t n = strlen(op);
    return n > 0 && n < 64 &&
           strspn(op, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789") == n;
}

static int get_quotas(json_t *doc, config *c, hgf_err *err)
{
    json_t *v = json_object_get(doc, "quotas"), *rate;
    const char *op;
    if (!v)
        return 0;
    if (!json_is_object(v))
        return hgf_err_set(err, HGF_EINPUT, "quotas: expected an object like "
                                            "{\"DescribeImages\": 20}");
    if (json_object_size(v) > MAX_QUOTAS)
        return hgf_err_set(err, HGF_EINPUT, "quotas: at most %d operations", MAX_QUOTAS);
    c->n_quotas = 0;
    json_object_foreach(v, op, rate) {
        if (!valid_op(op))
            return hgf_err_set(err, HGF_EINPUT, "quotas: '%.64s' is not an operation name", op);
        double r = json_is_number(rate) ? json_number_value(rate) : 0;
        if (!(r > 0) || r > 1e9)
            return hgf_err_set(err, HGF_EINPUT,
                               "quotas.%s: expected requests per second above 0", op);
        quota *q = &c->quotas[c->n_quotas++];
        snprintf(q->op, sizeof q->op, "%s", op);
        q->rate = r;
    }
    return 0;
}

static int check_members(json_t *doc, hgf_err *err)
{
    static const char *const known[] = {"throttle_rate", "error_rate", "drop_rate",
                                        "latency_ms", "quotas", "clock_offset", NULL};
    const char *key;
    json_t *v;
    if (!json_is_object(doc))
        return hgf_err_set(err, HGF_EINPUT, "config: expected a JSON object");
    json_object_foreach(doc, key, v) {
        int ok = 0;
        for (size_t i = 0; known[i] && !ok; i++)
            ok = strcmp(key, known[i]) == 0;
        if (!ok)
            return hgf_err_set(err, HGF_EINPUT, "config: unknown member '%.64s'", key);
    }
    return 0;
}

int hgf_sim_faults_configure(hgf_sim_faults *f, json_t *doc, hgf_err *err)
{
    int rc = check_members(doc, err);
    if (rc)
        return rc;
    pthread_mutex_lock(&f->lock);
    config c = f->cfg;
    long long latency = c.latency_ms, offset = atomic_load(&f->offset);
    rc = get_rate(doc, "throttle_rate", &c.throttle_rate, err);
    if (!rc)
        rc = get_rate(doc, "error_rate", &c.error_rate, err);
    if (!rc)
        rc = get_rate(doc, "drop_rate", &c.drop_rate, err);
    if (!rc)
        rc = get_int(doc, "latency_ms", 0, MAX_LATENCY_MS, &latency, err);
    if (!rc)
        rc = get_int(doc, "clock_offset", -MAX_OFFSET_S, MAX_OFFSET_S, &offset, err);
    if (!rc)
        rc = get_quotas(doc, &c, err);
    if (!rc) {
        c.latency_ms = (unsigned)latency;
        f->cfg = c;
        atomic_store(&f->offset, offset);
    }
    pthread_mutex_unlock(&f->lock);
    return rc;
}

json_t *hgf_sim_faults_config_json(hgf_sim_faults *f)
{
    json_t *quotas = json_object();
    pthread_mutex_lock(&f->lock);
    config c = f->cfg;
    pthread_mutex_unlock(&f->lock);
    for (size_t i = 0; quotas && i < c.n_quotas; i++)
        json_object_set_new(quotas, c.quotas[i].op, json_real(c.quotas[i].rate));
    return json_pack("{s:f, s:f, s:f, s:i, s:o, s:I}", "throttle_rate", c.throttle_rate,
                     "error_rate", c.error_rate, "drop_rate", c.drop_rate, "latency_ms",
                     (int)c.latency_ms, "quotas", quotas, "clock_offset",
                     (json_int_t)atomic_load(&f->offset));
}

time_t hgf_sim_faults_now(hgf_sim_faults *f)
{
    return time(NULL) + (time_t)atomic_load(&f->offset);
}

int64_t hgf_sim_faults_now_ms(hgf_sim_faults *f)
{
    return hgf_time_now_ms() + (int64_t)atomic_load(&f->offset) * 1000;
}

/* ---- random faults ----------------------------------------------------- */

static uint64_t mix64(uint64_t z)
{
    z += 0x9e3779b97f4a7c15ULL;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

/* A uniform double in [0, 1) for draw k of call number seq. */
static double uniform(unsigned long long seed, unsigned long long seq, unsigned k)
{
    uint64_t bits = mix64(seed ^ mix64(seq * 4 + k + 0x5eedULL));
    return (double)(bits >> 11) * 0x1.0p-53;
}

void hgf_sim_faults_draw(hgf_sim_faults *f, hgf_sim_fault_draw *out)
{
    pthread_mutex_lock(&f->lock);
    double drop = f->cfg.drop_rate, error = f->cfg.error_rate, throttle = f->cfg.throttle_rate;
    out->latency_ms = f->cfg.latency_ms;
    pthread_mutex_unlock(&f->lock);
    /* Every call consumes the same three draws, so which call gets which
     * fault depends only on the seed and the order of the calls. */
    unsigned long long seq = atomic_fetch_add(&f->seq, 1);
    double u_drop = uniform(f->seed, seq, 0), u_error = uniform(f->seed, seq, 1),
           u_throttle = uniform(f->seed, seq, 2);
    out->fault = HGF_SIM_FAULT_NONE;
    if (u_drop < drop)
        out->fault = HGF_SIM_FAULT_DROP;
    else if (u_error < error)
        out->fault = atomic_fetch_add(&f->injected, 1) % 2 ? HGF_SIM_FAULT_503 : HGF_SIM_FAULT_500;
    else if (u_throttle < throttle)
        out->fault = HGF_SIM_FAULT_THROTTLE;
}

/* ---- quotas ------------------------------------------------------------ */

static double mono_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static double quota_of(const config *c, const char *op)
{
    for (size_t i = 0; i < c->n_quotas; i++)
        if (strcmp(c->quotas[i].op, op) == 0)
            return c->quotas[i].rate;
    return 0;
}

/* With the lock held. The burst is the rate, but at least one call, so a
 * quota below 1/s still lets calls through. A bucket that cannot be allocated admits the call:
 * running out of memory must not look like a throttle. */
static int take_token(hgf_sim_faults *f, const char *key, double rate)
{
    double now = mono_seconds(), burst = fmax(rate, 1);
    bucket *b = hgf_sim_map_get(f->buckets, key);
    if (!b) {
        b = malloc(sizeof *b);
        if (!b || hgf_sim_map_put(f->buckets, key, b) != 0) {
            free(b);
            return 1;
        }
        b->tokens = burst;
        b->last = now;
    }
    b->tokens = fmin(burst, b->tokens + (now - b->last) * rate);
    b->last = now;
    if (b->tokens < 1)
        return 0;
    b->tokens -= 1;
    return 1;
}

int hgf_sim_faults_admit(hgf_sim_faults *f, const char *account, const char *region,
                         const char *op)
{
    char key[256];
    snprintf(key, sizeof key, "%s|%s|%s", account, region, op);
    pthread_mutex_lock(&f->lock);
    double rate = quota_of(&f->cfg, op);
    int ok = rate > 0 ? take_token(f, key, rate) : 1;
    pthread_mutex_unlock(&f->lock);
    return ok;
}
