/* AWS call control: the retry policy (botocore's standard mode), the retry
 * quota, adaptive client-side rate limiting per key (botocore's adaptive
 * mode), and the process's clock-skew offset.
 *
 * One hgf_awsctl per process loop, owned by the runtime; every AWS client
 * borrows it. Configuration comes from the environment at creation:
 *   AWS_MAX_ATTEMPTS  1..20, default 3 (attempts, not retries)
 *   AWS_RETRY_MODE    standard (default) | adaptive | legacy (= standard)
 *
 * A client drives one logical call through an hgf_awsctl_call:
 *
 *   hgf_awsctl_call_new(ctl, "sts", "AssumeRole", key, go, cancel, arg, &c, err);
 *   if (hgf_awsctl_call_ready(c)) send_now();   // else go(arg) runs later
 *   ... in the response callback:
 *   if (hgf_awsctl_call_outcome(c, &outcome))   // 1: a retry is scheduled,
 *       return;                                  //    go(arg) runs later
 *   deliver(); hgf_awsctl_call_free(c);
 *
 * go(arg) must (re-)sign with hgf_awsctl_now() and send the request. It runs
 * from an ev_timer, never from inside the functions above; when it cannot
 * send, it delivers the failure itself and frees the call.
 *
 * Ownership: hgf_awsctl_new returns an object freed by hgf_awsctl_free;
 * hgf_awsctl_call_new returns a call freed by hgf_awsctl_call_free. Strings
 * passed in are copied. The metrics registry is borrowed and must outlive
 * the controller. Not thread-safe: use it from the loop thread. */
#ifndef HGF_AWSCTL_H
#define HGF_AWSCTL_H

#include <time.h>

#include "hgfleet/err.h"
#include "hgfleet/metrics.h"

struct ev_loop;

typedef struct hgf_awsctl hgf_awsctl;

/* ------------------------------------------------------------------ */
/* classification                                                      */

enum hgf_aws_class {
    HGF_AWS_OK = 0,           /* a 2xx response */
    HGF_AWS_RETRY_THROTTLE,   /* a throttling code or HTTP 429 */
    HGF_AWS_RETRY_TRANSIENT,  /* 500/502/503/504, RequestTimeout*, transport errors */
    HGF_AWS_RETRY_SKEW,       /* the signature's time was rejected: fix the clock, retry once */
    HGF_AWS_EXPIRED,          /* ExpiredToken(Exception): the caller refreshes credentials */
    HGF_AWS_FATAL,            /* anything else: access denied, validation, not found, ... */
};

/* Classifies one response. transport_error is the CURLcode (0 when a
 * response arrived). aws_code is the code from __type or the XML Code; NULL,
 * "" and the "HTTP<status>" placeholder of hgf_awsjson_parse_error mean
 * none. message matters only for InvalidSignatureException and
 * SignatureDoesNotMatch, which are skew errors only when it says the
 * signature expired (or is not yet current). Codes come first; then
 * 500/502/503/504 are transient whatever their code (ECR's ServerException)
 * and 429 is a throttle. Local curl failures (malformed URL, out of
 * memory, ...) and TLS trust failures (hgf_http_tls_hint) are fatal;
 * every other curl error is transient. */
int hgf_awsctl_classify(long status, int transport_error, const char *aws_code,
                        const char *message);

/* "throttle", "transient", "skew", "expired", "ok" or "fatal". */
const char *hgf_awsctl_class_name(int cls);

/* ------------------------------------------------------------------ */
/* the controller                                                      */

enum hgf_awsctl_mode { HGF_AWSCTL_STANDARD, HGF_AWSCTL_ADAPTIVE };

#define HGF_AWSCTL_DEFAULT_ATTEMPTS 3
#define HGF_AWSCTL_MAX_ATTEMPTS 20

typedef struct hgf_awsctl_config {
    int max_attempts;
    enum hgf_awsctl_mode mode;
} hgf_awsctl_config;

/* Parses the two settings (either may be NULL or "" for the default).
 * HGF_EINPUT with a message naming AWS_MAX_ATTEMPTS or AWS_RETRY_MODE. */
int hgf_awsctl_config_parse(const char *max_attempts, const char *mode, hgf_awsctl_config *out,
                            hgf_err *err);

/* Reads AWS_MAX_ATTEMPTS and AWS_RETRY_MODE. metrics may be NULL. */
hgf_awsctl *hgf_awsctl_new(struct ev_loop *loop, hgf_metrics *metrics, hgf_err *err);
/* Calls waiting for a backoff or a rate-limiter token are cancelled: their
 * cancel(arg) runs (no go, no user callback). Calls in flight are detached:
 * their outcome is final. Free it before the HTTP client the calls use. */
