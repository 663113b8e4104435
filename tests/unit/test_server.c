/* The libmicrohttpd server glue on a libev loop, exercised by the async HTTP
 * client on the same loop: immediate replies, replies deferred through
 * suspend/resume (several in flight at once), request bodies, 404/405/413,
 * and listen address parsing. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <curl/curl.h>
#include <ev.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hgfleet/buf.h"
#include "hgfleet/http.h"
#include "hgfleet/server.h"

/* ---- listen addresses ------------------------------------------------ */

static void parses(const char *in, const char *host, const char *port)
{
    char h[64], p[16];
    hgf_err err;
    hgf_err_clear(&err);
    int rc = hgf_server_parse_listen(in, h, sizeof h, p, sizeof p, &err);
    if (rc)
        print_error("parse(\"%s\"): %s\n", in, err.msg);
    assert_int_equal(rc, 0);
    assert_string_equal(h, host);
    assert_string_equal(p, port);
}

static void rejects(const char *in, const char *needle)
{
    char h[64], p[16];
    hgf_err err;
    hgf_err_clear(&err);
    assert_int_equal(hgf_server_parse_listen(in, h, sizeof h, p, sizeof p, &err), HGF_EINPUT);
    if (!strstr(err.msg, needle))
        print_error("parse(\"%s\"): message \"%s\" lacks \"%s\"\n", in, err.msg, needle);
    assert_non_null(strstr(err.msg, needle));
    assert_non_null(strstr(err.msg, "HGFLEET_LISTEN"));
}

static void test_parse_listen(void **state)
{
    parses("0.0.0.0:8080", "0.0.0.0", "8080");
    parses("127.0.0.1:0", "127.0.0.1", "0");
    parses(":9090", "", "9090");
    parses("8081", "", "8081");
    parses("[::1]:8080", "::1", "8080");
    parses("[::]:0", "::", "0");
    parses("localhost:65535", "localhost", "65535");
    rejects("127.0.0.1:65536", "0 to 65535");
    rejects("127.0.0.1:", "0 to 65535");
    rejects("127.0.0.1:http", "0 to 65535");
    rejects("", "0 to 65535");
    rejects("::1:8080", "brackets");
    rejects("[::1]8080", "[IPv6]:PORT");
    rejects("[::1", "[IPv6]:PORT");
}

/* ---- a live server --------------------------------------------------- */

typedef struct fixture {
    struct ev_loop *loop;
    hgf_server *server;
    hgf_http *http;
    char base[160];
    int pending;          /* client requests not answered yet */
    int deferred_replies; /* replies sent from timers */
} fixture;

typedef struct later {
    fixture *f;
    hgf_server_req *req;
    ev_timer t;
} later;

static void reply_later(struct ev_loop *loop, ev_timer *w, int revents)
{
    later *l = w->data;
    l->f->deferred_replies++;
    hgf_server_reply(l->req, 202, "text/plain", "later", 5);
    free(l);
}

static void h_now(hgf_server_req *req, void *arg)
{
    hgf_server_reply_json(req, 200, json_pack("{s:s}", "path", hgf_server_req_path(req)));
}

static void h_later(hgf_server_req *req, void *arg)
{
    fixture *f = arg;
    later *l = calloc(1, sizeof *l);
    l->f = f;
    l->req = req;
    ev_timer_init(&l->t, reply_later, 0.05, 0.);
    l->t.data = l;
    ev_timer_start(f->loop, &l->t);
    hgf_server_suspend(req);
}

static void h_echo(hgf_server_req *req, void *arg)
{
    size_t n;
    const char *body = hgf_server_req_body(req, &n);
    const char *ct = hgf_server_req_header(req, "content-type");
    hgf_buf out = HGF_BUF_INIT;
    hgf_buf_printf(&out, "%s|%zu|%s", ct ? ct : "-", n, body);
    hgf_server_reply(req, 200, "text/plain", out.data, out.len);
    hgf_buf_free(&out);
}

