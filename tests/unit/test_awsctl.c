/* The AWS call controller's logic: classification, backoff, the retry quota,
 * the adaptive limiter's CUBIC arithmetic, clock-skew rules, configuration,
 * and the call driver on a real libev loop with scripted outcomes.
 *
 * Expected adaptive-mode numbers were computed with botocore's formulas
 * (retries/throttling.py, bucket.py, adaptive.py), transcribed in the
 * comments next to them. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <curl/curl.h>
#include <ev.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "hgfleet/awsctl.h"
#include "hgfleet/http.h"
#include "hgfleet/metrics.h"

static void near(double got, double want, int line)
{
    if (fabs(got - want) > 1e-9 * fmax(1.0, fabs(want)))
        fail_msg("line %d: got %.17g, want %.17g", line, got, want);
}
#define NEAR(a, b) near((a), (b), __LINE__)

/* ------------------------------------------------------------------ */
/* classification                                                      */

struct policy_count {
    int codes, statuses;
};

/* Legacy-mode policies that botocore's standard mode does not carry over:
 * S3's Content-MD5 check, DynamoDB's write conflict, and a bare 509. */
static int legacy_only(const char *code, long status)
{
    if (code)
        return !strcmp(code, "BadDigest") || !strcmp(code, "ReplicatedWriteConflictException");
    return status == 509;
}

static void check_policy(json_t *response, struct policy_count *n)
{
    const char *code = json_string_value(json_object_get(response, "service_error_code"));
    json_t *st = json_object_get(response, "http_status_code");
    long status = st ? (long)json_integer_value(st) : 400;
    if ((!code && !st) || legacy_only(code, status))
        return;  /* DynamoDB's CRC32 check names neither */
    int cls = hgf_awsctl_classify(status, 0, code, "message");
    if (cls != HGF_AWS_RETRY_THROTTLE && cls != HGF_AWS_RETRY_TRANSIENT)
        fail_msg("%s (HTTP %ld) is not retryable: %s", code ? code : "(no code)", status,
                 hgf_awsctl_class_name(cls));
    if (code)
        n->codes++;
    else
        n->statuses++;
}

static void walk_policies(json_t *v, struct policy_count *n)
{
    if (json_is_object(v)) {
        const char *k;
        json_t *child;
        json_object_foreach(v, k, child)
        {
            if (!strcmp(k, "response") && json_is_object(child))
                check_policy(child, n);
            else
                walk_policies(child, n);
        }
    } else if (json_is_array(v)) {
        size_t i;
        json_t *child;
        json_array_foreach(v, i, child) walk_policies(child, n);
    }
}

static void test_classify_retry_json(void **state)
{
    json_error_t je;
    json_t *j = json_load_file(HGF_SHARED_DIR "/reference/aws-models/_retry.json", 0, &je);
    if (!j)
        fail_msg("_retry.json: %s", je.text);
    struct policy_count n = {0, 0};
    walk_policies(j, &n);
    json_decref(j);
    assert_true(n.codes >= 15);   /* the file names 19 codes, 2 legacy-only */
    assert_true(n.statuses >= 5); /* 429, 500, 502, 503, 504 */
}

static void test_classify_standard_lists(void **state)
{
    static const char *const throttles[] = {
        "Throttling", "ThrottlingException", "ThrottledException", "RequestThrottledException",
        "TooManyRequestsException", "ProvisionedThroughputExceededException",
        "TransactionInProgressException", "RequestLimitExceeded", "BandwidthLimitExceeded",
        "LimitExceededException", "RequestThrottled", "SlowDown", "PriorRequestNotComplete",
        "EC2ThrottledException"};
    for (size_t i = 0; i < sizeof throttles / sizeof throttles[0]; i++) {
        assert_int_equal(hgf_awsctl_classify(400, 0, throttles[i], "x"), HGF_AWS_RETRY_THROTTLE);
        /* The code wins over a transient status (EC2 throttles with 503). */
        assert_int_equal(hgf_awsctl_classify(503, 0, throttles[i], "x"), HGF_AWS_RETRY_THROTTLE);
    }
    assert_int_equal(hgf_awsctl_classify(400, 0, "RequestTimeout", NULL), HGF_AWS_RETRY_TRANSIENT);
    assert_int_equal(hgf_awsctl_classify(408, 0, "RequestTimeoutException", NULL),
                     HGF_AWS_RETRY_TRANSIENT);
}

static void test_classify_status_and_transport(void **state)
{
    long transient[] = {500, 502, 503, 504};
    for (size_t i = 0; i < 4; i++) {
        assert_int_equal(hgf_awsctl_classify(transient[i], 0, NULL, NULL), HGF_AWS_RETRY_TRANSIENT);
        assert_int_equal(hgf_awsctl_classify(transient[i], 0, "", NULL), HGF_AWS_RETRY_TRANSIENT);
    }
    /* hgf_awsjson_parse_error's placeholder counts as no code. */
    assert_int_equal(hgf_awsctl_classify(503, 0, "HTTP503", NULL), HGF_AWS_RETRY_TRANSIENT);
    assert_int_equal(hgf_awsctl_classify(429, 0, NULL, NULL), HGF_AWS_RETRY_THROTTLE);
    assert_int_equal(hgf_awsctl_classify(429, 0, "HTTP429", NULL), HGF_AWS_RETRY_THROTTLE);
    assert_int_equal(hgf_awsctl_classify(500, 0, "ServerException", "boom"),
                     HGF_AWS_RETRY_TRANSIENT);
    assert_int_equal(hgf_awsctl_classify(501, 0, NULL, NULL), HGF_AWS_FATAL);
    assert_int_equal(hgf_awsctl_classify(400, 0, NULL, NULL), HGF_AWS_FATAL);
    assert_int_equal(hgf_awsctl_classify(200, 0, NULL, NULL), HGF_AWS_OK);
    assert_int_equal(hgf_awsctl_classify(204, 0, NULL, NULL), HGF_AWS_OK);
    int retryable[] = {CURLE_COULDNT_CONNECT, CURLE_OPERATION_TIMEDOUT, CURLE_GOT_NOTHING,
                       CURLE_RECV_ERROR, CURLE_SEND_ERROR, CURLE_COULDNT_RESOLVE_HOST};
    for (size_t i = 0; i < sizeof retryable / sizeof retryable[0]; i++)
        assert_int_equal(hgf_awsctl_classify(0, retryable[i], NULL, NULL),
                         HGF_AWS_RETRY_TRANSIENT);
    assert_int_equal(hgf_awsctl_classify(0, CURLE_URL_MALFORMAT, NULL, NULL), HGF_AWS_FATAL);
    assert_int_equal(hgf_awsctl_classify(0, CURLE_OUT_OF_MEMORY, NULL, NULL), HGF_AWS_FATAL);
}

