/* The async HTTP client against a real libmicrohttpd server on 127.0.0.1.
 *
 * The server runs a thread per connection so that handlers that sleep
 * overlap, which lets it measure how many requests per key really run at
 * the same time. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <curl/curl.h>
#include <ev.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "hgfleet/buf.h"
#include "hgfleet/http.h"

#define BIG_LEN 10000
#define MAX_KEYS 8

/* ------------------------------------------------------------------ */
/* the server                                                          */

struct keystat {
    char name[16];
    int cur, max;
};

struct srv {
    struct MHD_Daemon *d;
    unsigned short port;
    pthread_mutex_t mu;
    struct keystat keys[MAX_KEYS];
    int nkeys;
    int total_cur, total_max;
    int connections;
    atomic_int stopping;
};

struct reqctx {
    hgf_buf body;
};

static void nap(struct srv *s, long ms)
{
    /* Short steps so that stopping the daemon does not wait on sleepers. */
    for (long t = 0; t < ms && !atomic_load(&s->stopping); t += 5) {
        struct timespec ts = {0, 5 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
}

static struct keystat *keystat_for(struct srv *s, const char *name)
{
    for (int i = 0; i < s->nkeys; i++)
        if (strcmp(s->keys[i].name, name) == 0)
            return &s->keys[i];
    if (s->nkeys == MAX_KEYS)
        return NULL;
    struct keystat *k = &s->keys[s->nkeys++];
    snprintf(k->name, sizeof k->name, "%s", name);
    return k;
}

static void conc_change(struct srv *s, const char *key, int delta)
{
    pthread_mutex_lock(&s->mu);
    struct keystat *k = keystat_for(s, key ? key : "-");
    if (k) {
        k->cur += delta;
        if (k->cur > k->max)
            k->max = k->cur;
    }
    s->total_cur += delta;
    if (s->total_cur > s->total_max)
        s->total_max = s->total_cur;
    pthread_mutex_unlock(&s->mu);
}

static int srv_key_max(struct srv *s, const char *key)
{
    pthread_mutex_lock(&s->mu);
    struct keystat *k = keystat_for(s, key);
    int m = k ? k->max : -1;
    pthread_mutex_unlock(&s->mu);
    return m;
}

static enum MHD_Result reply(struct MHD_Connection *c, unsigned code, const void *body, size_t len,
                             const char *method, const char *const *hdrs)
{
    struct MHD_Response *r =
        MHD_create_response_from_buffer(len, (void *)body, MHD_RESPMEM_MUST_COPY);
    if (!r)
        return MHD_NO;
    MHD_add_response_header(r, "X-Method", method);
    for (size_t i = 0; hdrs && hdrs[i]; i += 2)
        MHD_add_response_header(r, hdrs[i], hdrs[i + 1]);
    enum MHD_Result ret = MHD_queue_response(c, code, r);
    MHD_destroy_response(r);
    return ret;
}

static const char *arg_or(struct MHD_Connection *c, const char *name, const char *dflt)
{
    const char *v = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, name);
    return v ? v : dflt;
}

static enum MHD_Result route_echo(struct MHD_Connection *c, const char *method, struct reqctx *rc)
{
    const char *custom = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "X-Custom");
    const char *ctype = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Content-Type");
    const char *hdrs[] = {"X-Echo-Header", custom ? custom : "(none)",
                          "X-Echo-Type", ctype ? ctype : "(none)", NULL};
    return reply(c, 200, rc->body.data ? rc->body.data : "", rc->body.len, method, hdrs);
}

static enum MHD_Result route_big(struct MHD_Connection *c, const char *method)
{
    char *big = malloc(BIG_LEN);
    if (!big)
        return MHD_NO;
    for (size_t i = 0; i < BIG_LEN; i++)
        big[i] = (char)('a' + i % 26);
    enum MHD_Result ret = reply(c, 200, big, BIG_LEN, method, NULL);
    free(big);
    return ret;
}

