/* Signed JSON 1.1 calls with the retry controller, against a real
 * libmicrohttpd server in this process that speaks ECR's wire format and
 * verifies every request's SigV4 signature, so each retry's re-signing is
 * checked for real.
 *
 * The server's behaviour for DescribeImages is scripted per test (throttle
 * the first n, close the connection, deny, rate-limit, run its clock
 * ahead); DescribeRepositories always answers at once. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <ev.h>
#include <math.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "hgfleet/awsctl.h"
#include "hgfleet/awsjson.h"
#include "hgfleet/buf.h"
#include "hgfleet/creds.h"
#include "hgfleet/metrics.h"
#include "hgfleet/sigv4.h"

#define AKID "AKIDEXAMPLE0000000001"
#define SECRET "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"
#define TOKEN "session-token-for-tests"
#define PREFIX "AmazonEC2ContainerRegistry_V20150921"
#define BINS 200  /* 0.1 s each */
#define MAX_HDRS 32

/* ------------------------------------------------------------------ */
/* the server                                                          */

enum script { OK_ALWAYS, THROTTLE_FIRST, CLOSE_FIRST, DENY, EXPIRED_TOKEN, UNAVAILABLE_FIRST,
              RATE_LIMIT };

struct srv {
    struct MHD_Daemon *d;
    unsigned short port;
    pthread_mutex_t mu;
    /* set by the test before requests */
    enum script script;
    int first_n;           /* THROTTLE_FIRST, CLOSE_FIRST, UNAVAILABLE_FIRST */
    int limit_per_s;       /* RATE_LIMIT */
    long clock_offset;     /* the server's clock = local + offset */
    /* observed */
    int images_requests, repos_requests;
    int bad_signatures, time_rejections, throttles;
    char last_amz_date[17];
    double t0;
    int req_bins[BINS], throttle_bins[BINS];  /* DescribeImages requests by time */
    double accepted[256];  /* ring of accepted request times (RATE_LIMIT) */
    int n_accepted;
};

struct reqctx {
    hgf_buf body;
};

struct hdrs {
    hgf_sigv4_header h[MAX_HDRS];
    size_t n;
    const char *authorization, *amz_date, *target;
};

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static enum MHD_Result collect(void *cls, enum MHD_ValueKind kind, const char *key,
                               const char *value)
{
    struct hdrs *h = cls;
    if (h->n < MAX_HDRS)
        h->h[h->n++] = (hgf_sigv4_header){key, value};
    if (!strcasecmp(key, "authorization"))
        h->authorization = value;
    if (!strcasecmp(key, "x-amz-date"))
        h->amz_date = value;
    if (!strcasecmp(key, "x-amz-target"))
        h->target = value;
    return MHD_YES;
}

static enum MHD_Result reply(struct srv *s, struct MHD_Connection *c, unsigned code,
                             const char *body)
{
    struct MHD_Response *r = MHD_create_response_from_buffer(strlen(body), (void *)body,
                                                             MHD_RESPMEM_MUST_COPY);
    if (!r)
        return MHD_NO;
    char date[64];
    time_t t = time(NULL) + s->clock_offset;
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(date, sizeof date, "%a, %d %b %Y %H:%M:%S GMT", &tm);
    MHD_add_response_header(r, "Date", date);
    MHD_add_response_header(r, "Content-Type", "application/x-amz-json-1.1");
    MHD_add_response_header(r, "x-amzn-RequestId", "0d5a3f1e-0000-4000-8000-000000000001");
    enum MHD_Result ret = MHD_queue_response(c, code, r);
    MHD_destroy_response(r);
    return ret;
}

static enum MHD_Result aws_error(struct srv *s, struct MHD_Connection *c, unsigned code,
                                 const char *type, const char *message)
{
    json_t *j = json_pack("{s:s, s:s}", "__type", type, "message", message);
    char *text = json_dumps(j, JSON_COMPACT);
    enum MHD_Result ret = reply(s, c, code, text);
    free(text);
    json_decref(j);
    return ret;
}

