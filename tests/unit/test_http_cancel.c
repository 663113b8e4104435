/* hgf_http_cancel_all against a black hole: a socket that accepts
 * connections (the kernel's backlog does) and never answers. Requests in
 * flight, ready, and waiting for their key's slot all end at once, each
 * callback exactly once, with CURLE_ABORTED_BY_CALLBACK; a request sent by
 * one of those callbacks ends too; nothing is left for hgf_http_free. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <curl/curl.h>
#include <ev.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "hgfleet/http.h"

typedef struct hole {
    int fd;
    char url[64];
} hole;

static void hole_open(hole *h)
{
    h->fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(h->fd >= 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(bind(h->fd, (struct sockaddr *)&a, sizeof a), 0);
    assert_int_equal(listen(h->fd, 16), 0);
    socklen_t len = sizeof a;
    assert_int_equal(getsockname(h->fd, (struct sockaddr *)&a, &len), 0);
    snprintf(h->url, sizeof h->url, "http://127.0.0.1:%d/", ntohs(a.sin_port));
}

typedef struct seen {
    int calls, aborted;
    hgf_http *resend_on;  /* send one more request from the first callback */
    const char *url;
} seen;

static void on_resp(const hgf_http_resp *r, void *arg)
{
    seen *s = arg;
    s->calls++;
    s->aborted += r->transport_error == CURLE_ABORTED_BY_CALLBACK && r->status == 0 &&
                  strstr(r->error, "cancelled") != NULL;
    if (s->resend_on) {
        hgf_http *h = s->resend_on;
        s->resend_on = NULL;
        hgf_http_req req = {.method = "GET", .url = s->url};
        assert_int_equal(hgf_http_send(h, &req, on_resp, s, NULL), 0);
    }
}

static void on_tick(struct ev_loop *loop, ev_timer *w, int revents)
{
    ev_break(loop, EVBREAK_ONE);
}

/* Runs the loop for a while, so that requests connect and hang. */
static void run_for(struct ev_loop *loop, double s)
{
    ev_timer t;
    ev_timer_init(&t, on_tick, s, 0.);
    ev_timer_start(loop, &t);
    ev_run(loop, 0);
    ev_timer_stop(loop, &t);
}

static void test_cancel_all_ends_every_request_once(void **state)
{
    (void)state;
    hole bh;
    hole_open(&bh);
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    hgf_http_opts o = {.max_total = 2, .max_per_key = 1};
    hgf_http *h = hgf_http_new(loop, &o, NULL);
    assert_non_null(h);
    seen s = {.resend_on = h, .url = bh.url};
    /* Two keys with one slot each: a and b run, a second a waits for its
     * key, and one without a key waits for the total bound. */
    const char *keys[] = {"a", "b", "a", NULL};
    for (int i = 0; i < 4; i++) {
        hgf_http_req req = {.method = "GET", .url = bh.url, .limit_key = keys[i]};
        assert_int_equal(hgf_http_send(h, &req, on_resp, &s, NULL), 0);
    }
    run_for(loop, 0.3);
    hgf_http_stats st;
    hgf_http_get_stats(h, &st);
    assert_int_equal(st.in_flight, 2);
    assert_int_equal(s.calls, 0);

    hgf_http_cancel_all(h);
    assert_int_equal(s.calls, 5); /* the four, and the one the first callback sent */
    assert_int_equal(s.aborted, 5);
    hgf_http_get_stats(h, &st);
    assert_int_equal(st.in_flight, 0);
    assert_int_equal(st.queued, 0);
    assert_int_equal(st.failed, 5);
    assert_int_equal(st.started, st.completed + st.failed);

    run_for(loop, 0.1); /* nothing ends twice */
    assert_int_equal(s.calls, 5);
    hgf_http_cancel_all(h); /* nothing left: a no-op */
    assert_int_equal(s.calls, 5);
    hgf_http_free(h);
    ev_loop_destroy(loop);
    close(bh.fd);
}

/* The client stays usable: a request sent after a cancel runs normally
 * (here: it hangs until the next cancel). */
static void test_client_works_after_cancel(void **state)
{
    (void)state;
    hole bh;
    hole_open(&bh);
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    hgf_http *h = hgf_http_new(loop, NULL, NULL);
    assert_non_null(h);
    seen s = {0};
    hgf_http_req req = {.method = "GET", .url = bh.url};
    assert_int_equal(hgf_http_send(h, &req, on_resp, &s, NULL), 0);
    hgf_http_cancel_all(h); /* still queued: never started */
    assert_int_equal(s.calls, 1);
    assert_int_equal(hgf_http_send(h, &req, on_resp, &s, NULL), 0);
    run_for(loop, 0.2);
    hgf_http_stats st;
    hgf_http_get_stats(h, &st);
    assert_int_equal(st.in_flight, 1);
    assert_int_equal(s.calls, 1);
    hgf_http_cancel_all(h);
    assert_int_equal(s.calls, 2);
    assert_int_equal(s.aborted, 2);
    hgf_http_free(h);
    ev_loop_destroy(loop);
    close(bh.fd);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cancel_all_ends_every_request_once),
        cmocka_unit_test(test_client_works_after_cancel),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