/* A refused certificate (or unusable trust material) is a configuration
 * error: every attempt would meet it again, so it is fatal, and its hint
 * names AWS_CA_BUNDLE. A handshake cut short (SSL_CONNECT_ERROR, a reset)
 * is no verdict on the certificate and stays transient. */
static void test_classify_tls_trust(void **state)
{
    int trust[] = {CURLE_PEER_FAILED_VERIFICATION, CURLE_SSL_ISSUER_ERROR,
                   CURLE_SSL_PINNEDPUBKEYNOTMATCH, CURLE_SSL_INVALIDCERTSTATUS,
                   CURLE_SSL_CACERT_BADFILE,       CURLE_SSL_CRL_BADFILE,
                   CURLE_SSL_CERTPROBLEM};
    for (size_t i = 0; i < sizeof trust / sizeof trust[0]; i++) {
        if (hgf_awsctl_classify(0, trust[i], NULL, NULL) != HGF_AWS_FATAL)
            fail_msg("CURLcode %d (%s) is retried", trust[i], curl_easy_strerror(trust[i]));
        const char *hint = hgf_http_tls_hint(trust[i]);
        assert_non_null(hint);
        assert_non_null(strstr(hint, "AWS_CA_BUNDLE"));
    }
    int other[] = {CURLE_SSL_CONNECT_ERROR, CURLE_COULDNT_CONNECT, CURLE_RECV_ERROR,
                   CURLE_OPERATION_TIMEDOUT, CURLE_URL_MALFORMAT, CURLE_OK};
    for (size_t i = 0; i < sizeof other / sizeof other[0]; i++)
        assert_null(hgf_http_tls_hint(other[i]));
    assert_int_equal(hgf_awsctl_classify(0, CURLE_SSL_CONNECT_ERROR, NULL, NULL),
                     HGF_AWS_RETRY_TRANSIENT);
}

static void test_classify_fatal_expired_skew(void **state)
{
    static const char *const fatal[] = {"AccessDeniedException", "AccessDenied",
                                        "ValidationException", "RepositoryNotFoundException",
                                        "UnrecognizedClientException", "InvalidParameterException"};
    for (size_t i = 0; i < sizeof fatal / sizeof fatal[0]; i++)
        assert_int_equal(hgf_awsctl_classify(400, 0, fatal[i], "no"), HGF_AWS_FATAL);
    assert_int_equal(hgf_awsctl_classify(403, 0, "AccessDeniedException", NULL), HGF_AWS_FATAL);
    assert_int_equal(hgf_awsctl_classify(400, 0, "ExpiredTokenException", "expired"),
                     HGF_AWS_EXPIRED);
    assert_int_equal(hgf_awsctl_classify(403, 0, "ExpiredToken", NULL), HGF_AWS_EXPIRED);
    static const char *const skew[] = {"RequestTimeTooSkewed", "RequestExpired",
                                       "RequestInTheFuture", "AuthFailure"};
    for (size_t i = 0; i < 4; i++)
        assert_int_equal(hgf_awsctl_classify(403, 0, skew[i], NULL), HGF_AWS_RETRY_SKEW);
    const char *expired = "DescribeImages: InvalidSignatureException: Signature expired: "
                          "20261130T031500Z is now earlier than 20261130T033000Z "
                          "(20261130T033500Z - 5 min.)";
    assert_int_equal(hgf_awsctl_classify(403, 0, "InvalidSignatureException", expired),
                     HGF_AWS_RETRY_SKEW);
    assert_int_equal(hgf_awsctl_classify(403, 0, "InvalidSignatureException",
                                         "Signature not yet current: 20261130T040000Z is still "
                                         "later than 20261130T034000Z"),
                     HGF_AWS_RETRY_SKEW);
    assert_int_equal(hgf_awsctl_classify(403, 0, "InvalidSignatureException",
                                         "The request signature we calculated does not match "
                                         "the signature you provided."),
                     HGF_AWS_FATAL);
    assert_int_equal(hgf_awsctl_classify(403, 0, "InvalidSignatureException", NULL),
                     HGF_AWS_FATAL);
    assert_int_equal(hgf_awsctl_classify(403, 0, "SignatureDoesNotMatch",
                                         "Signature expired: 20130524T000000Z is now earlier"),
                     HGF_AWS_RETRY_SKEW);
    assert_int_equal(hgf_awsctl_classify(403, 0, "SignatureDoesNotMatch", "does not match"),
                     HGF_AWS_FATAL);
}

/* ------------------------------------------------------------------ */
/* backoff and quota                                                   */