static enum MHD_Result route_redir(struct srv *s, struct MHD_Connection *c, const char *method)
{
    char loc[128];
    snprintf(loc, sizeof loc, "http://%s:%u/auth", arg_or(c, "to", "127.0.0.1"), s->port);
    const char *hdrs[] = {"Location", loc, "X-Hop", "1", NULL};
    return reply(c, 302, "moved", 5, method, hdrs);
}

static enum MHD_Result route(struct srv *s, struct MHD_Connection *c, const char *url,
                             const char *method, struct reqctx *rc)
{
    if (strcmp(url, "/hello") == 0) {
        const char *hdrs[] = {"X-Test", "yes", "X-Dup", "one", "X-Dup", "two", NULL};
        return reply(c, 200, "hello world", 11, method, hdrs);
    }
    if (strcmp(url, "/echo") == 0)
        return route_echo(c, method, rc);
    if (strcmp(url, "/big") == 0)
        return route_big(c, method);
    if (strcmp(url, "/slow") == 0) {
        nap(s, atol(arg_or(c, "ms", "1000")));
        return reply(c, 200, "slow", 4, method, NULL);
    }
    if (strcmp(url, "/conc") == 0) {
        const char *key = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "X-Key");
        conc_change(s, key, +1);
        nap(s, 50);
        conc_change(s, key, -1);
        return reply(c, 200, "ok", 2, method, NULL);
    }
    if (strcmp(url, "/redir") == 0)
        return route_redir(s, c, method);
    if (strcmp(url, "/auth") == 0) {
        const char *a = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Authorization");
        a = a ? a : "none";
        return reply(c, 200, a, strlen(a), method, NULL);
    }
    return reply(c, 404, "not found", 9, method, NULL);
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
    return route(cls, c, url, method, rc);
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

static void conn_notify(void *cls, struct MHD_Connection *c, void **socket_context,
                        enum MHD_ConnectionNotificationCode toe)
{
    struct srv *s = cls;
    if (toe != MHD_CONNECTION_NOTIFY_STARTED)
        return;
    pthread_mutex_lock(&s->mu);
    s->connections++;
    pthread_mutex_unlock(&s->mu);
}

static int srv_start(struct srv *s)
{
    memset(s, 0, sizeof *s);
    pthread_mutex_init(&s->mu, NULL);
    struct sockaddr_in sa = {0};
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    s->d = MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_THREAD_PER_CONNECTION, 0,
                            NULL, NULL, handler, s, MHD_OPTION_SOCK_ADDR, &sa,
                            MHD_OPTION_NOTIFY_COMPLETED, req_done, s,
                            MHD_OPTION_NOTIFY_CONNECTION, conn_notify, s, MHD_OPTION_END);
    if (!s->d)
        return -1;
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(s->d, MHD_DAEMON_INFO_BIND_PORT);
    s->port = info ? info->port : 0;
    return s->port ? 0 : -1;
}

static void srv_stop(struct srv *s)
{
    atomic_store(&s->stopping, 1);
    if (s->d)
        MHD_stop_daemon(s->d);
    pthread_mutex_destroy(&s->mu);
}

static int srv_total_max(struct srv *s)
{
    pthread_mutex_lock(&s->mu);
    int n = s->total_max;
    pthread_mutex_unlock(&s->mu);
    return n;
}

static int srv_connections(struct srv *s)
{
    pthread_mutex_lock(&s->mu);
    int n = s->connections;
    pthread_mutex_unlock(&s->mu);
    return n;
}

/* ------------------------------------------------------------------ */
/* the client side                                                     */

struct fix {
    struct srv srv;
    struct ev_loop *loop;
    hgf_http *h;
    int done;
    int max_in_flight_seen;
    int max_queued_seen;
    char url[128];
};

struct res {
    struct fix *f;
    int called;
    long status;
    int terr;
    char err[CURL_ERROR_SIZE];
    char *body;
    size_t body_len;
    int trunc;
    double total, queued;
    const char *want[4];
    char got[4][128];
    int found[4];
    int free_client;  /* the callback frees f->h */
    int chain_left;   /* the callback sends this many more, one at a time */
};

static const char *url_of(struct fix *f, const char *path)
{
    snprintf(f->url, sizeof f->url, "http://127.0.0.1:%u%s", f->srv.port, path);
    return f->url;
}