/* ECR's wording: "Signature expired: <x-amz-date> is now earlier than
 * <server - 5 min> (<server> - 5 min.)". */
static enum MHD_Result check_time(struct srv *s, struct MHD_Connection *c, const char *amz,
                                  int *rejected)
{
    time_t server = time(NULL) + s->clock_offset, when = hgf_sigv4_parse_amz_date(amz);
    char a[17], b[17], msg[256];
    *rejected = 1;
    if (when < server - 300) {
        hgf_sigv4_amz_date(server - 300, a);
        hgf_sigv4_amz_date(server, b);
        snprintf(msg, sizeof msg, "Signature expired: %s is now earlier than %s (%s - 5 min.)",
                 amz, a, b);
        return aws_error(s, c, 403, "InvalidSignatureException", msg);
    }
    if (when > server + 300) {
        hgf_sigv4_amz_date(server + 300, a);
        snprintf(msg, sizeof msg, "Signature not yet current: %s is still later than %s", amz,
                 a);
        return aws_error(s, c, 403, "InvalidSignatureException", msg);
    }
    *rejected = 0;
    return MHD_YES;
}

static int verify(struct MHD_Connection *c, const char *url, struct reqctx *rc, struct hdrs *h)
{
    MHD_get_connection_values(c, MHD_HEADER_KIND, collect, h);
    if (!h->authorization || !h->amz_date || !h->target)
        return -1;
    hgf_sigv4_auth auth;
    hgf_err err;
    if (hgf_sigv4_parse_authorization(h->authorization, &auth, &err))
        return -1;
    hgf_sigv4_request req = {"POST", url, NULL, h->h, h->n, rc->body.data, rc->body.len};
    if (strcmp(auth.access_key_id, AKID) || hgf_sigv4_verify(&req, &auth, SECRET, &err))
        return -1;
    return strstr(h->authorization, "x-amz-security-token") ? 0 : -1;
}

static void record_event(struct srv *s, int throttled)
{
    int bin = (int)((now_s() - s->t0) * 10);
    if (bin >= 0 && bin < BINS) {
        s->req_bins[bin]++;
        s->throttle_bins[bin] += throttled;
    }
    s->throttles += throttled;
}

/* At most limit_per_s requests are accepted in any one-second window. */
static int over_limit(struct srv *s)
{
    double t = now_s();
    int n = s->limit_per_s;
    if (s->n_accepted >= n && t - s->accepted[(s->n_accepted - n) % 256] < 1.0)
        return 1;
    s->accepted[s->n_accepted++ % 256] = t;
    return 0;
}

static const char IMAGES[] = "{\"imageDetails\":[{\"registryId\":\"111122223333\","
                             "\"repositoryName\":\"app\",\"imageDigest\":\"sha256:"
                             "0000000000000000000000000000000000000000000000000000000000000001\","
                             "\"imageTags\":[\"v1\"],\"imageSizeInBytes\":1234,"
                             "\"imagePushedAt\":1.7E9}]}";

/* Called with the mutex held; returns how to answer DescribeImages. */
static enum MHD_Result scripted(struct srv *s, struct MHD_Connection *c)
{
    int n = ++s->images_requests;
    switch (s->script) {
    case THROTTLE_FIRST:
        if (n <= s->first_n) {
            record_event(s, 1);
            return aws_error(s, c, 400, "ThrottlingException", "Rate exceeded");
        }
        break;
    case CLOSE_FIRST:
        if (n <= s->first_n)
            return MHD_NO;  /* drop the connection without a response */
        break;
    case UNAVAILABLE_FIRST:
        if (n <= s->first_n)
            return reply(s, c, 503, "Service Unavailable");
        break;
    case DENY:
        return aws_error(s, c, 400, "AccessDeniedException",
                         "User: arn:aws:iam::111122223333:user/x is not authorized to perform: "
                         "ecr:DescribeImages");
    case EXPIRED_TOKEN:
        return aws_error(s, c, 400, "ExpiredTokenException",
                         "The security token included in the request is expired");
    case RATE_LIMIT:
        if (over_limit(s)) {
            record_event(s, 1);
            return aws_error(s, c, 400, "ThrottlingException", "Rate exceeded");
        }
        break;
    case OK_ALWAYS:
        break;
    }
    record_event(s, 0);
    return reply(s, c, 200, IMAGES);
}

