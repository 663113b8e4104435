#include "hgfleet/api.h"
#include "hgfleet/buf.h"
#include "hgfleet/migrations.h"
#include "hgfleet/timeutil.h"

#include <ev.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define GAUGES_EVERY_MS 5000
/* A failed refresh (no schema yet, database down) is retried this soon. */
#define GAUGES_CHECK_S 2.0
/* MHD does not time out a suspended request, so readyz bounds its own wait. */
#define READY_TIMEOUT_S 2.0

struct hgf_api {
    struct ev_loop *loop;
    const hgf_config *cfg;
    hgf_runtime *rt;
    int stopping;
    char down_reason[512];
    ev_timer gauges;
    int64_t gauges_ok_ms;   /* when the last refresh succeeded */
};

static void on_gauges(struct ev_loop *loop, ev_timer *w, int revents)
{
    hgf_api *a = w->data;
    if (hgf_time_now_ms() - a->gauges_ok_ms >= GAUGES_EVERY_MS)
        hgf_api_refresh_gauges(a);
}

void hgf_api_gauges_refreshed(hgf_api *a)
{
    a->gauges_ok_ms = hgf_time_now_ms();
}

hgf_api *hgf_api_new(struct ev_loop *loop, const hgf_config *cfg)
{
    hgf_api *a = calloc(1, sizeof *a);
    if (!a)
        return NULL;
    a->loop = loop;
    a->cfg = cfg;
    snprintf(a->down_reason, sizeof a->down_reason, "the database has not been reached yet");
    ev_timer_init(&a->gauges, on_gauges, GAUGES_CHECK_S, GAUGES_CHECK_S);
    a->gauges.data = a;
    return a;
}

void hgf_api_free(hgf_api *a)
{
    if (!a)
        return;
    ev_timer_stop(a->loop, &a->gauges);
    free(a);
}

void hgf_api_attach(hgf_api *a, hgf_runtime *rt)
{
    a->rt = rt;
    hgf_metrics_describe(rt->metrics, "hgfleet_webhook_requests_total", HGF_METRIC_COUNTER,
                         "EventBridge webhook requests, by HTTP status");
    hgf_metrics_describe(rt->metrics, "hgfleet_webhook_seconds", HGF_METRIC_HISTOGRAM,
                         "EventBridge webhook latency, from request to reply");
    hgf_api_refresh_gauges(a);
    ev_timer_start(a->loop, &a->gauges);
}

hgf_runtime *hgf_api_runtime(const hgf_api *a)
{
    return a->rt;
}

const hgf_config *hgf_api_config(const hgf_api *a)
{
    return a->cfg;
}

void hgf_api_set_down_reason(hgf_api *a, const char *reason)
{
    snprintf(a->down_reason, sizeof a->down_reason, "%s", reason);
}

void hgf_api_set_stopping(hgf_api *a)
{
    a->stopping = 1;
    ev_timer_stop(a->loop, &a->gauges);
}

void hgf_api_healthz(hgf_server_req *req, void *arg)
{
    hgf_server_reply_json(req, 200, json_pack("{s:s}", "status", "ok"));
}

/* ---- readyz ------------------------------------------------------------ */

typedef struct ready_ctx {
    struct ev_loop *loop;
    hgf_server_req *req;   /* NULL once answered */
    ev_timer timeout;
} ready_ctx;

static void not_ready(hgf_server_req *req, const char *fmt, const char *detail)
{
    char reason[1200];
    snprintf(reason, sizeof reason, fmt, detail);
    hgf_server_reply_json(req, 503,
                          json_pack("{s:s, s:s}", "status", "not ready", "reason", reason));
}

static void answer(hgf_server_req *req, PGresult *res, const hgf_err *err)
{
    int want = hgf_migrations_count;
    int latest = hgf_migrations[want - 1].version;
    hgf_err e;
    if (err) {
        not_ready(req, "database unreachable: %s", err->msg);
    } else if (hgf_store_check(res, &e)) {
        const char *state = PQresultErrorField(res, PG_DIAG_SQLSTATE);
        if (state && !strcmp(state, "42P01"))
            not_ready(req, "%s", "no migrations applied: run `hgfleet migrate`");
        else
            not_ready(req, "database error: %s", e.msg);
    } else if (atoi(PQgetvalue(res, 0, 0)) < want) {
        char msg[160];
        snprintf(msg, sizeof msg, "%d of %d migrations applied (this binary needs schema %d): "
                 "run `hgfleet migrate`", atoi(PQgetvalue(res, 0, 0)), want, latest);
        not_ready(req, "%s", msg);
    } else {
        hgf_server_reply_json(req, 200, json_pack("{s:s, s:i}", "status", "ready",
                                                  "schema_version", latest));
    }
}

static void ready_result(PGresult *res, const hgf_err *err, void *arg)
{
    ready_ctx *c = arg;
    if (c->req) {
        ev_timer_stop(c->loop, &c->timeout);
        answer(c->req, res, err);
    }
    PQclear(res);
    free(c);
}

static void ready_timeout(struct ev_loop *loop, ev_timer *w, int revents)
{
    ready_ctx *c = w->data;
    not_ready(c->req, "%s", "the database did not answer within 2 s");
    c->req = NULL; /* the query's callback frees c */
}

static void check_migrations(hgf_api *a, hgf_server_req *req)
{
    hgf_buf versions = HGF_BUF_INIT;
    hgf_buf_putc(&versions, '{');
    for (int i = 0; i < hgf_migrations_count; i++)
        hgf_buf_printf(&versions, "%s%d", i ? "," : "", hgf_migrations[i].version);
    hgf_buf_putc(&versions, '}');
    ready_ctx *c = calloc(1, sizeof *c);
    const char *p[] = {versions.data};
    int rc = c ? 0 : HGF_ENOMEM;
    if (c) {
        *c = (ready_ctx){.loop = a->loop, .req = req};
        ev_timer_init(&c->timeout, ready_timeout, READY_TIMEOUT_S, 0.);
        c->timeout.data = c;
        rc = hgf_store_query(a->rt->store, "SELECT count(*) FROM schema_migrations"
                             " WHERE version = ANY($1::int[])", 1, p, ready_result, c);
    }
    hgf_buf_free(&versions);
    if (rc) {
        free(c);
        not_ready(req, "database unreachable: %s", hgf_store_last_error(a->rt->store));
        return;
    }
    ev_timer_start(a->loop, &c->timeout);
    hgf_server_suspend(req);
}

void hgf_api_readyz(hgf_server_req *req, void *arg)
{
    hgf_api *a = arg;
    if (a->stopping)
        not_ready(req, "%s", "shutting down");
    else if (!a->rt)
        not_ready(req, "database unreachable: %s", a->down_reason);
    else if (!hgf_store_is_up(a->rt->store))
        not_ready(req, "database unreachable: %s", hgf_store_last_error(a->rt->store));
    else
        check_migrations(a, req);
}