static void record(struct res *o, const hgf_http_resp *r)
{
    o->called++;
    o->status = r->status;
    o->terr = r->transport_error;
    snprintf(o->err, sizeof o->err, "%s", r->error);
    free(o->body);
    o->body = malloc(r->body_len + 1);
    memcpy(o->body, r->body, r->body_len + 1);  /* the NUL must be there */
    o->body_len = r->body_len;
    o->trunc = r->body_truncated;
    o->total = r->total_seconds;
    o->queued = r->queued_seconds;
    for (int i = 0; i < 4 && o->want[i]; i++) {
        const char *v = hgf_http_resp_header(r, o->want[i]);
        o->found[i] = v != NULL;
        snprintf(o->got[i], sizeof o->got[i], "%s", v ? v : "");
    }
}

static void on_resp(const hgf_http_resp *r, void *arg)
{
    struct res *o = arg;
    struct fix *f = o->f;
    record(o, r);
    f->done++;
    if (f->h) {
        hgf_http_stats st;
        hgf_http_get_stats(f->h, &st);
        if (st.in_flight > f->max_in_flight_seen)
            f->max_in_flight_seen = st.in_flight;
        if (st.queued > f->max_queued_seen)
            f->max_queued_seen = st.queued;
    }
    if (o->free_client) {
        hgf_http_free(f->h);
        f->h = NULL;
    }
}

static void on_chain(const hgf_http_resp *r, void *arg)
{
    struct res *o = arg;
    record(o, r);
    o->f->done++;
    if (r->status != 200 || o->chain_left-- <= 0)
        return;
    hgf_http_req req = {.method = "GET", .url = url_of(o->f, "/hello"), .limit_key = "k"};
    hgf_err err;
    assert_int_equal(hgf_http_send(o->f->h, &req, on_chain, o, &err), 0);
}

static void watchdog(struct ev_loop *loop, ev_timer *w, int revents)
{
    *(int *)w->data = 1;
}

/* Runs the loop until `n` callbacks ran or `secs` passed; true if done. */
static int run_until(struct fix *f, int n, double secs)
{
    int expired = 0;
    ev_timer wd;
    ev_timer_init(&wd, watchdog, secs, 0.);
    wd.data = &expired;
    ev_timer_start(f->loop, &wd);
    while (f->done < n && !expired)
        ev_run(f->loop, EVRUN_ONCE);
    ev_timer_stop(f->loop, &wd);
    return f->done >= n;
}

static void run_for(struct fix *f, double secs)
{
    run_until(f, INT32_MAX, secs);
}

static hgf_http *client(struct fix *f, int max_total, int max_per_key)
{
    hgf_http_opts o = {.max_total = max_total, .max_per_key = max_per_key};
    hgf_err err;
    f->h = hgf_http_new(f->loop, &o, &err);
    assert_non_null(f->h);
    return f->h;
}

static void send_ok(struct fix *f, const hgf_http_req *req, struct res *o)
{
    hgf_err err;
    o->f = f;
    assert_int_equal(hgf_http_send(f->h, req, on_resp, o, &err), 0);
}

static void res_free(struct res *o, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(o[i].body);
}

static int setup(void **state)
{
    struct fix *f = calloc(1, sizeof *f);
    if (!f || srv_start(&f->srv) != 0)
        return -1;
    f->loop = ev_loop_new(EVFLAG_AUTO);
    *state = f;
    return f->loop ? 0 : -1;
}

static int teardown(void **state)
{
    struct fix *f = *state;
    hgf_http_free(f->h);
    ev_loop_destroy(f->loop);
    srv_stop(&f->srv);
    free(f);
    return 0;
}

/* ------------------------------------------------------------------ */
/* tests                                                               */