static void test_backoff_bounds(void **state)
{
    for (int n = 1; n <= 10; n++) {
        double cap = fmin(pow(2, n - 1), 20);
        assert_true(hgf_awsctl_backoff(n, 0) == 0);
        NEAR(hgf_awsctl_backoff(n, 1), cap);
        NEAR(hgf_awsctl_backoff(n, 0.5), cap / 2);
        assert_true(hgf_awsctl_backoff(n, 0.999999) < cap);
        assert_true(hgf_awsctl_backoff(n, 0.999999) <= 20);
    }
    NEAR(hgf_awsctl_backoff(1, 1), 1);
    NEAR(hgf_awsctl_backoff(5, 1), 16);
    NEAR(hgf_awsctl_backoff(6, 1), 20);  /* 32 capped */
    NEAR(hgf_awsctl_backoff(100, 1), 20);
}

static void test_quota_sequence(void **state)
{
    hgf_awsctl_quota q;
    hgf_awsctl_quota_init(&q, HGF_AWSCTL_QUOTA_INITIAL);
    /* botocore: retry 5 -> 495, timeout retry 10 -> 485, success after a
     * retry gives back the last acquisition (10) -> 495, a success without
     * retry gives back 1 -> 496, ... never above 500. */
    assert_int_equal(hgf_awsctl_quota_acquire(&q, 0), 5);
    assert_int_equal(q.available, 495);
    assert_int_equal(hgf_awsctl_quota_acquire(&q, 1), 10);
    assert_int_equal(q.available, 485);
    hgf_awsctl_quota_release(&q, 10);
    assert_int_equal(q.available, 495);
    hgf_awsctl_quota_release(&q, 0);
    assert_int_equal(q.available, 496);
    for (int i = 0; i < 10; i++)
        hgf_awsctl_quota_release(&q, 0);
    assert_int_equal(q.available, 500);

    /* Drain: exactly 100 retries of 5 fit in 500. */
    int n = 0;
    while (hgf_awsctl_quota_acquire(&q, 0))
        n++;
    assert_int_equal(n, 100);
    assert_int_equal(q.available, 0);
    hgf_awsctl_quota_release(&q, 0);
    hgf_awsctl_quota_release(&q, 0);
    hgf_awsctl_quota_release(&q, 0);
    assert_int_equal(q.available, 3);
    assert_int_equal(hgf_awsctl_quota_acquire(&q, 0), 0);  /* 5 > 3: no retry */
    assert_int_equal(q.available, 3);
    hgf_awsctl_quota_release(&q, 5);
    assert_int_equal(hgf_awsctl_quota_acquire(&q, 1), 0);  /* 10 > 8 */
    assert_int_equal(hgf_awsctl_quota_acquire(&q, 0), 5);
    assert_int_equal(q.available, 3);
}

/* ------------------------------------------------------------------ */
/* adaptive mode                                                       */

static void test_cubic(void **state)
{
    hgf_awsctl_cubic c;
    hgf_awsctl_cubic_init(&c, 10, 0);
    /* k = ((10 * (1 - 0.7)) / 0.4) ** (1/3) */
    NEAR(c.k, 1.9574338205844317);
    /* 0.4 * (t - 0 - k) ** 3 + 10 */
    NEAR(hgf_awsctl_cubic_success(&c, 1.0), 9.64893600966);
    NEAR(hgf_awsctl_cubic_success(&c, 3.0), 10.453284520772092);
    /* error_received(20, 5): w_max = 20, k = (20 * 0.3 / 0.4) ** (1/3), 20 * 0.7 */
    NEAR(hgf_awsctl_cubic_error(&c, 20, 5.0), 14.0);
    NEAR(c.k, 2.4662120743304703);
    NEAR(hgf_awsctl_cubic_success(&c, 5.0 + c.k), 20.0);
    NEAR(hgf_awsctl_cubic_success(&c, 6.0), 18.739187905491516);
    NEAR(hgf_awsctl_cubic_success(&c, 9.0), 21.443297751607293);
}

static void test_token_bucket(void **state)
{
    hgf_awsctl_bucket b = {0};
    hgf_awsctl_bucket_set_rate(&b, 2, 0.0);
    /* TokenBucket(max_rate=2) starts empty: (1 - 0) / 2 */
    NEAR(hgf_awsctl_bucket_acquire(&b, 0.0), 0.5);
    NEAR(hgf_awsctl_bucket_acquire(&b, 0.5), 0);
    NEAR(b.capacity, 0);
    NEAR(hgf_awsctl_bucket_acquire(&b, 0.6), 0.4);  /* 0.2 tokens: (1 - 0.2) / 2 */
    NEAR(hgf_awsctl_bucket_acquire(&b, 1.0), 0);
    /* After a long pause the bucket holds max_capacity (2) tokens, no more. */
    NEAR(hgf_awsctl_bucket_acquire(&b, 3.0), 0);
    NEAR(hgf_awsctl_bucket_acquire(&b, 3.0), 0);
    NEAR(hgf_awsctl_bucket_acquire(&b, 3.0), 0.5);
    /* A rate below 0.5/s fills at 0.5/s, with room for one token. */
    hgf_awsctl_bucket_set_rate(&b, 0.1, 3.0);
    NEAR(b.fill_rate, 0.5);
    NEAR(b.max_capacity, 1);
    NEAR(hgf_awsctl_bucket_acquire(&b, 3.0), 2.0);
}

struct limiter_point {
    int hundredths;  /* the time, in 1/100 s */
    double fill_rate, measured;
};

/* Responses every 0.1 s from t=100.05 to 102.95, a throttle at 103.05, then
 * successes every 0.1 s to 106.95. Values from botocore's ClientRateLimiter
 * driven by a fake clock with the same events. */
