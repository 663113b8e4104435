/* GET /api/...: the read-only JSON API. A handler checks the admin token,
 * turns the request into a catalog query (the very one the CLI runs for its
 * --json output), suspends the request and answers from the query's
 * callback: nothing here waits on the database. */
#include "hgfleet/api.h"
#include "hgfleet/catalog.h"
#include "hgfleet/log.h"
#include "hgfleet/registry.h"
#include "hgfleet/report.h"

#include <ev.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define DEFAULT_LIMIT 100
#define MAX_LIMIT 1000
/* MHD does not time out a suspended request, so each one bounds its wait. */
#define QUERY_TIMEOUT_S 30.0

typedef struct call {
    struct ev_loop *loop;
    hgf_server_req *req;      /* NULL once answered */
    ev_timer timeout;
    int report;               /* render the result as a sweep report */
    hgf_report_format format;
} call;

/* ---- replies ----------------------------------------------------------- */

/* Messages may quote what the client sent, which need not be UTF-8; a JSON
 * string must be. */
static void printable_copy(char *out, size_t n, const char *in)
{
    snprintf(out, n, "%s", in);
    for (char *p = out; *p; p++)
        if ((unsigned char)*p < 0x20 || (unsigned char)*p >= 0x7f)
            *p = '?';
}

static void reply_error(hgf_server_req *req, unsigned status, const char *msg, const char *field)
{
    char text[1100], name[80];
    printable_copy(text, sizeof text, msg);
    json_t *body = json_pack("{s:s}", "error", text);
    if (field) {
        printable_copy(name, sizeof name, field);
        json_object_set_new(body, "field", json_string(name));
    }
    hgf_server_reply_json(req, status, body);
}

static void reply_failure(hgf_server_req *req, const hgf_err *err)
{
    if (err->code == HGF_ENOTFOUND) {
        reply_error(req, 404, err->msg, NULL);
    } else if (err->code == HGF_EFAIL) { /* a sweep's report, not written yet */
        reply_error(req, 409, err->msg, NULL);
    } else {
        hgf_log_warn("api.query_failed", "%s %s: %s", hgf_server_req_method(req),
                     hgf_server_req_path(req), err->msg);
        reply_error(req, 503, "database unavailable; retry later", NULL);
    }
}

static const char *content_type(hgf_report_format f)
{
    return f == HGF_REPORT_CSV    ? "text/csv; charset=utf-8"
           : f == HGF_REPORT_HTML ? "text/html; charset=utf-8"
                                  : "application/json";
}

static void reply_report(hgf_server_req *req, const json_t *report, hgf_report_format f)
{
    hgf_buf b = HGF_BUF_INIT;
    hgf_err e;
    if (hgf_report_render(report, f, &b, &e)) {
        hgf_log_warn("api.report_render", "%s: %s", hgf_server_req_path(req), e.msg);
        reply_error(req, 500, "the report could not be rendered", NULL);
    } else {
        hgf_server_reply(req, 200, content_type(f), b.data, b.len);
    }
    hgf_buf_free(&b);
}

/* ---- running a query ---------------------------------------------------- */

static void on_result(json_t *result, const hgf_err *err, void *arg)
{
    call *c = arg;
    if (c->req) {
        ev_timer_stop(c->loop, &c->timeout);
        if (err)
            reply_failure(c->req, err);
        else if (c->report)
            reply_report(c->req, result, c->format);
        else
            hgf_server_reply_json(c->req, 200, json_incref(result));
    }
    json_decref(result);
    free(c);
}

static void on_timeout(struct ev_loop *loop, ev_timer *w, int revents)
{
    call *c = w->data;
    reply_error(c->req, 503, "the database did not answer within 30 s; retry later", NULL);
    c->req = NULL; /* the query's callback frees c */
}

static void run(hgf_server_req *req, hgf_runtime *rt, const hgf_catalog_query *q, int report,
                hgf_report_format f)
{
    call *c = calloc(1, sizeof *c);
    if (!c) {
        reply_error(req, 503, "out of memory", NULL);
        return;
    }
    *c = (call){.loop = rt->loop, .req = req, .report = report, .format = f};
    if (hgf_catalog_send(rt->store, q, on_result, c)) {
        free(c);
        reply_error(req, 503, "database unavailable; retry later", NULL);
        return;
    }
    ev_timer_init(&c->timeout, on_timeout, QUERY_TIMEOUT_S, 0.);
    c->timeout.data = c;
    ev_timer_start(c->loop, &c->timeout);
    hgf_server_suspend(req);
}