static enum MHD_Result route(struct srv *s, struct MHD_Connection *c, const char *url,
                             struct reqctx *rc)
{
    struct hdrs h = {0};
    int bad = verify(c, url, rc, &h);
    pthread_mutex_lock(&s->mu);
    enum MHD_Result ret;
    int rejected = 0;
    if (bad) {
        s->bad_signatures++;
        ret = aws_error(s, c, 403, "InvalidSignatureException",
                        "The request signature we calculated does not match the signature "
                        "you provided.");
    } else {
        snprintf(s->last_amz_date, sizeof s->last_amz_date, "%s", h.amz_date);
        ret = check_time(s, c, h.amz_date, &rejected);
        s->time_rejections += rejected;
    }
    if (!bad && !rejected) {
        if (!strcmp(h.target, PREFIX ".DescribeImages"))
            ret = scripted(s, c);
        else if (!strcmp(h.target, PREFIX ".DescribeRepositories"))
            s->repos_requests++, ret = reply(s, c, 200, "{\"repositories\":[]}");
        else
            ret = aws_error(s, c, 400, "UnknownOperationException", h.target);
    }
    pthread_mutex_unlock(&s->mu);
    return ret;
}

static enum MHD_Result handler(void *cls, struct MHD_Connection *c, const char *url,
                               const char *method, const char *version, const char *upload,
                               size_t *upload_size, void **con_cls)
{
    struct reqctx *rc = *con_cls;
    if (!rc) {
        rc = calloc(1, sizeof *rc);
        *con_cls = rc;
        return rc ? MHD_YES : MHD_NO;
    }
    if (*upload_size) {
        if (hgf_buf_append(&rc->body, upload, *upload_size))
            return MHD_NO;
        *upload_size = 0;
        return MHD_YES;
    }
    return route(cls, c, url, rc);
}

static void req_done(void *cls, struct MHD_Connection *c, void **con_cls,
                     enum MHD_RequestTerminationCode toe)
{
    struct reqctx *rc = *con_cls;
    if (rc) {
        hgf_buf_free(&rc->body);
        free(rc);
    }
    *con_cls = NULL;
}

static int srv_start(struct srv *s)
{
    memset(s, 0, sizeof *s);
    pthread_mutex_init(&s->mu, NULL);
    s->t0 = now_s();
    struct sockaddr_in sa = {0};
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    s->d = MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_THREAD_PER_CONNECTION, 0,
                            NULL, NULL, handler, s, MHD_OPTION_SOCK_ADDR, &sa,
                            MHD_OPTION_NOTIFY_COMPLETED, req_done, s, MHD_OPTION_END);
    if (!s->d)
        return -1;
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(s->d, MHD_DAEMON_INFO_BIND_PORT);
    s->port = info ? info->port : 0;
    return s->port ? 0 : -1;
}

static void srv_stop(struct srv *s)
{
    if (s->d)
        MHD_stop_daemon(s->d);
    pthread_mutex_destroy(&s->mu);
}

static int srv_get(struct srv *s, const int *field)
{
    pthread_mutex_lock(&s->mu);
    int v = *field;
    pthread_mutex_unlock(&s->mu);
    return v;
}

/* ------------------------------------------------------------------ */
/* the client side                                                     */

struct fix {
    struct srv srv;
    struct ev_loop *loop;
    hgf_http *http;
    hgf_metrics *m;
    hgf_awsctl *ctl;
    hgf_creds creds;
    char endpoint[64];
    int done;
};