static void test_get_body_and_headers(void **state)
{
    struct fix *f = *state;
    client(f, 0, 0);
    struct res o = {.want = {"X-Test", "x-dup", "CONTENT-LENGTH", "X-Absent"}};
    hgf_http_req req = {.method = "GET", .url = url_of(f, "/hello")};
    send_ok(f, &req, &o);
    assert_true(run_until(f, 1, 10));
    assert_int_equal(o.called, 1);
    assert_int_equal(o.status, 200);
    assert_int_equal(o.terr, 0);
    assert_string_equal(o.err, "");
    assert_int_equal(o.body_len, 11);
    assert_string_equal(o.body, "hello world");
    assert_int_equal(o.trunc, 0);
    assert_true(o.total > 0.0);
    assert_true(o.found[0]);
    assert_string_equal(o.got[0], "yes");
    assert_string_equal(o.got[1], "two");  /* last occurrence wins */
    assert_string_equal(o.got[2], "11");
    assert_false(o.found[3]);
    hgf_http_stats st;
    hgf_http_get_stats(f->h, &st);
    assert_int_equal(st.started, 1);
    assert_int_equal(st.completed, 1);
    assert_int_equal(st.failed, 0);
    assert_int_equal(st.in_flight, 0);
    assert_int_equal(st.queued, 0);
    res_free(&o, 1);
}

static void test_post_put_delete(void **state)
{
    struct fix *f = *state;
    client(f, 0, 0);
    static const char payload[] = "ping\0pong";  /* binary-safe: 9 bytes */
    const char *hdrs[] = {"X-Custom: abc", "Content-Type: application/x-amz-json-1.1", NULL};
    char *body = malloc(sizeof payload - 1);
    memcpy(body, payload, sizeof payload - 1);
    struct res o[3] = {{.want = {"X-Echo-Header", "X-Echo-Type", "X-Method"}},
                       {.want = {"X-Method"}}, {.want = {"X-Method"}}};
    hgf_http_req req = {.method = "POST", .url = url_of(f, "/echo"), .headers = hdrs,
                        .body = body, .body_len = sizeof payload - 1};
    send_ok(f, &req, &o[0]);
    free(body);  /* the client copied it */
    hgf_http_req put = {.method = "PUT", .url = url_of(f, "/echo"), .body = "xyz", .body_len = 3};
    send_ok(f, &put, &o[1]);
    hgf_http_req del = {.method = "DELETE", .url = url_of(f, "/echo")};
    send_ok(f, &del, &o[2]);
    assert_true(run_until(f, 3, 10));
    assert_int_equal(o[0].status, 200);
    assert_int_equal(o[0].body_len, 9);
    assert_memory_equal(o[0].body, payload, 9);
    assert_string_equal(o[0].got[0], "abc");
    assert_string_equal(o[0].got[1], "application/x-amz-json-1.1");
    assert_string_equal(o[0].got[2], "POST");
    assert_string_equal(o[1].got[0], "PUT");
    assert_string_equal(o[1].body, "xyz");
    assert_string_equal(o[2].got[0], "DELETE");
    assert_int_equal(o[2].body_len, 0);
    res_free(o, 3);
}

static void test_head(void **state)
{
    struct fix *f = *state;
    client(f, 0, 0);
    struct res o = {.want = {"X-Method", "X-Test"}};
    hgf_http_req req = {.method = "HEAD", .url = url_of(f, "/hello")};
    send_ok(f, &req, &o);
    assert_true(run_until(f, 1, 10));
    assert_int_equal(o.status, 200);
    assert_int_equal(o.terr, 0);
    assert_int_equal(o.body_len, 0);
    assert_string_equal(o.body, "");
    assert_string_equal(o.got[0], "HEAD");
    assert_string_equal(o.got[1], "yes");
    res_free(&o, 1);
}

static void test_404(void **state)
{
    struct fix *f = *state;
    client(f, 0, 0);
    struct res o = {0};
    hgf_http_req req = {.method = "GET", .url = url_of(f, "/nope")};
    send_ok(f, &req, &o);
    assert_true(run_until(f, 1, 10));
    assert_int_equal(o.status, 404);
    assert_int_equal(o.terr, 0);
    assert_string_equal(o.body, "not found");
    hgf_http_stats st;
    hgf_http_get_stats(f->h, &st);
    assert_int_equal(st.completed, 1);  /* a 404 is a response, not a failure */
    assert_int_equal(st.failed, 0);
    res_free(&o, 1);
}