static const struct limiter_point LIMITER_EXPECTED[] = {
    {10005, 0.5, 0},
    {10045, 0.5, 0},
    {10055, 0.5, 9.600000000000001},
    {10105, 0.5, 9.92},
    {10295, 10.26895000000003, 9.99936},
    {10305, 6.999910399999999, 9.999872}, /* the throttle: 0.7 * measured */
    {10315, 7.43660303029753, 9.999872},
    {10355, 8.76159143896799, 9.9999744},
    {10405, 9.648817196637282, 9.99999488},
    {10505, 9.999902868079774, 9.999999795199999},
    {10605, 10.453167414327474, 9.999999991808},
    {10695, 12.932068443908882, 9.999999998361599},
};

static void test_limiter_sequence(void **state)
{
    hgf_awsctl_limiter l;
    hgf_awsctl_limiter_init(&l, 100.0);
    size_t next = 0, n = sizeof LIMITER_EXPECTED / sizeof LIMITER_EXPECTED[0];
    double before = 0, after = 0;
    for (int h = 10005; h <= 10695; h += 10) {
        double t = h / 100.0;
        int throttled = h == 10305;
        assert_true(hgf_awsctl_limiter_acquire(&l, t) == 0 || l.enabled);
        double rate = hgf_awsctl_limiter_update(&l, throttled, t);
        if (h == 10295)
            before = rate;
        if (throttled)
            after = rate;
        if (next < n && LIMITER_EXPECTED[next].hundredths == h) {
            NEAR(rate, LIMITER_EXPECTED[next].fill_rate);
            NEAR(l.clocker.rate, LIMITER_EXPECTED[next].measured);
            next++;
        }
        assert_int_equal(l.enabled, h >= 10305);
    }
    assert_int_equal(next, n);
    /* cubic parameters after the throttle: w_max = measured, last_fail = t */
    NEAR(l.cubic.w_max, 9.999872);
    NEAR(l.cubic.k, 1.957425468831163);
    NEAR(l.cubic.last_fail, 103.05);
    /* The rate dropped with the throttle and grew past its old value. */
    assert_true(after < 0.71 * before);
    assert_true(l.bucket.fill_rate > before);
}

static void test_limiter_waits_when_enabled(void **state)
{
    hgf_awsctl_limiter l;
    hgf_awsctl_limiter_init(&l, 0.0);
    for (int i = 0; i < 50; i++)
        assert_true(hgf_awsctl_limiter_acquire(&l, 0.01 * i) == 0);  /* not enabled */
    /* A throttle with nothing measured yet: the floor of 0.5/s. */
    assert_true(hgf_awsctl_limiter_update(&l, 1, 0.2) == HGF_AWSCTL_MIN_FILL_RATE);
    assert_int_equal(l.enabled, 1);
    double wait = hgf_awsctl_limiter_acquire(&l, 0.2);
    assert_true(wait > 0 && wait <= 2.0);
    NEAR(hgf_awsctl_limiter_acquire(&l, 0.2 + wait), 0);
}

/* ------------------------------------------------------------------ */
/* clock skew                                                          */

static void test_skew_offset_rules(void **state)
{
    time_t now = 1700000000;
    assert_int_equal(hgf_awsctl_skew_offset(0, now + 1200, now, 0), 1200);
    assert_int_equal(hgf_awsctl_skew_offset(0, now + 299, now, 0), 0);
    assert_int_equal(hgf_awsctl_skew_offset(0, now + 300, now, 0), 300);
    assert_int_equal(hgf_awsctl_skew_offset(0, now - 300, now, 0), -300);
    assert_int_equal(hgf_awsctl_skew_offset(0, now - 299, now, 0), 0);
    /* A skew error takes the server's word however small the difference. */
    assert_int_equal(hgf_awsctl_skew_offset(0, now + 10, now, 1), 10);
    /* Compared with the corrected clock: a learned offset is kept... */
    assert_int_equal(hgf_awsctl_skew_offset(1200, now + 1200, now, 0), 1200);
    assert_int_equal(hgf_awsctl_skew_offset(1200, now + 1100, now, 0), 1200);
    /* ...until the local clock is fixed, which resets it. */
    assert_int_equal(hgf_awsctl_skew_offset(1200, now, now, 0), 0);
}

static void http_date(time_t t, char *out, size_t n)
{
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(out, n, "%a, %d %b %Y %H:%M:%S GMT", &tm);
}

static void test_observe_date(void **state)
{
    hgf_metrics *m = hgf_metrics_new();
    hgf_err err;
    unsetenv("AWS_MAX_ATTEMPTS");
    unsetenv("AWS_RETRY_MODE");
    hgf_awsctl *ctl = hgf_awsctl_new(EV_DEFAULT, m, &err);
    assert_non_null(ctl);
    char d[64];
    http_date(time(NULL) + 100, d, sizeof d);
    assert_int_equal(hgf_awsctl_observe_date(ctl, d, 0), 0);  /* under 5 min: ignored */
    assert_int_equal(hgf_awsctl_offset(ctl), 0);
    http_date(time(NULL) + 1200, d, sizeof d);
    assert_int_equal(hgf_awsctl_observe_date(ctl, d, 0), 1);
    long off = hgf_awsctl_offset(ctl);
    assert_true(off >= 1199 && off <= 1200);
    time_t now = time(NULL);
    long diff = (long)(hgf_awsctl_now(ctl) - now);
    assert_true(diff >= off && diff <= off + 1);
    assert_true(hgf_metrics_get(m, "hgfleet_clock_offset_seconds", "") == (double)off);
    assert_int_equal(hgf_awsctl_observe_date(ctl, "not a date", 1), HGF_EINPUT);
    assert_int_equal(hgf_awsctl_observe_date(ctl, NULL, 1), HGF_EINPUT);
    assert_int_equal(hgf_awsctl_offset(ctl), off);
    /* RFC 7231's obsolete forms are accepted too (784111777 = 1994-11-06 08:49:37). */
    assert_int_equal(hgf_awsctl_observe_date(ctl, "Sunday, 06-Nov-94 08:49:37 GMT", 1), 1);
    off = hgf_awsctl_offset(ctl);
    long want = (long)(784111777 - time(NULL));
    assert_true(off >= want && off <= want + 1);
    assert_true(hgf_awsctl_observe_date(ctl, "Sun Nov  6 08:49:37 1994", 1) >= 0);
    off = hgf_awsctl_offset(ctl);
    want = (long)(784111777 - time(NULL));
    assert_true(off >= want && off <= want + 1);
    http_date(time(NULL), d, sizeof d);
    assert_int_equal(hgf_awsctl_observe_date(ctl, d, 0), 1);  /* clock fixed: back to ~0 */
    assert_true(labs(hgf_awsctl_offset(ctl)) <= 1);
    hgf_awsctl_free(ctl);
    hgf_metrics_free(m);
}

