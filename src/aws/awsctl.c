#include "hgfleet/awsctl.h"
#include "hgfleet/http.h"
#include "hgfleet/log.h"

#include <curl/curl.h>
#include <ev.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ------------------------------------------------------------------ */
/* classification                                                      */

/* botocore's ThrottledRetryableChecker list (standard mode), a superset of
 * the throttling codes of _retry.json. */
static const char *const THROTTLE_CODES[] = {
    "Throttling",
    "ThrottlingException",
    "ThrottledException",
    "RequestThrottledException",
    "TooManyRequestsException",
    "ProvisionedThroughputExceededException",
    "TransactionInProgressException",
    "RequestLimitExceeded",
    "BandwidthLimitExceeded",
    "LimitExceededException",
    "RequestThrottled",
    "SlowDown",
    "PriorRequestNotComplete",
    "EC2ThrottledException",
    NULL,
};

/* IDPCommunicationError is botocore's special case for STS web identity. */
static const char *const TRANSIENT_CODES[] = {"RequestTimeout", "RequestTimeoutException",
                                              "IDPCommunicationError", NULL};

/* Skew errors whatever their message (the JS SDK's list). */
static const char *const SKEW_CODES[] = {"RequestTimeTooSkewed", "RequestExpired",
                                         "RequestInTheFuture", "AuthFailure", NULL};

/* Skew errors only when the message blames the signature's time. */
static const char *const SKEW_IF_EXPIRED_CODES[] = {"InvalidSignatureException",
                                                    "SignatureDoesNotMatch", NULL};

static const char *const EXPIRED_CODES[] = {"ExpiredTokenException", "ExpiredToken", NULL};

static int in_list(const char *code, const char *const *list)
{
    for (size_t i = 0; list[i]; i++)
        if (!strcmp(code, list[i]))
            return 1;
    return 0;
}

/* hgf_awsjson_parse_error writes "HTTP<status>" when the body had no code. */
static int is_placeholder(const char *code)
{
    if (strncmp(code, "HTTP", 4) || !code[4])
        return 0;
    return strspn(code + 4, "0123456789") == strlen(code + 4);
}

static int classify_transport(int transport_error)
{
    if (hgf_http_error_is_local(transport_error) || hgf_http_tls_hint(transport_error))
        return HGF_AWS_FATAL;
    return HGF_AWS_RETRY_TRANSIENT;
}

static int time_blamed(const char *message)
{
    return message && (strstr(message, "Signature expired") ||
                       strstr(message, "Signature not yet current"));
}

static int classify_code(const char *code, const char *message)
{
    if (in_list(code, EXPIRED_CODES))
        return HGF_AWS_EXPIRED;
    if (in_list(code, SKEW_CODES))
        return HGF_AWS_RETRY_SKEW;
    if (in_list(code, SKEW_IF_EXPIRED_CODES) && time_blamed(message))
        return HGF_AWS_RETRY_SKEW;
    if (in_list(code, THROTTLE_CODES))
        return HGF_AWS_RETRY_THROTTLE;
    if (in_list(code, TRANSIENT_CODES))
        return HGF_AWS_RETRY_TRANSIENT;
    return -1;
}

int hgf_awsctl_classify(long status, int transport_error, const char *aws_code,
                        const char *message)
{
    if (transport_error)
        return classify_transport(transport_error);
    if (status >= 200 && status < 300)
        return HGF_AWS_OK;
    if (aws_code && *aws_code && !is_placeholder(aws_code)) {
        int cls = classify_code(aws_code, message);
        if (cls >= 0)
            return cls;
    }
    if (status == 500 || status == 502 || status == 503 || status == 504)
        return HGF_AWS_RETRY_TRANSIENT;
    if (status == 429)
        return HGF_AWS_RETRY_THROTTLE;
    return HGF_AWS_FATAL;
}