struct res {
    struct fix *f;
    int called, rc, attempts, throttled, n_images;
    long status;
    char code[64], msg[1024];
    double seconds, done_at;
};

static void on_result(const hgf_aws_result *r, void *arg)
{
    struct res *o = arg;
    o->called++;
    o->rc = r->rc;
    o->status = r->status;
    o->attempts = r->attempts;
    o->throttled = r->throttled;
    o->seconds = r->seconds;
    o->done_at = now_s();
    snprintf(o->code, sizeof o->code, "%s", r->err.aws_code);
    snprintf(o->msg, sizeof o->msg, "%s", r->err.msg);
    o->n_images = (int)json_array_size(json_object_get(r->json, "imageDetails"));
    o->f->done++;
}

static void watchdog(struct ev_loop *loop, ev_timer *w, int revents)
{
    *(int *)w->data = 1;
}

static int run_until(struct fix *f, const int *counter, int n, double secs)
{
    int expired = 0;
    ev_timer wd;
    ev_timer_init(&wd, watchdog, secs, 0.);
    wd.data = &expired;
    ev_timer_start(f->loop, &wd);
    while (*counter < n && !expired)
        ev_run(f->loop, EVRUN_ONCE);
    ev_timer_stop(f->loop, &wd);
    return *counter >= n;
}

/* attempts/mode: AWS_MAX_ATTEMPTS and AWS_RETRY_MODE for this controller. */
static void fix_ctl(struct fix *f, const char *attempts, const char *mode)
{
    hgf_err err;
    setenv("AWS_MAX_ATTEMPTS", attempts, 1);
    setenv("AWS_RETRY_MODE", mode, 1);
    f->ctl = hgf_awsctl_new(f->loop, f->m, &err);
    unsetenv("AWS_MAX_ATTEMPTS");
    unsetenv("AWS_RETRY_MODE");
    assert_non_null(f->ctl);
    hgf_awsctl_set_delay_scale(f->ctl, 0.01);
}

static int setup(void **state)
{
    struct fix *f = calloc(1, sizeof *f);
    if (!f || srv_start(&f->srv) != 0)
        return -1;
    hgf_err err;
    f->loop = ev_loop_new(EVFLAG_AUTO);
    f->http = hgf_http_new(f->loop, &(hgf_http_opts){.timeout_ms = 5000}, &err);
    f->m = hgf_metrics_new();
    if (!f->loop || !f->http || !f->m ||
        hgf_creds_set(&f->creds, AKID, SECRET, TOKEN, 0, "static", &err))
        return -1;
    snprintf(f->endpoint, sizeof f->endpoint, "http://127.0.0.1:%u", f->srv.port);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fix *f = *state;
    hgf_awsctl_free(f->ctl);
    hgf_http_free(f->http);
    hgf_metrics_free(f->m);
    hgf_creds_clear(&f->creds);
    ev_loop_destroy(f->loop);
    srv_stop(&f->srv);
    free(f);
    return 0;
}

static hgf_aws_target target_of(struct fix *f)
{
    return (hgf_aws_target){.http = f->http, .creds = &f->creds, .endpoint = f->endpoint,
                            .region = "us-east-1", .service = "ecr", .ctl = f->ctl};
}

static void call_op(struct fix *f, const hgf_aws_target *t, const char *op, struct res *o)
{
    hgf_err err;
    o->f = f;
    int rc = hgf_awsjson_call(t, PREFIX, op, "{\"registryId\":\"111122223333\","
                                              "\"repositoryName\":\"app\"}",
                              on_result, o, &err);
    if (rc)
        fail_msg("hgf_awsjson_call: %s", err.msg);
}

static void call_images(struct fix *f, struct res *o)
{
    hgf_aws_target t = target_of(f);
    call_op(f, &t, "DescribeImages", o);
}

static void set_script(struct fix *f, enum script s, int first_n)
{
    pthread_mutex_lock(&f->srv.mu);
    f->srv.script = s;
    f->srv.first_n = first_n;
    pthread_mutex_unlock(&f->srv.mu);
}