static void test_connection_refused(void **state)
{
    struct fix *f = *state;
    client(f, 0, 0);
    /* Bound but not listening: connecting is refused and nobody can take
     * the port while the test runs. */
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {0};
    socklen_t sl = sizeof sa;
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof sa), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&sa, &sl), 0);
    char url[64];
    snprintf(url, sizeof url, "http://127.0.0.1:%u/hello", ntohs(sa.sin_port));
    struct res o = {0};
    hgf_http_req req = {.method = "GET", .url = url};
    send_ok(f, &req, &o);
    assert_true(run_until(f, 1, 10));
    close(fd);
    assert_int_equal(o.called, 1);
    assert_int_equal(o.status, 0);
    assert_int_equal(o.terr, CURLE_COULDNT_CONNECT);
    assert_true(strlen(o.err) > 0);
    assert_string_equal(o.body, "");
    hgf_http_stats st;
    hgf_http_get_stats(f->h, &st);
    assert_int_equal(st.failed, 1);
    assert_int_equal(st.completed, 0);
    res_free(&o, 1);
}

static void test_timeout(void **state)
{
    struct fix *f = *state;
    client(f, 0, 0);
    struct res o = {0};
    hgf_http_req req = {.method = "GET", .url = url_of(f, "/slow?ms=3000"), .timeout_ms = 200};
    send_ok(f, &req, &o);
    assert_true(run_until(f, 1, 10));
    assert_int_equal(o.status, 0);
    assert_int_equal(o.terr, CURLE_OPERATION_TIMEDOUT);
    assert_true(strlen(o.err) > 0);
    assert_true(o.total >= 0.15 && o.total < 2.0);
    res_free(&o, 1);
}

static void test_max_body(void **state)
{
    struct fix *f = *state;
    client(f, 0, 0);
    struct res o[3] = {{0}};
    hgf_http_req cut = {.method = "GET", .url = url_of(f, "/big"), .max_body = 100};
    send_ok(f, &cut, &o[0]);
    hgf_http_req exact = {.method = "GET", .url = url_of(f, "/big"), .max_body = BIG_LEN};
    send_ok(f, &exact, &o[1]);
    hgf_http_req dflt = {.method = "GET", .url = url_of(f, "/big")};
    send_ok(f, &dflt, &o[2]);
    assert_true(run_until(f, 3, 10));
    assert_int_equal(o[0].status, 200);
    assert_int_equal(o[0].terr, 0);
    assert_int_equal(o[0].trunc, 1);
    assert_int_equal(o[0].body_len, 100);
    assert_int_equal(strlen(o[0].body), 100);
    assert_memory_equal(o[0].body, "abcdefghijklmnopqrstuvwxyzabcd", 30);
    for (int i = 1; i < 3; i++) {
        assert_int_equal(o[i].status, 200);
        assert_int_equal(o[i].trunc, 0);
        assert_int_equal(o[i].body_len, BIG_LEN);
        assert_int_equal(o[i].body[BIG_LEN - 1], 'a' + (BIG_LEN - 1) % 26);
    }
    res_free(o, 3);
}

static void send_conc(struct fix *f, struct res *o, const char *key)
{
    char hdr[32];
    snprintf(hdr, sizeof hdr, "X-Key: %s", key);
    const char *hdrs[] = {hdr, NULL};
    hgf_http_req req = {.method = "GET", .url = url_of(f, "/conc"), .headers = hdrs,
                        .limit_key = key};
    send_ok(f, &req, o);
}

static void assert_all_ok(const struct res *o, int n)
{
    for (int i = 0; i < n; i++) {
        assert_int_equal(o[i].called, 1);
        assert_int_equal(o[i].status, 200);
    }
}