void hgf_awsctl_free(hgf_awsctl *ctl);

/* For a process about to close: every call waiting for a backoff or a
 * rate-limiter token is launched now (its go(arg) runs from inside this
 * call), and from now on no outcome is retried and nothing waits for a
 * token. Followed by hgf_http_cancel_all before the loop runs again, each
 * of those calls then ends through its client's callback, with the
 * cancellation error, rather than being dropped unheard by hgf_awsctl_free
 * (whose cancel hooks free only the client's own state, not what the
 * client's caller holds for the call). Not from inside a call's callback. */
void hgf_awsctl_flush(hgf_awsctl *ctl);

const hgf_awsctl_config *hgf_awsctl_get_config(const hgf_awsctl *ctl);

/* For tests: multiplies every backoff delay (not rate-limiter waits). */
void hgf_awsctl_set_delay_scale(hgf_awsctl *ctl, double scale);
/* For tests: a fixed jitter factor in [0, 1] instead of a random one;
 * negative restores the random factor. */
void hgf_awsctl_set_jitter(hgf_awsctl *ctl, double factor);

/* Available retry quota (for diagnostics and tests). */
int hgf_awsctl_quota_available(const hgf_awsctl *ctl);

/* Counts a retry made outside the call driver, e.g. reason "expired" after a
 * credential refresh, in hgfleet_aws_retries_total. */
void hgf_awsctl_count_retry(hgf_awsctl *ctl, const char *service, const char *op,
                            const char *reason);

/* ------------------------------------------------------------------ */
/* clock skew                                                          */

#define HGF_AWSCTL_SKEW_LIMIT 300  /* seconds */

/* Local time corrected by the learned offset: use it to sign. NULL = time(NULL). */
time_t hgf_awsctl_now(const hgf_awsctl *ctl);
long hgf_awsctl_offset(const hgf_awsctl *ctl);

/* Learns from a response's Date header (RFC 7231, parsed with curl_getdate).
 * The offset becomes server - local when is_skew_error, or when the server
 * differs from the corrected clock by HGF_AWSCTL_SKEW_LIMIT or more.
 * Returns 1 when the offset changed, 0 when not, HGF_EINPUT when the date
 * is missing or unparsable. Sets gauge hgfleet_clock_offset_seconds. */
int hgf_awsctl_observe_date(hgf_awsctl *ctl, const char *date, int is_skew_error);

/* The rule above as a pure function: the new offset. */
long hgf_awsctl_skew_offset(long offset, time_t server, time_t local, int is_skew_error);

/* ------------------------------------------------------------------ */
/* standard mode pieces (pure; exposed for tests and other clients)    */

#define HGF_AWSCTL_MAX_BACKOFF 20.0
#define HGF_AWSCTL_QUOTA_INITIAL 500
#define HGF_AWSCTL_RETRY_COST 5
#define HGF_AWSCTL_TIMEOUT_COST 10
#define HGF_AWSCTL_NO_RETRY_INCREMENT 1

/* Delay before the retry that follows attempt `attempt` (1-based):
 * jitter * min(2^(attempt-1), 20) seconds, jitter in [0, 1). */
double hgf_awsctl_backoff(int attempt, double jitter);

/* botocore's RetryQuota and RetryQuotaChecker. */
typedef struct hgf_awsctl_quota {
    int available, capacity;
} hgf_awsctl_quota;

void hgf_awsctl_quota_init(hgf_awsctl_quota *q, int capacity);
/* Takes the cost of one retry (10 after a timeout, else 5). Returns the
 * amount taken, or 0 when the quota cannot cover it (then do not retry). */
int hgf_awsctl_quota_acquire(hgf_awsctl_quota *q, int is_timeout);
/* After a successful call: gives back what its last retry took (held), or 1
 * when it was never retried (held == 0); never above capacity. */
void hgf_awsctl_quota_release(hgf_awsctl_quota *q, int held);

/* ------------------------------------------------------------------ */
/* adaptive mode pieces (pure; times are seconds on any steady clock)  */

#define HGF_AWSCTL_CUBIC_C 0.4
#define HGF_AWSCTL_CUBIC_BETA 0.7
#define HGF_AWSCTL_MIN_FILL_RATE 0.5
#define HGF_AWSCTL_RATE_BUCKET 0.5
#define HGF_AWSCTL_RATE_SMOOTHING 0.8