const char *hgf_awsctl_class_name(int cls)
{
    static const char *const names[] = {"ok", "throttle", "transient", "skew", "expired", "fatal"};
    return cls >= 0 && cls <= HGF_AWS_FATAL ? names[cls] : "fatal";
}

/* ------------------------------------------------------------------ */
/* pure pieces                                                         */

double hgf_awsctl_backoff(int attempt, double jitter)
{
    double cap = attempt > 30 ? HGF_AWSCTL_MAX_BACKOFF : ldexp(1.0, attempt < 1 ? 0 : attempt - 1);
    return jitter * fmin(cap, HGF_AWSCTL_MAX_BACKOFF);
}

void hgf_awsctl_quota_init(hgf_awsctl_quota *q, int capacity)
{
    q->available = q->capacity = capacity;
}

int hgf_awsctl_quota_acquire(hgf_awsctl_quota *q, int is_timeout)
{
    int cost = is_timeout ? HGF_AWSCTL_TIMEOUT_COST : HGF_AWSCTL_RETRY_COST;
    if (cost > q->available)
        return 0;
    q->available -= cost;
    return cost;
}

void hgf_awsctl_quota_release(hgf_awsctl_quota *q, int held)
{
    int amount = held > 0 ? held : HGF_AWSCTL_NO_RETRY_INCREMENT;
    int room = q->capacity - q->available;
    q->available += amount < room ? amount : room;
}

void hgf_awsctl_cubic_init(hgf_awsctl_cubic *c, double starting_max_rate, double now)
{
    c->w_max = starting_max_rate;
    c->k = cbrt(c->w_max * (1 - HGF_AWSCTL_CUBIC_BETA) / HGF_AWSCTL_CUBIC_C);
    c->last_fail = now;
}

double hgf_awsctl_cubic_success(const hgf_awsctl_cubic *c, double now)
{
    double x = now - c->last_fail - c->k;
    return HGF_AWSCTL_CUBIC_C * x * x * x + c->w_max;
}

double hgf_awsctl_cubic_error(hgf_awsctl_cubic *c, double rate, double now)
{
    hgf_awsctl_cubic_init(c, rate, now);
    return rate * HGF_AWSCTL_CUBIC_BETA;
}

static void bucket_refill(hgf_awsctl_bucket *b, double now)
{
    if (!b->started) {
        b->started = 1;
        b->last = now;
        return;
    }
    b->capacity = fmin(b->max_capacity, b->capacity + (now - b->last) * b->fill_rate);
    b->last = now;
}

void hgf_awsctl_bucket_set_rate(hgf_awsctl_bucket *b, double rate, double now)
{
    /* Tokens earned so far accrue at the old rate, as in bucket.py. */
    bucket_refill(b, now);
    b->fill_rate = fmax(rate, HGF_AWSCTL_MIN_FILL_RATE);
    b->max_capacity = rate >= 1 ? rate : 1;
    b->capacity = fmin(b->capacity, b->max_capacity);
}

static double bucket_wait(hgf_awsctl_bucket *b, double now)
{
    bucket_refill(b, now);
    /* The timer fires when the token should exist; float error must not
     * turn that into another (tiny) wait. */
    if (b->capacity >= 1 - 1e-9)
        return 0;
    return (1 - b->capacity) / b->fill_rate;
}

double hgf_awsctl_bucket_acquire(hgf_awsctl_bucket *b, double now)
{
    double wait = bucket_wait(b, now);
    if (wait > 0)
        return wait;
    b->capacity = fmax(b->capacity - 1, 0);
    return 0;
}

void hgf_awsctl_clocker_init(hgf_awsctl_clocker *c, double now)
{
    c->rate = 0;
    c->count = 0;
    c->last_bucket = floor(now);  /* whole seconds, as adaptive.py starts */
}