static void test_per_key_bound_one_key(void **state)
{
    struct fix *f = *state;
    client(f, 100, 3);
    struct res o[20] = {{0}};
    for (int i = 0; i < 20; i++)
        send_conc(f, &o[i], "a");
    hgf_http_stats st;
    hgf_http_get_stats(f->h, &st);
    assert_int_equal(st.queued, 20);
    assert_int_equal(st.in_flight, 0);
    assert_true(run_until(f, 20, 30));
    assert_all_ok(o, 20);
    int max_a = srv_key_max(&f->srv, "a");
    assert_true(max_a >= 2);  /* they did overlap */
    assert_true(max_a <= 3);
    assert_true(f->max_in_flight_seen <= 3);
    /* 20 requests of 50 ms, 3 at a time: the last ones waited. */
    double max_q = 0;
    for (int i = 0; i < 20; i++)
        max_q = o[i].queued > max_q ? o[i].queued : max_q;
    assert_true(max_q > 0.1);
    assert_true(o[0].queued < max_q);
    res_free(o, 20);
}

static void test_per_key_bound_two_keys(void **state)
{
    struct fix *f = *state;
    client(f, 100, 3);
    struct res o[40] = {{0}};
    for (int i = 0; i < 40; i++)
        send_conc(f, &o[i], i % 2 ? "b" : "a");
    assert_true(run_until(f, 40, 30));
    assert_all_ok(o, 40);
    assert_true(srv_key_max(&f->srv, "a") <= 3);
    assert_true(srv_key_max(&f->srv, "b") <= 3);
    assert_true(srv_total_max(&f->srv) > 3);  /* the keys ran side by side */
    assert_true(srv_total_max(&f->srv) <= 6);
    hgf_http_stats st;
    hgf_http_get_stats(f->h, &st);
    assert_int_equal(st.started, 40);
    assert_int_equal(st.completed, 40);
    res_free(o, 40);
}

static void test_total_bound(void **state)
{
    struct fix *f = *state;
    client(f, 4, 10);
    struct res o[24] = {{0}};
    const char *keys[] = {"k1", "k2", "k3", "k4", "k5", "k6"};
    for (int i = 0; i < 24; i++)
        send_conc(f, &o[i], keys[i % 6]);
    assert_true(run_until(f, 24, 30));
    assert_all_ok(o, 24);
    assert_true(srv_total_max(&f->srv) <= 4);
    assert_true(srv_total_max(&f->srv) >= 2);
    assert_true(f->max_in_flight_seen <= 4);
    assert_true(f->max_queued_seen > 0);
    res_free(o, 24);
}

static void test_keepalive_burst(void **state)
{
    struct fix *f = *state;
    client(f, 0, 3);
    struct res o[50] = {{0}};
    for (int i = 0; i < 50; i++) {
        hgf_http_req req = {.method = "GET", .url = url_of(f, "/hello"), .limit_key = "reg"};
        send_ok(f, &req, &o[i]);
    }
    assert_true(run_until(f, 50, 30));
    assert_all_ok(o, 50);
    hgf_http_stats st;
    hgf_http_get_stats(f->h, &st);
    assert_true(st.connections_opened >= 1);
    assert_true(st.connections_opened <= 3);
    assert_int_equal(srv_connections(&f->srv), (int)st.connections_opened);
    res_free(o, 50);
}

static void test_keepalive_sequential(void **state)
{
    struct fix *f = *state;
    client(f, 0, 0);
    struct res o = {.f = f, .chain_left = 49};
    hgf_http_req req = {.method = "GET", .url = url_of(f, "/hello"), .limit_key = "k"};
    hgf_err err;
    assert_int_equal(hgf_http_send(f->h, &req, on_chain, &o, &err), 0);
    assert_true(run_until(f, 50, 30));
    assert_int_equal(o.called, 50);
    assert_int_equal(o.status, 200);
    hgf_http_stats st;
    hgf_http_get_stats(f->h, &st);
    assert_int_equal(st.completed, 50);
    assert_int_equal(st.connections_opened, 1);
    assert_int_equal(srv_connections(&f->srv), 1);
    res_free(&o, 1);
}

