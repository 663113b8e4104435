#include "hgfleet/api.h"
#include "hgfleet/buf.h"
#include "hgfleet/jobs.h"
#include "hgfleet/metrics.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CONTENT_TYPE "text/plain; version=0.0.4; charset=utf-8"

static const char *const KINDS[] = {"sync", "scan", "sweep"};
static const char *const STATES[] = {"queued", "running", "done", "failed"};

static void describe(hgf_metrics *m)
{
    hgf_metrics_describe(m, "hgfleet_up", HGF_METRIC_GAUGE, "1 while this process serves.");
    hgf_metrics_describe(m, "hgfleet_database_up", HGF_METRIC_GAUGE,
                         "1 while this process's database connection is up.");
    hgf_metrics_describe(m, "hgfleet_jobs", HGF_METRIC_GAUGE,
                         "Jobs in the queue by kind and state, all replicas (refreshed every "
                         "5 s).");
    hgf_metrics_describe(m, "hgfleet_sync_lag_seconds", HGF_METRIC_GAUGE,
                         "Seconds since each connection's last sync (since it was added, before "
                         "its first); refreshed every 5 s.");
}

void hgf_api_metrics(hgf_server_req *req, void *arg)
{
    hgf_runtime *rt = hgf_api_runtime(arg);
    hgf_buf out = HGF_BUF_INIT;
    if (!rt) {
        hgf_buf_puts(&out, "# HELP hgfleet_up 1 while this process serves.\n# TYPE hgfleet_up "
                           "gauge\nhgfleet_up 1\n# HELP hgfleet_database_up 1 while this "
                           "process's database connection is up.\n# TYPE hgfleet_database_up "
                           "gauge\nhgfleet_database_up 0\n");
    } else {
        describe(rt->metrics);
        hgf_metrics_set(rt->metrics, "hgfleet_up", NULL, 1);
        hgf_metrics_set(rt->metrics, "hgfleet_database_up", NULL, hgf_store_is_up(rt->store));
        hgf_metrics_render(rt->metrics, &out);
    }
    hgf_server_reply(req, 200, CONTENT_TYPE, hgf_buf_str(&out), out.len);
    hgf_buf_free(&out);
}

/* Every kind and state gets a series, zero or not, so dashboards see a
 * stable set. */
static void jobs_counted(PGresult *res, const hgf_err *err, void *arg)
{
    hgf_runtime *rt = hgf_api_runtime(arg);
    hgf_err e;
    if (!err && !hgf_store_check(res, &e)) {
        hgf_api_gauges_refreshed(arg);
        char labels[96];
        hgf_metrics_clear(rt->metrics, "hgfleet_jobs");
        for (size_t k = 0; k < sizeof KINDS / sizeof *KINDS; k++)
            for (size_t s = 0; s < sizeof STATES / sizeof *STATES; s++) {
                snprintf(labels, sizeof labels, "kind=\"%s\",state=\"%s\"", KINDS[k], STATES[s]);
                hgf_metrics_set(rt->metrics, "hgfleet_jobs", labels, 0);
            }
        for (int i = 0; i < PQntuples(res); i++) {
            snprintf(labels, sizeof labels, "kind=\"%.20s\",state=\"%.20s\"",
                     PQgetvalue(res, i, 0), PQgetvalue(res, i, 1));
            hgf_metrics_set(rt->metrics, "hgfleet_jobs", labels, atof(PQgetvalue(res, i, 2)));
        }
    }
    PQclear(res);
}

static void lag_measured(PGresult *res, const hgf_err *err, void *arg)
{
    hgf_runtime *rt = hgf_api_runtime(arg);
    hgf_err e;
    if (!err && !hgf_store_check(res, &e)) {
        hgf_metrics_clear(rt->metrics, "hgfleet_sync_lag_seconds");
        for (int i = 0; i < PQntuples(res); i++) {
            char reg[256], labels[300];
            hgf_metrics_escape(PQgetvalue(res, i, 0), reg, sizeof reg);
            snprintf(labels, sizeof labels, "registry=\"%s\"", reg);
            hgf_metrics_set(rt->metrics, "hgfleet_sync_lag_seconds", labels,
                            atof(PQgetvalue(res, i, 1)));
        }
    }
    PQclear(res);
}

void hgf_api_refresh_gauges(hgf_api *a)
{
    hgf_runtime *rt = hgf_api_runtime(a);
    if (!rt || !hgf_store_is_up(rt->store))
        return;
    describe(rt->metrics);
    hgf_store_query(rt->store, "SELECT kind, state, count(*) FROM jobs GROUP BY 1, 2", 0, NULL,
                    jobs_counted, a);
    hgf_store_query(rt->store,
                    "SELECT registry, extract(epoch FROM now() - coalesce(last_sync_at, "
                    "created_at)) FROM connections WHERE removed_at IS NULL",
                    0, NULL, lag_measured, a);
}