static double metric(struct fix *f, const char *name, const char *labels)
{
    return hgf_metrics_get(f->m, name, labels);
}

#define L_IMAGES "service=\"ecr\",op=\"DescribeImages\""

/* ------------------------------------------------------------------ */
/* tests                                                               */

static void test_throttled_twice_then_ok(void **state)
{
    struct fix *f = *state;
    fix_ctl(f, "3", "standard");
    set_script(f, THROTTLE_FIRST, 2);
    struct res o = {0};
    call_images(f, &o);
    assert_true(run_until(f, &f->done, 1, 10));
    run_until(f, &f->done, 2, 0.1);  /* a second callback would show here */
    assert_int_equal(o.called, 1);
    assert_int_equal(o.rc, 0);
    assert_int_equal(o.attempts, 3);
    assert_int_equal(o.throttled, 2);
    assert_int_equal(o.n_images, 1);
    assert_int_equal(srv_get(&f->srv, &f->srv.images_requests), 3);
    assert_int_equal(srv_get(&f->srv, &f->srv.bad_signatures), 0);
    assert_true(metric(f, "hgfleet_aws_retries_total", L_IMAGES ",reason=\"throttle\"") == 2);
    assert_true(metric(f, "hgfleet_aws_throttles_total", L_IMAGES) == 2);
    assert_true(metric(f, "hgfleet_aws_calls_total", L_IMAGES ",outcome=\"ok\"") == 1);
    assert_int_equal(hgf_awsctl_quota_available(f->ctl), 495);
}

static void test_max_attempts_honoured(void **state)
{
    struct fix *f = *state;
    fix_ctl(f, "4", "standard");
    set_script(f, THROTTLE_FIRST, 1000);
    struct res o = {0};
    call_images(f, &o);
    assert_true(run_until(f, &f->done, 1, 10));
    assert_int_equal(o.rc, HGF_EAWS);
    assert_string_equal(o.code, "ThrottlingException");
    assert_int_equal(o.attempts, 4);
    assert_int_equal(o.throttled, 4);
    assert_non_null(strstr(o.msg, "DescribeImages: ThrottlingException: Rate exceeded"));
    assert_non_null(strstr(o.msg, "after 4 attempts"));
    assert_int_equal(srv_get(&f->srv, &f->srv.images_requests), 4);
    assert_int_equal(srv_get(&f->srv, &f->srv.bad_signatures), 0);
    assert_true(metric(f, "hgfleet_aws_calls_total", L_IMAGES ",outcome=\"ThrottlingException\"")
                == 1);
}

static void test_fatal_and_expired_not_retried(void **state)
{
    struct fix *f = *state;
    fix_ctl(f, "3", "standard");
    set_script(f, DENY, 0);
    struct res o = {0};
    call_images(f, &o);
    assert_true(run_until(f, &f->done, 1, 10));
    assert_int_equal(o.rc, HGF_EAWS);
    assert_string_equal(o.code, "AccessDeniedException");
    assert_int_equal(o.attempts, 1);
    assert_int_equal(srv_get(&f->srv, &f->srv.images_requests), 1);

    set_script(f, EXPIRED_TOKEN, 0);
    struct res e = {0};
    call_images(f, &e);
    assert_true(run_until(f, &f->done, 2, 10));
    assert_int_equal(e.rc, HGF_EAWS);
    assert_string_equal(e.code, "ExpiredTokenException");
    assert_int_equal(e.attempts, 1);
    assert_int_equal(srv_get(&f->srv, &f->srv.images_requests), 2);
    assert_true(metric(f, "hgfleet_aws_calls_total", L_IMAGES ",outcome=\"ExpiredTokenException\"")
                == 1);
    assert_int_equal(hgf_awsctl_quota_available(f->ctl), 500);
}