double hgf_awsctl_clocker_record(hgf_awsctl_clocker *c, double now)
{
    double scale = 1 / HGF_AWSCTL_RATE_BUCKET;
    double bucket = floor(now * scale) / scale;
    c->count++;
    if (bucket > c->last_bucket) {
        double current = (double)c->count / (bucket - c->last_bucket);
        c->rate = current * HGF_AWSCTL_RATE_SMOOTHING + c->rate * (1 - HGF_AWSCTL_RATE_SMOOTHING);
        c->count = 0;
        c->last_bucket = bucket;
    }
    return c->rate;
}

void hgf_awsctl_limiter_init(hgf_awsctl_limiter *l, double now)
{
    memset(l, 0, sizeof *l);
    hgf_awsctl_cubic_init(&l->cubic, 0, now);
    hgf_awsctl_bucket_set_rate(&l->bucket, 1, now);
    hgf_awsctl_clocker_init(&l->clocker, now);
}

double hgf_awsctl_limiter_update(hgf_awsctl_limiter *l, int throttled, double now)
{
    double measured = hgf_awsctl_clocker_record(&l->clocker, now);
    double rate;
    if (!throttled) {
        rate = hgf_awsctl_cubic_success(&l->cubic, now);
    } else {
        double use = l->enabled ? fmin(measured, l->bucket.fill_rate) : measured;
        rate = hgf_awsctl_cubic_error(&l->cubic, use, now);
        l->enabled = 1;
    }
    rate = fmin(rate, 2.0 * measured);
    hgf_awsctl_bucket_set_rate(&l->bucket, rate, now);
    return l->bucket.fill_rate;
}

double hgf_awsctl_limiter_acquire(hgf_awsctl_limiter *l, double now)
{
    return l->enabled ? hgf_awsctl_bucket_acquire(&l->bucket, now) : 0;
}

long hgf_awsctl_skew_offset(long offset, time_t server, time_t local, int is_skew_error)
{
    long diff = (long)(server - local);
    if (is_skew_error || labs(diff - offset) >= HGF_AWSCTL_SKEW_LIMIT)
        return diff;
    return offset;
}

/* ------------------------------------------------------------------ */
/* configuration                                                       */

static int parse_attempts(const char *s, int *out, hgf_err *err)
{
    if (!s || !*s) {
        *out = HGF_AWSCTL_DEFAULT_ATTEMPTS;
        return 0;
    }
    char *end;
    long v = strtol(s, &end, 10);
    if (*s < '0' || *s > '9' || *end || v < 1 || v > HGF_AWSCTL_MAX_ATTEMPTS)
        return hgf_err_set(err, HGF_EINPUT,
                           "AWS_MAX_ATTEMPTS must be an integer from 1 to %d, got \"%.32s\"",
                           HGF_AWSCTL_MAX_ATTEMPTS, s);
    *out = (int)v;
    return 0;
}

static int parse_mode(const char *s, enum hgf_awsctl_mode *out, hgf_err *err)
{
    if (!s || !*s || !strcmp(s, "standard") || !strcmp(s, "legacy"))
        *out = HGF_AWSCTL_STANDARD;
    else if (!strcmp(s, "adaptive"))
        *out = HGF_AWSCTL_ADAPTIVE;
    else
        return hgf_err_set(err, HGF_EINPUT,
                           "AWS_RETRY_MODE must be standard, adaptive or legacy, got \"%.32s\"",
                           s);
    return 0;
}

int hgf_awsctl_config_parse(const char *max_attempts, const char *mode, hgf_awsctl_config *out,
                            hgf_err *err)
{
    int rc = parse_attempts(max_attempts, &out->max_attempts, err);
    return rc ? rc : parse_mode(mode, &out->mode, err);
}

/* ------------------------------------------------------------------ */
/* the controller                                                      */

enum call_state { ST_IDLE, ST_BACKOFF, ST_QUEUED };

typedef struct keystate {
    struct keystate *next;      /* hash chain */
    hgf_awsctl *ctl;
    hgf_awsctl_limiter lim;
    ev_timer timer;             /* active whenever the queue is not empty */
    hgf_awsctl_call *head, *tail;
    char key[];
} keystate;