/* Replies with what a handler reads from the URL: the path under a prefix
 * route, the query parameter "a", and the first unknown or repeated one. */
static void h_url(hgf_server_req *req, void *arg)
{
    static const char *const known[] = {"a", "b", NULL};
    const char *sub = hgf_server_req_subpath(req);
    const char *a = hgf_server_req_query(req, "a");
    const char *bad = hgf_server_req_query_unexpected(req, known);
    hgf_buf out = HGF_BUF_INIT;
    hgf_buf_printf(&out, "sub=%s a=%s bad=%s", sub ? sub : "(none)", a ? a : "(none)",
                   bad ? bad : "(none)");
    hgf_server_reply(req, 200, "text/plain", out.data, out.len);
    hgf_buf_free(&out);
}

static const hgf_route ROUTES[] = {
    {"GET", "/now", h_now},
    {"GET", "/later", h_later},
    {"POST", "/echo", h_echo},
    {"GET", "/tree/", h_now},
    {"GET", "/url", h_url},
    {"GET", "/url/", h_url},
};

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof *f);
    f->loop = ev_loop_new(EVFLAG_AUTO);
    hgf_err err;
    hgf_err_clear(&err);
    hgf_server_opts o = {.listen = "127.0.0.1:0", .routes = ROUTES,
                         .n_routes = (int)(sizeof ROUTES / sizeof ROUTES[0]), .arg = f,
                         .max_body = 64};
    f->server = hgf_server_start(f->loop, &o, &err);
    if (!f->server)
        print_error("server: %s\n", err.msg);
    assert_non_null(f->server);
    hgf_http_opts ho = {0};
    f->http = hgf_http_new(f->loop, &ho, &err);
    assert_non_null(f->http);
    snprintf(f->base, sizeof f->base, "http://%s", hgf_server_address(f->server));
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    hgf_http_free(f->http);
    hgf_server_stop(f->server);
    ev_loop_destroy(f->loop);
    free(f);
    return 0;
}

typedef struct got {
    fixture *f;
    long status;
    char body[256];
    char ctype[64];
} got;

static void on_resp(const hgf_http_resp *resp, void *arg)
{
    got *g = arg;
    g->status = resp->status;
    snprintf(g->body, sizeof g->body, "%s", resp->body);
    const char *ct = hgf_http_resp_header(resp, "Content-Type");
    snprintf(g->ctype, sizeof g->ctype, "%s", ct ? ct : "");
    g->f->pending--;
}

static void send_req(fixture *f, got *g, const char *method, const char *path, const char *body)
{
    char url[256];
    snprintf(url, sizeof url, "%s%s", f->base, path);
    const char *hdrs[] = {"Content-Type: application/json", NULL};
    hgf_http_req r = {.method = method, .url = url, .headers = body ? hdrs : NULL, .body = body,
                      .body_len = body ? strlen(body) : 0};
    g->f = f;
    hgf_err err;
    assert_int_equal(hgf_http_send(f->http, &r, on_resp, g, &err), 0);
    f->pending++;
}

static void run_until_answered(fixture *f)
{
    for (int i = 0; f->pending > 0 && i < 100000; i++)
        ev_run(f->loop, EVRUN_ONCE);
    assert_int_equal(f->pending, 0);
}

static void test_address(void **state)
{
    fixture *f = *state;
    const char *a = hgf_server_address(f->server);
    assert_true(strncmp(a, "127.0.0.1:", 10) == 0);
    assert_true(atoi(a + 10) > 0); /* port 0 was resolved */
}