static void test_unavailable_without_code_retried(void **state)
{
    struct fix *f = *state;
    fix_ctl(f, "3", "standard");
    set_script(f, UNAVAILABLE_FIRST, 1);
    struct res o = {0};
    call_images(f, &o);
    assert_true(run_until(f, &f->done, 1, 10));
    assert_int_equal(o.rc, 0);
    assert_int_equal(o.attempts, 2);
    assert_int_equal(o.throttled, 0);
    assert_true(metric(f, "hgfleet_aws_retries_total", L_IMAGES ",reason=\"transient\"") == 1);
}

static void test_connection_closed_retried(void **state)
{
    struct fix *f = *state;
    fix_ctl(f, "3", "standard");
    set_script(f, CLOSE_FIRST, 1);
    struct res o = {0};
    call_images(f, &o);
    assert_true(run_until(f, &f->done, 1, 10));
    assert_int_equal(o.rc, 0);
    assert_int_equal(o.attempts, 2);
    assert_int_equal(srv_get(&f->srv, &f->srv.images_requests), 2);
    assert_int_equal(srv_get(&f->srv, &f->srv.bad_signatures), 0);
}

static unsigned short closed_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {0};
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof sa;
    if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof sa) ||
        getsockname(fd, (struct sockaddr *)&sa, &len))
        fail_msg("cannot find a free port");
    close(fd);
    return ntohs(sa.sin_port);
}

static void test_port_closed_retried(void **state)
{
    struct fix *f = *state;
    fix_ctl(f, "3", "standard");
    char endpoint[64];
    snprintf(endpoint, sizeof endpoint, "http://127.0.0.1:%u", closed_port());
    hgf_aws_target t = target_of(f);
    t.endpoint = endpoint;
    struct res o = {0};
    call_op(f, &t, "DescribeImages", &o);
    assert_true(run_until(f, &f->done, 1, 10));
    assert_int_equal(o.rc, HGF_EHTTP);
    assert_int_equal(o.attempts, 3);
    assert_string_equal(o.code, "");
    assert_true(metric(f, "hgfleet_aws_retries_total", L_IMAGES ",reason=\"transient\"") == 2);
    assert_true(metric(f, "hgfleet_aws_calls_total", L_IMAGES ",outcome=\"transport\"") == 1);
}

static void test_clock_skew_learned(void **state)
{
    struct fix *f = *state;
    fix_ctl(f, "3", "standard");
    pthread_mutex_lock(&f->srv.mu);
    f->srv.clock_offset = 1200;  /* the server runs 20 minutes ahead */
    pthread_mutex_unlock(&f->srv.mu);
    set_script(f, OK_ALWAYS, 0);
    struct res o = {0};
    call_images(f, &o);
    assert_true(run_until(f, &f->done, 1, 10));
    assert_int_equal(o.rc, 0);
    assert_int_equal(o.attempts, 2);
    assert_int_equal(srv_get(&f->srv, &f->srv.time_rejections), 1);
    assert_int_equal(srv_get(&f->srv, &f->srv.bad_signatures), 0);
    long off = hgf_awsctl_offset(f->ctl);
    assert_true(off >= 1199 && off <= 1201);
    assert_true(metric(f, "hgfleet_clock_offset_seconds", "") == (double)off);
    assert_true(metric(f, "hgfleet_aws_retries_total", L_IMAGES ",reason=\"skew\"") == 1);
    /* The retry was signed with the corrected clock. */
    pthread_mutex_lock(&f->srv.mu);
    time_t signed_at = hgf_sigv4_parse_amz_date(f->srv.last_amz_date);
    pthread_mutex_unlock(&f->srv.mu);
    assert_true(labs((long)(signed_at - (time(NULL) + 1200))) <= 2);

    /* Later calls are signed right at once. */
    struct res again = {0};
    call_images(f, &again);
    assert_true(run_until(f, &f->done, 2, 10));
    assert_int_equal(again.rc, 0);
    assert_int_equal(again.attempts, 1);
    assert_int_equal(srv_get(&f->srv, &f->srv.time_rejections), 1);
    assert_int_equal(hgf_awsctl_quota_available(f->ctl), 500);
}