/* ------------------------------------------------------------------ */
/* configuration                                                       */

static void test_config_parse(void **state)
{
    hgf_awsctl_config c;
    hgf_err err;
    assert_int_equal(hgf_awsctl_config_parse(NULL, NULL, &c, &err), 0);
    assert_int_equal(c.max_attempts, 3);
    assert_int_equal(c.mode, HGF_AWSCTL_STANDARD);
    assert_int_equal(hgf_awsctl_config_parse("", "", &c, &err), 0);
    assert_int_equal(c.max_attempts, 3);
    assert_int_equal(hgf_awsctl_config_parse("1", "adaptive", &c, &err), 0);
    assert_int_equal(c.max_attempts, 1);
    assert_int_equal(c.mode, HGF_AWSCTL_ADAPTIVE);
    assert_int_equal(hgf_awsctl_config_parse("20", "legacy", &c, &err), 0);
    assert_int_equal(c.max_attempts, 20);
    assert_int_equal(c.mode, HGF_AWSCTL_STANDARD);
    assert_int_equal(hgf_awsctl_config_parse("7", "standard", &c, &err), 0);
    assert_int_equal(c.max_attempts, 7);
    static const char *const bad_attempts[] = {"0", "21", "-1", "abc", "3x", " 3", "99999999999"};
    for (size_t i = 0; i < sizeof bad_attempts / sizeof bad_attempts[0]; i++) {
        hgf_err_clear(&err);
        assert_int_equal(hgf_awsctl_config_parse(bad_attempts[i], NULL, &c, &err), HGF_EINPUT);
        assert_non_null(strstr(err.msg, "AWS_MAX_ATTEMPTS"));
    }
    static const char *const bad_modes[] = {"fast", "Standard", "adaptive ", "none"};
    for (size_t i = 0; i < sizeof bad_modes / sizeof bad_modes[0]; i++) {
        hgf_err_clear(&err);
        assert_int_equal(hgf_awsctl_config_parse("3", bad_modes[i], &c, &err), HGF_EINPUT);
        assert_non_null(strstr(err.msg, "AWS_RETRY_MODE"));
    }
}

static void test_new_from_env(void **state)
{
    hgf_err err;
    setenv("AWS_MAX_ATTEMPTS", "7", 1);
    setenv("AWS_RETRY_MODE", "adaptive", 1);
    hgf_awsctl *ctl = hgf_awsctl_new(EV_DEFAULT, NULL, &err);
    assert_non_null(ctl);
    assert_int_equal(hgf_awsctl_get_config(ctl)->max_attempts, 7);
    assert_int_equal(hgf_awsctl_get_config(ctl)->mode, HGF_AWSCTL_ADAPTIVE);
    hgf_awsctl_free(ctl);
    setenv("AWS_MAX_ATTEMPTS", "0", 1);
    hgf_err_clear(&err);
    assert_null(hgf_awsctl_new(EV_DEFAULT, NULL, &err));
    assert_int_equal(err.code, HGF_EINPUT);
    assert_non_null(strstr(err.msg, "AWS_MAX_ATTEMPTS"));
    setenv("AWS_MAX_ATTEMPTS", "2", 1);
    setenv("AWS_RETRY_MODE", "turbo", 1);
    hgf_err_clear(&err);
    assert_null(hgf_awsctl_new(EV_DEFAULT, NULL, &err));
    assert_non_null(strstr(err.msg, "AWS_RETRY_MODE"));
    unsetenv("AWS_MAX_ATTEMPTS");
    unsetenv("AWS_RETRY_MODE");
}

/* ------------------------------------------------------------------ */
/* the call driver with scripted outcomes                              */

struct drv {
    struct ev_loop *loop;
    hgf_awsctl *ctl;
    hgf_metrics *m;
    hgf_awsctl_call *c;
    int sent, cancelled;
    double sent_at[16];
};

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void drv_go(void *arg)
{
    struct drv *d = arg;
    if (d->sent < 16)
        d->sent_at[d->sent] = now_s();
    d->sent++;
}

static void drv_cancel(void *arg)
{
    struct drv *d = arg;
    d->cancelled++;
    hgf_awsctl_call_free(d->c);
    d->c = NULL;
}