static void test_immediate_and_errors(void **state)
{
    fixture *f = *state;
    got now, head, prefix, missing, method, big;
    send_req(f, &now, "GET", "/now", NULL);
    send_req(f, &head, "HEAD", "/now", NULL);
    send_req(f, &prefix, "GET", "/tree/a/b", NULL);
    send_req(f, &missing, "GET", "/nowhere", NULL);
    send_req(f, &method, "POST", "/now", "{}");
    send_req(f, &big, "POST", "/echo",
             "{\"this body\":\"is longer than the sixty-four bytes the server allows\"}");
    run_until_answered(f);
    assert_int_equal(now.status, 200);
    assert_string_equal(now.body, "{\"path\":\"/now\"}\n");
    assert_string_equal(now.ctype, "application/json");
    assert_int_equal(head.status, 200);
    assert_string_equal(head.body, "");
    assert_int_equal(prefix.status, 200);
    assert_string_equal(prefix.body, "{\"path\":\"/tree/a/b\"}\n");
    assert_int_equal(missing.status, 404);
    assert_non_null(strstr(missing.body, "no route for GET /nowhere"));
    assert_int_equal(method.status, 405);
    assert_non_null(strstr(method.body, "POST"));
    assert_int_equal(big.status, 413);
    assert_non_null(strstr(big.body, "64 bytes"));
}

static void test_body(void **state)
{
    fixture *f = *state;
    got echo;
    send_req(f, &echo, "POST", "/echo", "{\"a\":1}");
    run_until_answered(f);
    assert_int_equal(echo.status, 200);
    assert_string_equal(echo.body, "application/json|7|{\"a\":1}");
}

/* Deferred replies, several suspended at once, interleaved with immediate
 * ones that must not wait for them. */
static void test_suspend_resume(void **state)
{
    fixture *f = *state;
    got later_r[5], now;
    for (int i = 0; i < 5; i++)
        send_req(f, &later_r[i], "GET", "/later", NULL);
    send_req(f, &now, "GET", "/now", NULL);
    run_until_answered(f);
    assert_int_equal(f->deferred_replies, 5);
    for (int i = 0; i < 5; i++) {
        assert_int_equal(later_r[i].status, 202);
        assert_string_equal(later_r[i].body, "later");
    }
    assert_int_equal(now.status, 200);
}

/* Path parameters and query strings, as the read-only API reads them. */
static void test_url_parts(void **state)
{
    static const struct {
        const char *path, *want;
    } cases[] = {
        {"/url", "sub=(none) a=(none) bad=(none)"},
        {"/url?a=1&b=2", "sub=(none) a=1 bad=(none)"},
        {"/url/", "sub= a=(none) bad=(none)"},
        {"/url/7/report?a=x%20y%2Fz", "sub=7/report a=x y/z bad=(none)"},
        {"/url/7?a", "sub=7 a= bad=(none)"},
        {"/url?a=", "sub=(none) a= bad=(none)"},
        {"/url?a=1&a=2", "sub=(none) a=1 bad=a"},
        {"/url?b=1&c=2", "sub=(none) a=(none) bad=c"},
        {"/url?A=1", "sub=(none) a=(none) bad=A"},
    };
    fixture *f = *state;
    enum { N = sizeof cases / sizeof cases[0] };
    got g[N];
    for (int i = 0; i < N; i++)
        send_req(f, &g[i], "GET", cases[i].path, NULL);
    run_until_answered(f);
    for (int i = 0; i < N; i++) {
        if (strcmp(g[i].body, cases[i].want))
            print_error("GET %s: got \"%s\"\n", cases[i].path, g[i].body);
        assert_int_equal(g[i].status, 200);
        assert_string_equal(g[i].body, cases[i].want);
    }
}

int main(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_listen),
        cmocka_unit_test_setup_teardown(test_address, setup, teardown),
        cmocka_unit_test_setup_teardown(test_immediate_and_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_body, setup, teardown),
        cmocka_unit_test_setup_teardown(test_suspend_resume, setup, teardown),
        cmocka_unit_test_setup_teardown(test_url_parts, setup, teardown),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    curl_global_cleanup();
    return rc;
}
