/* HTTP handlers of `hgfleet serve` (DESIGN.md "HTTP contract"). They share
 * one hgf_api context, the `arg` of every route in the server's table.
 *
 *   GET /healthz  200 {"status":"ok"} while the loop runs
 *   GET /readyz   200 {"status":"ready","schema_version":N} when the database
 *                 answers and every embedded migration is applied; else 503
 *                 {"status":"not ready","reason":...}
 *   GET /metrics  Prometheus text: the runtime's registry, plus gauges the
 *                 api refreshes from the database every 5 s (hgfleet_jobs by
 *                 kind and state, hgfleet_sync_lag_seconds by registry)
 *
 * The process may start before its database is reachable, so the runtime is
 * attached later (hgf_api_attach); until then readyz says why it is not ready
 * and metrics shows hgfleet_up and hgfleet_database_up only.
 *
 * Ownership: hgf_api_new returns a context freed with hgf_api_free after
 * hgf_runtime_close, since its store callbacks may fire while the store
 * closes. Close the runtime before stopping the server too: that answers
 * every request readyz suspended. The runtime is borrowed. */
#ifndef HGF_API_H
#define HGF_API_H

#include "hgfleet/runtime.h"
#include "hgfleet/server.h"

struct ev_loop;

typedef struct hgf_api hgf_api;

/* cfg is borrowed and must outlive the context: requests are authenticated
 * with it even before the database has been reached. */
hgf_api *hgf_api_new(struct ev_loop *loop, const hgf_config *cfg);
/* The process's config, as given to hgf_api_new. */
const hgf_config *hgf_api_config(const hgf_api *a);
void hgf_api_free(hgf_api *a);

/* The runtime is open: serve from it and start refreshing the gauges. */
void hgf_api_attach(hgf_api *a, hgf_runtime *rt);
/* The runtime, or NULL before hgf_api_attach: for handlers in other files. */
hgf_runtime *hgf_api_runtime(const hgf_api *a);
/* Why the database cannot be reached yet (before attach); copied. */
void hgf_api_set_down_reason(hgf_api *a, const char *reason);
/* Shutting down: readyz answers 503 from now on. */
void hgf_api_set_stopping(hgf_api *a);

/* Route handlers; arg is the hgf_api. */
void hgf_api_healthz(hgf_server_req *req, void *arg);
void hgf_api_readyz(hgf_server_req *req, void *arg);
void hgf_api_metrics(hgf_server_req *req, void *arg);
/* POST /api/webhooks/ecr (webhook.c). */
void hgf_api_webhook_ecr(hgf_server_req *req, void *arg);

/* The read-only JSON API (resources.c), for `Authorization: Bearer
 * <HGFLEET_ADMIN_TOKEN>` only: 403 for everyone while no admin token is
 * configured, 401 for a missing or wrong one. Every object is the one the
 * CLI's --json prints (the views of catalog.h), never a secret.
 *
 *   GET /api/connections                 `connection list --json`
 *   GET /api/connections/ID              `connection show ID --json`
 *   GET /api/images?registry=&repository=&state=&limit=
 *                                        `images list --json` (its first
 *                                        `limit` rows: default 100, max 1000)
 *   GET /api/jobs?state=&kind=&limit=    `jobs list --json`
 *   GET /api/sweeps?limit=               `sweep list --json`
 *   GET /api/sweeps/ID                   one element of that list
 *   GET /api/sweeps/ID/report?format=json|csv|html
 *                                        `sweep show ID --format F`, byte for byte
 *
 * 400 names the bad field ({"error":..., "field":...}) for a malformed id,
 * an unknown or repeated query parameter or a bad value; 404 for an unknown
 * id; 409 for the report of a sweep still running; 503 while the database is
 * unreachable (or does not answer within 30 s). */
void hgf_api_connections(hgf_server_req *req, void *arg);
void hgf_api_connection(hgf_server_req *req, void *arg);
void hgf_api_images(hgf_server_req *req, void *arg);
void hgf_api_jobs(hgf_server_req *req, void *arg);
void hgf_api_sweeps(hgf_server_req *req, void *arg);
void hgf_api_sweep(hgf_server_req *req, void *arg);

/* ---- shared by the api files (src/api/) ---- */

/* Refreshes the database gauges now (metrics.c). The api calls it every 5 s,
 * or 2 s after a refresh that failed; hgf_api_gauges_refreshed records a
 * success. */
void hgf_api_refresh_gauges(hgf_api *a);
void hgf_api_gauges_refreshed(hgf_api *a);

/* 1 if the n bytes of given equal the configured token want (auth.c). The
 * time taken depends on neither the contents nor the lengths. */
int hgf_api_token_equal(const char *given, size_t n, const char *want);

#endif