/* ---- checking the request ----------------------------------------------- */

/* The runtime when the caller may read, else NULL (answered already). */
static hgf_runtime *admitted(hgf_server_req *req, void *arg)
{
    hgf_runtime *rt = hgf_api_runtime(arg);
    /* Authentication first: a caller without the token learns nothing, not
     * even whether the database is up. */
    const char *token = hgf_api_config(arg)->admin_token;
    if (!token) {
        reply_error(req, 403, "the read-only API is disabled: set HGFLEET_ADMIN_TOKEN to enable "
                              "it", NULL);
        return NULL;
    }
    const char *auth = hgf_server_req_header(req, "authorization");
    if (!auth || strncasecmp(auth, "Bearer ", 7) ||
        !hgf_api_token_equal(auth + 7, strlen(auth + 7), token)) {
        reply_error(req, 401, "bad or missing credentials: send Authorization: Bearer "
                              "<HGFLEET_ADMIN_TOKEN>", NULL);
        hgf_server_reply_header(req, "WWW-Authenticate", "Bearer realm=\"hgfleet-api\"");
        return NULL;
    }
    if (!rt)
        reply_error(req, 503, "not ready: no database yet", NULL);
    return rt;
}

static int params_ok(hgf_server_req *req, const char *const *known)
{
    const char *bad = hgf_server_req_query_unexpected(req, known);
    if (!bad)
        return 1;
    char msg[160];
    snprintf(msg, sizeof msg, "%.64s: unknown or repeated query parameter", bad);
    reply_error(req, 400, msg, bad);
    return 0;
}

static int limit_ok(hgf_server_req *req, int *limit)
{
    hgf_err e;
    if (!hgf_catalog_parse_limit(hgf_server_req_query(req, "limit"), "limit", DEFAULT_LIMIT,
                                 MAX_LIMIT, limit, &e))
        return 1;
    reply_error(req, 400, e.msg, "limit");
    return 0;
}

static void no_route(hgf_server_req *req)
{
    char msg[300];
    snprintf(msg, sizeof msg, "no route for GET %.200s", hgf_server_req_path(req));
    reply_error(req, 404, msg, NULL);
}

/* The ID of <prefix>ID[/rest]; *rest is what follows the '/', or NULL.
 * 0, or answered with 400 naming the id. */
static int path_id(hgf_server_req *req, int64_t *id, const char **rest)
{
    const char *sub = hgf_server_req_subpath(req);
    const char *slash = strchr(sub, '/');
    *rest = slash ? slash + 1 : NULL;
    char *text = strndup(sub, slash ? (size_t)(slash - sub) : strlen(sub));
    hgf_err e;
    int rc = text ? hgf_catalog_parse_id(text, "id", id, &e) : HGF_ENOMEM;
    free(text);
    if (rc)
        reply_error(req, 400, rc == HGF_ENOMEM ? "out of memory" : e.msg, "id");
    return rc;
}

/* ---- the routes --------------------------------------------------------- */

static const char *const NO_PARAMS[] = {NULL};

void hgf_api_connections(hgf_server_req *req, void *arg)
{
    hgf_catalog_query q;
    hgf_runtime *rt = admitted(req, arg);
    if (rt && params_ok(req, NO_PARAMS))
        run(req, rt, hgf_catalog_connections(&q), 0, HGF_REPORT_JSON);
}

void hgf_api_connection(hgf_server_req *req, void *arg)
{
    hgf_catalog_query q;
    int64_t id;
    const char *rest;
    hgf_runtime *rt = admitted(req, arg);
    if (!rt || !params_ok(req, NO_PARAMS) || path_id(req, &id, &rest))
        return;
    if (rest)
        no_route(req);
    else
        run(req, rt, hgf_catalog_connection(&q, id), 0, HGF_REPORT_JSON);
}