static void test_without_ctl_single_attempt(void **state)
{
    struct fix *f = *state;
    set_script(f, THROTTLE_FIRST, 1);
    hgf_aws_target t = target_of(f);
    t.ctl = NULL;
    struct res o = {0};
    call_op(f, &t, "DescribeImages", &o);
    assert_true(run_until(f, &f->done, 1, 10));
    assert_int_equal(o.rc, HGF_EAWS);
    assert_string_equal(o.code, "ThrottlingException");
    assert_int_equal(o.attempts, 1);
    assert_int_equal(o.throttled, 1);
    assert_int_equal(srv_get(&f->srv, &f->srv.bad_signatures), 0);
}

static void test_default_rate_key(void **state)
{
    struct fix *f = *state;
    fix_ctl(f, "1", "adaptive");  /* one attempt: the throttle just turns the limiter on */
    set_script(f, THROTTLE_FIRST, 1);
    struct res o = {0};
    call_images(f, &o);
    assert_true(run_until(f, &f->done, 1, 10));
    assert_string_equal(o.code, "ThrottlingException");
    assert_int_equal(o.attempts, 1);
    assert_true(hgf_awsctl_key_rate(f->ctl, "us-east-1/ecr/DescribeImages") >= 0.5);
    assert_true(hgf_awsctl_key_rate(f->ctl, "us-east-1/ecr/DescribeRepositories") < 0);
}

static void test_loop_responsive_during_backoff(void **state)
{
    struct fix *f = *state;
    fix_ctl(f, "3", "standard");
    hgf_awsctl_set_delay_scale(f->ctl, 0.6);
    hgf_awsctl_set_jitter(f->ctl, 1.0);  /* the first retry waits exactly 0.6 s */
    set_script(f, THROTTLE_FIRST, 1);
    struct res a = {0}, b = {0};
    double t0 = now_s();
    call_images(f, &a);
    /* Wait until the client has taken the throttle and scheduled the retry. */
    double until = t0 + 5;
    while (metric(f, "hgfleet_aws_retries_total", L_IMAGES ",reason=\"throttle\"") < 1 &&
           now_s() < until)
        ev_run(f->loop, EVRUN_ONCE);
    double scheduled = now_s();
    hgf_aws_target t = target_of(f);
    call_op(f, &t, "DescribeRepositories", &b);
    assert_true(run_until(f, &b.called, 1, 5));
    assert_int_equal(b.rc, 0);
    assert_int_equal(a.called, 0);  /* still waiting to retry */
    assert_true(b.done_at - scheduled < 0.4);
    assert_true(run_until(f, &a.called, 1, 5));
    assert_int_equal(a.rc, 0);
    assert_int_equal(a.attempts, 2);
    assert_true(a.done_at - scheduled >= 0.5);
    assert_true(a.seconds >= 0.6);
    assert_true(a.done_at > b.done_at);
}

/* Callers that send back to back, against a server that accepts at most
 * LIMIT requests in any one-second window. */
struct worker {
    struct fix *f;
    hgf_aws_target t;
    double end;
};

static void worker_next(struct worker *w);

static void worker_cb(const hgf_aws_result *r, void *arg)
{
    struct worker *w = arg;
    if (now_s() < w->end)
        worker_next(w);
    else
        w->f->done++;
}

static void worker_next(struct worker *w)
{
    hgf_err err;
    if (hgf_awsjson_call(&w->t, PREFIX, "DescribeImages", "{}", worker_cb, w, &err))
        fail_msg("hgf_awsjson_call: %s", err.msg);
}

#define WORKERS 48
#define LIMIT 20
#define KEY "111122223333/us-east-1/ecr/DescribeImages"

struct fleet_run {
    int first, second;   /* throttles in each half of the run */
    double second_rate;  /* requests per second the server saw in the second half */
};