static void test_callback_not_synchronous(void **state)
{
    struct fix *f = *state;
    client(f, 0, 0);
    /* A scheme curl refuses fails as fast as anything can. */
    struct res o[2] = {{0}};
    hgf_http_req bad = {.method = "GET", .url = "ftp://127.0.0.1/x"};
    send_ok(f, &bad, &o[0]);
    hgf_http_req ok = {.method = "GET", .url = url_of(f, "/hello")};
    send_ok(f, &ok, &o[1]);
    assert_int_equal(o[0].called, 0);
    assert_int_equal(o[1].called, 0);
    assert_true(run_until(f, 2, 10));
    run_for(f, 0.1);  /* nothing runs twice */
    assert_int_equal(o[0].called, 1);
    assert_int_equal(o[1].called, 1);
    assert_int_equal(o[0].status, 0);
    assert_int_equal(o[0].terr, CURLE_UNSUPPORTED_PROTOCOL);
    assert_int_equal(o[1].status, 200);
    res_free(o, 2);
}

static void break_watchdog(struct ev_loop *loop, ev_timer *w, int revents)
{
    *(int *)w->data = 1;
    ev_break(loop, EVBREAK_ALL);
}

/* Callers drive the loop with plain ev_run: it must return once every
 * request is done, so the client leaves no watcher behind when idle. */
static void test_ev_run_returns_when_idle(void **state)
{
    struct fix *f = *state;
    client(f, 0, 2);
    struct res o[5] = {{0}};
    for (int i = 0; i < 5; i++) {
        hgf_http_req req = {.method = "GET", .url = url_of(f, "/hello"), .limit_key = "k"};
        send_ok(f, &req, &o[i]);
    }
    int expired = 0;
    ev_timer wd;
    ev_timer_init(&wd, break_watchdog, 10., 0.);
    wd.data = &expired;
    ev_timer_start(f->loop, &wd);
    ev_unref(f->loop);  /* the watchdog alone does not keep ev_run going */
    ev_run(f->loop, 0);
    ev_ref(f->loop);
    ev_timer_stop(f->loop, &wd);
    assert_int_equal(expired, 0);
    assert_all_ok(o, 5);
    res_free(o, 5);
}

static void test_free_with_pending(void **state)
{
    struct fix *f = *state;
    client(f, 0, 2);
    struct res o[6] = {{0}};
    for (int i = 0; i < 6; i++) {
        hgf_http_req req = {.method = "POST", .url = url_of(f, "/slow?ms=2000"),
                            .body = "b", .body_len = 1, .limit_key = "k"};
        send_ok(f, &req, &o[i]);
    }
    run_for(f, 0.2);
    hgf_http_stats st;
    hgf_http_get_stats(f->h, &st);
    assert_int_equal(st.in_flight, 2);
    assert_int_equal(st.queued, 4);
    hgf_http_free(f->h);
    f->h = NULL;
    run_for(f, 0.1);
    for (int i = 0; i < 6; i++)
        assert_int_equal(o[i].called, 0);
    /* Nothing of the client is left on the loop. */
    assert_int_equal(ev_run(f->loop, EVRUN_NOWAIT), 0);
}

static void test_free_before_loop_runs(void **state)
{
    struct fix *f = *state;
    client(f, 0, 0);
    struct res o = {0};
    hgf_http_req req = {.method = "GET", .url = url_of(f, "/hello")};
    send_ok(f, &req, &o);
    hgf_http_free(f->h);
    f->h = NULL;
    run_for(f, 0.1);
    assert_int_equal(o.called, 0);
}

static void test_free_from_callback(void **state)
{
    struct fix *f = *state;
    client(f, 0, 1);
    struct res o[3] = {{.free_client = 1}, {0}, {0}};
    for (int i = 0; i < 3; i++) {
        hgf_http_req req = {.method = "GET", .url = url_of(f, "/hello"), .limit_key = "k"};
        send_ok(f, &req, &o[i]);
    }
    assert_true(run_until(f, 1, 10));
    run_for(f, 0.2);
    assert_null(f->h);
    assert_int_equal(o[0].called, 1);
    assert_int_equal(o[1].called, 0);
    assert_int_equal(o[2].called, 0);
    res_free(o, 3);
}