static void drv_setup(struct drv *d, const char *attempts, const char *mode)
{
    memset(d, 0, sizeof *d);
    setenv("AWS_MAX_ATTEMPTS", attempts, 1);
    setenv("AWS_RETRY_MODE", mode, 1);
    hgf_err err;
    d->loop = ev_loop_new(EVFLAG_AUTO);
    d->m = hgf_metrics_new();
    d->ctl = hgf_awsctl_new(d->loop, d->m, &err);
    assert_non_null(d->ctl);
    hgf_awsctl_set_delay_scale(d->ctl, 0.001);
    unsetenv("AWS_MAX_ATTEMPTS");
    unsetenv("AWS_RETRY_MODE");
}

static void drv_teardown(struct drv *d)
{
    hgf_awsctl_free(d->ctl);
    hgf_metrics_free(d->m);
    ev_loop_destroy(d->loop);
}

static void drv_new(struct drv *d, const char *key)
{
    hgf_err err;
    assert_int_equal(hgf_awsctl_call_new(d->ctl, "ecr", "DescribeImages", key, drv_go, drv_cancel,
                                         d, &d->c, &err),
                     0);
}

/* Runs the loop until `sent` reaches n (or 2 s pass). */
static void drv_wait_sent(struct drv *d, int n)
{
    double until = now_s() + 2;
    while (d->sent < n && now_s() < until)
        ev_run(d->loop, EVRUN_ONCE | EVRUN_NOWAIT);
    assert_int_equal(d->sent, n);
}

static const hgf_awsctl_outcome THROTTLE = {400, 0, "ThrottlingException", "Rate exceeded", NULL};
static const hgf_awsctl_outcome OK = {200, 0, NULL, NULL, NULL};

static double metric(struct drv *d, const char *name, const char *labels)
{
    return hgf_metrics_get(d->m, name, labels);
}

static void test_driver_throttle_then_ok(void **state)
{
    struct drv d;
    drv_setup(&d, "3", "standard");
    drv_new(&d, NULL);
    assert_int_equal(hgf_awsctl_call_ready(d.c), 1);
    assert_int_equal(hgf_awsctl_call_outcome(d.c, &THROTTLE), 1);
    assert_int_equal(d.sent, 0);  /* never from inside */
    drv_wait_sent(&d, 1);
    assert_int_equal(hgf_awsctl_call_outcome(d.c, &THROTTLE), 1);
    drv_wait_sent(&d, 2);
    assert_int_equal(hgf_awsctl_quota_available(d.ctl), 490);
    assert_int_equal(hgf_awsctl_call_outcome(d.c, &OK), 0);
    assert_int_equal(hgf_awsctl_call_attempts(d.c), 3);
    assert_int_equal(hgf_awsctl_call_throttled(d.c), 2);
    assert_int_equal(hgf_awsctl_quota_available(d.ctl), 495);  /* the last 5 came back */
    const char *l = "service=\"ecr\",op=\"DescribeImages\"";
    assert_true(metric(&d, "hgfleet_aws_throttles_total", l) == 2);
    assert_true(metric(&d, "hgfleet_aws_retries_total",
                       "service=\"ecr\",op=\"DescribeImages\",reason=\"throttle\"") == 2);
    assert_true(metric(&d, "hgfleet_aws_calls_total",
                       "service=\"ecr\",op=\"DescribeImages\",outcome=\"ok\"") == 1);
    hgf_buf out = HGF_BUF_INIT;
    hgf_metrics_render(d.m, &out);
    assert_non_null(strstr(out.data, "hgfleet_aws_call_seconds_count{" "service=\"ecr\","
                                     "op=\"DescribeImages\"} 1"));
    hgf_buf_free(&out);
    hgf_awsctl_call_free(d.c);
    drv_teardown(&d);
}

static void test_driver_max_attempts_and_fatal(void **state)
{
    struct drv d;
    drv_setup(&d, "3", "standard");
    drv_new(&d, NULL);
    hgf_awsctl_call_ready(d.c);
    for (int i = 1; i < 3; i++) {
        assert_int_equal(hgf_awsctl_call_outcome(d.c, &THROTTLE), 1);
        drv_wait_sent(&d, i);
    }
    assert_int_equal(hgf_awsctl_call_outcome(d.c, &THROTTLE), 0);
    assert_int_equal(hgf_awsctl_call_attempts(d.c), 3);
    assert_int_equal(hgf_awsctl_quota_available(d.ctl), 490);  /* no refund on failure */
    assert_true(metric(&d, "hgfleet_aws_calls_total", "service=\"ecr\",op=\"DescribeImages\","
                                                      "outcome=\"ThrottlingException\"") == 1);
    hgf_awsctl_call_free(d.c);

    drv_new(&d, NULL);
    hgf_awsctl_call_ready(d.c);
    hgf_awsctl_outcome denied = {403, 0, "AccessDeniedException", "no", NULL};
    assert_int_equal(hgf_awsctl_call_outcome(d.c, &denied), 0);
    assert_int_equal(hgf_awsctl_call_attempts(d.c), 1);
    assert_int_equal(hgf_awsctl_call_class(d.c), HGF_AWS_FATAL);
    hgf_awsctl_call_free(d.c);

    drv_new(&d, NULL);
    hgf_awsctl_call_ready(d.c);
    hgf_awsctl_outcome expired = {400, 0, "ExpiredTokenException", "expired", NULL};
    assert_int_equal(hgf_awsctl_call_outcome(d.c, &expired), 0);
    assert_int_equal(hgf_awsctl_call_class(d.c), HGF_AWS_EXPIRED);
    hgf_awsctl_call_free(d.c);

    /* A timeout costs 10 of the quota, other transport errors 5. */
    drv_new(&d, NULL);
    hgf_awsctl_call_ready(d.c);
    hgf_awsctl_outcome timeout = {0, CURLE_OPERATION_TIMEDOUT, NULL, NULL, NULL};
    assert_int_equal(hgf_awsctl_call_outcome(d.c, &timeout), 1);
    assert_int_equal(hgf_awsctl_quota_available(d.ctl), 480);
    drv_wait_sent(&d, 3);
    hgf_awsctl_outcome reset = {0, CURLE_RECV_ERROR, NULL, NULL, NULL};
    assert_int_equal(hgf_awsctl_call_outcome(d.c, &reset), 1);
    assert_int_equal(hgf_awsctl_quota_available(d.ctl), 475);
    drv_wait_sent(&d, 4);
    assert_int_equal(hgf_awsctl_call_outcome(d.c, &reset), 0);
    assert_true(metric(&d, "hgfleet_aws_calls_total",
                       "service=\"ecr\",op=\"DescribeImages\",outcome=\"transport\"") == 1);
    hgf_awsctl_call_free(d.c);

    /* A refused certificate ends the call after its one attempt, the quota
     * untouched, with 20 attempts allowed. */
    hgf_awsctl_free(d.ctl);
    setenv("AWS_MAX_ATTEMPTS", "20", 1);
    hgf_err err;
    d.ctl = hgf_awsctl_new(d.loop, d.m, &err);
    unsetenv("AWS_MAX_ATTEMPTS");
    assert_non_null(d.ctl);
    drv_new(&d, NULL);
    hgf_awsctl_call_ready(d.c);
    hgf_awsctl_outcome untrusted = {0, CURLE_PEER_FAILED_VERIFICATION, NULL, NULL, NULL};
    assert_int_equal(hgf_awsctl_call_outcome(d.c, &untrusted), 0);
    assert_int_equal(hgf_awsctl_call_attempts(d.c), 1);
    assert_int_equal(hgf_awsctl_call_class(d.c), HGF_AWS_FATAL);
    assert_int_equal(hgf_awsctl_quota_available(d.ctl), HGF_AWSCTL_QUOTA_INITIAL);
    hgf_awsctl_call_free(d.c);
    drv_teardown(&d);
}

