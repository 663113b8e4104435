/* EventBridge delivery of ECR image events to one webhook, the way an API
 * destination POSTs them: the exact event JSON, Content-Type
 * application/json, the connection's auth (API_KEY header, BASIC or
 * BEARER), a per-attempt timeout (5 s by default, EventBridge's), and
 * retries on the answers EventBridge retries (no answer or a timeout, 401,
 * 407, 409, 429, 5xx): at most HGF_SIM_WEBHOOK_ATTEMPTS attempts,
 * HGF_SIM_WEBHOOK_RETRY_MS apart. Every delivery is logged with its
 * attempts and latencies for GET /_sim/events; the log keeps the newest
 * HGF_SIM_WEBHOOK_LOG_CAP deliveries.
 *
 * Configuration (POST /_sim/webhook, or the --webhook flags):
 *   {"url": "http://127.0.0.1:8080/api/webhooks/ecr",
 *    "auth": {"type": "API_KEY", "header": "X-Api-Key", "value": "..."}
 *          | {"type": "BASIC", "username": "...", "password": "..."}
 *          | {"type": "BEARER", "token": "..."},
 *    "timeout_ms": 5000}
 * auth is optional ("header" defaults to X-Api-Key); unknown members are
 * refused. Secrets never leave through hgf_sim_webhook_config_json.
 *
 * Thread-safe: deliveries run concurrently, each on the configuration
 * current when it started.
 *
 * Ownership: the webhook owns its configuration and log; events are
 * borrowed for the call; JSON it returns is a new reference the caller
 * decrefs; a CURL handle passed back through `handle` belongs to the
 * caller, who releases it with hgf_sim_webhook_handle_free. */
#ifndef ECRSIM_WEBHOOK_H
#define ECRSIM_WEBHOOK_H

#include <stdint.h>

#include <jansson.h>

#include "hgfleet/err.h"

#define HGF_SIM_WEBHOOK_ATTEMPTS 3
#define HGF_SIM_WEBHOOK_RETRY_MS 200
#define HGF_SIM_WEBHOOK_TIMEOUT_MS 5000
#define HGF_SIM_WEBHOOK_LOG_CAP 50000

/* One ECR Image Action event. */
typedef struct hgf_sim_event {
    char id[37];             /* a random UUID (hgf_sim_webhook_event_init) */
    const char *action;      /* "PUSH" or "DELETE" */
    const char *result;      /* "SUCCESS" or "FAILURE" */
    char account[13];
    char region[64];
    const char *repository;  /* borrowed */
    char digest[72];
    const char *tag;         /* borrowed; NULL or "" when untagged (no image-tag) */
    int64_t time_ms;
    uint64_t batch;          /* the bulk push it belongs to; 0 for none */
} hgf_sim_event;

/* How one delivery went. */
typedef struct hgf_sim_delivery {
    int status;         /* the last answer's HTTP status; 0 when nothing answered */
    int attempts;
    double latency_ms;  /* from the first attempt's start to the last one's end */
    int ok;             /* a 2xx came back */
} hgf_sim_delivery;

typedef struct hgf_sim_webhook hgf_sim_webhook;

/* Also initializes libcurl: call before any thread starts. */
int hgf_sim_webhook_create(hgf_sim_webhook **out);
void hgf_sim_webhook_free(hgf_sim_webhook *w);

/* Replaces the configuration with doc (shape above); on error nothing
 * changes and err (HGF_EINPUT) names the member, e.g. "auth.value". */
int hgf_sim_webhook_configure(hgf_sim_webhook *w, json_t *doc, hgf_err *err);
void hgf_sim_webhook_clear(hgf_sim_webhook *w);
int hgf_sim_webhook_enabled(hgf_sim_webhook *w);
/* The configuration without its secrets: {"url": null} when none. */
json_t *hgf_sim_webhook_config_json(hgf_sim_webhook *w);

/* Zeroes ev and gives it a fresh UUID. */
void hgf_sim_webhook_event_init(hgf_sim_event *ev);
/* The EventBridge event, members in EventBridge's order. */
json_t *hgf_sim_webhook_event_json(const hgf_sim_event *ev);

/* POSTs ev with retries (blocking) and logs the delivery. handle: NULL for
 * a one-off connection, or the address of a caller-kept CURL handle
 * (created on first use) so a series of deliveries reuses one connection.
 * HGF_EINPUT when no webhook is configured, HGF_ENOMEM. */
int hgf_sim_webhook_deliver(hgf_sim_webhook *w, const hgf_sim_event *ev, void **handle,
                            hgf_sim_delivery *out);
void hgf_sim_webhook_handle_free(void *handle);

/* Makes deliveries in progress give up at once (shutdown). */
void hgf_sim_webhook_stop(hgf_sim_webhook *w);

/* {"total": N ever delivered, "logged": N kept,
 *  "summary": {"events", "ok", "attempts", "latency_ms": {"p50","p90","p99","max"}},
 *  "events": [{"event": {...EventBridge...}, "batch": id|null, "status": S,
 *              "attempts": [{"status": S, "latency_ms": T, "error": "..."}],
 *              "latency_ms": T, "delivered_at": "ISO 8601"}]}
 * over the logged deliveries of `batch` (0: all), oldest first. */
json_t *hgf_sim_webhook_events_json(hgf_sim_webhook *w, uint64_t batch);
void hgf_sim_webhook_events_clear(hgf_sim_webhook *w);

#endif