static void test_redirects(void **state)
{
    struct fix *f = *state;
    client(f, 0, 0);
    const char *auth[] = {"Authorization: Bearer sekrit", NULL};
    struct res o[3] = {{.want = {"Location", "X-Hop"}}, {.want = {"Location", "X-Hop"}}, {0}};
    hgf_http_req plain = {.method = "GET", .url = url_of(f, "/redir"), .headers = auth};
    send_ok(f, &plain, &o[0]);
    hgf_http_req other = {.method = "GET", .url = url_of(f, "/redir?to=localhost"),
                          .headers = auth, .follow_redirects = 1};
    send_ok(f, &other, &o[1]);
    hgf_http_req same = {.method = "GET", .url = url_of(f, "/redir?to=127.0.0.1"),
                         .headers = auth, .follow_redirects = 1};
    send_ok(f, &same, &o[2]);
    assert_true(run_until(f, 3, 10));
    assert_int_equal(o[0].status, 302);  /* not followed by default */
    assert_true(o[0].found[0]);
    assert_string_equal(o[0].body, "moved");
    assert_int_equal(o[1].status, 200);
    assert_string_equal(o[1].body, "none");  /* no credentials to another host */
    assert_false(o[1].found[0]);             /* only the final response's headers */
    assert_false(o[1].found[1]);
    assert_int_equal(o[2].status, 200);
    assert_string_equal(o[2].body, "Bearer sekrit");
    res_free(o, 3);
}

static void test_input_errors(void **state)
{
    struct fix *f = *state;
    hgf_err err;
    hgf_http_opts bad_opts = {.max_per_key = -1};
    assert_null(hgf_http_new(f->loop, &bad_opts, &err));
    assert_int_equal(err.code, HGF_EINPUT);
    assert_non_null(strstr(err.msg, "max_per_key"));
    client(f, 0, 0);
    struct res o = {.f = f};
    const char *crlf[] = {"X-Ok: 1", "X-Bad: a\r\nInjected: 1", NULL};
    struct {
        hgf_http_req req;
        const char *field;
    } cases[] = {
        {{.method = "get", .url = "http://x/"}, "method"},
        {{.url = "http://x/"}, "method"},
        {{.method = "GET", .url = ""}, "url"},
        {{.method = "GET", .url = "http://x/", .body = "x", .body_len = 1}, "body"},
        {{.method = "POST", .url = "http://x/", .body_len = 3}, "body"},
        {{.method = "GET", .url = "http://x/", .headers = crlf}, "headers[1]"},
        {{.method = "GET", .url = "http://x/", .timeout_ms = -1}, "timeout_ms"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        hgf_err_clear(&err);
        assert_int_equal(hgf_http_send(f->h, &cases[i].req, on_resp, &o, &err), HGF_EINPUT);
        assert_non_null(strstr(err.msg, cases[i].field));
        assert_null(strstr(err.msg, "Injected"));
    }
    run_for(f, 0.05);
    assert_int_equal(o.called, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_get_body_and_headers, setup, teardown),
        cmocka_unit_test_setup_teardown(test_post_put_delete, setup, teardown),
        cmocka_unit_test_setup_teardown(test_head, setup, teardown),
        cmocka_unit_test_setup_teardown(test_404, setup, teardown),
        cmocka_unit_test_setup_teardown(test_connection_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_timeout, setup, teardown),
        cmocka_unit_test_setup_teardown(test_max_body, setup, teardown),
        cmocka_unit_test_setup_teardown(test_per_key_bound_one_key, setup, teardown),
        cmocka_unit_test_setup_teardown(test_per_key_bound_two_keys, setup, teardown),
        cmocka_unit_test_setup_teardown(test_total_bound, setup, teardown),
        cmocka_unit_test_setup_teardown(test_keepalive_burst, setup, teardown),
        cmocka_unit_test_setup_teardown(test_keepalive_sequential, setup, teardown),
        cmocka_unit_test_setup_teardown(test_callback_not_synchronous, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ev_run_returns_when_idle, setup, teardown),
        cmocka_unit_test_setup_teardown(test_free_with_pending, setup, teardown),
        cmocka_unit_test_setup_teardown(test_free_before_loop_runs, setup, teardown),
        cmocka_unit_test_setup_teardown(test_free_from_callback, setup, teardown),
        cmocka_unit_test_setup_teardown(test_redirects, setup, teardown),
        cmocka_unit_test_setup_teardown(test_input_errors, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