/* A closing process wakes every call asleep in a backoff: go runs at once,
 * and the attempt's outcome is final whatever it is, so the call ends
 * through its client (hgf_awsctl_free would drop it unheard). */
static void test_driver_flush(void **state)
{
    struct drv d;
    drv_setup(&d, "10", "standard");
    hgf_awsctl_set_delay_scale(d.ctl, 1000);  /* the backoff outlasts the test */
    hgf_awsctl_set_jitter(d.ctl, 1);
    drv_new(&d, NULL);
    hgf_awsctl_call_ready(d.c);
    assert_int_equal(hgf_awsctl_call_outcome(d.c, &THROTTLE), 1);
    ev_run(d.loop, EVRUN_NOWAIT);
    assert_int_equal(d.sent, 0);
    hgf_awsctl_flush(d.ctl);
    assert_int_equal(d.sent, 1);
    assert_int_equal(hgf_awsctl_call_attempts(d.c), 2);
    assert_int_equal(hgf_awsctl_call_outcome(d.c, &THROTTLE), 0);
    hgf_awsctl_call_free(d.c);
    /* Nothing waits any more, and a new call's first failure is final. */
    drv_new(&d, NULL);
    assert_int_equal(hgf_awsctl_call_ready(d.c), 1);
    hgf_awsctl_outcome reset = {0, CURLE_RECV_ERROR, NULL, NULL, NULL};
    assert_int_equal(hgf_awsctl_call_outcome(d.c, &reset), 0);
    assert_int_equal(d.cancelled, 0);
    hgf_awsctl_call_free(d.c);
    drv_teardown(&d);
}

static void test_driver_quota_exhausted(void **state)
{
    struct drv d;
    drv_setup(&d, "20", "standard");
    /* 100 calls that each fail once drain the 500 tokens... */
    hgf_awsctl_call *calls[101];
    for (int i = 0; i < 101; i++) {
        drv_new(&d, NULL);
        calls[i] = d.c;
        hgf_awsctl_call_ready(calls[i]);
        int retried = hgf_awsctl_call_outcome(calls[i], &THROTTLE);
        /* ...so the 101st is not retried. */
        assert_int_equal(retried, i < 100);
    }
    assert_int_equal(hgf_awsctl_quota_available(d.ctl), 0);
    drv_wait_sent(&d, 100);
    for (int i = 0; i < 101; i++)
        hgf_awsctl_call_free(calls[i]);
    drv_teardown(&d);
}

static void test_driver_skew(void **state)
{
    struct drv d;
    drv_setup(&d, "2", "standard");
    drv_new(&d, NULL);
    hgf_awsctl_call_ready(d.c);
    char date[64];
    http_date(time(NULL) + 1200, date, sizeof date);
    hgf_awsctl_outcome skew = {403, 0, "InvalidSignatureException",
                               "Signature expired: 20261130T031500Z is now earlier than "
                               "20261130T033000Z (20261130T033500Z - 5 min.)", date};
    assert_int_equal(hgf_awsctl_call_outcome(d.c, &skew), 1);
    long off = hgf_awsctl_offset(d.ctl);
    assert_true(off >= 1199 && off <= 1200);
    assert_int_equal(hgf_awsctl_quota_available(d.ctl), 500);  /* not charged */
    drv_wait_sent(&d, 1);
    /* The skew retry is outside the budget: two more counted attempts. */
    assert_int_equal(hgf_awsctl_call_outcome(d.c, &THROTTLE), 1);
    drv_wait_sent(&d, 2);
    assert_int_equal(hgf_awsctl_call_outcome(d.c, &THROTTLE), 0);
    assert_int_equal(hgf_awsctl_call_attempts(d.c), 3);
    assert_true(metric(&d, "hgfleet_aws_retries_total",
                       "service=\"ecr\",op=\"DescribeImages\",reason=\"skew\"") == 1);
    hgf_awsctl_call_free(d.c);

    /* Only one skew retry per call. */
    drv_new(&d, NULL);
    hgf_awsctl_call_ready(d.c);
    assert_int_equal(hgf_awsctl_call_outcome(d.c, &skew), 1);
    drv_wait_sent(&d, 3);
    assert_int_equal(hgf_awsctl_call_outcome(d.c, &skew), 0);
    assert_int_equal(hgf_awsctl_call_attempts(d.c), 2);
    hgf_awsctl_call_free(d.c);
    drv_teardown(&d);
}