/* after=<registry>/<repository>@<digest>, the last image of the previous
 * page as `docker pull` would name it, continues the listing past it. */
static int images_after(hgf_catalog_query *q, const char *after, hgf_err *e)
{
    const char *slash = strchr(after, '/'), *at = strrchr(after, '@');
    if (!slash || !at || at < slash + 2 || !hgf_registry_is_digest(at + 1))
        return hgf_err_set(e, HGF_EINPUT, "after: expected <registry>/<repository>@<digest>, "
                                          "the last image of the previous page");
    char *host = strndup(after, (size_t)(slash - after));
    char *repo = strndup(slash + 1, (size_t)(at - slash - 1));
    json_t *last = json_pack("{s:s?, s:s?, s:s}", "registry", host, "repository", repo,
                             "digest", at + 1);
    int rc = last ? hgf_catalog_images_after(q, last, e) : hgf_err_set(e, HGF_ENOMEM, "out of memory");
    json_decref(last);
    free(host);
    free(repo);
    return rc;
}

void hgf_api_images(hgf_server_req *req, void *arg)
{
    static const char *const known[] = {"registry", "repository", "state", "limit", "after", NULL};
    hgf_runtime *rt = admitted(req, arg);
    hgf_catalog_images_filter f = {0};
    if (!rt || !params_ok(req, known) || !limit_ok(req, &f.limit))
        return;
    f.registry = hgf_server_req_query(req, "registry");
    f.repository = hgf_server_req_query(req, "repository");
    f.state = hgf_server_req_query(req, "state");
    const char *after = hgf_server_req_query(req, "after");
    hgf_catalog_query q;
    hgf_err e;
    if (hgf_catalog_images(&q, &f, "", &e))
        reply_error(req, 400, e.msg, q.bad_field);
    else if (after && images_after(&q, after, &e))
        reply_error(req, 400, e.msg, "after");
    else
        run(req, rt, &q, 0, HGF_REPORT_JSON);
}

void hgf_api_jobs(hgf_server_req *req, void *arg)
{
    static const char *const known[] = {"state", "kind", "limit", NULL};
    hgf_runtime *rt = admitted(req, arg);
    int limit;
    if (!rt || !params_ok(req, known) || !limit_ok(req, &limit))
        return;
    hgf_catalog_query q;
    hgf_err e;
    if (hgf_catalog_jobs(&q, hgf_server_req_query(req, "state"), hgf_server_req_query(req, "kind"),
                         limit, "", &e))
        reply_error(req, 400, e.msg, q.bad_field);
    else
        run(req, rt, &q, 0, HGF_REPORT_JSON);
}

void hgf_api_sweeps(hgf_server_req *req, void *arg)
{
    static const char *const known[] = {"limit", NULL};
    hgf_catalog_query q;
    int limit;
    hgf_runtime *rt = admitted(req, arg);
    if (rt && params_ok(req, known) && limit_ok(req, &limit))
        run(req, rt, hgf_catalog_sweeps(&q, limit), 0, HGF_REPORT_JSON);
}

static void sweep_report(hgf_server_req *req, hgf_runtime *rt, int64_t id)
{
    static const char *const known[] = {"format", NULL};
    const char *name = hgf_server_req_query(req, "format");
    hgf_report_format f = HGF_REPORT_JSON;
    hgf_err e;
    hgf_catalog_query q;
    if (!params_ok(req, known))
        return;
    if (name && hgf_report_format_parse(name, "format", &f, &e))
        reply_error(req, 400, e.msg, "format");
    else
        run(req, rt, hgf_catalog_sweep_report(&q, id), 1, f);
}

void hgf_api_sweep(hgf_server_req *req, void *arg)
{
    hgf_catalog_query q;
    int64_t id;
    const char *rest;
    hgf_runtime *rt = admitted(req, arg);
    if (!rt || path_id(req, &id, &rest))
        return;
    if (rest && !strcmp(rest, "report"))
        sweep_report(req, rt, id);
    else if (rest)
        no_route(req);
    else if (params_ok(req, NO_PARAMS))
        run(req, rt, hgf_catalog_sweep(&q, id), 0, HGF_REPORT_JSON);
}