static void run_fleet(struct fix *f, const char *mode, double run_s, struct fleet_run *out)
{
    hgf_awsctl_free(f->ctl);
    fix_ctl(f, "3", mode);
    hgf_awsctl_set_delay_scale(f->ctl, 0.05);
    pthread_mutex_lock(&f->srv.mu);
    f->srv.script = RATE_LIMIT;
    f->srv.limit_per_s = LIMIT;
    f->srv.n_accepted = 0;
    memset(f->srv.req_bins, 0, sizeof f->srv.req_bins);
    memset(f->srv.throttle_bins, 0, sizeof f->srv.throttle_bins);
    f->srv.t0 = now_s();
    pthread_mutex_unlock(&f->srv.mu);
    struct worker w[WORKERS];
    double end = now_s() + run_s;
    f->done = 0;
    for (int i = 0; i < WORKERS; i++) {
        w[i] = (struct worker){.f = f, .t = target_of(f), .end = end};
        w[i].t.rate_key = "111122223333/us-east-1/ecr/";  /* a prefix: the op is added */
        worker_next(&w[i]);
    }
    assert_true(run_until(f, &f->done, WORKERS, run_s + 10));
    int sent = 0;
    memset(out, 0, sizeof *out);
    pthread_mutex_lock(&f->srv.mu);
    int half = (int)(run_s * 5), all = (int)(run_s * 10);
    for (int i = 0; i < BINS; i++) {
        *(i < half ? &out->first : &out->second) += f->srv.throttle_bins[i];
        sent += i >= half && i < all ? f->srv.req_bins[i] : 0;
    }
    int bad = f->srv.bad_signatures;
    pthread_mutex_unlock(&f->srv.mu);
    out->second_rate = sent / (run_s / 2);
    print_message("%s: throttles %d then %d; %.1f requests/s in the second half; "
                  "key rate %.2f/s\n", mode, out->first, out->second, out->second_rate,
                  hgf_awsctl_key_rate(f->ctl, KEY));
    assert_int_equal(bad, 0);
}

static void test_adaptive_converges(void **state)
{
    struct fix *f = *state;
    struct fleet_run a, s;
    run_fleet(f, "adaptive", 4.0, &a);
    /* The first throttle turns the limiter on: the burst of throttles
     * stays in the first half and the send rate stays under the limit. */
    assert_true(a.first >= WORKERS / 4);
    assert_true(a.second * 4 <= a.first);
    assert_true(a.second_rate <= LIMIT * 1.1);
    double rate = hgf_awsctl_key_rate(f->ctl, KEY);
    assert_true(rate >= HGF_AWSCTL_MIN_FILL_RATE && rate < 4 * LIMIT);
    assert_true(metric(f, "hgfleet_aws_throttles_total", L_IMAGES) >= a.first + a.second);

    /* The same callers in standard mode keep running into the limit. */
    run_fleet(f, "standard", 1.0, &s);
    assert_true(hgf_awsctl_key_rate(f->ctl, KEY) < 0);  /* no limiter */
    assert_true(s.second / 0.5 >= 10 * (a.second / 2.0 + 1));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_throttled_twice_then_ok, setup, teardown),
        cmocka_unit_test_setup_teardown(test_max_attempts_honoured, setup, teardown),
        cmocka_unit_test_setup_teardown(test_fatal_and_expired_not_retried, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unavailable_without_code_retried, setup, teardown),
        cmocka_unit_test_setup_teardown(test_connection_closed_retried, setup, teardown),
        cmocka_unit_test_setup_teardown(test_port_closed_retried, setup, teardown),
        cmocka_unit_test_setup_teardown(test_clock_skew_learned, setup, teardown),
        cmocka_unit_test_setup_teardown(test_without_ctl_single_attempt, setup, teardown),
        cmocka_unit_test_setup_teardown(test_default_rate_key, setup, teardown),
        cmocka_unit_test_setup_teardown(test_loop_responsive_during_backoff, setup, teardown),
        cmocka_unit_test_setup_teardown(test_adaptive_converges, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