static void test_driver_without_ctl(void **state)
{
    struct drv d = {0};
    hgf_err err;
    assert_int_equal(hgf_awsctl_call_new(NULL, "ecr", "X", NULL, drv_go, NULL, &d, &d.c, &err), 0);
    assert_int_equal(hgf_awsctl_call_ready(d.c), 1);
    assert_int_equal(hgf_awsctl_call_outcome(d.c, &THROTTLE), 0);
    assert_int_equal(hgf_awsctl_call_attempts(d.c), 1);
    assert_int_equal(hgf_awsctl_call_throttled(d.c), 1);
    hgf_awsctl_call_free(d.c);
    assert_int_equal(hgf_awsctl_now(NULL), time(NULL));
}

static void break_timer(struct ev_loop *loop, ev_timer *w, int revents)
{
    ev_break(loop, EVBREAK_ONE);
}

static void test_driver_adaptive_queue(void **state)
{
    struct drv d;
    drv_setup(&d, "3", "adaptive");
    const char *key = "111122223333/us-east-1/ecr/DescribeImages";
    assert_true(hgf_awsctl_key_rate(d.ctl, key) < 0);
    drv_new(&d, key);
    assert_int_equal(hgf_awsctl_call_ready(d.c), 1);
    /* The first throttle turns the limiter on. With (almost) nothing
     * measured the rate is the 0.5/s floor, or 0.7 * 1.6 when a half-second
     * boundary passed since the limiter was created (adaptive.py's clocker
     * starts at a whole second). The retry then waits for a token. */
    hgf_awsctl_set_delay_scale(d.ctl, 0);
    assert_int_equal(hgf_awsctl_call_outcome(d.c, &THROTTLE), 1);
    double rate = hgf_awsctl_key_rate(d.ctl, key);
    assert_true(rate >= 0.5 && rate <= 1.13);
    double t0 = now_s();
    /* Meanwhile the loop is free: a timer 100 ms out fires before the send. */
    ev_timer probe;
    ev_timer_init(&probe, break_timer, 0.1, 0.);
    ev_timer_start(d.loop, &probe);
    ev_run(d.loop, 0);
    assert_true(now_s() - t0 < 0.5);
    assert_int_equal(d.sent, 0);
    double until = t0 + 3;
    while (!d.sent && now_s() < until)
        ev_run(d.loop, EVRUN_ONCE);
    assert_int_equal(d.sent, 1);
    double waited = d.sent_at[0] - t0;
    assert_true(fabs(waited - 1 / rate) < 0.3);
    assert_int_equal(hgf_awsctl_call_attempts(d.c), 2);
    hgf_awsctl_call_free(d.c);

    /* A call waiting for a token is cancelled when the controller goes. */
    drv_new(&d, key);
    assert_int_equal(hgf_awsctl_call_ready(d.c), 0);
    assert_int_equal(d.cancelled, 0);
    drv_teardown(&d);
    assert_int_equal(d.cancelled, 1);
    assert_null(d.c);
}

static void test_label_escaping(void **state)
{
    struct drv d;
    drv_setup(&d, "1", "standard");
    hgf_err err;
    assert_int_equal(hgf_awsctl_call_new(d.ctl, "e\"cr", "Op\\1", NULL, drv_go, NULL, &d, &d.c,
                                         &err),
                     0);
    hgf_awsctl_call_ready(d.c);
    hgf_awsctl_outcome o = {400, 0, "Bad\"Code", "m", NULL};
    assert_int_equal(hgf_awsctl_call_outcome(d.c, &o), 0);
    assert_true(metric(&d, "hgfleet_aws_calls_total",
                       "service=\"e\\\"cr\",op=\"Op\\\\1\",outcome=\"Bad\\\"Code\"") == 1);
    hgf_awsctl_call_free(d.c);
    drv_teardown(&d);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_classify_retry_json),
        cmocka_unit_test(test_classify_standard_lists),
        cmocka_unit_test(test_classify_status_and_transport),
        cmocka_unit_test(test_classify_tls_trust),
        cmocka_unit_test(test_classify_fatal_expired_skew),
        cmocka_unit_test(test_backoff_bounds),
        cmocka_unit_test(test_quota_sequence),
        cmocka_unit_test(test_cubic),
        cmocka_unit_test(test_token_bucket),
        cmocka_unit_test(test_limiter_sequence),
        cmocka_unit_test(test_limiter_waits_when_enabled),
        cmocka_unit_test(test_skew_offset_rules),
        cmocka_unit_test(test_observe_date),
        cmocka_unit_test(test_config_parse),
        cmocka_unit_test(test_new_from_env),
        cmocka_unit_test(test_driver_throttle_then_ok),
        cmocka_unit_test(test_driver_max_attempts_and_fatal),
        cmocka_unit_test(test_driver_flush),
        cmocka_unit_test(test_driver_quota_exhausted),
        cmocka_unit_test(test_driver_skew),
        cmocka_unit_test(test_driver_without_ctl),
        cmocka_unit_test(test_driver_adaptive_queue),
        cmocka_unit_test(test_label_escaping),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