struct hgf_awsctl_call {
    hgf_awsctl *ctl;            /* NULL: one attempt (or detached by hgf_awsctl_free) */
    hgf_awsctl_call *prev, *next;  /* the controller's live calls */
    hgf_awsctl_call *qnext;     /* the key's FIFO of waiters */
    keystate *ks;               /* adaptive mode only */
    hgf_awsctl_fn go, cancel;
    void *arg;
    enum call_state state;
    ev_timer timer;             /* backoff */
    int attempts, throttled, skew_retries, quota_held, cls;
    double started;
    char labels[256];           /* service="..",op=".." */
};

struct hgf_awsctl {
    struct ev_loop *loop;
    hgf_metrics *metrics;
    hgf_awsctl_config cfg;
    hgf_awsctl_quota quota;
    long offset;
    double delay_scale, jitter;
    uint64_t rng;
    keystate **keys;
    size_t nslots, nkeys;
    hgf_awsctl_call *calls;
    int flushed;                /* hgf_awsctl_flush: no more waits, every outcome final */
};

static double mono(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* xorshift64*: jitter needs spread, not secrecy. */
static double next_jitter(hgf_awsctl *ctl)
{
    if (ctl->jitter >= 0)
        return ctl->jitter;
    ctl->rng ^= ctl->rng >> 12;
    ctl->rng ^= ctl->rng << 25;
    ctl->rng ^= ctl->rng >> 27;
    return (double)((ctl->rng * 0x2545F4914F6CDD1DULL) >> 11) / 9007199254740992.0;
}

static void describe_metrics(hgf_metrics *m)
{
    hgf_metrics_describe(m, "hgfleet_aws_calls_total", HGF_METRIC_COUNTER,
                         "AWS API calls by final outcome (ok, an AWS error code, transport)");
    hgf_metrics_describe(m, "hgfleet_aws_retries_total", HGF_METRIC_COUNTER,
                         "AWS API retries by reason");
    hgf_metrics_describe(m, "hgfleet_aws_throttles_total", HGF_METRIC_COUNTER,
                         "AWS throttling responses");
    hgf_metrics_describe(m, "hgfleet_aws_call_seconds", HGF_METRIC_HISTOGRAM,
                         "AWS API call latency, retries included");
    hgf_metrics_describe(m, "hgfleet_clock_offset_seconds", HGF_METRIC_GAUGE,
                         "Seconds added to local time when signing (learned clock skew)");
    hgf_metrics_set(m, "hgfleet_clock_offset_seconds", "", 0);
}

hgf_awsctl *hgf_awsctl_new(struct ev_loop *loop, hgf_metrics *metrics, hgf_err *err)
{
    hgf_awsctl_config cfg;
    if (hgf_awsctl_config_parse(getenv("AWS_MAX_ATTEMPTS"), getenv("AWS_RETRY_MODE"), &cfg, err))
        return NULL;
    hgf_awsctl *ctl = calloc(1, sizeof *ctl);
    if (!ctl) {
        hgf_err_set(err, HGF_ENOMEM, "out of memory");
        return NULL;
    }
    ctl->loop = loop;
    ctl->metrics = metrics;
    ctl->cfg = cfg;
    ctl->delay_scale = 1;
    ctl->jitter = -1;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ctl->rng = ((uint64_t)ts.tv_nsec << 20) ^ (uint64_t)ts.tv_sec ^ ((uint64_t)getpid() << 40);
    ctl->rng |= 1;
    hgf_awsctl_quota_init(&ctl->quota, HGF_AWSCTL_QUOTA_INITIAL);
    if (metrics)
        describe_metrics(metrics);
    return ctl;
}

static void free_keys(hgf_awsctl *ctl)
{
    for (size_t i = 0; i < ctl->nslots; i++) {
        for (keystate *k = ctl->keys[i]; k;) {
            keystate *n = k->next;
            ev_timer_stop(ctl->loop, &k->timer);
            free(k);
            k = n;
        }
    }
    free(ctl->keys);
}

void hgf_awsctl_free(hgf_awsctl *ctl)
{
    if (!ctl)
        return;
    hgf_awsctl_call *list = ctl->calls;
    ctl->calls = NULL;
    /* Detach every call first: cancel hooks free calls, which must then no
     * longer touch the controller. */
    for (hgf_awsctl_call *c = list; c; c = c->next) {
        if (c->state == ST_BACKOFF)
            ev_timer_stop(ctl->loop, &c->timer);
        c->ctl = NULL;
        c->ks = NULL;
    }
    for (hgf_awsctl_call *c = list, *n; c; c = n) {
        n = c->next;
        int waiting = c->state != ST_IDLE;
        c->state = ST_IDLE;
        c->prev = c->next = c->qnext = NULL;
        if (waiting && c->cancel)
            c->cancel(c->arg);
    }
    free_keys(ctl);
    free(ctl);
}

const hgf_awsctl_config *hgf_awsctl_get_config(const hgf_awsctl *ctl)
{
    return &ctl->cfg;
}

void hgf_awsctl_set_delay_scale(hgf_awsctl *ctl, double scale)
{
    ctl->delay_scale = scale;
}

void hgf_awsctl_set_jitter(hgf_awsctl *ctl, double factor)
{
    ctl->jitter = factor > 1 ? 1 : factor;
}

int hgf_awsctl_quota_available(const hgf_awsctl *ctl)
{
    return ctl->quota.available;
}

static void labels_for(const char *service, const char *op, char *out, size_t n)
{
    char s[64], o[128];
    hgf_metrics_escape(service, s, sizeof s);
    hgf_metrics_escape(op, o, sizeof o);
    snprintf(out, n, "service=\"%s\",op=\"%s\"", s, o);
}

static void count_with(hgf_awsctl *ctl, const char *name, const char *labels, const char *extra,
                       const char *value)
{
    char v[160], all[512];
    hgf_metrics_escape(value, v, sizeof v);
    snprintf(all, sizeof all, "%s,%s=\"%s\"", labels, extra, v);
    hgf_metrics_inc(ctl->metrics, name, all, 1);
}

void hgf_awsctl_count_retry(hgf_awsctl *ctl, const char *service, const char *op,
                            const char *reason)
{
    if (!ctl || !ctl->metrics)
        return;
    char labels[256];
    labels_for(service, op, labels, sizeof labels);
    count_with(ctl, "hgfleet_aws_retries_total", labels, "reason", reason);
}

/* ------------------------------------------------------------------ */
/* clock                                                               */

time_t hgf_awsctl_now(const hgf_awsctl *ctl)
{
    return time(NULL) + (ctl ? ctl->offset : 0);
}

long hgf_awsctl_offset(const hgf_awsctl *ctl)
{
    return ctl ? ctl->offset : 0;
}

int hgf_awsctl_observe_date(hgf_awsctl *ctl, const char *date, int is_skew_error)
{
    time_t server = date ? curl_getdate(date, NULL) : -1;
    if (server < 0)
        return HGF_EINPUT;
    long n = hgf_awsctl_skew_offset(ctl->offset, server, time(NULL), is_skew_error);
    if (n == ctl->offset)
        return 0;
    hgf_log_warn("aws.clock_skew", "offset_seconds=%ld previous=%ld skew_error=%d", n,
                 ctl->offset, is_skew_error);
    ctl->offset = n;
    if (ctl->metrics)
        hgf_metrics_set(ctl->metrics, "hgfleet_clock_offset_seconds", "", (double)n);
    return 1;
}

/* ------------------------------------------------------------------ */
/* per-key limiters                                                    */

static uint64_t hash_key(const char *s)
{
    uint64_t h = 1469598103934665603ULL;  /* FNV-1a */
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ULL;
    return h;
}

static keystate *key_find(const hgf_awsctl *ctl, const char *key)
{
    if (!ctl->nslots)
        return NULL;
    for (keystate *k = ctl->keys[hash_key(key) % ctl->nslots]; k; k = k->next)
        if (!strcmp(k->key, key))
            return k;
    return NULL;
}

static int keys_grow(hgf_awsctl *ctl)
{
    size_t n = ctl->nslots ? ctl->nslots * 2 : 256;
    keystate **t = calloc(n, sizeof *t);
    if (!t)
        return HGF_ENOMEM;
    for (size_t i = 0; i < ctl->nslots; i++) {
        for (keystate *k = ctl->keys[i], *next; k; k = next) {
            next = k->next;
            size_t s = hash_key(k->key) % n;
            k->next = t[s];
            t[s] = k;
        }
    }
    free(ctl->keys);
    ctl->keys = t;
    ctl->nslots = n;
    return 0;
}

static void key_fire(struct ev_loop *loop, ev_timer *w, int revents);

/* Limiters live as long as the controller: one per (account, region, API)
 * is a bounded set. */
static keystate *key_get(hgf_awsctl *ctl, const char *key)
{
    keystate *k = key_find(ctl, key);
    if (k)
        return k;
    if (ctl->nkeys >= ctl->nslots && keys_grow(ctl))
        return NULL;
    size_t len = strlen(key);
    k = calloc(1, sizeof *k + len + 1);
    if (!k)
        return NULL;
    memcpy(k->key, key, len + 1);
    k->ctl = ctl;
    hgf_awsctl_limiter_init(&k->lim, mono());
    ev_timer_init(&k->timer, key_fire, 0., 0.);
    k->timer.data = k;
    size_t s = hash_key(key) % ctl->nslots;
    k->next = ctl->keys[s];
    ctl->keys[s] = k;
    ctl->nkeys++;
    return k;
}

double hgf_awsctl_key_rate(const hgf_awsctl *ctl, const char *key)
{
    const keystate *k = key_find(ctl, key);
    return k && k->lim.enabled ? k->lim.bucket.fill_rate : -1;
}

static void key_arm(keystate *k, double wait)
{
    ev_timer_stop(k->ctl->loop, &k->timer);
    ev_timer_set(&k->timer, wait > 0 ? wait : 0., 0.);
    ev_timer_start(k->ctl->loop, &k->timer);
}

static void launch(hgf_awsctl_call *c)
{
    c->state = ST_IDLE;
    c->attempts++;
    c->go(c->arg);
}

static void key_fire(struct ev_loop *loop, ev_timer *w, int revents)
{
    keystate *k = w->data;
    while (k->head) {
        double wait = hgf_awsctl_limiter_acquire(&k->lim, mono());
        if (wait > 0) {
            key_arm(k, wait);
            return;
        }
        hgf_awsctl_call *c = k->head;
        k->head = c->qnext;
        if (!k->head)
            k->tail = NULL;
        c->qnext = NULL;
        launch(c);
    }
}

/* The rate changed: the first waiter's token may come sooner or later. */
static void key_rearm(keystate *k)
{
    if (k->head)
        key_arm(k, bucket_wait(&k->lim.bucket, mono()));
}

static void key_unqueue(keystate *k, hgf_awsctl_call *c)
{
    hgf_awsctl_call **p = &k->head, *prev = NULL;
    while (*p && *p != c) {
        prev = *p;
        p = &(*p)->qnext;
    }
    if (!*p)
        return;
    *p = c->qnext;
    if (k->tail == c)
        k->tail = prev;
    if (!k->head)
        ev_timer_stop(k->ctl->loop, &k->timer);
}

/* ------------------------------------------------------------------ */
/* the call driver                                                     */

int hgf_awsctl_call_new(hgf_awsctl *ctl, const char *service, const char *op,
                        const char *rate_key, hgf_awsctl_fn go, hgf_awsctl_fn cancel, void *arg,
                        hgf_awsctl_call **out, hgf_err *err)
{
    hgf_awsctl_call *c = calloc(1, sizeof *c);
    if (!c)
        return hgf_err_set(err, HGF_ENOMEM, "out of memory");
    c->go = go;
    c->cancel = cancel;
    c->arg = arg;
    c->started = mono();
    labels_for(service, op, c->labels, sizeof c->labels);
    if (ctl && ctl->cfg.mode == HGF_AWSCTL_ADAPTIVE) {
        char key[512];
        if (!rate_key)
            snprintf(key, sizeof key, "%s/%s", service, op);
        c->ks = key_get(ctl, rate_key ? rate_key : key);
        if (!c->ks) {
            free(c);
            return hgf_err_set(err, HGF_ENOMEM, "out of memory");
        }
    }
    c->ctl = ctl;
    if (ctl) {
        c->next = ctl->calls;
        if (ctl->calls)
            ctl->calls->prev = c;
        ctl->calls = c;
    }
    *out = c;
    return 0;
}

void hgf_awsctl_call_free(hgf_awsctl_call *c)
{
    if (!c)
        return;
    hgf_awsctl *ctl = c->ctl;
    if (ctl) {
        if (c->state == ST_BACKOFF)
            ev_timer_stop(ctl->loop, &c->timer);
        if (c->state == ST_QUEUED && c->ks)
            key_unqueue(c->ks, c);
        if (c->prev)
            c->prev->next = c->next;
        else
            ctl->calls = c->next;
        if (c->next)
            c->next->prev = c->prev;
    }
    free(c);
}

/* 1: the attempt may go now; 0: it waits in its key's FIFO. */
static int gate(hgf_awsctl_call *c)
{
    keystate *k = c->ks;
    if (!c->ctl || !k || c->ctl->flushed)
        return 1;
    if (!k->head) {
        double wait = hgf_awsctl_limiter_acquire(&k->lim, mono());
        if (wait <= 0)
            return 1;
        key_arm(k, wait);
    }
    c->state = ST_QUEUED;
    if (k->tail)
        k->tail->qnext = c;
    else
        k->head = c;
    k->tail = c;
    return 0;
}

int hgf_awsctl_call_ready(hgf_awsctl_call *c)
{
    if (!gate(c))
        return 0;
    c->attempts++;
    return 1;
}

static void backoff_fire(struct ev_loop *loop, ev_timer *w, int revents)
{
    hgf_awsctl_call *c = w->data;
    c->state = ST_IDLE;
    if (gate(c))
        launch(c);
}

static void schedule(hgf_awsctl_call *c, double delay)
{
    c->state = ST_BACKOFF;
    ev_timer_init(&c->timer, backoff_fire, delay, 0.);
    c->timer.data = c;
    ev_timer_start(c->ctl->loop, &c->timer);
}

/* The retry reason, or NULL when the outcome is final. */
static const char *decide(hgf_awsctl_call *c, const hgf_awsctl_outcome *o, double *delay)
{
    hgf_awsctl *ctl = c->ctl;
    *delay = 0;
    if (ctl->flushed)
        return NULL;
    if (c->cls == HGF_AWS_RETRY_SKEW) {
        /* Outside the attempt budget and the quota, and only once: a second
         * skew error means the clock is not the problem. */
        if (c->skew_retries)
            return NULL;
        c->skew_retries++;
        return "skew";
    }
    if (c->cls != HGF_AWS_RETRY_THROTTLE && c->cls != HGF_AWS_RETRY_TRANSIENT)
        return NULL;
    int counted = c->attempts - c->skew_retries;
    if (counted >= ctl->cfg.max_attempts)
        return NULL;
    int cost = hgf_awsctl_quota_acquire(&ctl->quota,
                                        o->transport_error == CURLE_OPERATION_TIMEDOUT);
    if (!cost) {
        hgf_log_debug("aws.retry_quota", "%s exhausted=1", c->labels);
        return NULL;
    }
    c->quota_held = cost;
    *delay = hgf_awsctl_backoff(counted, next_jitter(ctl)) * ctl->delay_scale;
    return c->cls == HGF_AWS_RETRY_THROTTLE ? "throttle" : "transient";
}

static void count_final(hgf_awsctl_call *c, const hgf_awsctl_outcome *o)
{
    hgf_awsctl *ctl = c->ctl;
    char placeholder[32];
    const char *outcome = o->aws_code;
    if (o->transport_error)
        outcome = "transport";
    else if (c->cls == HGF_AWS_OK)
        outcome = "ok";
    else if (!outcome || !*outcome) {
        snprintf(placeholder, sizeof placeholder, "HTTP%ld", o->status);
        outcome = placeholder;
    }
    count_with(ctl, "hgfleet_aws_calls_total", c->labels, "outcome", outcome);
    hgf_metrics_observe(ctl->metrics, "hgfleet_aws_call_seconds", c->labels,
                        mono() - c->started);
}

static void observe(hgf_awsctl_call *c, const hgf_awsctl_outcome *o)
{
    hgf_awsctl *ctl = c->ctl;
    if (o->date)
        hgf_awsctl_observe_date(ctl, o->date, c->cls == HGF_AWS_RETRY_SKEW);
    if (c->ks) {
        hgf_awsctl_limiter_update(&c->ks->lim, c->cls == HGF_AWS_RETRY_THROTTLE, mono());
        key_rearm(c->ks);
    }
    if (ctl->metrics && c->cls == HGF_AWS_RETRY_THROTTLE)
        hgf_metrics_inc(ctl->metrics, "hgfleet_aws_throttles_total", c->labels, 1);
}

int hgf_awsctl_call_outcome(hgf_awsctl_call *c, const hgf_awsctl_outcome *o)
{
    c->cls = hgf_awsctl_classify(o->status, o->transport_error, o->aws_code, o->message);
    if (c->cls == HGF_AWS_RETRY_THROTTLE)
        c->throttled++;
    hgf_awsctl *ctl = c->ctl;
    if (!ctl)
        return 0;
    observe(c, o);
    double delay;
    const char *reason = decide(c, o, &delay);
    if (reason) {
        hgf_log_debug("aws.retry", "%s reason=%s attempt=%d delay=%.3f", c->labels, reason,
                      c->attempts, delay);
        if (ctl->metrics)
            count_with(ctl, "hgfleet_aws_retries_total", c->labels, "reason", reason);
        schedule(c, delay);
        return 1;
    }
    if (c->cls == HGF_AWS_OK)
        hgf_awsctl_quota_release(&ctl->quota, c->quota_held);
    if (ctl->metrics)
        count_final(c, o);
    return 0;
}

static hgf_awsctl_call *first_waiting(const hgf_awsctl *ctl)
{
    for (hgf_awsctl_call *c = ctl->calls; c; c = c->next)
        if (c->state != ST_IDLE)
            return c;
    return NULL;
}

void hgf_awsctl_flush(hgf_awsctl *ctl)
{
    if (!ctl)
        return;
    ctl->flushed = 1;
    /* go may end its call, or others, and start new ones (which no longer
     * wait): the list is read afresh after each. */
    hgf_awsctl_call *c;
    while ((c = first_waiting(ctl))) {
        if (c->state == ST_BACKOFF)
            ev_timer_stop(ctl->loop, &c->timer);
        else if (c->ks)
            key_unqueue(c->ks, c);
        c->qnext = NULL;
        launch(c);
    }
}

int hgf_awsctl_call_attempts(const hgf_awsctl_call *c)
{
    return c->attempts;
}

int hgf_awsctl_call_throttled(const hgf_awsctl_call *c)
{
    return c->throttled;
}

int hgf_awsctl_call_class(const hgf_awsctl_call *c)
{
    return c->cls;
}