/* throttling.py's CubicCalculator. */
typedef struct hgf_awsctl_cubic {
    double w_max, k, last_fail;
} hgf_awsctl_cubic;

void hgf_awsctl_cubic_init(hgf_awsctl_cubic *c, double starting_max_rate, double now);
/* C * (now - last_fail - k)^3 + w_max */
double hgf_awsctl_cubic_success(const hgf_awsctl_cubic *c, double now);
/* Remembers rate as w_max; returns rate * beta. */
double hgf_awsctl_cubic_error(hgf_awsctl_cubic *c, double rate, double now);

/* bucket.py's TokenBucket (without the blocking). */
typedef struct hgf_awsctl_bucket {
    double fill_rate, max_capacity, capacity, last;
    int started;
} hgf_awsctl_bucket;

void hgf_awsctl_bucket_set_rate(hgf_awsctl_bucket *b, double rate, double now);
/* Takes one token and returns 0, or returns the seconds until one exists. */
double hgf_awsctl_bucket_acquire(hgf_awsctl_bucket *b, double now);

/* adaptive.py's RateClocker: the smoothed rate of responses. */
typedef struct hgf_awsctl_clocker {
    double rate, last_bucket;
    unsigned long count;
} hgf_awsctl_clocker;

void hgf_awsctl_clocker_init(hgf_awsctl_clocker *c, double now);
double hgf_awsctl_clocker_record(hgf_awsctl_clocker *c, double now);

/* adaptive.py's ClientRateLimiter for one key. */
typedef struct hgf_awsctl_limiter {
    int enabled;  /* after the first throttle */
    hgf_awsctl_cubic cubic;
    hgf_awsctl_bucket bucket;
    hgf_awsctl_clocker clocker;
} hgf_awsctl_limiter;

void hgf_awsctl_limiter_init(hgf_awsctl_limiter *l, double now);
/* After each response; returns the bucket's new max rate. */
double hgf_awsctl_limiter_update(hgf_awsctl_limiter *l, int throttled, double now);
/* Before each send: 0 when it may go (a token was taken, or not enabled),
 * else the seconds to wait before asking again. */
double hgf_awsctl_limiter_acquire(hgf_awsctl_limiter *l, double now);

/* The current max rate of a key's limiter; -1 when the key has none or
 * the limiter is not enabled yet. */
double hgf_awsctl_key_rate(const hgf_awsctl *ctl, const char *key);

/* ------------------------------------------------------------------ */
/* the call driver                                                     */

typedef struct hgf_awsctl_call hgf_awsctl_call;
typedef void (*hgf_awsctl_fn)(void *arg);

/* What one attempt produced. Pointers are borrowed for the call only. */
typedef struct hgf_awsctl_outcome {
    long status;
    int transport_error;   /* CURLcode; 0 when a response arrived */
    const char *aws_code;  /* NULL or "" when none */
    const char *message;   /* AWS's message, or NULL */
    const char *date;      /* the response Date header, or NULL */
} hgf_awsctl_outcome;

/* ctl may be NULL: one attempt, no skew handling, no metrics. rate_key
 * (NULL = "<service>/<op>") selects the adaptive limiter. go(arg) sends the
 * next attempt; cancel(arg) (may be NULL) lets the client free its state
 * when hgf_awsctl_free drops a waiting call. */
int hgf_awsctl_call_new(hgf_awsctl *ctl, const char *service, const char *op,
                        const char *rate_key, hgf_awsctl_fn go, hgf_awsctl_fn cancel, void *arg,
                        hgf_awsctl_call **out, hgf_err *err);
/* Removes it from the controller; stops its timers. NULL is fine. */
void hgf_awsctl_call_free(hgf_awsctl_call *c);

/* For the first attempt: 1 when it may be sent now (the caller sends it
 * at once), 0 when it waits for a token (go(arg) runs later). */
int hgf_awsctl_call_ready(hgf_awsctl_call *c);

/* Records an attempt (metrics, rate limiter, quota, clock) and decides.
 * Returns 1 when a retry is scheduled (go(arg) runs later), 0 when the
 * outcome is final: deliver it and free the call. */
int hgf_awsctl_call_outcome(hgf_awsctl_call *c, const hgf_awsctl_outcome *o);

int hgf_awsctl_call_attempts(const hgf_awsctl_call *c);   /* requests sent */
int hgf_awsctl_call_throttled(const hgf_awsctl_call *c);  /* throttles among them */
int hgf_awsctl_call_class(const hgf_awsctl_call *c);      /* the last outcome's class */

#endif
